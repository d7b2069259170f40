"""The page's backend choice: the app's own, or another one for a visitor who picks it."""

from __future__ import annotations

import threading

from svd.backends import backend_class, get_backend
from svd.contract import Backend


class Backends:
    """The app's backend (run by the queue's workers), plus the others, made on demand for a
    visitor who picks one on the page."""

    def __init__(self, default: Backend, options: dict[str, dict]):
        self.default = default
        self.options = options  # per backend name: what builds it
        self._others: dict[str, Backend] = {}  # made once, shared by every visitor
        self._lock = threading.Lock()

    def pick(self, name: str | None, key: str | None = None) -> Backend | None:
        """The backend for one page request; None for the workers' own. A backend that takes
        a visitor's key is made for each request that picks it over the app's own, or types
        a key (used for that request only)."""
        name = name or self.default.name
        own = name == self.default.name
        if backend_class(name).takes_key and (key or not own):
            return get_backend(name, key=key or None, **self.options[name])
        if own:
            return None
        with self._lock:
            if name not in self._others:
                self._others[name] = get_backend(name, **self.options[name])
            return self._others[name]

    def chosen(self, name: str | None) -> Backend:
        """The backend a choice on the page stands for (for its status line)."""
        if (name or self.default.name) == self.default.name:
            return self.default
        return self.pick(name) or self.default
