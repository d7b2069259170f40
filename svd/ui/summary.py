"""The header line: what comes out of the current settings, about how long it takes here,
and the model's licence."""

from __future__ import annotations

import json
import statistics

from svd import models
from svd.contract import Backend
from svd.outputs import OutputStore

RECENT = 10  # runs the time estimate is drawn from


def frames_out(frames: int, fps: int, interpolate: int, loop: str, extend: int) -> tuple[int, int]:
    """(frames, fps) of the file, as svd.post makes them from the model's frames."""
    frames = frames + extend * (frames - 1)  # each continuation drops its repeated first frame
    if interpolate and frames >= 2:
        frames = (frames - 1) * (interpolate + 1) + 1
    fps *= interpolate + 1
    if loop == "pingpong" and frames >= 3:
        frames = 2 * frames - 2
    elif loop == "crossfade" and frames >= 3:
        frames -= max(1, frames // 4)
    return frames, fps


def work(steps: int, frames: int, size: tuple[int, int], extend: int) -> float:
    """A run's work, for the time estimate: steps x frames x megapixels x segments."""
    return steps * frames * size[0] * size[1] / 1e6 * (extend + 1)


def seconds_per_work(store: OutputStore, backend: Backend) -> float | None:
    """The median time per unit of work of this backend's recent runs in `store` (None: no
    runs yet)."""
    rates = []
    for path in sorted(store.root.glob("*.json"), reverse=True)[: RECENT * 3]:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        inp, facts = record.get("input") or {}, record
        if record.get("backend") != backend.name or not facts.get("num_frames"):
            continue
        total = (record.get("timings") or {}).get("total_s")
        size = (facts.get("width") or 0, facts.get("height") or 0)
        units = work(inp.get("steps") or 20, facts["num_frames"], size, inp.get("extend") or 0)
        if total and units:
            rates.append(total / units)
        if len(rates) >= RECENT:
            break
    return statistics.median(rates) if rates else None


def licence(backend: Backend, model: str | None = None) -> str:
    """The terms of `model` (a registry name; None: the backend's own) on `backend`."""
    if backend.terms:  # a service's terms cover its runs
        return f"[{backend.name}'s terms]({backend.terms})"
    model = model or getattr(backend, "model", None)
    spec = models.find(model)
    if spec is not None and spec.licence is None:
        return "no licence (test weights)"
    if spec is not None:
        return f"model licence: [{spec.repo}]({spec.licence})"
    if model and model.count("/") == 1 and not model.startswith((".", "/")):
        return f"model licence: [{model}]({models.HUB}{model})"
    return f"model: {model}"


def outcome(
    values: dict, backend: Backend, size: tuple[int, int], rate: float | None,
    maps: int | None = None, model: str | None = None,
) -> str:  # fmt: skip
    """One line for a video of `size` from `model` (None: the backend's own): frames at fps =
    seconds; about how long; the licence."""
    spec = backend.model_spec(model)
    made = maps or int(values.get("num_frames") or 0) or backend.default_frames(model)
    extend = 0 if maps else int(values.get("extend") or 0)
    frames, fps = frames_out(made, int(values.get("fps") or spec.fps),
                             int(values.get("interpolate") or 0), values.get("loop") or "none",
                             extend)  # fmt: skip
    line = f"**{frames} frames at {fps} fps = {frames / fps:.1f} s**, {size[0]}×{size[1]}"
    videos = int(values.get("num_videos") or 1)
    if videos > 1:
        line += f", {videos} videos"
    if rate is not None:
        steps = int(values.get("steps") or spec.steps)
        guess = rate * work(steps, made, size, extend) * videos
        line += f" · about {_duration(guess)} a run here (from recent runs)"
    else:
        line += " · the time it takes shows after the first run"
    return f"{line} · {licence(backend, model)}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
