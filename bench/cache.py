"""The conditioning cache: a repeat run on the same picture against the first run on it.

The first run encodes the picture with CLIP and the VAE; a new seed reuses the CLIP
embedding, and the same seed with another motion or step count reuses both.
Usage: python bench/cache.py [--runs 7]
"""

from __future__ import annotations

import argparse

import torch
from common import PARAMS, medians, workdir

from svd.backends.local import LocalBackend
from svd.schema import SVDInput


def main(runs: int = 7) -> None:
    tmp = workdir()
    backend = LocalBackend(model="tiny", output_dir=tmp / "outputs")
    pipe = backend.load()
    inp = SVDInput(image_url=str(tmp / "picture.png"), **PARAMS)
    seeds = iter(range(1, 10**6))

    def first():
        pipe.clear_cache()
        backend.generate(inp)

    def new_seed():
        backend.generate(inp.model_copy(update={"seed": next(seeds)}))

    def new_motion():
        backend.generate(inp.model_copy(update={"motion_bucket_id": next(seeds) % 255 + 1}))

    t = medians(runs, first=first, new_seed=new_seed, new_motion=new_motion)
    print(f"tiny SVD {PARAMS}, {runs} runs, torch {torch.__version__}, {backend.device}")
    print(f"first run on a picture: {t['first']:.3f} s (median)")
    print(f"same picture, new seed (CLIP cached): {t['new_seed']:.3f} s")
    print(f"same picture and seed, new motion (CLIP and VAE cached): {t['new_motion']:.3f} s")
    print(f"repeat ratio, new seed: {t['new_seed'] / t['first']:.3f}")
    print(f"repeat ratio, new motion: {t['new_motion'] / t['first']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
