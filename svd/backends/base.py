"""The backend interface and the progress events every backend emits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from svd.schema import SVDInput, SVDOutput

if TYPE_CHECKING:
    from svd.models import Model
    from svd.outputs import OutputStore
    from svd.run import Prepared, Rendered


@dataclass(frozen=True)
class Queued:
    """Waiting in a queue; `position` 0 is next."""

    position: int


@dataclass(frozen=True)
class Step:
    """Denoising step `index` of `total` is done (1-based)."""

    index: int
    total: int


@dataclass(frozen=True)
class Log:
    """A line of log from the backend."""

    message: str


@dataclass(frozen=True)
class Stage:
    """The run entered a named stage: loading inputs, loading model, denoising, ..."""

    name: str


@dataclass(frozen=True, eq=False)
class Preview:
    """A rough look at the video while it is made: the middle frame's current estimate as
    RGB (H, W, 3) uint8, after step `index` of `total`. Made from the latents by a fixed
    linear map, with no VAE call."""

    image: np.ndarray
    index: int
    total: int


@dataclass(frozen=True)
class Tick:
    """The run goes on inside a step (before each model block and decode chunk): a point
    where a cancelled run stops. Not shown, not logged."""


TICK = Tick()
Event = Queued | Step | Log | Stage | Preview | Tick
EventHandler = Callable[[Event], None]


@runtime_checkable
class Backend(Protocol):
    """Anything that turns an SVDInput into a video. `generate` runs the shared prepare and
    store (svd.run) around the backend's own `render`."""

    name: str
    store: OutputStore  # where its videos and records are kept
    supports: frozenset[str]  # the extras (non-fal fields) it takes
    takes_urls: bool  # http(s) inputs are handed on as they are, not fetched here
    needs_gpu: bool  # whether a run holds this machine's GPU
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

    def generate(self, inp: SVDInput, on_event: EventHandler | None = None) -> SVDOutput:
        """Run one generation; events go to `on_event` as they happen."""
        ...

    def close(self) -> None:
        """Free what the backend holds (models, connections)."""
        ...


class BackendBase:
    """What every backend does the same way: the run around `render`."""

    takes_urls = False
    depth_model: str | None = None

    def generate(self, inp: SVDInput, on_event: EventHandler | None = None) -> SVDOutput:
        from svd.run import run

        return run(self, inp, on_event)

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass


def describe(event: Event) -> str:
    """An event as one line of text, for logs and progress lines."""
    if isinstance(event, Step):
        return f"step {event.index} of {event.total}"
    if isinstance(event, Stage):
        return event.name
    if isinstance(event, Queued):
        return f"queued, position {event.position}"
    if isinstance(event, Preview):
        return f"preview after step {event.index} of {event.total}"
    if isinstance(event, Tick):
        return "working"
    return event.message


def emit(on_event: EventHandler | None, event: Event) -> None:
    """Hand `event` to `on_event` when there is one."""
    if on_event is not None:
        on_event(event)
