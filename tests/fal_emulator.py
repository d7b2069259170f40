"""A local HTTPS stand-in for fal (run, queue, REST storage and CDN hosts) for tests.

One `ThreadingHTTPServer` on 127.0.0.1 serves every fal host, routed by path:

    /run/<app>                              sync route    (RUN_URL_FORMAT)
    /queue/<app>                            queue submit  (QUEUE_URL_FORMAT)
    /queue/<owner>/<alias>/requests/<id>[/status|/cancel]
    /storage/auth/token, /storage/upload/initiate         (REST_URL)
    /files/upload                                         (CDN_URL, v3 upload)
    /signed/<id>          PUT target of the storage (gcs) fallback upload
    /files/<id>/<name>    GET: uploaded files and results

Because run and queue share one port, the "hosts" handed to fal-client carry a path:
FAL_RUN_HOST=127.0.0.1:PORT/run and FAL_QUEUE_RUN_HOST=127.0.0.1:PORT/queue (fal-client
only formats them into "https://{host}/").

TLS trust: fal-client makes plain `httpx.Client`s (trust_env on, no `verify=`), and httpx
0.28 builds its context from $SSL_CERT_FILE when set, else certifi; truststore is unused.
The variable is read when a client is created, so set it before the first call; it
replaces the default bundle rather than adding to it. `ca_path` holds only the emulator CA.

Switches in the request body: motion_bucket_id == 254 -> 422 (FastAPI detail list);
steps == 99 -> the queue request stays IN_PROGRESS until cancelled (a run hangs until the
emulator stops); steps == 98 -> the first status poll (first attempt, on the run route)
answers an nginx 503, which fal-client retries. Each queue request answers its polls with
IN_QUEUE 2, 1, 0, IN_PROGRESS (1 log line), IN_PROGRESS (2 lines), then COMPLETED.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

import imageio_ffmpeg
import trustme
from PIL import Image, ImageChops

INVALID_MOTION_BUCKET = 254
STEPS_FOREVER = 99
STEPS_FLAKY = 98
POLL_SCRIPT = ("Q2", "Q1", "Q0", "P1", "P2")  # then COMPLETED, one step per status poll
LOG_LINES = ("Loading Stable Video Diffusion", "Denoising frames")
NGINX_503 = b"<html><body><center><h1>503 Service Unavailable</h1></center><hr>nginx</body></html>"
MAX_SIDE = 128


class AppError(Exception):
    """An error answer: HTTP status and fal's `detail`."""

    def __init__(self, status: int, detail):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Received:
    """One submit or run request as received (header names lower-cased, no Authorization)."""

    app: str
    body: dict
    headers: dict
    route: str  # "queue" or "run"


@dataclass
class Upload:
    """One uploaded file."""

    data: bytes
    content_type: str
    file_name: str
    url: str


@dataclass
class _Job:
    id: str
    app: str
    body: dict
    base: str
    polls: int = 0
    flaked: bool = False
    outcome: tuple | None = None  # (status, payload) once COMPLETED
    logs: list = field(default_factory=list)


def _loc_error(field_name: str, msg: str, kind: str = "value_error") -> AppError:
    return AppError(422, [{"loc": ["body", field_name], "msg": msg, "type": kind}])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def finish_request(self, request, client_address):
        """TLS handshake in the connection's own thread, not in the accept loop."""
        with self.fal._ssl.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-handshake or mid-poll are not test failures


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.fal._dispatch(self, self.command)

    do_POST = do_PUT = do_GET


