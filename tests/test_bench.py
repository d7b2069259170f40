import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_runs_on_tiny_and_our_default_path_matches_diffusers():
    """The GPU benchmark's own check, on the CPU: plain diffusers and ours give one video."""
    cmd = [sys.executable, "bench/gpu.py", "--small", "--steps", "2", "--runs", "1",
           "--cases", "vanilla", "ours", "low", "decode"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "failed" not in done.stdout
    ours = next(line for line in lines if line.strip().startswith("ours:"))
    assert "PSNR against vanilla: identical" in ours
    assert any(line.strip().startswith("low:") for line in lines)
    assert sum("decode, chunk" in line for line in lines) == 3  # chunks 2, 4 and 6 frames


def test_bench_runner_lists_its_benches_and_runs_one():
    """`bench/run.py --help` names every bench; one round of overhead.py through it reports
    torch's threads and a paired ratio that says it is too few rounds to tell."""
    shown = subprocess.run([sys.executable, "bench/run.py", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in ("overhead", "mask", "serving", "models", "cluster", "flops"):
        assert f"  {name} " in shown.stdout
    cmd = [sys.executable, "bench/run.py", "--only", "overhead", "--runs", "1", "--threads", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ", 1 torch thread" in done.stdout
    ratio = next(line for line in done.stdout.splitlines() if line.startswith("overhead ratio"))
    assert ratio.endswith("over 1 round): too few rounds to tell")
