"""The run's contract, below both the run (svd/run.py) and the renderers (svd/backends/):
what a renderer is given (`Prepared`), what it hands back (`Rendered`), and what it must be
(`Backend`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from svd.events import EventHandler
from svd.schema import SVDInput

if TYPE_CHECKING:
    from svd.models import Model

MAPS = "control_maps_data_url"


@dataclass
class Prepared:
    """A checked request and the bytes of its inputs, ready for any backend."""

    inp: SVDInput
    data: dict[str, bytes]  # fetched inputs by field; http(s) URLs a backend takes are not
    made_maps: bytes | None = None  # depth maps made here from control_video_url

    @property
    def maps(self) -> bytes | None:
        return self.data.get(MAPS)


@dataclass
class Rendered:
    """What a backend made: frames, or a finished file from elsewhere, and how."""

    seed: int
    frames: np.ndarray | None = None  # (N, H, W, 3), uint8 or float in 0-1
    fps: int | None = None
    video: Path | None = None  # a file the run moves into its store (or removes)
    kept: dict[str, Image.Image] = field(default_factory=dict)  # kept beside the video
    facts: dict = field(default_factory=dict)  # for the record: model, device, ...
    timings: dict[str, float] = field(default_factory=dict)
    others: list[Rendered] = field(default_factory=list)  # the request's other videos

    @property
    def all(self) -> list[Rendered]:
        return [self, *self.others]

    @staticmethod
    def joined(made: list[Rendered]) -> Rendered:
        """The first of a request's videos, carrying the others."""
        made[0].others = made[1:]
        return made[0]


def random_seed() -> int:
    """A seed for a request that gave none."""
    return secrets.randbelow(2**32)


def video_seeds(inp: SVDInput) -> list[int]:
    """The seed of each video a request asks for: its seed (or a drawn one), then the next."""
    first = inp.seed if inp.seed is not None else random_seed()
    return [(first + k) % 2**64 for k in range(inp.num_videos)]


@runtime_checkable
class Backend(Protocol):
    """A renderer: turns a prepared request into frames or a file. The shared prepare and
    store around it are svd.run's."""

    name: str  # recorded with each video; callers ask the attributes below, not the name
    supports: frozenset[str]  # the extras (non-fal fields) it takes
    takes_urls: bool  # http(s) inputs are handed on as they are, not fetched here
    needs_gpu: bool  # whether a run holds this machine's GPU
    remote: bool  # renders on a service's own machines: runs at once cost this one nothing
    takes_key: bool  # a visitor's own key makes one for their requests alone
    terms: str | None  # the address of the service's terms a run falls under; None: none
    depth_model: str | None  # what makes depth maps from a driving video

    def status(self) -> str:
        """One line for the page: what runs the videos, and any warning to see."""
        ...

    def warm_up(self) -> None:
        """Load (and compile) ahead of the first request."""
        ...

    def model_spec(self, model: str | None = None) -> Model:
        """The registry's entry for `model` (None: the backend's default model)."""
        ...

    def default_size(self, model: str | None = None) -> tuple[int, int]:
        """(width, height) of a video of `model` when none is asked."""
        ...

    def default_frames(self, model: str | None = None) -> int:
        """Frames of a video of `model` when none are asked."""
        ...

    def render(self, prepared: Prepared, on_event: EventHandler | None = None) -> Rendered:
        """Make the frames (or the file) of one prepared request."""
        ...

    def close(self) -> None:
        """Free what the backend holds (models, connections)."""
        ...
