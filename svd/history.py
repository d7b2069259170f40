"""Past videos for the page: read back from the output folder, so they survive a restart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from svd.outputs import OutputStore

SHOWN = 24


def video_of(store: OutputStore, record: dict) -> Path | None:
    """The record's video file, if it is still there."""
    name = (record.get("output") or {}).get("file_name")
    path = store.root / name if name else None
    return path if path is not None and path.is_file() else None


def caption(record: dict) -> str:
    inp = record.get("input") or {}
    parts = [f"seed {record.get('seed')}", f"motion {inp.get('motion_bucket_id')}"]
    parts.append(f"{inp.get('steps')} steps")
    if inp.get("mask_image_url"):
        parts.append("mask")
    if inp.get("control_maps_data_url"):
        parts.append("depth")
    return " · ".join(parts) + f" · {record.get('backend')}"


def entries(store: OutputStore, limit: int = SHOWN) -> list[dict]:
    """The newest records whose video still exists."""
    found = []
    for record in store.list():
        if video_of(store, record) is not None:
            found.append(record)
        if len(found) >= limit:
            break
    return found


def gallery(records: list[dict], store: OutputStore) -> list[tuple[str, str]]:
    return [(str(video_of(store, r)), caption(r)) for r in records]


def kept_file(store: OutputStore, record: dict, name: str, url: str | None) -> str | None:
    """A file the run kept (<id>.<name>.png), else the input's own file if it still exists."""
    kept = store.root / f"{record['id']}.{name}.png"
    return str(kept) if kept.is_file() else still_there(url)


def still_there(url: str | None) -> str | None:
    """An input URL worth offering again: http(s) as it is, a local file if it still exists."""
    if not url or url.startswith("data:"):
        return None
    if urlparse(url).scheme in ("http", "https"):
        return url
    path = Path(unquote(urlparse(url).path)) if url.startswith("file:") else Path(url)
    try:
        return str(path) if path.is_file() else None
    except OSError:  # a name too long for this system, say
        return None


def settings(store: OutputStore, record: dict) -> dict:
    """The page's input values that remake the record's video."""
    inp = record.get("input") or {}
    return {
        "image": kept_file(store, record, "input", inp.get("image_url")),
        "mask_file": kept_file(store, record, "mask", inp.get("mask_image_url")),
        "control_maps": still_there(inp.get("control_maps_data_url")),
        "motion_bucket_id": inp.get("motion_bucket_id", 127),
        "cond_aug": inp.get("cond_aug", 0.02),
        "steps": inp.get("steps", 20),
        "seed": str(record.get("seed", "")),
        "fps": inp.get("fps", 7),
        "num_frames": inp.get("num_frames") or 0,
        "width": inp.get("width") or 0,
        "height": inp.get("height") or 0,
        "decode_chunk_size": inp.get("decode_chunk_size") or 0,
        "control_scale": inp.get("control_scale", 1.0),
        "resize_mode": inp.get("resize_mode", "crop"),
        "loop": inp.get("loop", "none"),
        "output_format": inp.get("output_format", "mp4"),
        "backend": record.get("backend", "local"),
    }
