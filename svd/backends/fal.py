"""The fal backend: the same request, run on fal.ai through the official fal-client."""

from __future__ import annotations

import mimetypes
import os
import time
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import httpx

from svd.backends.base import EventHandler, Log, Queued, Stage, emit
from svd.depth_video import require_one_control, video_to_depth_archive
from svd.errors import BackendError, InputError, short
from svd.fetch import read_url
from svd.media import read_video, write_video
from svd.outputs import OutputStore
from svd.post import finish
from svd.schema import URL_FIELDS, SVDInput, SVDOutput

DEFAULT_ENDPOINT = "fal-ai/svd"
MAX_VIDEO_BYTES = 2 * 1024**3
SNIFF = [  # leading bytes -> content type, for uploads whose name says nothing
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"BM", "image/bmp"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
]


def fal_key_from_env() -> str | None:
    """FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET joined as fal-client does."""
    if key := os.environ.get("FAL_KEY"):
        return key
    key_id, secret = os.environ.get("FAL_KEY_ID"), os.environ.get("FAL_KEY_SECRET")
    return f"{key_id}:{secret}" if key_id and secret else None


def _point_storage_hosts() -> None:
    """fal-client keeps its storage hosts in constants; these variables move them."""
    import fal_client.client as fal_http

    if url := os.environ.get("SVD_FAL_REST_URL"):
        fal_http.REST_URL = url.rstrip("/")
    if url := os.environ.get("SVD_FAL_CDN_URL"):
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


class FalBackend:
    """Runs each request on fal (`SVD_FAL_ENDPOINT`, fal-ai/svd by default)."""

    name = "fal"

    def __init__(
        self,
        key: str | None = None,
        endpoint: str | None = None,
        output_dir: str | None = None,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ):
        self._key = key  # never logged, never recorded
        self.endpoint = endpoint or os.environ.get("SVD_FAL_ENDPOINT") or DEFAULT_ENDPOINT
        self.timeout = timeout or float(os.environ.get("SVD_FAL_TIMEOUT") or 600)
        self.poll_interval = poll_interval or float(os.environ.get("SVD_FAL_POLL_INTERVAL") or 0.5)
        self.store = OutputStore(output_dir)
        self.loaded = True
        self.model = self.endpoint
        self.notice = None

    def _client(self):
        key = self._key or fal_key_from_env()
        if not key:
            raise BackendError(
                "fal needs an API key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), "
                "or enter one on the page"
            )
        import fal_client

        _point_storage_hosts()
        return fal_client.SyncClient(key=key, default_timeout=min(self.timeout, 120.0))

    def generate(self, inp: SVDInput, on_event: EventHandler | None = None) -> SVDOutput:
        """Upload local inputs, run the request on fal, and keep the video it returns."""
        import fal_client

        t0 = time.perf_counter()
        if inp.extend:
            raise InputError("extend", "runs on the local backend only; fal makes one segment")
        if inp.cache_interval > 1:
            raise InputError("cache_interval", "runs on the local backend only; use 1 on fal")
        client = self._client()
        handle = None
        try:
            arguments = inp.fal_arguments()
            if inp.control_video_url:  # fal takes maps, so they are made here
                require_one_control(inp)
                emit(on_event, Stage("estimating depth"))
                maps = video_to_depth_archive(inp.control_video_url)
                arguments["control_maps_data_url"] = client.upload(
                    maps, "application/zip", "depth.zip"
                )
            emit(on_event, Stage("uploading inputs"))
            for field in URL_FIELDS:
                if arguments.get(field):
                    arguments[field] = self._remote_url(client, arguments[field], field)
            emit(on_event, Stage("submitting to fal"))
            handle = client.submit(self.endpoint, arguments)
            error = self._follow(handle, on_event, time.monotonic() + self.timeout)
            result = handle.get(interval=self.poll_interval)  # a failed run raises its 4xx here
        except BaseException as e:
            if handle is not None:  # stopped by the caller or failed: free fal's worker
                _cancel_quietly(handle)
            if isinstance(e, fal_client.client.FalClientHTTPError):
                raise self._http_error(e.status_code, e.message) from None
            if isinstance(e, httpx.HTTPStatusError):  # storage routes raise plain httpx errors
                raise self._http_error(e.response.status_code, e.response.text) from None
            if isinstance(e, httpx.HTTPError):
                raise BackendError(f"could not reach fal: {e}") from None
            raise
        t_remote = time.perf_counter()

        video = result.get("image") or result.get("video")
        if not isinstance(video, dict) or not video.get("url"):
            if error:
                raise BackendError(f"fal: the request failed: {short(error, 300)}")
            raise BackendError(f"fal returned no video (keys: {', '.join(result) or 'none'})")
        seed = result.get("seed", inp.seed)
        if not isinstance(seed, int):
            raise BackendError("fal returned no seed")
        emit(on_event, Stage("downloading video"))
        run_id = self.store.new_id()
        with self.store.saving(run_id):
            path = self._download(video["url"], self.store.video_path(run_id, _suffix(video)))
            if inp.loop != "none" or inp.interpolate or path.suffix != f".{inp.output_format}":
                path = self._finish_locally(path, inp, run_id)
            t_end = time.perf_counter()
            file = self.store.record(
                run_id,
                path,
                inp,
                seed,
                backend=self.name,
                model=self.endpoint,
                request_id=handle.request_id,
                remote_url=video["url"],
                timings={
                    "remote_s": round(t_remote - t0, 3),
                    "download_s": round(t_end - t_remote, 3),
                    "total_s": round(t_end - t0, 3),
                },
            )
        return SVDOutput(image=file, seed=seed)

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
                    f"fal: no result after {self.timeout:g} s (SVD_FAL_TIMEOUT); "
                    f"request {handle.request_id} was cancelled on fal"
                )
        return None

    def _finish_locally(self, path: Path, inp: SVDInput, run_id: str) -> Path:
        """In-between frames, loops and formats are ours: done to fal's video once here."""
        frames, fps = read_video(path)
        target = self.store.video_path(run_id, f".{inp.output_format}")
        frames, fps = finish(frames, round(fps) or inp.fps, inp.interpolate, inp.loop)
        write_video(frames, fps, target, inp.output_format)
        if path != target:
            path.unlink()
        return target

    def _remote_url(self, client, url: str, field: str) -> str:
        """http(s) URLs go as they are; files and data: URIs are uploaded to fal first."""
        if urlparse(url).scheme.lower() in ("http", "https"):
            return url
        data = read_url(url, field)
        name = None
        if not url.startswith("data:"):
            name = PurePosixPath(unquote(urlparse(url).path) or url).name
            kind = content_type_of(data, name)
        else:
            kind = url[5:].split(",", 1)[0].split(";", 1)[0] or content_type_of(data)
        return client.upload(data, kind, name)

    def _download(self, url: str, path: Path) -> Path:
        """Stream fal's video into `path` (through a .part file), at most MAX_VIDEO_BYTES."""
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

    def _http_error(self, code: int, detail) -> Exception:
        if code in (401, 403):
            return BackendError(f"fal rejected the API key (HTTP {code}); check FAL_KEY")
        if code == 422:
            return _validation_error(detail)
        return BackendError(f"fal answered HTTP {code}: {short(detail, 300)}")

    def close(self) -> None:
        pass


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
