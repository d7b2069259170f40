"""Depth-map archives: zip, tar or tar.gz read in memory, never extracted.

Entries are ordered by file name with runs of digits compared as numbers (9.png before
10.png); images count by extension, everything else is ignored.
"""

from __future__ import annotations

import io
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from svd.errors import InputError
from svd.settings import settings

FIELD = "control_maps_data_url"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tiff", ".tif"}
MAX_RATIO = 200  # uncompressed / compressed, beyond which a zip entry is a bomb
MAX_MAPS = 64  # the most frames a video may have
MIN_MAPS = 2  # the fewest (num_frames' own lower bound)
MAX_MAP_PIXELS = 16_777_216  # 4096 x 4096


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes


def natural_key(name: str) -> list:
    """Sort key comparing runs of digits as numbers: 'f9' < 'f10', case ignored."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _usable(name: str) -> bool:
    path = PurePosixPath(name)
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def _check_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise InputError(FIELD, f"the archive holds an unsafe path: {name!r}")


def read_archive(data: bytes) -> list[Entry]:
    """The image entries of a zip or tar (any compression), in natural file-name order."""
    buf = io.BytesIO(data)
    is_zip = zipfile.is_zipfile(buf)
    buf.seek(0)
    try:
        entries = _read_zip(buf) if is_zip else _read_tar(buf)
    except InputError:
        raise
    except Exception as e:  # zipfile, tarfile and zlib fail in many ways on damaged bytes
        if not is_zip and isinstance(e, tarfile.ReadError):
            raise InputError(FIELD, "not a zip, tar or tar.gz archive") from None
        kind = "zip" if is_zip else "tar"
        raise InputError(FIELD, f"a damaged {kind} archive ({type(e).__name__})") from None
    if not entries:
        raise InputError(FIELD, "the archive holds no images (.png .jpg .jpeg .bmp .gif .tiff)")
    if len(entries) > MAX_MAPS:
        raise InputError(FIELD, f"the archive holds {len(entries)} maps; at most {MAX_MAPS}")
    return sorted(entries, key=lambda e: (natural_key(PurePosixPath(e.name).name), e.name))


def _read_zip(buf: io.BytesIO) -> list[Entry]:
    archive = zipfile.ZipFile(buf)
    infos = archive.infolist()
    _check_count(len(infos))
    total, entries = 0, []
    for info in infos:
        _check_name(info.filename)
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if info.is_dir() or is_link or not _usable(info.filename):
            continue
        total += info.file_size
        _check_total(total)
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InputError(FIELD, f"{info.filename!r} expands over {MAX_RATIO}x (a zip bomb?)")
        with archive.open(info) as f:
            content = f.read(info.file_size + 1)
        if len(content) > info.file_size:
            raise InputError(FIELD, f"{info.filename!r} is larger than its header says")
        entries.append(Entry(info.filename, content))
    return entries


def _read_tar(buf: io.BytesIO) -> list[Entry]:
    total, entries, count = 0, [], 0
    with tarfile.open(fileobj=buf, mode="r:*") as archive:
        for member in archive:  # streamed: a huge member list stops at the limit
            count += 1
            _check_count(count)
            _check_name(member.name)
            total += member.size  # skipped members are decompressed too, to reach the next
            _check_total(total)
            if not member.isfile() or not _usable(member.name):
                continue  # directories, symlinks, hardlinks, devices, junk
            f = archive.extractfile(member)
            entries.append(Entry(member.name, f.read() if f else b""))
    return entries


def maps_for_a_video(data: bytes) -> list[Entry]:
    """An archive's maps, refused unless they make a video (one frame per map)."""
    entries = read_archive(data)
    if len(entries) < MIN_MAPS:  # one frame breaks diffusers' guidance schedule
        raise InputError(FIELD, f"the archive holds 1 map; a video needs at least {MIN_MAPS}")
    return entries


def _check_count(count: int) -> None:
    limit = settings().archive_max_entries
    if count > limit:
        raise InputError(FIELD, f"the archive has over {limit} entries (SVD_ARCHIVE_MAX_ENTRIES)")


def _check_total(total: int) -> None:
    limit = settings().archive_max_mb
    if total > limit * 1024 * 1024:
        raise InputError(FIELD, f"the archive expands to over {limit} MB (SVD_ARCHIVE_MAX_MB)")


def decode_depth(entry: Entry) -> np.ndarray:
    """One map as a float32 (H, W) array in 0-1, from 8- or 16-bit gray, RGB(A) or palette."""
    try:
        img = Image.open(io.BytesIO(entry.data))
        if img.width * img.height > MAX_MAP_PIXELS:
            raise InputError(FIELD, f"{entry.name!r} is over {MAX_MAP_PIXELS:,} pixels")
        img.load()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InputError(FIELD, f"{entry.name!r} is not a readable image") from None
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 1.0 if img.mode == "F" and arr.max() <= 1.0 else 65535.0
        if img.mode == "I" and arr.max() <= 255:
            top = 255.0
        return np.clip(arr / top, 0.0, 1.0)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA").convert("RGB")  # depth ignores transparency
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def fit_map(depth: np.ndarray, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """Fit a map to the video like the picture (crop: cover and cut; pad: bars of 0)."""
    img = Image.fromarray(depth.astype(np.float32), "F")
    if mode == "pad":
        fitted = ImageOps.pad(img, (width, height), method=Image.Resampling.BILINEAR, color=0)
    else:
        fitted = ImageOps.fit(img, (width, height), method=Image.Resampling.BILINEAR)
    return np.asarray(fitted, dtype=np.float32)


def maps_from_archive(data: bytes, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """The maps of an archive's bytes, fitted like the picture: float32 (frames, height,
    width) in 0-1."""
    entries = read_archive(data)
    return np.stack([fit_map(decode_depth(e), width, height, mode) for e in entries])


def depth_strip(maps: np.ndarray, height: int = 72) -> Image.Image:
    """The maps side by side, in the order they are used, as one grayscale picture."""
    frames, h, w = maps.shape
    width = max(1, round(w * height / h))
    strip = Image.new("L", (width * frames + 2 * (frames - 1), height), 255)
    for i, depth in enumerate(maps):
        tile = Image.fromarray((np.clip(depth, 0, 1) * 255).round().astype(np.uint8), "L")
        strip.paste(tile.resize((width, height), Image.Resampling.BILINEAR), (i * (width + 2), 0))
    return strip
