"""A render elsewhere (a ZeroGPU worker, a replica on a Ray cluster), as plain values: the
far side runs `rendering(backend, prepared)` and sends what it yields; the near side turns
them back with `received`. Errors cross as a `Failed` value, so their words survive."""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from svd.contract import Backend, Prepared, Rendered
from svd.errors import BackendError, InputError
from svd.events import Event, EventHandler, Tick, emit


@dataclass(frozen=True)
class Failed:
    """A render that failed on the far side."""

    message: str
    field: str | None = None

    def error(self) -> Exception:
        return InputError(self.field, self.message) if self.field else BackendError(self.message)


class _Stopped(Exception):
    """The near side closed the generator."""


def rendering(backend: Backend, prepared: Prepared) -> Iterator[Event | Rendered | Failed]:
    """Render `prepared` on `backend` in a thread, yielding its events as they happen, then
    the Rendered (or a Failed). Closing the generator ends the run at its next event (and
    returns once it has ended)."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    stopped = threading.Event()
    done = object()

    def on_event(event: Event) -> None:
        if stopped.is_set():
            raise _Stopped
        if not isinstance(event, Tick):  # ticks stop a run here; they need not cross
            events.put(event)

    def work() -> None:
        try:
            events.put(backend.render(prepared, on_event))
        except _Stopped:
            pass
        except InputError as e:
            events.put(Failed(e.message, e.field))
        except BackendError as e:
            events.put(Failed(str(e)))
        except Exception as e:  # the details go to the far side's log, the name across
            traceback.print_exc()
            events.put(Failed(f"generation failed ({type(e).__name__})"))
        finally:
            events.put(done)

    thread = threading.Thread(target=work, name="svd-render", daemon=True)
    thread.start()
    try:
        while (item := events.get()) is not done:
            yield item
    finally:
        stopped.set()
        thread.join()


def received(items: Iterable, on_event: EventHandler | None) -> Rendered:
    """The Rendered among `items` (what `rendering` sent), each event handed to `on_event`
    on the way; a Failed is raised as its error."""
    for item in items:
        if isinstance(item, Rendered):
            return item
        if isinstance(item, Failed):
            raise item.error()
        emit(on_event, item)
    raise BackendError("the render ended without a video")
