"""Past videos for the page: read back from the output folder, so they survive a restart.

Each browser sees the runs it made (private by default): the page keeps their ids in the
browser, each with a token only this server can make, so no one lists another's runs.
`SVD_HISTORY=all` shows the whole folder, for one person on their own machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path, PurePosixPath

from svd import models
from svd.fetch import file_path, is_http
from svd.outputs import OutputStore
from svd.schema import URL_FIELDS, SVDInput

SHOWN = 24
KEPT = 100  # runs a browser's list holds; entries past these are never read
KEY_FILE = ".history-key"  # not served: /outputs/ names start with a letter or digit


def _key(store: OutputStore) -> bytes:
    """The server's secret for tokens, kept in the output folder so it outlives restarts."""
    path = store.root / KEY_FILE
    try:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) == 32:
            return key
    except (OSError, ValueError):
        pass
    store.root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f"{KEY_FILE}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    os.replace(tmp, path)  # whole or not at all
    return key


def _derived(store: OutputStore, purpose: str, value: str) -> str:
    message = f"{purpose}\0{value}".encode()  # one purpose's outputs never equal another's
    return hmac.new(_key(store), message, hashlib.sha256).hexdigest()


def token(store: OutputStore, run_id: str) -> str:
    """The token that proves a browser made `run_id`."""
    return _derived(store, "run", run_id)[:32]


def state_secret(store: OutputStore) -> str:
    """The secret the page's browser state is sealed with (public in the page's config):
    derived apart from every run's token."""
    return _derived(store, "browser-state", "")


def remember(store: OutputStore, mine: list | None, run_id: str) -> list[dict]:
    """The browser's list of its runs with `run_id` added, newest first."""
    entry = {"id": run_id, "token": token(store, run_id)}
    kept = [e for e in _listed(mine) if isinstance(e, dict) and e.get("id") != run_id]
    return [entry, *kept][:KEPT]


def own_entries(store: OutputStore, mine: list | None, limit: int = SHOWN) -> list[dict]:
    """The records of the runs in the browser's list whose token is right and video exists."""
    found = []
    for entry in _listed(mine):
        run_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(run_id, str) or not isinstance(entry.get("token"), str):
            continue
        if not hmac.compare_digest(entry["token"], token(store, run_id)):
            continue
        try:
            record = store.load(run_id)
        except (OSError, ValueError):
            continue
        if video_of(store, record) is not None:
            found.append(record)
        if len(found) >= limit:
            break
    return found


def _listed(mine) -> list:
    """The first entries of a browser's list (it comes from the browser: anything goes)."""
    return mine[:KEPT] if isinstance(mine, list) else []


def public_record(record: dict) -> dict:
    """A record as the page shows it: no server paths (local inputs by file name only)."""
    shown = json.loads(json.dumps(record))
    shown.get("output", {}).pop("url", None)
    inp = shown.get("input") or {}
    for name in URL_FIELDS:
        value = inp.get(name)
        if isinstance(value, str) and not value.startswith(("data:", "http:", "https:")):
            inp[name] = f"<upload: {PurePosixPath(value).name}>"
    return shown


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
    if inp.get("model"):
        parts.append(inp["model"])
    return " · ".join(parts) + f" · {record.get('backend')}"


def entries(store: OutputStore, limit: int = SHOWN) -> list[dict]:
    """The newest records whose video still exists; only those are read."""
    found = []
    for record in store.newest():
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
    if is_http(url):
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
              "loop", "interpolate", "extend", "cache_interval", "output_format",
              "min_guidance_scale", "max_guidance_scale", "num_videos")  # fmt: skip
    optional = ("num_frames", "width", "height", "decode_chunk_size")
    return {
        "image": kept_file(store, record, "input", inp.get("image_url")),
        "mask_file": kept_file(store, record, "mask", inp.get("mask_image_url")),
        "control_maps": still_there(inp.get("control_maps_data_url")),
        **{n: fields[n].default if inp.get(n) is None else inp[n] for n in chosen},
        **{n: inp.get(n) or 0 for n in optional},
        "seed": str(record.get("seed", "")),
        "backend": record.get("backend", "local"),
        "model": inp.get("model") or _model_name(record.get("model")),
    }


def _model_name(loaded: str | None) -> str | None:
    """The registry's name for what a run loaded (a hub id, "tiny"); None for a folder."""
    spec = models.find(loaded)
    return spec.name if spec is not None else None
