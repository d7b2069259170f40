"""The queue's order: requests waiting for a worker, first in, first out; each worker takes
the next one as soon as it is free."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Scheduler(Generic[T]):
    """Waiting requests (anything with a `seq`), in order."""

    def __init__(self):
        self._ready = threading.Condition()
        self._waiting: list[T] = []
        self.closed = False

    def add(self, job: T) -> None:
        with self._ready:
            self._waiting.append(job)
            self._ready.notify()

    def take(self) -> tuple[T, list[T]] | None:
        """The next request (waiting until there is one), and those still behind it; None
        once closed."""
        with self._ready:
            while not self._waiting and not self.closed:
                self._ready.wait()
            if self.closed:
                return None
            return self._waiting.pop(0), list(self._waiting)

    def close(self) -> None:
        """Hand out nothing more: each waiting `take` returns None."""
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    def remove(self, job: T) -> bool:
        """Take `job` out if it is still waiting; whether it was."""
        with self._ready:
            if job in self._waiting:
                self._waiting.remove(job)
                return True
            return False

    def position(self, job: T) -> int:
        """How many requests start before `job` (0: next, or started)."""
        with self._ready:
            return sum(1 for other in self._waiting if other.seq < job.seq)

    def __len__(self) -> int:
        with self._ready:
            return len(self._waiting)
