"""Rendering on a ZeroGPU Space (the `spaces` package, SPACES_ZERO_GPU=true).

ZeroGPU forks a GPU worker per call of a `spaces.GPU` function and pickles the call's
arguments into it. So the models are loaded on the main thread at start (where the package's
torch patching is active), `render_in_worker` is a module-level generator of plain arguments
(a backend's slot and the prepared request), and its events and result come back as yields.
The call is made in the context of the request that queued the run, so a page run spends
its visitor's quota (their `x-ip-token`) and an API run the Space's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from svd import models
from svd.contract import Backend, Prepared, Rendered
from svd.errors import BackendError
from svd.events import Event, EventHandler
from svd.outputs import OutputStore
from svd.remote import Failed, received, rendering
from svd.run import run
from svd.schema import SVDInput, SVDOutput

try:  # the `spaces` package is installed on Hugging Face Spaces (and for the tests)
    import spaces
except ImportError:  # pragma: no cover - elsewhere it is optional
    spaces = None

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_slots: list[Backend] = []  # filled before the first fork, so every worker has them


def active() -> bool:
    """Whether this process runs on ZeroGPU (the package's own switch)."""
    return spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in (
        "1", "t", "true",
    )  # fmt: skip


def gpu_seconds(inp) -> int:
    """A ZeroGPU time budget from the real work: steps x frames x segments x pixels x
    videos, at the model's own cost."""
    model = models.MODELS[inp.model] if inp.model else models.DEFAULT
    width, height = model.size
    frames = inp.num_frames or model.frames
    pixels = (inp.width or width) * (inp.height or height) / (width * height)
    work = (inp.steps or model.steps) * frames * (inp.extend + 1) * pixels * inp.num_videos
    if inp.control_maps_data_url or inp.control_video_url:
        work *= 1.5  # the ControlNet runs beside the UNet
    return int(30 + model.gpu_seconds_per_unit * work)


def _budget(slot: int, prepared: Prepared) -> int:
    return gpu_seconds(prepared.inp)


def render_in_worker(slot: int, prepared: Prepared) -> Iterator[Event | Rendered | Failed]:
    """In the GPU worker: render `prepared` on the backend in `slot`, yielding its events as
    they happen, then the Rendered (or a Failed). Closing the generator (Stop) ends the run
    at its next event."""
    if slot >= len(_slots):
        yield Failed("the GPU worker does not hold this model; restart the Space")
        return
    yield from rendering(_slots[slot], prepared)


on_gpu = render_in_worker
if spaces is not None:
    on_gpu = spaces.GPU(duration=_budget)(render_in_worker)


def generate(
    backend: Backend, inp: SVDInput, store: OutputStore, on_event: EventHandler | None = None
) -> SVDOutput:
    """A run for the queue: prepare and keep in `store` here, render where `renderer` says."""
    return run(backend, inp, store, on_event, renderer(backend))


def renderer(backend: Backend):
    """`render(prepared, on_event)` for `run`: in ZeroGPU's worker when `backend` needs the
    GPU, else the backend's own."""
    if not (active() and backend.needs_gpu):
        return backend.render
    try:
        slot = _slots.index(backend)
    except ValueError:
        return _not_loaded

    def render(prepared: Prepared, on_event: EventHandler | None = None) -> Rendered:
        try:
            with contextlib.closing(on_gpu(slot, prepared)) as items:
                return received(items, on_event)
        except gr.Error as e:  # the package's own errors (quota, queue, worker)
            raise BackendError(worker_error(str(e.message))) from None

    return render


def _not_loaded(prepared: Prepared, on_event: EventHandler | None = None) -> Rendered:
    raise BackendError("ZeroGPU: this model was not loaded at start; restart the Space")


def worker_error(message: str) -> str:
    """What a failed ZeroGPU call tells the visitor: the package's own words (quota, queue),
    and, where a worker could not start, what this machine lacks."""
    import torch

    if message.endswith("Error"):  # the package gives only an exception's class name
        if not torch.backends.cuda.is_built():
            lacks = "torch here is a CPU build"
        elif not Path("/proc/driver/nvidia/version").exists():
            lacks = "this machine has no NVIDIA driver"
        else:
            return f"ZeroGPU: the GPU worker failed ({message}); the Space's log has the details"
        return f"ZeroGPU: the GPU worker could not start: there is no GPU for it ({lacks})"
    return f"ZeroGPU: {message}"


def start(backends: list[Backend]) -> None:
    """Load each backend's model on this (the main) thread, give each a slot, then run the
    package's start-up (it packs the weights for the workers and reports to ZeroGPU), which
    it would otherwise run from `Blocks.launch`, not called when Gradio is mounted."""
    for backend in dict.fromkeys(backends):
        if backend.needs_gpu:
            backend.warm_up()
            _slots.append(backend)
    os.register_at_fork(after_in_child=_die_with_parent)
    # spaces.zero.startup: the package's launch hook (tests/test_internals.py pins it).
    spaces.zero.startup()


def _die_with_parent() -> None:
    """A GPU worker ends with the app that forked it, however the app ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
