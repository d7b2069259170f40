"""The models: each one's repo, defaults and ranges, in one place. Whatever needs a model's
frame count, size, fps, steps, guidance, licence or fal endpoint reads it here."""

from __future__ import annotations

from dataclasses import dataclass

HUB = "https://huggingface.co/"
ALL = frozenset({"mask", "depth", "preview", "extend"})


@dataclass(frozen=True)
class Model:
    name: str
    repo: str | None  # hub id (None: built in-process)
    frames: int
    size: tuple[int, int]  # width, height it was trained at
    fps: int
    steps: int
    step_range: tuple[int, int]
    guidance: tuple[float, float]  # min and max guidance scale
    scheduler: str  # "euler" (the repo's own) or "consistency"
    licence: str | None  # a link to the terms
    fal_endpoint: str | None  # the fal app that runs it, where fal hosts it
    unet_file: str | None = None  # a UNet state dict at the repo's root, over `base`'s parts
    base: str | None = None  # the model whose other parts (VAE, image encoder) it uses
    motion_bucket_id: int = 127
    supports: frozenset[str] = ALL  # of mask, depth, preview, extend
    gpu_seconds_per_unit: float = 0.15  # ZeroGPU budget per step x frame at 1024x576

    @property
    def own(self) -> dict:
        """What a request leaving these fields out gets from this model."""
        return {"steps": self.steps, "fps": self.fps, "min_guidance_scale": self.guidance[0],
                "max_guidance_scale": self.guidance[1]}  # fmt: skip

    @property
    def about(self) -> str:
        return f"{self.name} ({self.frames} frames, {self.steps} steps)"


MODELS = {
    m.name: m
    for m in (
        Model("svd", "stabilityai/stable-video-diffusion-img2vid", 14, (1024, 576), 7, 20,
              (1, 100), (1.0, 3.0), "euler",
              HUB + "stabilityai/stable-video-diffusion-img2vid", None),
        Model("svd-xt", "stabilityai/stable-video-diffusion-img2vid-xt", 25, (1024, 576), 7, 20,
              (1, 100), (1.0, 3.0), "euler",
              HUB + "stabilityai/stable-video-diffusion-img2vid-xt", "fal-ai/svd"),
        Model("svd-xt-1-1", "stabilityai/stable-video-diffusion-img2vid-xt-1-1", 25,
              (1024, 576), 6, 20, (1, 100), (1.0, 3.0), "euler",
              HUB + "stabilityai/stable-video-diffusion-img2vid-xt-1-1", None),
        Model("animatelcm-svd-xt", "wangfuyun/AnimateLCM-SVD-xt", 25, (1024, 576), 8, 4,
              (1, 20), (1.0, 1.2), "consistency", HUB + "wangfuyun/AnimateLCM-SVD-xt",
              "fal-ai/fast-svd-lcm", unet_file="AnimateLCM-SVD-xt-1.1.safetensors",
              base="svd-xt", supports=ALL - {"depth"}),
        Model("tiny", None, 14, (256, 128), 7, 20, (1, 100), (1.0, 3.0), "euler", None, None),
    )
}  # fmt: skip
DEFAULT = MODELS["svd-xt"]


def find(name_or_repo: str | None) -> Model | None:
    """The model a name ("svd-xt") or a hub id stands for; None for a folder or unknown id."""
    if not name_or_repo:
        return None
    key = name_or_repo.strip().lower()
    return next((m for m in MODELS.values() if key in (m.name, (m.repo or "").lower())), None)


def for_fal_endpoint(endpoint: str) -> Model:
    """The model a fal endpoint runs (fal-ai/svd's, for an endpoint not listed)."""
    return next((m for m in MODELS.values() if m.fal_endpoint == endpoint), DEFAULT)


def described() -> list[str]:
    """Each model in a few words, for the API's schema."""
    return [m.about for m in MODELS.values()]