class FalEmulator:
    """fal over HTTPS on 127.0.0.1; use as `with FalEmulator(key="k") as fal: ...`."""

    def __init__(self, key: str = "test-key", *, result_key: str = "image"):
        self.key, self.result_key = key, result_key
        self.requests: list[Received] = []
        self.uploads: list[Upload] = []
        self.cancelled: list[str] = []
        self.unavailable: list[str] = []  # request ids / app paths answered with the 503
        self.hits: list[str] = []  # "METHOD /path" of every request, in order
        self._files: dict[str, tuple[bytes, str]] = {}
        self._signed: dict[str, tuple[str, str]] = {}
        self._jobs: dict[str, _Job] = {}
        self._flaky_runs: set[str] = set()
        self._cdn_token = secrets.token_hex(8)
        self._lock = threading.RLock()
        self._stopped = threading.Event()

    def start(self) -> FalEmulator:
        self._dir = Path(tempfile.mkdtemp(prefix="fal-emulator-"))
        ca = trustme.CA()
        self.ca_path = str(self._dir / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fal = self
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"https://{self.host}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FalEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP plumbing ---------------------------------------------------------------

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        self.hits.append(f"{method} {parts.path}")
        headers = {"x-fal-request-id": secrets.token_hex(8)}
        try:
            status, payload, extra = self._route(method, parts.path, parse_qs(parts.query), h, raw)
            headers.update(extra)
        except AppError as e:
            status, payload = e.status, {"detail": e.detail}
        except Exception:
            traceback.print_exc()
            status, payload = 500, {"detail": traceback.format_exc(limit=3)}
        if status == 503:  # an ingress error: fal-client retries it only without this header
            headers.pop("x-fal-request-id")
        if isinstance(payload, bytes):
            body, ctype = payload, headers.pop("Content-Type", "application/octet-stream")
        else:
            body, ctype = json.dumps(payload).encode(), "application/json"
        h.send_response(status)
        for name, value in {**headers, "Content-Type": ctype}.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _route(self, method: str, path: str, query: dict, h, raw: bytes):
        auth = h.headers.get("Authorization")
        if method == "GET" and path in self._files:
            data, ctype = self._files[path]
            return 200, data, {"Content-Type": ctype}
        if method == "PUT" and path in self._signed:
            file_name, file_path = self._signed.pop(path)
            self._save(raw, h.headers.get("Content-Type", ""), file_name, file_path)
            return 200, {}, {}
        if method == "POST" and path == "/files/upload":
            if auth != f"Bearer {self._cdn_token}":
                raise AppError(401, "Invalid CDN token")
            ctype = h.headers.get("Content-Type", "application/octet-stream")
            url = self._save(raw, ctype, h.headers.get("X-Fal-File-Name") or "upload")
            return 200, {"access_url": url, "content_type": ctype}, {}
        if not auth:
            raise AppError(401, "Missing authorization header")
        if auth != f"Key {self.key}":
            raise AppError(401, "No user found for Key ID and Secret")
        if method == "POST" and path == "/storage/auth/token":
            expires = datetime.now(timezone.utc) + timedelta(hours=1)
            token = {"token": self._cdn_token, "token_type": "Bearer", "base_url": self.url}
            return 200, {**token, "expires_at": expires.isoformat()}, {}
        if method == "POST" and path == "/storage/upload/initiate":
            name = self._json(raw).get("file_name") or "upload"
            file_path = f"/files/{secrets.token_hex(8)}/{_safe(name)}"
            signed = f"/signed/{secrets.token_hex(8)}"
            self._signed[signed] = (name, file_path)
            upload_url = f"{self.url}{signed}?sig={secrets.token_hex(4)}"
            return 200, {"upload_url": upload_url, "file_url": self.url + file_path}, {}
        if method == "POST" and path.startswith("/run/"):
            return self._run(path[len("/run/") :], self._received(path, h, raw, "run"))
        if method == "POST" and path.startswith("/queue/"):
            return self._submit(path[len("/queue/") :], self._received(path, h, raw, "queue"))
        m = re.fullmatch(r"/queue/.+/requests/([^/]+)(/status|/cancel)?", path)
        if m and m.group(1) in self._jobs:
            job, tail = self._jobs[m.group(1)], m.group(2) or ""
            with self._lock:
                if method == "GET" and tail == "/status":
                    return self._poll(job, query.get("logs") == ["true"])
                if method == "GET" and not tail:
                    return self._result(job)
                if method == "PUT" and tail == "/cancel":
                    return self._cancel(job)
        raise AppError(404, f"{method} {path} is not a route of this emulator")

    def _json(self, raw: bytes):
        try:
            return json.loads(raw or b"{}")
        except ValueError as e:
            raise _loc_error("body", f"invalid JSON: {e}", "json_invalid") from e

    def _received(self, path: str, h, raw: bytes, route: str) -> Received:
        app = path.split("/", 2)[2]
        headers = {k.lower(): v for k, v in h.headers.items() if k.lower() != "authorization"}
        rec = Received(app, self._json(raw), headers, route)
        with self._lock:
            self.requests.append(rec)
        return rec

    def _save(self, data: bytes, content_type: str, file_name: str, path="", upload=True) -> str:
        path = path or f"/files/{secrets.token_hex(8)}/{_safe(file_name)}"
        url = self.url + path
        with self._lock:
            self._files[path] = (data, content_type)
            if upload:
                self.uploads.append(Upload(data, content_type, file_name, url))
        return url

    # -- queue and run -----------------------------------------------------------------

    def _run(self, app: str, rec: Received):
        steps = rec.body.get("steps") if isinstance(rec.body, dict) else None
        if steps == STEPS_FLAKY and json.dumps(rec.body, sort_keys=True) not in self._flaky_runs:
            self._flaky_runs.add(json.dumps(rec.body, sort_keys=True))
            self.unavailable.append(app)
            return 503, NGINX_503, {"Content-Type": "text/html"}
        if steps == STEPS_FOREVER:
            self._stopped.wait(60)
            raise AppError(504, "Request timed out")
        return 200, self._process(rec.body, app), {}

    def _submit(self, app: str, rec: Received):
        parts = app.split("/")
        n = 3 if parts[0] in ("workflows", "comfy") else 2
        job_id = secrets.token_hex(12)
        base = f"{self.url}/queue/{'/'.join(parts[:n])}/requests/{job_id}"
        job = self._jobs[job_id] = _Job(job_id, app, rec.body, base)
        return 200, {**self._urls(job), "status": "IN_QUEUE", "queue_position": 2}, {}

    def _urls(self, job: _Job) -> dict:
        b = job.base
        urls = {"response_url": b, "status_url": b + "/status", "cancel_url": b + "/cancel"}
        return {"request_id": job.id, **urls}

    def _poll(self, job: _Job, with_logs: bool):
        steps = job.body.get("steps") if isinstance(job.body, dict) else None
        if steps == STEPS_FLAKY and not job.flaked:
            job.flaked = True
            self.unavailable.append(job.id)
            return 503, NGINX_503, {"Content-Type": "text/html"}
        job.polls += 1
        stage = POLL_SCRIPT[min(job.polls, len(POLL_SCRIPT)) - 1]
        if job.outcome is None and job.polls > len(POLL_SCRIPT) and steps != STEPS_FOREVER:
            try:
                job.outcome = (200, self._process(job.body, job.app))
            except AppError as e:
                job.outcome = (e.status, {"detail": e.detail})
        if stage.startswith("P") and len(job.logs) < int(stage[1]):
            now = datetime.now(timezone.utc).isoformat()
            line = LOG_LINES[len(job.logs)]
            job.logs.append({"message": line, "level": "INFO", "source": "USER", "timestamp": now})
        status = {**self._urls(job), "logs": list(job.logs) if with_logs else None}
        if job.outcome is not None:
            code, payload = job.outcome
            status.update(status="COMPLETED", metrics={"inference_time": 0.01})
            if code != 200:
                detail = payload["detail"]
                error = detail[0]["msg"] if isinstance(detail, list) else str(detail)
                status.update(error=error, error_type=_error_type(code))
        elif stage.startswith("Q"):
            status.update(status="IN_QUEUE", queue_position=int(stage[1]))
        else:
            status.update(status="IN_PROGRESS")
        return 200, status, {}

    def _result(self, job: _Job):
        if job.outcome is None:
            raise AppError(400, "Request is still in progress")
        return job.outcome[0], job.outcome[1], {}

    def _cancel(self, job: _Job):
        if job.outcome is not None:
            return 400, {"status": "ALREADY_COMPLETED"}, {}
        job.outcome = (400, {"detail": "Request was cancelled"})
        self.cancelled.append(job.id)
        return 202, {"status": "CANCELLATION_REQUESTED"}, {}

    # -- the fake app ------------------------------------------------------------------

    def _process(self, body, app: str = "fal-ai/svd") -> dict:
        """Validate like fal-ai/svd (or fal-ai/fast-svd-lcm: steps 1-20, the video under
        `video`), then make a short mp4 out of the input image."""
        if not isinstance(body, dict):
            raise _loc_error("body", "Input should be an object", "model_type")
        lcm = app.startswith("fal-ai/fast-svd-lcm")
        if lcm and not 1 <= body.get("steps", 4) <= 20:
            raise _loc_error("steps", "Input should be less than or equal to 20")
        if body.get("motion_bucket_id") == INVALID_MOTION_BUCKET:
            raise _loc_error("motion_bucket_id", "Input should be less than or equal to 253")
        if not body.get("image_url"):
            raise _loc_error("image_url", "Field required", "missing")
        data = self._fetch(body["image_url"], "image_url")
        for name in ("mask_image_url", "control_maps_data_url"):
            if body.get(name):
                self._fetch(body[name], name)
        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as e:
            raise _loc_error("image_url", f"not a decodable image: {e}") from e
        video = _make_video(image, self._dir / f"{secrets.token_hex(6)}.mp4")
        seed = body.get("seed")
        seed = random.randint(0, 2**31 - 1) if seed is None else seed
        url = self._save(video, "video/mp4", "output.mp4", upload=False)
        file = {"url": url, "content_type": "video/mp4", "file_name": "output.mp4"}
        key = "video" if lcm else self.result_key
        return {key: {**file, "file_size": len(video)}, "seed": seed}

    def _fetch(self, url: str, field_name: str) -> bytes:
        """Bytes of a data: URI or of a file this emulator serves."""
        parts = urlsplit(url)
        if parts.scheme == "data":
            header, _, payload = url[5:].partition(",")
            if header.endswith(";base64"):
                return base64.b64decode(payload)
            return unquote_to_bytes(payload)
        mine = (
            parts.hostname in ("127.0.0.1", "localhost")
            and parts.port == self._server.server_address[1]
        )
        if parts.scheme == "https" and mine and parts.path in self._files:
            return self._files[parts.path][0]
        raise _loc_error(field_name, f"Failed to download the file from {url}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "upload"


def _error_type(code: int) -> str:
    return {422: "validation_error", 400: "request_cancelled"}.get(code, "internal_error")


def _make_video(image: Image.Image, path: Path, frames: int = 4) -> bytes:
    """A few frames of `image` (longest side <= MAX_SIDE, sides multiple of 16), each one
    shifted right by 2 px and brightened a little more than the last."""
    scale = min(1.0, MAX_SIDE / max(image.size))
    w, h = (max(16, round(s * scale) // 16 * 16) for s in image.size)
    image = image.resize((w, h))
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), codec="libx264", pix_fmt_out="yuv420p", fps=8
    )
    writer.send(None)
    for i in range(frames):
        frame = ImageChops.offset(image, 2 * i, 0).point(lambda v, i=i: min(255, v + 8 * i))
        writer.send(frame.tobytes())
    writer.close()
    data = path.read_bytes()
    path.unlink()
    return data


def env(emulator: FalEmulator, key: str | None = None) -> dict[str, str]:
    """Env vars pointing a subprocess's fal-client (and svd's REST/CDN overrides) here."""
    out = {
        "FAL_RUN_HOST": f"{emulator.host}/run",
        "FAL_QUEUE_RUN_HOST": f"{emulator.host}/queue",
        "SSL_CERT_FILE": emulator.ca_path,
        "SVD_FAL_REST_URL": emulator.url,
        "SVD_FAL_CDN_URL": emulator.url,
    }
    return {**out, "FAL_KEY": key} if key is not None else out


_DEFAULT = object()


def point_fal_client_at(emulator: FalEmulator, monkeypatch, key=_DEFAULT) -> None:
    """Point the unmodified, already imported fal_client at `emulator` for one test.

    Sets env vars (FAL_KEY = `key`, the emulator's key by default; None unsets it),
    patches the URL constants fal_client.client computed at import, and swaps the
    module-level `sync_client`/`async_client` (and fal_client.run, .subscribe, ... bound
    to them) for fresh ones, since they cache credentials and httpx clients.
    """
    import fal_client
    import fal_client.auth
    import fal_client.client as fcc

    for name, value in env(emulator).items():
        monkeypatch.setenv(name, value)
    key = emulator.key if key is _DEFAULT else key
    if key is None:
        monkeypatch.delenv("FAL_KEY", raising=False)
    else:
        monkeypatch.setenv("FAL_KEY", key)
    constants = {
        "RUN_URL_FORMAT": f"{emulator.url}/run/",
        "QUEUE_URL_FORMAT": f"{emulator.url}/queue/",
        "REALTIME_URL_FORMAT": f"wss://{emulator.host}/run/",
        "REST_URL": emulator.url,
        "CDN_URL": emulator.url,
        "FAL_RUN_HOST": f"{emulator.host}/run",
        "FAL_QUEUE_RUN_HOST": f"{emulator.host}/queue",
    }
    for name, value in constants.items():
        monkeypatch.setattr(fcc, name, value)
    monkeypatch.setattr(fal_client.auth, "FAL_RUN_HOST", constants["FAL_RUN_HOST"])
    monkeypatch.setattr(fal_client.auth, "FAL_QUEUE_RUN_HOST", constants["FAL_QUEUE_RUN_HOST"])
    fresh = {
        id(fal_client.sync_client): fal_client.SyncClient(),
        id(fal_client.async_client): fal_client.AsyncClient(),
    }
    for name, value in list(vars(fal_client).items()):
        owner = getattr(value, "__self__", None)
        if owner is not None and id(owner) in fresh:
            monkeypatch.setattr(fal_client, name, getattr(fresh[id(owner)], value.__name__))
    monkeypatch.setattr(fal_client, "sync_client", fresh[id(fal_client.sync_client)])
    monkeypatch.setattr(fal_client, "async_client", fresh[id(fal_client.async_client)])
