"""The motion mask's cost: a run with a half mask against the same run without one.

Usage: python bench/mask.py [--runs 7]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import PARAMS, medians, workdir
from PIL import Image

from svd.backends.local import LocalBackend
from svd.schema import SVDInput


def main(runs: int = 7) -> None:
    tmp = workdir()
    mask = np.full((PARAMS["height"], PARAMS["width"]), 255, np.uint8)
    mask[:, : PARAMS["width"] // 2] = 0
    Image.fromarray(mask).save(tmp / "mask.png")
    backend = LocalBackend(model="tiny", output_dir=tmp / "outputs")
    plain = SVDInput(image_url=str(tmp / "picture.png"), **PARAMS)
    masked = plain.model_copy(update={"mask_image_url": str(tmp / "mask.png")})
    t = medians(
        runs,
        plain=lambda: backend.generate(plain),
        masked=lambda: backend.generate(masked),
    )
    print(f"tiny SVD {PARAMS}, {runs} runs, torch {torch.__version__}, {backend.device}")
    print(f"without mask: {t['plain']:.3f} s, with mask: {t['masked']:.3f} s (medians)")
    print(f"mask cost ratio: {t['masked'] / t['plain']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
