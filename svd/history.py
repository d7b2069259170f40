"""Past videos for the page: read back from the output folder, so they survive a restart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from svd.fetch import file_path
from svd.outputs import OutputStore
from svd.schema import SVDInput

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
    if (inp.get("cache_interval") or 1) > 1:
        parts.append(f"deep features every {inp['cache_interval']} steps")
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
    path = file_path(url) if url.startswith("file:") else Path(url)
    try:
        return str(path) if path.is_file() else None
    except OSError:  # a name too long for this system, say
        return None


def settings(store: OutputStore, record: dict) -> dict:
    """The page's input values that remake the record's video (0 stands for "default")."""
    inp = record.get("input") or {}
    fields = SVDInput.model_fields
    chosen = ("motion_bucket_id", "cond_aug", "steps", "fps", "control_scale", "resize_mode",
              "loop", "interpolate", "extend", "cache_interval", "output_format")  # fmt: skip
    optional = ("num_frames", "width", "height", "decode_chunk_size")
    return {
        "image": kept_file(store, record, "input", inp.get("image_url")),
        "mask_file": kept_file(store, record, "mask", inp.get("mask_image_url")),
        "control_maps": still_there(inp.get("control_maps_data_url")),
        **{n: fields[n].default if inp.get(n) is None else inp[n] for n in chosen},
        **{n: inp.get(n) or 0 for n in optional},
        "seed": str(record.get("seed", "")),
        "backend": record.get("backend", "local"),
    }
