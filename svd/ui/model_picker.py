"""The model picker: the models a backend offers, and what choosing one moves on the page
(the sliders still at the old model's own values follow the new one's; the rest stay)."""

from __future__ import annotations

import math

from svd import models
from svd.contract import Backend
from svd.errors import InputError

# The sliders whose default is the model's own (left out of the request), in this order.
OWN = list(models.DEFAULT.own)


def own_values(spec: models.Model) -> dict:
    """The model's own steps, fps and guidance, as the page's sliders show them."""
    return spec.own


def label(spec: models.Model) -> str:
    return f"{spec.name} · {spec.frames} frames · {spec.steps} steps"


def runs(backend: Backend, spec: models.Model) -> bool:
    try:
        backend.model_spec(spec.name)
    except InputError:  # fal does not host it
        return False
    return True


def offered(backend: Backend) -> list[models.Model]:
    """The models `backend` runs; a test model (built in-process) only where it is the
    backend's own."""
    own = backend.model_spec(None)
    return [m for m in models.MODELS.values() if runs(backend, m) and (m.repo or m is own)]


def choices(backend: Backend) -> list[tuple[str, str]]:
    """(label, name) of each model `backend` offers, for the dropdown."""
    return [(label(m), m.name) for m in offered(backend)]


def default_name(backend: Backend) -> str:
    return backend.model_spec(None).name


def requested(backend: Backend, name: str | None) -> str | None:
    """The request's `model` for the page's choice: None for the backend's own (the
    server's default, whatever it loads), else the name."""
    return None if not name or name == default_name(backend) else name


def spec_for(backend: Backend, name: str | None) -> models.Model:
    """The model `name` stands for on `backend`; the backend's own where it does not run
    `name` (a choice left from the other backend's list)."""
    spec = models.MODELS.get(name or "")
    return spec if spec is not None and runs(backend, spec) else backend.model_spec(None)


def at_own(value, own) -> bool:
    return value is not None and math.isclose(float(value), float(own), abs_tol=1e-6)


def moved(old: models.Model, new: models.Model, values: dict) -> dict:
    """The sliders' values after choosing `new` over `old`: a value still at `old`'s own
    moves to `new`'s; one the visitor set stays (within `new`'s step range)."""
    before, after = own_values(old), own_values(new)
    result = {k: after[k] if at_own(values.get(k), before[k]) else values[k] for k in after}
    low, high = new.step_range
    result["steps"] = min(max(int(result["steps"]), low), high)
    return result
