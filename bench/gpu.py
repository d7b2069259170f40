"""SVD-XT per video on a GPU: plain diffusers against our paths, with peak memory.

Builds SVD-XT with random weights (bench/xt.py) in fp16 at 1024x576, 25 frames, and times
one video end to end (the mp4 included) for each case, each in its own process (forked from
one that has done the imports) so that peak memory is its own:

  vanilla  diffusers as its docs suggest: fp16 on the GPU, decode chunks of 8
  ours     LocalBackend, default settings
  fast     LocalBackend --fast: channels-last, regional torch.compile (compiled in warm-up)
  reuse2/3 fast, plus cache_interval=2/3 (DeepCache; lossy: PSNR against fast)
  low      LocalBackend with SVD_MEMORY=low: model offload, frame-by-frame feed-forward,
           decode chunks of 2
  decode   VAE decode time and memory by decode chunk size

Outputs are compared as decoded mp4 frames. `--small` runs the same cases with the tiny
model at 192x128 (on the CPU if there is no GPU), to check the script itself.
Usage: python bench/gpu.py [--steps 25 20] [--runs 2] [--cases vanilla fast ...] [--small]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import environment, forget_pictures, make_picture, make_video  # noqa: E402

from svd.media import read_video, write_video  # noqa: E402

# diffusers, the models and the backends are imported where the cases run: in their own
# processes (forked from one that preloads them), not in this one.

CASES = {
    "vanilla": {},
    "ours": {},
    "fast": {"fast": True},
    "reuse2": {"fast": True, "cache_interval": 2},
    "reuse3": {"fast": True, "cache_interval": 3},
    "low": {"memory": "low"},
}
SMALL = (192, 128, 6)  # width, height, frames
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def build(small: bool, device: str):
    from xt import build_xt

    from svd.backends.tiny import build_tiny_pipeline

    if small:
        return build_tiny_pipeline().to(device)
    return build_xt(device, torch.float16)


def peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None


def timed(fn, runs: int) -> dict:
    """The first call (warm-up, compilation) apart, then the median of `runs` calls."""

    def call() -> float:
        t = time.perf_counter()
        fn()
        if CUDA:
            torch.cuda.synchronize()  # what was queued on the GPU counts too
        return time.perf_counter() - t

    first = call()
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    times = [call() for _ in range(runs)]
    return {"first_s": round(first, 2), "median_s": round(statistics.median(times), 3),
            "times": [round(t, 4) for t in times], "peak_gb": peak_gb()}  # fmt: skip


def run_case(name: str, small: bool, steps: int, runs: int, work: Path) -> dict:
    from xt import FRAMES, SIZE

    from svd.backends.local import LocalBackend
    from svd.schema import SVDInput

    width, height, frames = SMALL if small else (*SIZE, FRAMES)
    picture = work / "picture.png"
    make_picture(width, height).save(picture)
    video = work / f"{name}-{steps}.mp4"
    if name == "decode":
        return decode_case(small, frames, width, height, runs)
    options = dict(CASES[name])
    pipe = build(small, "cpu" if name == "low" else DEVICE)
    if name == "vanilla":
        image = make_picture(width, height)

        def once():
            out = pipe(
                image, height=height, width=width, num_frames=frames,
                num_inference_steps=steps, decode_chunk_size=8,
                generator=torch.Generator("cpu").manual_seed(0), output_type="np",
            )  # fmt: skip
            write_video(out.frames[0], 7, video, "mp4")
    else:
        interval = options.pop("cache_interval", 1)
        backend = LocalBackend(pipe=pipe, device=DEVICE, **options)
        inp = SVDInput(image_url=str(picture), width=width, height=height, num_frames=frames,
                       steps=steps, seed=0, cache_interval=interval)  # fmt: skip

        def once():
            forget_pictures(backend)  # each run as the first on its picture
            out = make_video(backend, inp, work / "out")
            Path(urlparse(out.image.url).path).replace(video)

    result = timed(once, runs)
    result["video"] = str(video)
    return result


def decode_case(small: bool, frames: int, width: int, height: int, runs: int) -> dict:
    pipe = build(small, DEVICE)
    pipe.unet.to("cpu")  # the decoder's memory alone
    pipe.image_encoder.to("cpu")
    if CUDA:
        torch.cuda.empty_cache()
    dtype = pipe.vae.dtype
    latents = torch.randn(1, frames, 4, height // 8, width // 8, device=DEVICE, dtype=dtype)
    result = {}
    for chunk in sorted({2, 4, 8, 14, frames}):
        if chunk <= frames:
            with torch.no_grad():
                result[f"chunk {chunk}"] = timed(
                    lambda c=chunk: pipe.decode_latents(latents, frames, c), runs
                )
    return result


def psnr(a: str, b: str) -> str:
    x, y = (read_video(p)[0].astype(np.float64) for p in (a, b))
    if x.shape != y.shape:
        return "shapes differ"
    mse = ((x - y) ** 2).mean()
    return "identical" if mse == 0 else f"{10 * np.log10(255**2 / mse):.1f} dB"


def main(steps_list, runs: int, cases, small: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="svd-gpu-bench-"))
    where = torch.cuda.get_device_name() if CUDA else "CPU"
    size = "tiny 192x128, 6 frames" if small else "SVD-XT random weights, 1024x576, 25 frames"
    dtype = "fp32" if small else "fp16"
    print(f"{size}, {dtype}, {environment(where)}, {runs} timed runs per case")
    for steps in steps_list:
        results = {}
        for name in cases:
            result = in_own_process(name, small, steps, runs, work)
            if isinstance(result, str):
                print(f"{name}: {result}")
            else:
                results[name] = result
        report(steps, results)


# Each case runs in a process of its own, forked from a server that has imported torch and
# the project but never touched the GPU: a clean GPU per case, without paying the imports.
PRELOAD = ["common", "xt", "svd.backends.local", "svd.media", "svd.schema"]


def in_own_process(name: str, small: bool, steps: int, runs: int, work: Path) -> dict | str:
    """run_case in a process of its own: its result, or what went wrong."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=case_process, args=(send, name, small, steps, runs, work))
    process.start()
    send.close()
    try:
        if not receive.poll(1800):
            process.kill()
            return "over 30 minutes, stopped"
        kind, value = receive.recv()
    except EOFError:  # it ended without a word (killed, out of memory)
        kind, value = "failed", None
    finally:
        process.join(60)
    if kind == "done":
        return value
    return f"failed\n{(value or f'the process ended with code {process.exitcode}')[-2000:]}"


