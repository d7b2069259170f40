"""The live preview's cost: a run with a preview every 2 steps against one with none.

Usage: python bench/preview.py [--runs 7]
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
    params = {**PARAMS, "steps": 10}  # five previews a run
    inp = SVDInput(image_url=str(tmp / "picture.png"), **params)
    seen = []

    def run(every: int):
        backend.preview_every = every
        return backend.generate(inp, on_event=seen.append)

    t = medians(runs, plain=lambda: run(0), previews=lambda: run(2))
    print(f"tiny SVD {params}, {runs} runs, torch {torch.__version__}, {backend.device}")
    print(f"no previews: {t['plain']:.3f} s, a preview every 2 steps: {t['previews']:.3f} s")
    print(f"preview cost ratio: {t['previews'] / t['plain']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
