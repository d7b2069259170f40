"""The fal backend: the same request, run on fal.ai through the official fal-client."""

from __future__ import annotations

import mimetypes
import os
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import httpx

from svd import models
from svd.backends.base import BackendBase
from svd.contract import Prepared, Rendered, video_seeds
from svd.errors import BackendError, InputError, short
from svd.events import EventHandler, Log, Queued, Stage, emit
from svd.schema import FAL_FIELDS
from svd.settings import settings

MAX_VIDEO_BYTES = 2 * 1024**3
ENDPOINT_FIELDS = {  # what each of fal's endpoints takes, as fal documents them
    "fal-ai/svd": FAL_FIELDS,
    "fal-ai/fast-svd-lcm": frozenset(
        {"image_url", "motion_bucket_id", "cond_aug", "seed", "steps", "fps"}
    ),
}
TIMEOUT = "SVD_FAL_TIMEOUT"
_CALLS = ThreadPoolExecutor(16, thread_name_prefix="svd-fal")  # calls bounded by a deadline
SNIFF = [  # leading bytes -> content type, for uploads whose name says nothing
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"BM", "image/bmp"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
]


def fal_credentials():
    """fal-client's own credential lookup (FAL_KEY, FAL_KEY_ID + FAL_KEY_SECRET, `fal auth
    login`); None when there are none."""
    from fal_client.auth import fetch_auth_credentials

    try:
        return fetch_auth_credentials()
    except Exception:  # MissingCredentialsError, an unreadable login file
        return None


def one_line_key(key: str, name: str) -> str:
    """A pasted key without the line break that often ends it. One with a break, a space or
    another control character inside is refused here, naming `name` but never showing the
    key: sent as it is, it would fail inside a header whose error repeats it."""
    key = key.strip()
    if not key.isprintable() or any(c.isspace() for c in key) or not key.isascii():
        message = "has a space, a line break or another character no key has; paste it again"
        if name == "FAL_KEY":
            raise BackendError(f"{name} {message}")
        raise InputError(name, message)
    return key  # never logged, never recorded


def _point_storage_hosts() -> None:
    """fal-client keeps its storage hosts in constants; these settings move them."""
    import fal_client.client as fal_http

    if url := settings().fal_rest_url:
        fal_http.REST_URL = url.rstrip("/")
    if url := settings().fal_cdn_url:
        fal_http.CDN_URL = url.rstrip("/")


def content_type_of(data: bytes, name: str | None = None) -> str:
    """A content type for an upload, from its name, else from its first bytes."""
    if name and (guess := mimetypes.guess_type(name)[0]):
        return guess
    for head, kind in SNIFF:
        if data.startswith(head):
            return kind
    if data[257:262] == b"ustar":
        return "application/x-tar"
    return "application/octet-stream"


