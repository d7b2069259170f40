"""Cancel inside a step: a Tick before each UNet block and each VAE decode chunk, so a
cancelled run (its `on_event` raises) stops within a block, not at the step's end."""

from __future__ import annotations

import contextlib

from svd.events import TICK, EventHandler


@contextlib.contextmanager
def ticking(pipe, on_event: EventHandler | None):
    """For the length of a run of `pipe`: `on_event(TICK)` before each of its blocks."""
    if on_event is None:
        yield
        return
    unet = pipe.unet
    # diffusers internals: the UNet's down_blocks, mid_block, up_blocks and the temporal
    # VAE's decoder, called once per decode chunk (tests/test_internals.py).
    modules = [*unet.down_blocks, unet.mid_block, *unet.up_blocks, pipe.vae.decoder]
    handles = [m.register_forward_pre_hook(lambda *_: on_event(TICK)) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
