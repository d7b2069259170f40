"""The motion mask: black moves, white stays still (fal's convention).

During denoising the still region's latents are held on the input picture's own latent,
re-noised to the current noise level with noise fixed for the run; after decoding, the still
region is laid back onto the picture's own pixels. Both use the same feathered mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from PIL import Image

from svd.media import fit_image

if TYPE_CHECKING:  # the page imports this module; diffusers loads with the model
    from svd.pipeline import SVDPipeline

FEATHER_PX = 3.0  # sigma of the pixel-space feather
FEATHER_LATENT = 0.75  # sigma of the latent-space feather, in latent pixels


def motion_map(img: Image.Image, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """A mask fitted like the picture: (height, width) float32, 1 = moves, 0 = still.

    Grey is partial motion; transparent pixels count as white (still), and so do pad bars.
    """
    fitted = fit_image(img, width, height, mode, fill=(255, 255, 255))
    gray = np.asarray(fitted.convert("L"), dtype=np.float32) / 255.0
    return 1.0 - gray


def mask_image(moves: np.ndarray) -> Image.Image:
    """A motion map back as fal's black-and-white mask."""
    return Image.fromarray(((1.0 - moves) * 255.0).round().astype(np.uint8), "L")


def strokes_to_mask(layers: list[np.ndarray] | None) -> Image.Image | None:
    """Painted strokes (RGBA layers) as fal's mask: painted = black = moves, the rest white.

    None when nothing is painted.
    """
    painted = None
    for layer in layers or []:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            continue
        hit = layer[:, :, 3] > 0
        painted = hit if painted is None or painted.shape != hit.shape else painted | hit
    if painted is None or not painted.any():
        return None
    return Image.fromarray(np.where(painted, 0, 255).astype(np.uint8), "L")


def feather(weights: np.ndarray, sigma: float) -> np.ndarray:
    """Soften the edge of a 0-1 map so the still and moving regions meet without a seam."""
    if sigma <= 0 or weights.min() == weights.max():
        return weights
    return cv2.GaussianBlur(weights, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


class MotionMask:
    """Holds the still region of a run to the input picture, in latents and in pixels."""

    def __init__(self, moves: np.ndarray, image: Image.Image, seed: int):
        self.moves = moves
        self.image = image
        self.seed = seed
        self._still_latent: torch.Tensor | None = None
        self._noise: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None

    def prepare(self, pipe: SVDPipeline, latent_shape: tuple[int, ...]) -> None:
        """Encode the picture and build the latent weights (once per run)."""
        device, dtype = pipe._execution_device, pipe.unet.dtype
        latent = pipe.picture_latent(self.image)
        self._still_latent = (latent * pipe.vae.config.scaling_factor).to(dtype).unsqueeze(1)
        generator = torch.Generator("cpu").manual_seed(self.seed)
        noise = torch.randn(latent_shape, generator=generator, dtype=torch.float32)
        self._noise = noise.to(device, dtype)
        h, w = latent_shape[-2:]
        small = cv2.resize(self.moves, (w, h), interpolation=cv2.INTER_AREA)
        weights = torch.from_numpy(feather(small, FEATHER_LATENT))
        self._weights = weights.to(device, dtype)[None, None, None]

    def blend_latents(self, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        """The still region set to the picture's latent at noise level `sigma`."""
        if self._weights is None:
            raise RuntimeError("MotionMask.prepare must run before blend_latents")
        still = self._still_latent + sigma * self._noise
        return self._weights * latents + (1 - self._weights) * still

    def composite(self, frames: np.ndarray) -> np.ndarray:
        """Lay the still region of float frames (N, H, W, 3; 0-1) back onto the picture."""
        weights = feather(self.moves, FEATHER_PX)[None, :, :, None]
        picture = np.asarray(self.image, dtype=np.float32)[None] / 255.0
        return weights * frames + (1 - weights) * picture
