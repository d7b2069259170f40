"""Images in, video out: decoding, fitting to the video size, and mp4 files."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from svd.errors import InputError
from svd.settings import settings


def decode_image(data: bytes, field: str, *, max_pixels: int | None = None) -> Image.Image:
    """Decode image bytes to RGB, upright as its EXIF says; the first frame if animated.
    Pictures over `max_pixels` (SVD_MAX_IMAGE_PIXELS) are refused before decoding."""
    max_pixels = max_pixels or settings().max_image_pixels
    if not data:
        raise InputError(field, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(field, f"image is {w}x{h}, over the {max_pixels:,} pixel limit")
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(field, f"image is over the {max_pixels:,} pixel limit") from None
    except UnidentifiedImageError:
        raise InputError(field, "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(field, f"the image could not be decoded ({e})") from None
    img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any mode: 16-bit and float scaled, transparency laid on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        img = Image.fromarray(arr, "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def fit_image(
    img: Image.Image, width: int, height: int, mode: str = "crop", fill=(0, 0, 0)
) -> Image.Image:
    """Fit to `width`x`height`, the aspect kept. crop (and keep): scale to fill, cut the
    centre; pad: scale to fit inside, bars of `fill` on the short sides."""
    if mode == "pad":
        return ImageOps.pad(img, (width, height), method=Image.Resampling.LANCZOS, color=fill)
    return ImageOps.fit(img, (width, height), method=Image.Resampling.LANCZOS)


def keep_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """The video size nearest the picture's aspect with about `pixels` pixels, sides
    multiples of 64 (576x1024 for a portrait, 768x768 for a square, at SVD's size)."""
    aspect = width / height
    w = round((pixels * aspect) ** 0.5 / 64) * 64
    h = round((pixels / aspect) ** 0.5 / 64) * 64
    return min(max(w, 64), 2048), min(max(h, 64), 2048)


def video_size(
    picture: tuple[int, int], default: tuple[int, int], width: int | None = None,
    height: int | None = None, mode: str = "crop",
) -> tuple[int, int]:  # fmt: skip
    """The video's size: the asked sides, else the model's `default`; for `keep` with no side
    asked, the picture's shape at about the default's pixel count."""
    if mode == "keep" and not (width or height):
        default = keep_size(*picture, default[0] * default[1])
    return width or default[0], height or default[1]


CODECS = {  # format: (codec, ffmpeg output options)
    "mp4": ("libx264", ["-crf", "17", "-movflags", "+faststart", "-f", "mp4"]),
    "webm": ("libvpx-vp9", ["-crf", "30", "-b:v", "0", "-row-mt", "1", "-f", "webm"]),
}


def write_video(frames: np.ndarray | list, fps: int, path: str | Path, fmt: str = "mp4") -> Path:
    """Write frames (N, H, W, 3; uint8, or float in 0-1) as mp4 (H.264), webm (VP9) or gif.

    mp4 and webm are yuv420p, which browsers play; odd sizes lose their last row or column.
    The file is written beside `path` and renamed into place, so no reader sees half a file.
    """
    if fmt == "gif":
        return _write_gif(as_uint8_frames(frames), fps, Path(path))
    video = as_uint8_frames(frames)
    n, h, w = video.shape[:3]
    video = video[:, : h - h % 2, : w - w % 2]
    if n == 0 or video.shape[1] == 0 or video.shape[2] == 0:
        raise ValueError("a video needs at least one frame of at least 2x2 pixels")
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        (video.shape[2], video.shape[1]),
        fps=fps,
        codec=CODECS[fmt][0],
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        output_params=CODECS[fmt][1],
        ffmpeg_log_level="error",
    )
    try:
        writer.send(None)
        for frame in video:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def _write_gif(video: np.ndarray, fps: int, path: Path) -> Path:
    if len(video) == 0:
        raise ValueError("a gif needs at least one frame")
    images = [Image.fromarray(f).quantize(256, dither=Image.Dither.FLOYDSTEINBERG) for f in video]
    tmp = path.with_name(path.name + ".part")
    images[0].save(
        tmp, "GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    os.replace(tmp, path)
    return path


def as_uint8_frames(frames: np.ndarray | list) -> np.ndarray:
    """Frames as one uint8 array (N, H, W, 3) from uint8 arrays, float arrays or PIL images."""
    if isinstance(frames, list) and frames and isinstance(frames[0], Image.Image):
        frames = [np.asarray(f.convert("RGB")) for f in frames]
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (N, H, W, 3), got {arr.shape}")
    return arr


class VideoLimitError(ValueError):
    """A video over a limit; `setting` names it (max_video_frames or max_image_pixels)."""

    def __init__(self, message: str, setting: str):
        super().__init__(message)
        self.setting = setting


@contextmanager
def _open_video(path: str | Path) -> Iterator[tuple[int, int, float, Iterator[np.ndarray]]]:
    """(width, height, fps, frames): the header, and the frames decoded one at a time."""
    if Path(path).suffix.lower() == ".gif":  # ffmpeg would resample a gif to its own rate
        with Image.open(path) as gif:
            fps = 1000.0 / (gif.info.get("duration") or 100)
            frames = (np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif))
            yield *gif.size, fps, frames
        return
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        w, h = meta["size"]
        yield w, h, meta["fps"], (np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader)
    finally:
        reader.close()  # stops ffmpeg when we stop reading early


