"""Backends: `get_backend` picks one by name."""

from __future__ import annotations

import os

from svd.backends.base import Backend, Event, EventHandler, Log, Queued, Stage, Step

__all__ = ["Backend", "Event", "EventHandler", "Log", "Queued", "Stage", "Step", "get_backend"]

NAMES = ("auto", "local")


def get_backend(name: str = "auto", **options) -> Backend:
    """A backend by name: "local", or "auto" (`SVD_BACKEND`, else local)."""
    if name == "auto":
        name = os.environ.get("SVD_BACKEND") or "auto"
    if name in ("auto", "local"):
        from svd.backends.local import LocalBackend

        return LocalBackend(**options)
    raise ValueError(f"backend: unknown backend {name!r}; choose one of {', '.join(NAMES)}")
