"""Every CPU benchmark, one after another, each in a process of its own (a few minutes on 2
cores with --runs 5).

The GPU benchmark, bench/gpu.py, runs apart: it needs a GPU for its figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: what it measures, and whether it takes --runs
BENCHES = {
    "overhead": ("svd.run on LocalBackend against plain diffusers", True),
    "mask": ("a run with a motion mask against one without", True),
    "depth": ("reading depth maps; a ControlNet step against a plain step", True),
    "cache": ("repeat runs on a picture against the first", True),
    "reuse": ("cache_interval 2-4 against 1: time and PSNR", True),
    "preview": ("live previews against none", True),
    "serving": ("each way into the app against plain diffusers; the cold start", True),
    "models": ("each model at its own steps; a batch of videos", True),
    "cluster": ("Ray replicas: throughput, and the remote hop", True),
    "flops": ("where SVD-XT's work goes, in FLOPs (no timing)", False),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    listing = "\n".join(f"  {name:9} {what}" for name, (what, _) in BENCHES.items())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"benchmarks, in the order they run:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, help="rounds of each bench (default: its own)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), metavar="NAME",
                        help="run these benches only")  # fmt: skip
    parser.add_argument("--skip", nargs="+", choices=list(BENCHES), default=[], metavar="NAME",
                        help="leave these benches out")  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch's CPU threads in each bench")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    if args.threads:  # torch reads it at start, in each bench and in the app serving.py starts
        env["OMP_NUM_THREADS"] = str(args.threads)
    chosen = [n for n in (args.only or BENCHES) if n not in args.skip]
    started, failed = time.perf_counter(), []
    for name in chosen:
        cmd = [sys.executable, str(HERE / f"{name}.py")]
        if args.runs is not None and BENCHES[name][1]:
            cmd += ["--runs", str(args.runs)]
        print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            failed.append(name)
    print(f"\nbenchmarks: {time.perf_counter() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
