"""The conditioning cache: a repeat run on the same picture against the first run on it.

The first run encodes the picture with CLIP and the VAE; a new seed reuses the CLIP
embedding, and the same seed with another motion or step count reuses both.
Usage: python bench/cache.py [--runs 7]
"""

from __future__ import annotations

import argparse

from common import PARAMS, environment, forget_pictures, make_video, paired, workdir

from svd.backends.local import LocalBackend
from svd.schema import SVDInput


def main(runs: int = 7) -> None:
    tmp = workdir()
    out = tmp / "outputs"
    backend = LocalBackend(model="tiny")
    inp = SVDInput(image_url=str(tmp / "picture.png"), **PARAMS)
    seeds = iter(range(1, 10**6))

    def first():
        forget_pictures(backend)
        make_video(backend, inp, out)

    def new_seed():
        make_video(backend, inp.model_copy(update={"seed": next(seeds)}), out)

    def new_motion():
        make_video(backend, inp.model_copy(update={"motion_bucket_id": next(seeds) % 255 + 1}),
                   out)  # fmt: skip

    t = paired(runs, first=first, new_seed=new_seed, new_motion=new_motion)
    print(f"tiny SVD {PARAMS}, {environment(backend.device)}")
    print(f"first run on a picture: {t.spread('first')} (median, min-max)")
    print(f"same picture, new seed (CLIP cached): {t.spread('new_seed')}")
    print(f"same picture and seed, new motion (CLIP and VAE cached): {t.spread('new_motion')}")
    print(f"repeat ratio, new seed, paired by round: {t.ratio('new_seed', 'first')}")
    print(f"repeat ratio, new motion, paired by round: {t.ratio('new_motion', 'first')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds, each side once a round")
    main(parser.parse_args().runs)