class FalBackend(BackendBase):
    """Runs each request on fal (`SVD_FAL_ENDPOINT`, fal-ai/svd by default)."""

    name = "fal"
    supports = frozenset({"fps", "loop", "interpolate", "output_format", "control_video_url",
                          "model", "num_videos"})  # fmt: skip
    takes_urls = True
    needs_gpu = False
    remote = True
    takes_key = True
    terms = "https://fal.ai/terms"

    def __init__(
        self,
        key: str | None = None,
        endpoint: str | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ):
        config = settings()
        self._key = one_line_key(key, "fal_key") if key and key.strip() else None
        self.endpoint = endpoint or config.fal_endpoint
        self.timeout = timeout or config.fal_timeout
        self.poll_interval = poll_interval or config.fal_poll_interval
        self.depth_model = config.depth_model

    def model_spec(self, model: str | None = None) -> models.Model:
        """The registry's entry for `model` (None: the model SVD_FAL_ENDPOINT runs); one
        fal does not host is an error naming `model`."""
        if model is None:
            return models.for_fal_endpoint(self.endpoint)
        spec = models.MODELS[model]
        if spec.fal_endpoint is None:
            hosted = ", ".join(m.name for m in models.MODELS.values() if m.fal_endpoint)
            raise InputError("model", f"fal does not host {model}; it hosts {hosted} "
                             "(or run it on the local backend)")  # fmt: skip
        return spec

    def endpoint_for(self, model: str | None) -> str:
        """The fal endpoint a request runs on: its model's, else SVD_FAL_ENDPOINT."""
        return self.endpoint if model is None else self.model_spec(model).fal_endpoint

    def default_size(self, model: str | None = None) -> tuple[int, int]:
        return self.model_spec(model).size  # fal's video: the model's size

    def default_frames(self, model: str | None = None) -> int:
        return self.model_spec(model).frames

    def status(self) -> str:
        return f"Runs on **fal** (fal.ai), endpoint **{self.endpoint}**"

    def _client(self):
        """fal-client's client and the secret it holds (kept out of every message)."""
        import fal_client

        _point_storage_hosts()
        timeout = min(self.timeout, 120.0)
        if self._key:
            return self._key, fal_client.SyncClient(key=self._key, default_timeout=timeout)
        found = fal_credentials()
        if found is None:
            raise BackendError(
                "fal needs an API key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), "
                "or enter one on the page"
            )
        token = one_line_key(found.token, "FAL_KEY")
        if found.scheme == "Key":
            return token, fal_client.SyncClient(key=token, default_timeout=timeout)
        return token, fal_client.SyncClient(default_timeout=timeout)  # a `fal auth login` token

    def render(self, prepared: Prepared, on_event: EventHandler | None = None) -> Rendered:
        """Upload what fal cannot fetch, run the request on fal, download its video: all of
        it within SVD_FAL_TIMEOUT, however long fal-client's own retries would take."""
        key, client = self._client()
        handles: list = []  # the request on fal, once submitted
        abandoned = threading.Event()  # set when nobody waits any more: the call stops early
        work = _CALLS.submit(self._remote, prepared, client, handles, on_event, abandoned)
        try:
            return work.result(timeout=self.timeout)
        except BaseException as e:
            abandoned.set()
            for handle in handles:  # stopped by the caller, failed or too slow: free fal's worker
                _cancel_quietly(handle)
            if isinstance(e, FutureTimeout):
                what = "it was not submitted"
                if handles:
                    ids = ", ".join(h.request_id for h in handles)
                    what = f"request {ids} was cancelled on fal"
                e = BackendError(f"fal: no result after {self.timeout:g} s ({TIMEOUT}); {what}")
            raise _worded(e, key) from None

    def _remote(self, prepared: Prepared, client, handles: list, on_event, abandoned) -> Rendered:
        """Upload once, then one fal request per video, at the same time (seeds seed,
        seed + 1, ...); the first video is returned, the others in its `others`."""
        inp = prepared.inp
        endpoint = self.endpoint_for(inp.model)
        deadline = time.monotonic() + self.timeout
        arguments = fal_arguments(inp, endpoint)
        emit(on_event, Stage("uploading inputs"))
        for field, data in prepared.data.items():
            url = getattr(inp, field) or ""
            arguments[field] = client.upload(data, *_upload_type_and_name(url, data))
        _go_on(abandoned, on_event, "submitting to fal")
        if inp.num_videos == 1:  # fal draws the seed of a request that gives none
            return self._one(endpoint, arguments, client, handles, on_event, abandoned, deadline)
        seeds = video_seeds(inp)
        with ThreadPoolExecutor(len(seeds), thread_name_prefix="svd-fal-video") as pool:
            calls = [
                pool.submit(
                    self._one,
                    endpoint,
                    {**arguments, "seed": seed},
                    client,
                    handles,
                    on_event if k == 0 else None,
                    abandoned,
                    deadline,
                )  # fmt: skip
                for k, seed in enumerate(seeds)
            ]
            return Rendered.joined([call.result() for call in calls])

    def _one(self, endpoint: str, arguments: dict, client, handles: list, on_event, abandoned,
             deadline: float) -> Rendered:  # fmt: skip
        """One request on fal, followed to its video, downloaded."""
        started = time.perf_counter()
        handle = client.submit(endpoint, arguments)
        handles.append(handle)
        error = self._follow(handle, on_event, deadline)
        result = handle.get(interval=self.poll_interval)  # a failed run raises its 4xx here
        video = result.get("image") or result.get("video")
        if not isinstance(video, dict) or not video.get("url"):
            if error:
                raise BackendError(f"fal: the request failed: {short(error, 300)}")
            raise BackendError(f"fal returned no video (keys: {', '.join(result) or 'none'})")
        seed = result.get("seed", arguments.get("seed"))
        if not isinstance(seed, int):
            raise BackendError("fal returned no seed")
        remote = time.perf_counter()
        _go_on(abandoned, on_event, "downloading video")
        path = self._download(video["url"], _suffix(video))
        facts = {"model": endpoint, "request_id": handle.request_id}
        facts["remote_url"] = video["url"]
        timings = {"remote_s": remote - started, "download_s": time.perf_counter() - remote}
        return Rendered(seed, video=path, facts=facts, timings=timings)

    def _follow(self, handle, on_event: EventHandler | None, deadline: float) -> str | None:
        """Poll the request until it completes, turning fal's statuses into events.

        Returns the error fal reported for the run, if any.
        """
        import fal_client

        logs_seen = 0
        for status in handle.iter_events(with_logs=True, interval=self.poll_interval):
            if isinstance(status, fal_client.Queued):
                emit(on_event, Queued(status.position))
            elif isinstance(status, fal_client.InProgress | fal_client.Completed):
                logs = status.logs or []
                for line in logs[logs_seen:]:
                    emit(on_event, Log(str(line.get("message", line))))
                logs_seen = max(logs_seen, len(logs))
                if isinstance(status, fal_client.Completed):
                    return status.error
            if time.monotonic() > deadline:
                _cancel_quietly(handle)
                raise BackendError(
                    f"fal: no result after {self.timeout:g} s ({TIMEOUT}); "
                    f"request {handle.request_id} was cancelled on fal"
                )
        return None

    def _download(self, url: str, suffix: str) -> Path:
        """Stream fal's video into a temporary folder of the backend's own (a .part file
        until it is whole), at most MAX_VIDEO_BYTES; the run moves it into its store."""
        folder = downloads()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"download-{secrets.token_hex(8)}{suffix}"
        tmp = path.with_name(path.name + ".part")
        try:
            with httpx.stream("GET", url, timeout=self.timeout, follow_redirects=True) as r:
                r.raise_for_status()
                size = 0
                with open(tmp, "wb") as f:
                    for chunk in r.iter_bytes():
                        size += len(chunk)
                        if size > MAX_VIDEO_BYTES:
                            raise BackendError("fal's video is larger than 2 GB")
                        f.write(chunk)
        except httpx.HTTPError as e:
            tmp.unlink(missing_ok=True)
            raise BackendError(f"could not download the video from fal: {e}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return path


def downloads() -> Path:
    """Where fal's videos wait for the run to keep them (read at call time, like the temp
    folder)."""
    return Path(tempfile.gettempdir()) / "svd-fal"


def _go_on(abandoned: threading.Event, on_event, stage: str) -> None:
    """Enter `stage`, unless nobody waits any more (stopped, or too slow)."""
    if abandoned.is_set():
        raise BackendError("fal: abandoned (stopped or too slow)")
    emit(on_event, Stage(stage))


def fal_arguments(inp, endpoint: str) -> dict:
    """The request body `endpoint` takes: its own fields, set ones only (fal-ai/svd's for an
    endpoint not listed). A field of fal-ai/svd's that this endpoint lacks is an error."""
    fields = ENDPOINT_FIELDS.get(endpoint, FAL_FIELDS)
    for name in sorted(FAL_FIELDS - fields):
        if getattr(inp, name) is not None:
            raise InputError(name, f"{endpoint} on fal does not take it; leave it out there")
    return inp.model_dump(include=fields, exclude_none=True)


def _worded(error: BaseException, key: str) -> BaseException:
    """A failure as the user should read it: fal's HTTP errors named, the key never shown."""
    import fal_client

    if isinstance(error, fal_client.client.FalClientHTTPError):
        error = _http_error(error.status_code, error.message)
    elif isinstance(error, httpx.HTTPStatusError):  # storage routes raise plain httpx errors
        error = _http_error(error.response.status_code, error.response.text)
    elif isinstance(error, httpx.HTTPError):
        error = BackendError(f"could not reach fal: {error}")
    if isinstance(error, BackendError | InputError) and key and key in str(error):
        return type(error)(*[redact(a, key) if isinstance(a, str) else a for a in error.args])
    return error


def redact(text: str, key: str) -> str:
    return text.replace(key, "<key>")


def _http_error(code: int, detail) -> Exception:
    if code in (401, 403):
        return BackendError(f"fal rejected the API key (HTTP {code})")
    if code == 422:
        return _validation_error(detail)
    return BackendError(f"fal answered HTTP {code}: {short(detail, 300)}")


def _upload_type_and_name(url: str, data: bytes) -> tuple[str, str | None]:
    """The content type and file name an input is uploaded under."""
    if url.startswith("data:"):
        kind = url[5:].split(",", 1)[0].split(";", 1)[0]
        return kind or content_type_of(data), None
    name = PurePosixPath(unquote(urlparse(url).path) or url).name if url else "depth.zip"
    return content_type_of(data, name), name


def _validation_error(detail) -> InputError:
    """fal's 422 `detail` (a list of {loc, msg}) as an InputError naming the field."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        details = [
            {
                "loc": [str(p) for p in d.get("loc", []) if p != "body"] or ["input"],
                "msg": f"fal refused it: {d.get('msg', 'invalid')}",
                "type": d.get("type", "value_error"),
            }
            for d in detail
            if isinstance(d, dict)
        ]
        first = details[0]
        return InputError(".".join(first["loc"]), first["msg"], details)
    return InputError("input", f"fal refused the request: {short(detail, 300)}")


def _cancel_quietly(handle) -> None:
    try:
        handle.cancel()
    except Exception:  # the request may be finished already
        pass


def _suffix(video: dict) -> str:
    name = video.get("file_name") or PurePosixPath(urlparse(video["url"]).path).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in (".mp4", ".webm", ".gif", ".mov"):
        return suffix
    return mimetypes.guess_extension(video.get("content_type") or "") or ".mp4"
