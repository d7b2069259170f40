"""Telling watchers of a request that it changed: a step, a stage, a log line, a preview, its
end. One subscription per watcher and request; the queue's worker publishes, and each
waiting watcher (the page, the status stream, the sync route) wakes at once, with no
polling between them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict


class Subscription:
    """A watcher of one request, on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """From any thread."""
        self._loop.call_soon_threadsafe(self._changed.set)

    async def changed(self, timeout: float | None = None) -> bool:
        """Wait until the request changed since the last call (True), or `timeout` seconds
        passed (False)."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        self._changed.clear()
        return True


class Notifier:
    """The subscriptions, by request id."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watchers: dict[str, set[Subscription]] = defaultdict(set)

    @contextlib.contextmanager
    def watch(self, job_id: str):
        """A subscription to `job_id` on the running event loop, for the `with` block."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._watchers[job_id].add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._watchers[job_id].discard(sub)
                if not self._watchers[job_id]:
                    del self._watchers[job_id]

    def publish(self, job_id: str) -> None:
        """`job_id` changed: wake its watchers."""
        with self._lock:
            watchers = list(self._watchers.get(job_id, ()))
        for sub in watchers:
            sub.wake()

    def watching(self, job_id: str) -> int:
        with self._lock:
            return len(self._watchers.get(job_id, ()))
