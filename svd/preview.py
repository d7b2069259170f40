"""A live preview while SVD samples: the middle frame's current estimate, with no VAE call.

After each step the sampler's own estimate of the clean latent (svd.sampler) has its
4 channels mapped to RGB by a fixed linear map of SD's latent space (the least-squares
fit that ComfyUI and others use for SD 1.x/2.x previews; SVD shares that VAE latent space).
"""

from __future__ import annotations

import numpy as np
import torch

# SD's latent channels -> RGB, for latents as the UNet sees them (scaled by 0.18215)
LATENT_RGB = torch.tensor(
    [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
     [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
)  # fmt: skip
EVERY = 2  # a preview every this many steps


def latent_to_rgb(latent: torch.Tensor) -> np.ndarray:
    """A (4, h, w) latent as an (h, w, 3) uint8 picture."""
    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), LATENT_RGB)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


class LatentPreview:
    """Fed each step's clean-latent estimate (diffusers' `callback_on_step_end`); gives a
    picture every `every` steps, and none on the last step (the VAE's frames come right
    after)."""

    def __init__(self, every: int = EVERY):
        self.every = every

    def after_step(self, denoised: torch.Tensor | None, i: int, steps: int) -> np.ndarray | None:
        if self.every <= 0 or denoised is None or (i + 1) % self.every or i + 1 >= steps:
            return None
        return latent_to_rgb(denoised[0, denoised.shape[1] // 2].detach())  # (batch, frames, ...)
