"""The sampler of consistency-distilled SVD (AnimateLCM-SVD-xt), on diffusers' SchedulerMixin.

The noise levels are a fixed Karras grid of `num_train_timesteps` points from sigma_max down
to sigma_min (rho 7), the one the model was distilled on; N steps take every (grid // N)-th
point from the top, then 0. Each step asks the UNet for the clean latent once (SVD's
v-prediction, EDM-scaled with sigma_data) and adds fresh noise at the next level: no ODE.
The UNet sees SVD's continuous timestep, 0.25 ln(sigma), and SVD's input scaling.

`generators` (set per run) draws that noise: one per video of a batch, so a video is the
same made alone or beside others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput


@dataclass
class ConsistencyOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class ConsistencyScheduler(SchedulerMixin, ConfigMixin):
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 40,
        sigma_min: float = 0.002,
        sigma_max: float = 700.0,
        sigma_data: float = 1.0,
        rho: float = 7.0,
        s_noise: float = 1.0,
    ):
        self.init_noise_sigma = (sigma_max**2 + sigma_data**2) ** 0.5
        self.generators: list[torch.Generator] | None = None
        self.set_timesteps(num_train_timesteps)

    def grid(self) -> np.ndarray:
        """The noise levels it was distilled on, high to low."""
        c = self.config
        ramp = np.linspace(0, 1, c.num_train_timesteps)
        top, bottom = c.sigma_max ** (1 / c.rho), c.sigma_min ** (1 / c.rho)
        return (top + ramp * (bottom - top)) ** c.rho

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None):
        grid = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= grid:
            raise ValueError(f"steps: 1 to {grid} on this sampler; got {num_inference_steps}")
        self.num_inference_steps = num_inference_steps
        sigmas = self.grid()[:: grid // num_inference_steps][:num_inference_steps]
        self.timesteps = torch.from_numpy(0.25 * np.log(sigmas)).to(device, torch.float32)
        self.sigmas = torch.from_numpy(np.append(sigmas, 0.0)).to(torch.float32)
        self._index = 0

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        sigma = self.sigmas[self._index]
        return sample / (sigma**2 + self.config.sigma_data**2) ** 0.5

    def step(
        self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
        generator: torch.Generator | None = None, return_dict: bool = True,
    ) -> ConsistencyOutput | tuple:  # fmt: skip
        sigma, after = self.sigmas[self._index], self.sigmas[self._index + 1]
        data = self.config.sigma_data
        skip = data**2 / (sigma**2 + data**2)
        out = -sigma * data / (sigma**2 + data**2) ** 0.5
        denoised = (out * model_output.float() + skip * sample.float()).to(sample.dtype)
        prev = denoised
        if after > 0:
            noise = self._noise(sample, generator)
            prev = denoised + noise * self.config.s_noise * after
        self._index += 1
        if not return_dict:
            return prev, denoised
        return ConsistencyOutput(prev_sample=prev, pred_original_sample=denoised)

    def _noise(self, sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        gens = self.generators or [generator]
        shape = (1, *sample.shape[1:])
        parts = [
            torch.randn(shape, generator=gens[n % len(gens)], dtype=torch.float32)
            for n in range(sample.shape[0])
        ]
        return torch.cat(parts).to(sample.device, sample.dtype)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
