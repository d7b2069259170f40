"""The consistency sampler (AnimateLCM) against the reference numbers, and what a run reads
from either sampler: the clean estimate of each step and the noise level after it."""

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from svd.backends.tiny import XT_SCHEDULER
from svd.consistency import ConsistencyScheduler
from svd.preview import LatentPreview, latent_to_rgb
from svd.sampler import noise_after, watched


@pytest.mark.parametrize(("steps", "sigmas"), [
    (1, [700.0, 0.0]),
    (2, [700.0, 13.678, 0.0]),
    (4, [700.0, 128.56, 13.678, 0.49688, 0.0]),
])  # fmt: skip
def test_consistency_levels_are_the_distilled_grids(steps, sigmas):
    """Every (40 // steps)-th point of the 40-point Karras grid (700 to 0.002, rho 7), as
    the reference sampler takes them; the UNet sees 0.25 ln(sigma)."""
    sampler = ConsistencyScheduler()
    sampler.set_timesteps(steps)
    assert np.allclose(sampler.sigmas.numpy(), sigmas, rtol=1e-4)
    assert np.allclose(sampler.timesteps.numpy(), 0.25 * np.log(sigmas[:-1]), atol=1e-4)
    assert sampler.init_noise_sigma == pytest.approx((700**2 + 1) ** 0.5)
    with pytest.raises(ValueError, match="steps: 1 to 40"):
        sampler.set_timesteps(41)


def test_a_consistency_step_is_the_clean_estimate_plus_fresh_noise():
    sampler = ConsistencyScheduler()
    sampler.set_timesteps(2)
    sample, output = torch.randn(2, 3, 4, 5, 6) * 700, torch.randn(2, 3, 4, 5, 6)
    sigma = 700.0
    clean = sample / (sigma**2 + 1) - sigma / (sigma**2 + 1) ** 0.5 * output  # v-prediction
    scaled = sampler.scale_model_input(sample, sampler.timesteps[0])
    assert torch.allclose(scaled, sample / (sigma**2 + 1) ** 0.5)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    with watched(sampler, gens):
        step = sampler.step(output, sampler.timesteps[0], sample)
        assert torch.allclose(sampler.denoised, clean, atol=1e-5)
    noise = (step.prev_sample - step.pred_original_sample) / noise_after(sampler, 0)
    alone = torch.randn((1, 3, 4, 5, 6), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(noise[1:], alone, atol=1e-3)  # each video's noise from its generator
    last = sampler.step(output, sampler.timesteps[1], step.prev_sample)
    assert torch.equal(last.prev_sample, last.pred_original_sample)  # no noise after the last


def test_the_preview_shows_eulers_own_clean_estimate():
    """The preview draws the estimate diffusers' Euler step makes (and the pipeline drops)."""
    euler = EulerDiscreteScheduler(**XT_SCHEDULER)
    euler.set_timesteps(5)
    latents, output = torch.randn(1, 3, 4, 6, 8) * 700, torch.randn(1, 3, 4, 6, 8)
    preview = LatentPreview(every=1)
    with watched(euler, []):
        model_in = euler.scale_model_input(latents, euler.timesteps[0])
        after = euler.step(output, euler.timesteps[0], latents).prev_sample
        picture = preview.after_step(euler.denoised, 0, 5)
    sigma, next_sigma = float(euler.sigmas[0]), noise_after(euler, 0)
    clean = latents - (after - latents) * sigma / (next_sigma - sigma)  # Euler, undone
    assert model_in.shape == latents.shape
    assert np.abs(picture.astype(int) - latent_to_rgb(clean[0, 1]).astype(int)).max() <= 1
    assert "step" not in vars(euler) and euler.denoised is None  # the class's step again
