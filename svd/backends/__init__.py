"""Backends: `get_backend` picks one by name."""

from __future__ import annotations

import os

from svd.backends.base import Backend, Event, EventHandler, Log, Queued, Stage, Step, describe

__all__ = [
    "Backend", "Event", "EventHandler", "Log", "Queued", "Stage", "Step", "describe", "get_backend"
]  # fmt: skip

NAMES = ("auto", "local", "fal")
OPTIONS = {
    "local": {"model", "controlnet", "device", "dtype", "pipe", "output_dir", "memory", "fast"},
    "fal": {"key", "endpoint", "output_dir", "timeout", "poll_interval"},
}


def fast_from_env() -> bool:
    """Whether SVD_FAST asks for the local backend's fast path."""
    return os.environ.get("SVD_FAST", "").lower() in ("1", "true", "yes", "on")


def resolve_name(name: str = "auto") -> str:
    """ "auto" becomes `SVD_BACKEND`, else fal when a fal key is set, else local."""
    if name == "auto":
        name = os.environ.get("SVD_BACKEND") or "auto"
    if name == "auto":
        from svd.backends.fal import fal_key_from_env

        name = "fal" if fal_key_from_env() else "local"
    if name not in OPTIONS:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    return name


def get_backend(name: str = "auto", **options) -> Backend:
    """A backend by name ("auto", "local" or "fal"); options it does not take are dropped."""
    name = resolve_name(name)
    kwargs = {k: v for k, v in options.items() if k in OPTIONS[name] and v is not None}
    if name == "fal":
        from svd.backends.fal import FalBackend

        return FalBackend(**kwargs)
    from svd.backends.local import LocalBackend

    return LocalBackend(**kwargs)
