"""The progress events a run emits, the same for every renderer: one stream drives the CLI
bar, the page and the API's logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


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
