"""What the page needs besides widgets: backend choice, stop requests, progress, masks."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from svd.archive import decode_depth, depth_strip, fit_map, read_archive
from svd.backends import Backend, Event, Step, describe, get_backend
from svd.errors import InputError
from svd.fetch import file_path, read_url, shorten_data_uri
from svd.mask import strokes_to_mask


class Stopped(Exception):
    """The user pressed Stop."""


class Backends:
    """The app's backend, plus the other one made on demand for a session that picks it."""

    def __init__(self, default: Backend, **options):
        self.default = default
        self.options = options
        self._local = default if default.name == "local" else None
        self._lock = threading.Lock()

    def pick(self, name: str | None, fal_key: str | None = None) -> Backend:
        """The backend for one request; a key typed on the page is used for that request only."""
        name = name or self.default.name
        if name == "fal":
            if self.default.name == "fal" and not fal_key:
                return self.default
            return get_backend("fal", key=fal_key or None, **self.options)
        with self._lock:
            if self._local is None:
                self._local = get_backend("local", **self.options)
            return self._local


class StopSwitch:
    """Stop requests per browser session, heard by a run whether it runs or still waits.

    `queued` is called when Generate is clicked (before the queue), `started` and `ended`
    by the run itself; Stop raises the flag while the session has a run queued or running.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}
        self._queued: dict[str, int] = {}
        self._running: dict[str, int] = {}

    def queued(self, session: str) -> None:
        with self._lock:
            self._queued[session] = self._queued.get(session, 0) + 1

    def started(self, session: str) -> threading.Event:
        with self._lock:
            if self._queued.get(session, 0) > 0:
                self._queued[session] -= 1
            self._running[session] = self._running.get(session, 0) + 1
            return self._flags.setdefault(session, threading.Event())

    def ended(self, session: str) -> None:
        with self._lock:
            self._running[session] = max(0, self._running.get(session, 0) - 1)
            if not self._running[session] and not self._queued.get(session):
                self._flags.pop(session, threading.Event()).clear()
                self._running.pop(session, None)
                self._queued.pop(session, None)

    def stop(self, session: str) -> None:
        with self._lock:
            if self._queued.get(session) or self._running.get(session):
                self._flags.setdefault(session, threading.Event()).set()


def status_text(backend: Backend) -> str:
    """One line on what runs the videos, and any warning the user must see."""
    if backend.name == "fal":
        return f"Backend: **fal**, endpoint **{backend.endpoint}**"
    if not backend.loaded:
        return f"Backend: **local**, model **{backend.model}** on {backend.device} (loading...)"
    text = f"Backend: **local**, model **{backend.model}** on {backend.device}"
    if backend.fast:
        text += ", fast path (compiled)"
    if backend.memory == "low":
        text += ", low-memory mode"
    if backend.model == "tiny":
        text += " — a tiny random-weight test model: its videos are noise, not your picture."
    if backend.notice:
        text = f"⚠️ {backend.notice}\n\n{text}"
    return text


def progress_reporter(progress, stop: threading.Event | None = None):
    """An `on_event` handler that moves a gr.Progress bar and raises Stopped on request."""

    def on_event(event: Event) -> None:
        if stop is not None and stop.is_set():
            raise Stopped
        if isinstance(event, Step):
            progress((event.index, event.total), desc=describe(event))
        else:
            progress(None, desc=describe(event)[:120])

    return on_event


def parse_seed(text: str | int | None) -> int | None:
    """The seed box: empty means random; anything else must be a whole number."""
    if text is None or str(text).strip() == "":
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise InputError("seed", f"expected a whole number, got {text!r}") from None


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


def maps_preview(path: str | None) -> tuple[Image.Image | None, str]:
    """A strip of an archive's maps in the order they will be used, and a line about them."""
    if not path:
        return None, ""
    try:
        entries = read_archive(read_url(path, "control_maps_data_url"))
        maps = np.stack([fit_map(decode_depth(e), 96, 54) for e in entries])
    except InputError as e:
        return None, f"⚠️ {e}"
    names = ", ".join(PurePosixPath(e.name).name for e in entries[:8])
    more = ", ..." if len(entries) > 8 else ""
    return depth_strip(
        maps
    ), f"{len(entries)} maps, so {len(entries)} frames, in this order: {names}{more}"


def local_path(url: str) -> str:
    """The file behind a file:// URL (what both backends return)."""
    return str(file_path(url)) if url.startswith("file:") else url


def gpu_seconds(inp) -> int:
    """A ZeroGPU time budget that grows with the work: steps x frames."""
    return int(30 + 0.15 * inp.steps * (inp.num_frames or 25))


def run_on_gpu(backend: Backend, inp, on_event):
    """backend.generate, inside `spaces.GPU` on Hugging Face ZeroGPU; plain elsewhere."""
    return backend.generate(inp, on_event)


try:  # the `spaces` package exists on Hugging Face Spaces only
    import spaces

    run_on_gpu = spaces.GPU(duration=lambda backend, inp, on_event: gpu_seconds(inp))(run_on_gpu)
except ImportError:
    pass


def request_json(inp) -> str:
    """The fal request body of `inp`, local files shown by name (they are uploaded first)."""
    body = inp.fal_arguments()
    for key, value in body.items():
        if isinstance(value, str) and key.endswith("_url"):
            scheme = urlparse(value).scheme
            if value.startswith("data:"):
                body[key] = shorten_data_uri(value, 40)
            elif scheme not in ("http", "https"):
                body[key] = f"<upload of {PurePosixPath(value).name}>"
    return json.dumps(body, indent=2)
