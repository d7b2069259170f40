"""The backend interface and the progress events every backend emits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from svd.schema import SVDInput, SVDOutput


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


Event = Queued | Step | Log | Stage
EventHandler = Callable[[Event], None]


@runtime_checkable
class Backend(Protocol):
    """Anything that turns an SVDInput into a video."""

    name: str

    def generate(self, inp: SVDInput, on_event: EventHandler | None = None) -> SVDOutput:
        """Run one generation; events go to `on_event` as they happen."""
        ...

    def close(self) -> None:
        """Free what the backend holds (models, connections)."""
        ...


def describe(event: Event) -> str:
    """An event as one line of text, for logs and progress lines."""
    if isinstance(event, Step):
        return f"step {event.index} of {event.total}"
    if isinstance(event, Stage):
        return event.name
    if isinstance(event, Queued):
        return f"queued, position {event.position}"
    return event.message


def emit(on_event: EventHandler | None, event: Event) -> None:
    """Hand `event` to `on_event` when there is one."""
    if on_event is not None:
        on_event(event)
