"""The page's files: its scratch folders, the painted mask saved as a file, and the kept
files it may hand to Gradio."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

from svd.fetch import file_path
from svd.mask import strokes_to_mask


def mask_from_page(strokes: dict | None, mask_file: str | None, folder: Path) -> str | None:
    """The mask to send: an uploaded mask file, else the painted strokes saved as a PNG."""
    if mask_file:
        return mask_file
    mask = strokes_to_mask((strokes or {}).get("layers"))
    if mask is None:
        return None
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    path = folder / f"{hashlib.sha1(buf.getvalue()).hexdigest()}.png"  # one file per mask
    path.write_bytes(buf.getvalue())
    return str(path)


def local_path(url: str) -> str:
    """The file behind a file:// URL (what both backends return), as the page may show it."""
    return servable(str(file_path(url)) if url.startswith("file:") else url)


def scratch_root() -> Path:
    """Where the page keeps its temporary files (read at call time, like the temp folder)."""
    return Path(tempfile.gettempdir()) / "svd-studio"


def scratch(kind: str) -> Path:
    """The page's own temporary folder for `kind` (masks, depth, shown), swept daily."""
    folder = scratch_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_swept = [0.0]


def sweep_scratch(max_age: float = 86400, every: float = 3600) -> None:
    """Remove the page's temporary files older than `max_age`, at most once per `every`."""
    now = time.time()
    if now - _swept[0] < every:
        return
    _swept[0] = now
    for path in scratch_root().rglob("*"):
        try:
            if path.is_file() and now - path.stat().st_mtime > max_age:
                path.unlink()
        except OSError:  # removed meanwhile
            pass


def servable(path: str | None) -> str | None:
    """A kept file the page can hand to Gradio. Gradio takes files from the working and temp
    folders only; the output folder is never served whole (it holds records and inputs), so a
    video kept elsewhere is linked into the temp folder first."""
    if not path:
        return path
    source = Path(path).resolve()
    if any(source.is_relative_to(Path(p).resolve()) for p in (os.getcwd(), tempfile.gettempdir())):
        return str(source)
    shown = scratch("shown") / source.name
    if not shown.exists():
        try:
            os.link(source, shown)
        except FileExistsError:  # another page load linked it meanwhile
            pass
        except OSError:  # another file system
            shutil.copyfile(source, shown)
    return str(shown)
