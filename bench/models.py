"""Seconds per video for each model at its own steps, and several videos in one batch
against one after another.

Part 1, models: every model of the registry through LocalBackend at its default steps and
frames, in rounds of every model once, the order rotated each round (median and spread,
min-max); the ratio is against svd-xt, the default, round by round.
Part 2, batch: `num_videos` N in one UNet batch against the same N one after another (the
same videos: each from its own seed), N = 2 and 4.

On the CPU (or with --small) the models are the tiny stand-ins, loaded from a Hugging Face
cache laid out as the hub lays out the real repos (tests/hub_cache.py); at 192x128 by
default. With a GPU (and not --small), each model is SVD-XT's architecture with random
weights (bench/xt.py) in fp16 at 1024x576, with the model's frames, steps and sampler:
speed does not depend on the weights.

Usage: python bench/models.py [--runs 3] [--small] [--threads N] [--videos 2 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import environment, make_picture, make_video, paired  # noqa: E402


def backend_for(small: bool, work: Path):
    """(LocalBackend, its video size, how a request names each model)."""
    from svd.backends.local import LocalBackend

    if small:
        from tests.hub_cache import add_every_model

        add_every_model(work / "hf")
        backend = LocalBackend(device="cpu")
        backend.max_loaded = 8
        return backend, (192, 128)
    from xt import build_xt

    backend = LocalBackend(pipe=build_xt("cuda"))
    return backend, (1024, 576)


def run_models(backend, size, runs: int, work: Path, small: bool) -> None:
    from svd import models
    from svd.loading import scheduler_for
    from svd.schema import SVDInput

    picture = work / "picture.png"
    make_picture(*size).save(picture)
    chosen = [m for m in models.MODELS.values() if m.repo]
    base = backend.load() if not small else None
    euler = base.scheduler if base is not None else None

    def call(spec):
        inp = SVDInput(image_url=str(picture), width=size[0], height=size[1], seed=0,
                       model=spec.name if small else None, num_frames=spec.frames,
                       steps=spec.steps, fps=spec.fps)  # fmt: skip

        def once():
            if base is not None:  # one XT-shaped pipeline, the model's sampler swapped in
                base.scheduler = euler if spec.unet_file is None else scheduler_for(spec)
            make_video(backend, inp, work / "out")

        return once

    t = paired(runs, **{m.name: call(m) for m in chosen})
    print(f"\nModels at {size[0]}x{size[1]}, their own frames and steps, {runs} rounds:")
    print("| model | frames | steps | seconds per video (min-max) | against svd-xt, paired "
          "by round |")  # fmt: skip
    print("|---|---|---|---|---|")
    for spec in chosen:
        ratio = "1" if spec.name == "svd-xt" else t.ratio(spec.name, "svd-xt")
        print(f"| {spec.name} | {spec.frames} | {spec.steps} | {t.spread(spec.name, fmt='.2f')} "
              f"| {ratio} |")  # fmt: skip


def run_batch(backend, size, runs: int, work: Path, counts: list[int]) -> None:
    from svd.schema import SVDInput

    picture = work / "picture.png"
    frames, steps = (6, 3) if size[0] < 512 else (25, 20)
    print(f"\nSeveral videos at {size[0]}x{size[1]}, {frames} frames, {steps} steps, "
          f"{runs} rounds:")  # fmt: skip
    print("| videos | one batch (min-max) | one after another (min-max) | batch against one "
          "after another, paired by round |")  # fmt: skip
    print("|---|---|---|---|")
    for count in counts:
        inp = SVDInput(image_url=str(picture), width=size[0], height=size[1], seed=0,
                       num_frames=frames, steps=steps, num_videos=count)  # fmt: skip

        def way(batched: bool, inp=inp):
            def once():
                backend.batch_videos = batched
                make_video(backend, inp, work / "out")

            return once

        t = paired(runs, batch=way(True), apart=way(False))
        print(f"| {count} | {t.spread('batch', fmt='.2f')} | {t.spread('apart', fmt='.2f')} "
              f"| {t.ratio('batch', 'apart')} |")  # fmt: skip
    backend.batch_videos = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds, each case once a round")
    parser.add_argument("--small", action="store_true", help="the tiny stand-ins, even on a GPU")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: all cores)")
    parser.add_argument("--videos", type=int, nargs="+", default=[2, 4], help="batch sizes")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    small = args.small or not torch.cuda.is_available()
    print(environment("cpu" if small else f"GPU {torch.cuda.get_device_name()}"))
    work = Path(tempfile.mkdtemp(prefix="svd-bench-models-"))
    if small:  # before huggingface_hub is imported: it reads these once
        os.environ["HF_HOME"], os.environ["HF_HUB_OFFLINE"] = str(work / "hf"), "1"
    backend, size = backend_for(small, work)
    run_models(backend, size, args.runs, work, small)
    run_batch(backend, size, args.runs, work, args.videos)


if __name__ == "__main__":
    main()
