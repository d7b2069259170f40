"""Shared by the benchmarks: a test picture, a tiny backend, interleaved median timings."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # svd, from bench/ scripts

PARAMS = {"width": 192, "height": 128, "num_frames": 6, "steps": 3, "seed": 0}


def make_picture(width: int = 320, height: int = 200) -> Image.Image:
    """A smooth, asymmetric test picture: gradients and a dark square in one corner."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 1 - x / width], axis=-1) * 255
    rgb[: height // 4, : width // 4] = 20
    return Image.fromarray(rgb.astype(np.uint8))


def workdir() -> Path:
    """A fresh folder holding picture.png."""
    tmp = Path(tempfile.mkdtemp(prefix="svd-bench-"))
    make_picture().save(tmp / "picture.png")
    return tmp


def medians(runs: int, **fns: Callable[[], object]) -> dict[str, float]:
    """Run each function once to warm up, then `runs` times interleaved; median seconds."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}
