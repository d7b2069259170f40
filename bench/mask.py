"""The motion mask's cost: a run with a half mask against the same run without one.

Both sides start from an empty conditioning cache, so each pays its own encodes: the
masked run's extra VAE encode of the clean picture counts against it.
Usage: python bench/mask.py [--runs 7]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import PARAMS, environment, forget_pictures, make_video, paired, workdir
from PIL import Image

from svd.backends.local import LocalBackend
from svd.schema import SVDInput


def main(runs: int = 7) -> None:
    tmp = workdir()
    mask = np.full((PARAMS["height"], PARAMS["width"]), 255, np.uint8)
    mask[:, : PARAMS["width"] // 2] = 0
    Image.fromarray(mask).save(tmp / "mask.png")
    backend = LocalBackend(model="tiny")
    plain = SVDInput(image_url=str(tmp / "picture.png"), **PARAMS)
    masked = plain.model_copy(update={"mask_image_url": str(tmp / "mask.png")})

    def first_run(inp: SVDInput):
        def once():
            forget_pictures(backend)
            make_video(backend, inp, tmp / "outputs")

        return once

    t = paired(runs, plain=first_run(plain), masked=first_run(masked))
    print(f"tiny SVD {PARAMS}, {environment(backend.device)}")
    print(f"without mask: {t.spread('plain')}, with mask: {t.spread('masked')} (median, min-max)")
    print(f"mask cost ratio, paired by round: {t.ratio('masked', 'plain')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="paired rounds")
    main(parser.parse_args().runs)
