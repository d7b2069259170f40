"""The page's backend choice: the app's own, or the other one for a visitor who picks it."""

from __future__ import annotations

import threading

from svd.backends import Backend, get_backend


class Backends:
    """The app's backend (run by the queue's workers), plus the other one, made on demand for a
    visitor who picks it on the page."""

    def __init__(self, default: Backend, options: dict[str, dict]):
        self.default = default
        self.options = options  # per backend name: what builds it
        self._local = default if default.name == "local" else None
        self._lock = threading.Lock()

    def pick(self, name: str | None, fal_key: str | None = None) -> Backend | None:
        """The backend for one page request; None for the workers' own. A key typed on the page
        makes a fal backend for that request only."""
        name = name or self.default.name
        if name == "fal":
            if self.default.name == "fal" and not fal_key:
                return None
            return get_backend("fal", key=fal_key or None, **self.options["fal"])
        if self.default.name == "local":
            return None
        with self._lock:
            if self._local is None:
                self._local = get_backend("local", **self.options["local"])
            return self._local

    def chosen(self, name: str | None) -> Backend:
        """The backend a choice on the page stands for (for its status line)."""
        if (name or self.default.name) == self.default.name:
            return self.default
        return self.pick(name) or self.default
