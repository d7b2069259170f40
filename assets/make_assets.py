"""Make the example inputs in assets/: drawn here, so the project owns them.

python assets/make_assets.py  (deterministic; the files are committed)
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
W, H = 1024, 576


def landscape() -> Image.Image:
    """A sunset over hills and a lake."""
    y = np.linspace(0, 1, H)[:, None, None]
    sky = (1 - y) * np.array([255, 140, 60]) + y * np.array([70, 40, 120])
    img = Image.fromarray(np.broadcast_to(sky, (H, W, 3)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.ellipse((600, 150, 760, 310), fill=(255, 220, 120))
    d.polygon([(0, 380), (200, 260), (420, 360), (640, 240), (1024, 370), (1024, 576), (0, 576)],
              fill=(40, 60, 50))  # fmt: skip
    d.rectangle((0, 430, W, H), fill=(30, 50, 90))
    for i in range(12):  # the sun's reflection
        d.rectangle((640 + i * 3, 440 + i * 10, 720 - i * 3, 444 + i * 10), fill=(250, 190, 110))
    return img.filter(ImageFilter.GaussianBlur(1.2))


def lake_mask() -> Image.Image:
    """Black (moves) on the lake and sky, white (still) on the hills."""
    mask = Image.new("L", (W, H), 0)
    ImageDraw.Draw(mask).polygon(
        [(0, 380), (200, 260), (420, 360), (640, 240), (1024, 370), (1024, 430), (0, 430)], fill=255
    )
    return mask


def depth_maps(frames: int = 14) -> bytes:
    """A zip of depth maps: a ball rolling towards the viewer over a receding floor."""
    buf = io.BytesIO()
    y = np.linspace(0, 1, H // 2)[:, None].repeat(W // 2, 1)
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(frames):
            depth = Image.fromarray((y * 200).astype(np.uint8))
            r = 30 + i * 4
            cx, cy = 120 + i * 20, 160 + i * 4
            ImageDraw.Draw(depth).ellipse((cx - r, cy - r, cx + r, cy + r), fill=150 + i * 7)
            png = io.BytesIO()
            depth.save(png, "PNG")
            z.writestr(f"depth/frame_{i + 1}.png", png.getvalue())
    return buf.getvalue()


def main() -> None:
    landscape().save(HERE / "sunset.png")
    lake_mask().save(HERE / "sunset-mask.png")
    (HERE / "rolling-ball-depth.zip").write_bytes(depth_maps())
    ball = Image.new("RGB", (W, H), (200, 200, 210))
    ImageDraw.Draw(ball).ellipse((60, 180, 240, 360), fill=(200, 40, 40))
    ball.save(HERE / "ball.png")


if __name__ == "__main__":
    main()
