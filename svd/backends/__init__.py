"""Backends: `get_backend` picks one by name."""

from __future__ import annotations

from svd.contract import Backend

__all__ = ["BACKENDS", "backend_class", "get_backend", "resolve_name"]

BACKENDS = ("local", "fal")  # each backend's name, as the page and the records say it
NAMES = ("auto", *BACKENDS)
OPTIONS = {
    "local": {"model", "controlnet", "device", "dtype", "pipe", "memory", "fast"},
    "fal": {"key", "endpoint", "timeout", "poll_interval"},
}


def resolve_name(name: str = "auto") -> str:
    """ "auto" becomes `SVD_BACKEND`, else fal when fal credentials are found, else local."""
    from svd.settings import settings

    if name == "auto":
        name = settings().backend
    if name == "auto":
        from svd.backends.fal import fal_credentials

        name = "fal" if fal_credentials() is not None else "local"
    if name not in OPTIONS:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    return name


def backend_class(name: str = "auto") -> type[Backend]:
    """The class of the backend `name` stands for, whose attributes say what it can do
    before one is made."""
    if resolve_name(name) == "fal":
        from svd.backends.fal import FalBackend

        return FalBackend
    from svd.backends.local import LocalBackend

    return LocalBackend


def get_backend(name: str = "auto", **options) -> Backend:
    """A backend by name ("auto", "local" or "fal"); an option it does not take is an error."""
    name = resolve_name(name)
    unknown = sorted(k for k, v in options.items() if k not in OPTIONS[name] and v is not None)
    if unknown:
        raise ValueError(f"the {name} backend takes no option {', '.join(unknown)}")
    return backend_class(name)(**{k: v for k, v in options.items() if v is not None})
