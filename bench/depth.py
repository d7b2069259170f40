"""Depth control maps: ingesting an archive of 25 maps at 1024x576, and the ControlNet's
cost per denoising step against a plain step (tiny model, same frames).

Usage: python bench/depth.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import zipfile

import numpy as np
import torch
from common import PARAMS, medians, workdir
from PIL import Image

from svd.archive import load_depth_maps
from svd.backends import Step
from svd.backends.local import LocalBackend
from svd.schema import SVDInput


def write_maps(path, count: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for i in range(count):
            depth = (rng.random((height // 8, width // 8)) * 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(depth).resize((width, height), Image.BILINEAR).save(buf, "PNG")
            z.writestr(f"depth/{i}.png", buf.getvalue())


def step_seconds(backend: LocalBackend, inp: SVDInput) -> float:
    """Median time between step-end events of one run."""
    stamps = []
    backend.generate(
        inp, lambda e: stamps.append(time.perf_counter()) if isinstance(e, Step) else None
    )
    return statistics.median(np.diff(stamps))


def main(runs: int = 5) -> None:
    tmp = workdir()
    write_maps(tmp / "maps25.zip", 25, 1024, 576)
    t = medians(runs, ingest=lambda: load_depth_maps(str(tmp / "maps25.zip"), 1024, 576))
    size = (tmp / "maps25.zip").stat().st_size / 1e6
    print(f"ingest 25 PNG maps of 1024x576 ({size:.1f} MB zip): {t['ingest']:.3f} s (median)")

    frames = PARAMS["num_frames"]
    write_maps(tmp / "maps.zip", frames, PARAMS["width"], PARAMS["height"])
    backend = LocalBackend(model="tiny", output_dir=tmp / "outputs")
    params = {**PARAMS, "steps": 8}
    plain = SVDInput(image_url=str(tmp / "picture.png"), **params)
    control = plain.model_copy(update={"control_maps_data_url": str(tmp / "maps.zip")})
    backend.generate(control)  # warm up, load the ControlNet
    plain_steps, control_steps = [], []
    for _ in range(runs):
        plain_steps.append(step_seconds(backend, plain))
        control_steps.append(step_seconds(backend, control))
    a, b = statistics.median(plain_steps), statistics.median(control_steps)
    print(f"tiny SVD {params}, torch {torch.__version__}, {backend.device}")
    print(f"step: plain {a * 1000:.1f} ms, with ControlNet {b * 1000:.1f} ms (medians)")
    print(f"ControlNet step cost ratio: {b / a:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
