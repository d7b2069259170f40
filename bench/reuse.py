"""Feature reuse (cache_interval): time and closeness to the full run, on tiny.

Each interval runs the same pipeline, seed and picture as a plain diffusers call; PSNR is
against that plain run's frames. Random weights make the closeness a sanity check only; the
architecture's share of reusable work is in flops.py. Usage: python bench/reuse.py [--runs 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import PARAMS, environment, make_picture, paired

from svd.backends.tiny import build_tiny_pipeline
from svd.reuse import feature_reuse

STEPS = 12


def main(runs: int = 5) -> None:
    pipe = build_tiny_pipeline()
    width, height = PARAMS["width"], PARAMS["height"]
    picture = make_picture(width, height)

    def run(interval: int) -> np.ndarray:
        with feature_reuse(pipe.unet, interval):
            return pipe(
                picture,
                height=height,
                width=width,
                num_frames=PARAMS["num_frames"],
                num_inference_steps=STEPS,
                generator=torch.Generator().manual_seed(PARAMS["seed"]),
                output_type="np",
            ).frames[0]

    intervals = (1, 2, 3, 4)
    t = paired(runs, **{f"i{n}": lambda n=n: run(n) for n in intervals})
    full = run(1)
    print(f"tiny SVD {width}x{height}, {PARAMS['num_frames']} frames, {STEPS} steps, "
          f"{environment()}")  # fmt: skip
    for n in intervals:
        mse = float(((run(n) - full) ** 2).mean())
        psnr = "identical" if mse == 0 else f"{10 * np.log10(1 / mse):.1f} dB"
        ratio = "1" if n == 1 else str(t.ratio(f"i{n}", "i1"))
        print(f"cache_interval={n}: {t.spread(f'i{n}')}, ratio {ratio}, "
              f"PSNR against the full run: {psnr}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds, each interval once a round")
    main(parser.parse_args().runs)