def _scan_video(path, keep, max_frames, max_pixels) -> tuple[list, int, int, int, float]:
    """One pass: (the frames whose index is in `keep`, all if None; count, width, height, fps)."""
    with _open_video(path) as (w, h, fps, frames):
        if max_pixels is not None and w * h > max_pixels:
            raise VideoLimitError(
                f"frames are {w}x{h}, over the {max_pixels:,} pixel limit", "max_image_pixels"
            )
        kept, n = [], 0
        for n, frame in enumerate(frames, start=1):
            if max_frames is not None and n > max_frames:
                raise VideoLimitError(
                    f"the video has more than {max_frames} frames", "max_video_frames"
                )
            if keep is None or n - 1 in keep:
                kept.append(frame)
    return kept, n, w, h, fps


def read_video(
    path: str | Path,
    *,
    pick: int | None = None,
    max_frames: int | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, float]:
    """Decode a video file to (frames (N, H, W, 3) uint8, fps), one frame at a time.

    pick: keep only that many frames, evenly spaced. max_frames, max_pixels (a frame's):
    raise VideoLimitError past them. Either makes a first pass that counts, keeping no frame.
    """
    keep = None
    if pick is not None or max_frames is not None or max_pixels is not None:
        n = _scan_video(path, set(), max_frames, max_pixels)[1]
        if pick is not None and n > pick:
            keep = set(np.linspace(0, n - 1, pick).round().astype(int).tolist())
    kept, _, w, h, fps = _scan_video(path, keep, max_frames, max_pixels)
    return np.stack(kept) if kept else np.zeros((0, h, w, 3), np.uint8), fps


def read_video_bytes(data: bytes, field: str, *, pick: int | None = None) -> np.ndarray:
    """Decode an uploaded video (mp4, webm, gif, ...) to frames (N, H, W, 3) uint8: `pick`
    evenly spaced frames if given, else all; refused past SVD_MAX_VIDEO_FRAMES frames or
    SVD_MAX_IMAGE_PIXELS pixels a frame."""
    import tempfile

    limits = settings()
    with tempfile.NamedTemporaryFile(suffix=".gif" if data[:4] == b"GIF8" else ".video") as f:
        f.write(data)
        f.flush()
        try:
            frames = read_video(
                f.name,
                pick=pick,
                max_frames=limits.max_video_frames,
                max_pixels=limits.max_image_pixels,
            )[0]
        except VideoLimitError as e:
            raise InputError(field, f"{e} (SVD_{e.setting.upper()})") from None
        except Exception:  # ffmpeg says little that helps a user
            raise InputError(field, "not a readable video") from None
    if len(frames) == 0:
        raise InputError(field, "the video has no frames")
    return frames
