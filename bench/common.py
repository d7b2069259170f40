"""Shared by the benchmarks: test pictures, the one way a bench makes a video, and paired
timings whose ratio comes with its spread.

How sides are compared: each side runs once to warm up, then `runs` rounds; every round
runs each side once, the order rotated from round to round (two sides alternate), so a
machine whose load drifts favours no side. Each round gives a ratio of the two sides'
times; the report is the median ratio with its min-max over the rounds, and "no
difference" when that range spans 1.0 or the effect is within half the range.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # svd, from bench/ scripts

PARAMS = {"width": 192, "height": 128, "num_frames": 6, "steps": 3, "seed": 0}
FEW = 3  # rounds below this give a ratio but no finding


def make_picture(width: int = 320, height: int = 200, variant: int = 0) -> Image.Image:
    """A smooth, asymmetric test picture: gradients and a dark square in one corner. Each
    `variant` has other pixels (the square's shade and place), so no cache knows it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 1 - x / width], axis=-1) * 255
    dx, dy = variant % 7, variant // 7 % 5
    rgb[dy : dy + height // 4, dx : dx + width // 4] = 20 + variant % 61
    return Image.fromarray(rgb.astype(np.uint8))


def workdir() -> Path:
    """A fresh folder holding picture.png."""
    tmp = Path(tempfile.mkdtemp(prefix="svd-bench-"))
    make_picture().save(tmp / "picture.png")
    return tmp


def environment(device: str = "cpu") -> str:
    """torch's version, the device and torch's CPU thread count, for a bench's first line."""
    import torch

    n = torch.get_num_threads()
    return f"torch {torch.__version__}, {device}, {n} torch thread{'s' if n != 1 else ''}"


def make_video(backend, inp, folder: str | Path, on_event=None):
    """One video of `inp` made on `backend` and kept in `folder` (its record beside it), as
    the app makes it; every bench makes its videos here. Returns the SVDOutput."""
    from svd.outputs import OutputStore
    from svd.run import run

    return run(backend, inp, OutputStore(folder), on_event)


def forget_pictures(backend, model: str | None = None) -> None:
    """Empty the pipeline's conditioning cache (CLIP embeddings, VAE latents, the mask's
    clean latents), so the next run pays every encode, as a first visitor's run does."""
    pipe = backend.load(model)
    for kept in (pipe.embeddings, pipe.latents, pipe.clean):  # svd/pipeline.py SVDPipeline
        kept.clear()


@dataclass(frozen=True)
class Ratio:
    """One side's time over another's, per round."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def differs(self) -> bool:
        """Whether the rounds show a difference: enough of them, all on one side of 1.0,
        and the effect larger than half their range."""
        spans = self.low <= 1.0 <= self.high
        within = abs(self.median - 1.0) <= (self.high - self.low) / 2
        return len(self.values) >= FEW and not spans and not within

    def __str__(self) -> str:
        n = len(self.values)
        rounds = "1 round" if n == 1 else f"{n} rounds"
        text = f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f} over {rounds})"
        if n < FEW:
            return f"{text}: too few rounds to tell"
        return text if self.differs else f"{text}: no difference"


@dataclass(frozen=True)
class Timings:
    """Seconds per side, one figure per round, in round order."""

    times: dict[str, list[float]]

    def ratio(self, side: str, base: str) -> Ratio:
        """`side`'s time over `base`'s, round by round."""
        return Ratio([a / b for a, b in zip(self.times[side], self.times[base], strict=True)])

    def median(self, side: str) -> float:
        return statistics.median(self.times[side])

    def spread(self, side: str, unit: float = 1.0, fmt: str = ".3f", suffix: str = "s") -> str:
        """'0.812 s (0.790-0.840)': the side's median and min-max, times `unit`."""
        ts = [t * unit for t in self.times[side]]
        return (f"{statistics.median(ts):{fmt}} {suffix} "
                f"({min(ts):{fmt}}-{max(ts):{fmt}})")  # fmt: skip


def order(names: list[str], round_index: int) -> list[str]:
    """The sides' order in round `round_index`: rotated by one each round."""
    k = round_index % len(names)
    return names[k:] + names[:k]


def measured(runs: int, **sides: Callable[[], float]) -> Timings:
    """Like `paired`, but each side measures itself: it returns the seconds to count (a
    part of its run, such as one denoising step)."""
    names = list(sides)
    for name in names:  # warm-up: loads, first allocations, lazy imports
        sides[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for n in range(runs):
        for name in order(names, n):
            times[name].append(sides[name]())
    return Timings(times)


def paired(runs: int, **sides: Callable[[], object]) -> Timings:
    """Each side once to warm up, then `runs` rounds of every side once, the order rotated
    each round (two sides alternate); wall seconds per side and round."""

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def once() -> float:
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

        return once

    return measured(runs, **{name: timed(fn) for name, fn in sides.items()})
