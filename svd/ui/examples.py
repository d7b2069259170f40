"""The page's examples, made with the project's own pictures: thumbnails that show the whole
picture, and videos made once per model (on first use) and kept for every visitor."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from svd.backends import Backend
from svd.schema import SVDInput
from svd.session import scratch

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
SEED = 1


@dataclass(frozen=True)
class Example:
    name: str
    caption: str
    image: str
    mask: str | None = None
    maps: str | None = None

    def request(self) -> SVDInput:
        return SVDInput(
            image_url=str(ASSETS / self.image), seed=SEED,
            mask_image_url=str(ASSETS / self.mask) if self.mask else None,
            control_maps_data_url=str(ASSETS / self.maps) if self.maps else None,
        )  # fmt: skip

    def values(self) -> dict:
        """The page's inputs this example fills."""
        return {
            "image": str(ASSETS / self.image), "seed": str(SEED),
            "mask_file": str(ASSETS / self.mask) if self.mask else None,
            "control_maps": str(ASSETS / self.maps) if self.maps else None,
        }  # fmt: skip


EXAMPLES = [
    Example("lake", "A lake that moves under still hills (motion mask)", "sunset.png",
            mask="sunset-mask.png"),
    Example("ball", "A ball rolled by depth maps", "ball.png", maps="rolling-ball-depth.zip"),
]  # fmt: skip


def thumbnails() -> list[tuple[str, str]]:
    """(picture, caption) for the gallery: each picture whole, none of it cropped away."""
    folder = scratch("examples")
    shown = []
    for example in EXAMPLES:
        path = folder / f"{example.name}.png"
        if not path.exists():
            picture = Image.open(ASSETS / example.image).convert("RGB")
            ImageOps.contain(picture, (320, 180)).save(path)
        shown.append((str(path), example.caption))
    return shown


def cache_path(backend: Backend, example: Example) -> Path:
    """Where this backend's (and model's) video of `example` is kept."""
    model = getattr(backend, "model", None) or backend.name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{backend.name}-{model}").strip("-")
    return backend.store.root / "examples" / f"{slug}-{example.name}.mp4"  # a name per model


def cached(backend: Backend, example: Example) -> Path | None:
    path = cache_path(backend, example)
    return path if path.is_file() else None


def keep(backend: Backend, example: Example, video: Path) -> Path:
    path = cache_path(backend, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".mp4.part")
    shutil.copyfile(video, part)
    part.replace(path)
    return path
