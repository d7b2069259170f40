"""The live preview's cost: a run with a preview every 2 steps against one with none.

Both sides start from an empty conditioning cache, as a first run on a picture does.
Usage: python bench/preview.py [--runs 7]
"""

from __future__ import annotations

import argparse

from common import PARAMS, environment, forget_pictures, make_video, paired, workdir

from svd.backends.local import LocalBackend
from svd.schema import SVDInput


def main(runs: int = 7) -> None:
    tmp = workdir()
    backend = LocalBackend(model="tiny")
    params = {**PARAMS, "steps": 10}  # five previews a run
    inp = SVDInput(image_url=str(tmp / "picture.png"), **params)
    seen = []

    def run(every: int):
        def once():
            backend.preview_every = every
            forget_pictures(backend)
            make_video(backend, inp, tmp / "outputs", on_event=seen.append)

        return once

    t = paired(runs, plain=run(0), previews=run(2))
    print(f"tiny SVD {params}, {environment(backend.device)}")
    print(f"no previews: {t.spread('plain')}, a preview every 2 steps: {t.spread('previews')} "
          "(median, min-max)")  # fmt: skip
    print(f"preview cost ratio, paired by round: {t.ratio('previews', 'plain')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="paired rounds")
    main(parser.parse_args().runs)