def case_process(send, *args) -> None:
    try:
        send.send(("done", run_case(*args)))
    except BaseException:  # the parent prints it
        send.send(("failed", traceback.format_exc()))


def speed(base: list[float], times: list[float]) -> str:
    """How much faster than `base`, from each side's own runs (each case runs in its own
    process, so rounds cannot pair): the ratio of medians, and the range any pair of runs
    gives; "no difference" when that range spans 1.0."""
    ratio = statistics.median(base) / statistics.median(times)
    low, high = min(base) / max(times), max(base) / min(times)
    text = f"{ratio:.2f}x ({low:.2f}-{high:.2f} over {len(base)} and {len(times)} runs)"
    return text + (": no difference" if low <= 1.0 <= high else "")


def report(steps: int, results: dict) -> None:
    print(f"\n{steps} steps")
    base = results.get("vanilla", {}).get("median_s")
    for name, r in results.items():
        if name == "decode":
            for chunk, d in r.items():
                print(f"  decode, {chunk}: {d['median_s']} s, peak {d['peak_gb']} GB")
            continue
        line = f"  {name}: {r['median_s']} s per video (first {r['first_s']} s)"
        if base and name != "vanilla":
            line += f", speed against vanilla {speed(results['vanilla']['times'], r['times'])}"
        line += f", peak {r['peak_gb']} GB" if r["peak_gb"] is not None else ""
        against = "fast" if name.startswith("reuse") else "vanilla"
        if against in results and name != against:
            line += f", PSNR against {against}: {psnr(r['video'], results[against]['video'])}"
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 20])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=[*CASES, "decode"])
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    main(args.steps, args.runs, args.cases, args.small)
