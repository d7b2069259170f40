"""Depth control maps: ingesting an archive of 25 maps at 1024x576, and the ControlNet's
cost per denoising step against a plain step (tiny model, same frames).

Usage: python bench/depth.py [--runs 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import zipfile

import numpy as np
from common import PARAMS, environment, make_video, measured, paired, workdir
from PIL import Image

from svd.archive import maps_from_archive
from svd.backends.local import LocalBackend
from svd.events import Step
from svd.schema import SVDInput


def write_maps(path, count: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for i in range(count):
            depth = (rng.random((height // 8, width // 8)) * 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(depth).resize((width, height), Image.BILINEAR).save(buf, "PNG")
            z.writestr(f"depth/{i}.png", buf.getvalue())


def step_seconds(backend: LocalBackend, inp: SVDInput, folder) -> float:
    """Median time between step-end events of one run."""
    stamps = []

    def on_event(event) -> None:
        if isinstance(event, Step):
            stamps.append(time.perf_counter())

    make_video(backend, inp, folder, on_event)
    return statistics.median(np.diff(stamps))


def main(runs: int = 7) -> None:
    tmp = workdir()
    write_maps(tmp / "maps25.zip", 25, 1024, 576)
    maps = tmp / "maps25.zip"
    t = paired(runs, ingest=lambda: maps_from_archive(maps.read_bytes(), 1024, 576))
    size = (tmp / "maps25.zip").stat().st_size / 1e6
    print(f"ingest 25 PNG maps of 1024x576 ({size:.1f} MB zip): {t.spread('ingest')} "
          "(median, min-max)")  # fmt: skip

    frames = PARAMS["num_frames"]
    write_maps(tmp / "maps.zip", frames, PARAMS["width"], PARAMS["height"])
    backend = LocalBackend(model="tiny")
    params = {**PARAMS, "steps": 8}
    plain = SVDInput(image_url=str(tmp / "picture.png"), **params)
    control = plain.model_copy(update={"control_maps_data_url": str(tmp / "maps.zip")})
    out = tmp / "outputs"
    steps = measured(runs, plain=lambda: step_seconds(backend, plain, out),
                     control=lambda: step_seconds(backend, control, out))  # fmt: skip
    print(f"tiny SVD {params}, {environment(backend.device)}")
    print(f"step: plain {steps.spread('plain', 1000, '.1f', 'ms')}, with ControlNet "
          f"{steps.spread('control', 1000, '.1f', 'ms')} (median, min-max)")  # fmt: skip
    print(f"ControlNet step cost ratio, paired by round: {steps.ratio('control', 'plain')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="paired rounds")
    main(parser.parse_args().runs)
