"""What a run reads from the model's own sampler, whichever it is (diffusers' Euler for SVD,
svd.consistency for AnimateLCM): each step's estimate of the clean latent, and the noise
level the latents are at after a step. No formula of one sampler is assumed here."""

from __future__ import annotations

import contextlib

import torch


def noise_after(scheduler, i: int) -> float:
    """The noise level of the latents after step `i` (0-based): `sigmas[i + 1]`, as both
    samplers keep them (the level before each step, then 0)."""
    return float(scheduler.sigmas[i + 1])


@contextlib.contextmanager
def watched(scheduler, generators: list[torch.Generator]):
    """For one run: `scheduler.denoised` holds the clean latent its last step aimed at (the
    `pred_original_sample` diffusers' pipeline drops), and a sampler that adds noise draws
    it from `generators` (one per video)."""
    step = scheduler.step

    def kept(*args, **kwargs):
        out = step(*args, **kwargs)
        scheduler.denoised = getattr(out, "pred_original_sample", None)
        return out

    scheduler.step, scheduler.denoised = kept, None
    if hasattr(scheduler, "generators"):
        scheduler.generators = generators
    try:
        yield scheduler
    finally:
        del scheduler.step  # the class's own again
        scheduler.denoised = None
        if hasattr(scheduler, "generators"):
            scheduler.generators = None
