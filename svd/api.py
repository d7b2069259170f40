"""The fal-compatible HTTP API, served beside the page: each of fal's endpoints we serve
(POST /fal-ai/svd, POST /fal-ai/fast-svd-lcm) and fal's queue routes under each."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from svd import webhooks
from svd.errors import InputError
from svd.fetch import is_http, read_url
from svd.forwarded import limit_key
from svd.jobs import Job, JobQueue, QueueFull
from svd.jobstore import StorageFull
from svd.outputs import CONTENT_TYPES, served
from svd.schema import URL_FIELDS, FastSVDInput, FastSVDOutput, SVDInput, SVDOutput, parse_input
from svd.settings import settings

REQUEST_ID = "X-Fal-Request-Id"
TIMEOUT_HEADER = "x-fal-request-timeout"
RETRY_AFTER = "10"  # seconds, on a full queue
KEEP_ALIVE = 15.0  # seconds of silence after which the stream sends a comment line
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


@dataclass(frozen=True)
class Endpoint:
    """One of fal's endpoints: its path, its input schema, the key of its video."""

    app_id: str
    schema: type[SVDInput]
    output: type[BaseModel]
    video_key: str  # fal-ai/svd answers `image`, fal-ai/fast-svd-lcm `video`

    def body(self) -> dict:
        return {"content": {"application/json": {"schema": self.schema.model_json_schema()}}}


ENDPOINTS = (
    Endpoint("fal-ai/svd", SVDInput, SVDOutput, "image"),
    Endpoint("fal-ai/fast-svd-lcm", FastSVDInput, FastSVDOutput, "video"),
)


def has_key(request: Request) -> bool:
    """Whether the request carries SVD_API_KEY as `Authorization: Key <key>`."""
    key = settings().api_key
    if not key:
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "key" and secrets.compare_digest(value.strip().encode(), key.encode())


def check_key(request: Request) -> None:
    """With SVD_API_KEY set, every API call needs it; checked before the body is read."""
    if settings().api_key and not has_key(request):
        raise HTTPException(401, "Missing or wrong API key: send 'Authorization: Key <key>'")


async def read_input(request: Request, schema: type[SVDInput] = SVDInput) -> SVDInput:
    """The request body as an SVDInput, refused (413) past SVD_MAX_BODY_MB before it is read,
    and (503) while the bodies being read at once would pass SVD_MAX_BODIES_MB."""
    limit = settings().max_body_mb * 1024 * 1024
    if int(request.headers.get("content-length") or 0) > limit:
        raise HTTPException(413, f"the body is over the {settings().max_body_mb} MB limit")
    state = request.app.state
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            state.reading += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the body is over the {settings().max_body_mb} MB limit")
            if state.reading > settings().max_bodies_mb * 1024 * 1024:
                raise HTTPException(503, "the server is busy reading other large requests; "
                                    "try again shortly", headers={"Retry-After": "5"})  # fmt: skip
            chunks.append(chunk)
    finally:
        state.reading -= size
    try:
        body = json.loads(b"".join(chunks) or b"null")
        inp = parse_input(body, schema)
    except RecursionError:
        msg = "nested too deeply to be a request"
        raise HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]) from None
    except ValueError as e:  # InputError is a ValueError; so is malformed JSON
        detail = e.fal_detail() if isinstance(e, InputError) else _not_json(e)
        raise HTTPException(422, detail) from None
    check_urls(inp)
    return inp


def _not_json(error: ValueError) -> list[dict]:
    return [{"loc": ["body"], "msg": f"not valid JSON ({error})", "type": "json_invalid"}]


def check_urls(inp: SVDInput) -> None:
    """Over HTTP only http(s) and data: URLs are read (no files of this machine), and a
    data: URI must decode within the limits before the request is queued."""
    errors = []
    for name in URL_FIELDS:
        value = getattr(inp, name)
        is_data = bool(value) and value.strip().lower().startswith("data:")
        if value and not (is_http(value) or is_data):
            msg = "must be an http(s) URL or a data: URI; local paths are not accepted here"
            errors.append({"loc": ["body", name], "msg": msg, "type": "value_error"})
        elif is_data:  # decoded now, so a bad one never waits in the queue
            try:
                read_url(value, name)
            except InputError as e:
                errors.extend(e.fal_detail())
    if errors:
        raise HTTPException(422, errors)


def client_address(request: Request) -> str:
    """What the per-address limit counts for the caller (svd/forwarded.py: a trusted proxy's
    X-Forwarded-For, one key per IPv4 address or IPv6 /64)."""
    return limit_key(request.client.host) if request.client else ""


def jobs_of(request: Request) -> JobQueue:
    return request.app.state.jobs


def files_url(request: Request) -> str:
    """Where this server serves finished videos, as the caller reached it."""
    return str(request.url_for("output_file", name="-"))[:-1]


def fal_headers(job: Job) -> dict:
    """fal's headers on an answer about `job`: its id, and the kind of a request error."""
    headers = {REQUEST_ID: job.id}
    if job.error is not None and job.error.error_type:
        headers["X-Fal-Error-Type"] = job.error.error_type
        if job.error.error_type == "request_timeout":
            headers["X-Fal-Request-Timeout-Type"] = "user"  # fal-client then retries not
    return headers


def result(request: Request, job: Job, endpoint: Endpoint = ENDPOINTS[0]) -> JSONResponse:
    if job.error is None:
        body = served(job.output, files_url(request), endpoint.video_key)
        return JSONResponse(body, headers=fal_headers(job))
    body = {"detail": job.error.detail}
    if job.error.error_type:
        body["error_type"] = job.error.error_type
    return JSONResponse(body, status_code=job.error.status, headers=fal_headers(job))


def start_timeout(request: Request) -> float | None:
    """fal's X-Fal-Request-Timeout: seconds the request may wait before it starts."""
    value = request.headers.get(TIMEOUT_HEADER)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0.1 < seconds < 86400:  # also false for NaN; fal's minimum is > 0.1 s
        msg = "must be a number of seconds above 0.1 and below 86400"
        raise HTTPException(422, [{"loc": ["header", TIMEOUT_HEADER], "msg": msg,
                                   "type": "value_error"}])  # fmt: skip
    return seconds


def webhook_of(request: Request, endpoint: Endpoint) -> dict | None:
    url = request.query_params.get(webhooks.FIELD)
    if url is None:
        return None
    try:
        return {"url": webhooks.check(url), "files": files_url(request),
                "video_key": endpoint.video_key}  # fmt: skip
    except InputError as e:
        raise HTTPException(422, e.fal_detail("query")) from None


def submit(inp: SVDInput, request: Request, webhook: dict | None = None) -> Job:
    try:
        return jobs_of(request).submit(
            inp, address=client_address(request), limited=not has_key(request),
            webhook=webhook, start_timeout=start_timeout(request),
        )  # fmt: skip
    except QueueFull as e:
        raise HTTPException(429, str(e), headers={"Retry-After": RETRY_AFTER}) from None
    except StorageFull as e:  # nothing was queued
        raise HTTPException(507, str(e), headers={"Retry-After": "60"}) from None
    except InputError as e:  # past SVD_MAX_WORK
        raise HTTPException(422, e.fal_detail()) from None


def job_or_404(request: Request, request_id: str) -> Job:
    job = jobs_of(request).get(request_id)
    if job is None:
        raise HTTPException(404, f"Request {request_id} not found")
    return job


def urls(request: Request, job: Job, app_id: str) -> dict:
    base = str(request.url_for(f"request_result {app_id}", request_id=job.id))
    if getattr(request.state, "queue_host", False):  # fal's queue host has no /queue prefix
        base = base.replace(f"/queue/{app_id}/", f"/{app_id}/", 1)
    return {
        "request_id": job.id,
        "response_url": base,
        "status_url": base + "/status",
        "cancel_url": base + "/cancel",
    }


router = APIRouter(dependencies=[Depends(check_key)])
files = APIRouter()


def add_submit_routes(endpoint: Endpoint) -> None:
    """fal's routes that take a request for `endpoint`: run and wait, and queue."""
    app_id, schema, tags = endpoint.app_id, endpoint.schema, [endpoint.app_id]

    @router.post(
        f"/{app_id}", summary="Run and wait for the video", tags=tags,
        openapi_extra={"requestBody": endpoint.body()}, name=f"run {app_id}",
        response_model=endpoint.output,
    )  # fmt: skip
    async def run_and_wait(request: Request):
        job = submit(await read_input(request, schema), request)
        loop, finished = asyncio.get_running_loop(), asyncio.Event()
        job.on_done.append(lambda: loop.call_soon_threadsafe(finished.set))
        while not job.done.is_set():  # waits without holding a thread
            try:
                await asyncio.wait_for(finished.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    jobs_of(request).cancel(job)  # nobody is left to take the video
                    body = {"detail": "client went away", "error_type": "client_disconnected"}
                    return JSONResponse(body, status_code=499, headers={REQUEST_ID: job.id})
        return result(request, job, endpoint)

    @router.post(
        f"/queue/{app_id}", summary="Queue a request (?fal_webhook=<url> to be told when done)",
        openapi_extra={"requestBody": endpoint.body()}, tags=tags, name=f"queue {app_id}",
    )  # fmt: skip
    async def queue_submit(request: Request):
        webhook = webhook_of(request, endpoint)  # refused before the body is read or queued
        job = submit(await read_input(request, schema), request, webhook)
        position = jobs_of(request).position(job)  # as fal does: a new request is IN_QUEUE
        body = {**urls(request, job, app_id), "gateway_request_id": job.id,
                "status": "IN_QUEUE", "queue_position": position}  # fmt: skip
        return JSONResponse(body, headers={REQUEST_ID: job.id})


def add_request_routes(endpoint: Endpoint) -> None:
    """fal's queue routes about one request of `endpoint`: status, status stream, result,
    cancel."""
    app_id, tags = endpoint.app_id, [endpoint.app_id]

    @router.get(f"/queue/{app_id}/requests/{{request_id}}/status", summary="A request's status",
                tags=tags, name=f"status {app_id}")  # fmt: skip
    def queue_status(request_id: str, request: Request, logs: str | None = None):
        job = job_or_404(request, request_id)
        body = status_body(request, job, app_id, list(job.logs) if wants_logs(logs) else None)
        code = 200 if job.status == "COMPLETED" else 202  # as fal answers
        return JSONResponse(body, status_code=code, headers=fal_headers(job))

    @router.get(
        f"/queue/{app_id}/requests/{{request_id}}/status/stream", tags=tags,
        summary="A request's status as server-sent events, until it is COMPLETED",
        name=f"stream {app_id}",
    )  # fmt: skip
    def queue_status_stream(request_id: str, request: Request, logs: str | None = None):
        job = job_or_404(request, request_id)
        return StreamingResponse(
            status_events(request, job, app_id, wants_logs(logs)), media_type="text/event-stream",
            headers={REQUEST_ID: job.id, "Cache-Control": "no-cache"},
        )  # fmt: skip

    @router.get(f"/queue/{app_id}/requests/{{request_id}}", summary="A request's result",
                tags=tags, name=f"request_result {app_id}")  # fmt: skip
    def request_result(request_id: str, request: Request):
        job = job_or_404(request, request_id)
        if job.status != "COMPLETED":  # set once the output or error is in place
            body = {"detail": "Request is still in progress"}
            return JSONResponse(body, status_code=400, headers={REQUEST_ID: job.id})
        return result(request, job, endpoint)

    @router.put(f"/queue/{app_id}/requests/{{request_id}}/cancel", summary="Cancel a request",
                tags=tags, name=f"cancel {app_id}")  # fmt: skip
    def queue_cancel(request_id: str, request: Request):
        job = job_or_404(request, request_id)
        if jobs_of(request).cancel(job):
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202, {REQUEST_ID: job.id})
        return JSONResponse({"status": "ALREADY_COMPLETED"}, 400, {REQUEST_ID: job.id})


def wants_logs(logs: str | None) -> bool:
    return logs not in (None, "", "0", "false", "False")


def status_body(request: Request, job: Job, app_id: str, logs: list | None) -> dict:
    """fal's status object; `logs` are the lines to include (None: not asked for)."""
    body = {**urls(request, job, app_id), "status": job.status, "logs": logs}
    if job.status == "IN_QUEUE":
        body["queue_position"] = jobs_of(request).position(job)
    if job.status == "COMPLETED":
        body["metrics"] = {"inference_time": job.inference_time}
        if job.error is not None:
            detail = job.error.detail
            body["error"] = detail if isinstance(detail, str) else "invalid input"
            body["error_type"] = job.error.error_type
    return body


async def status_events(request: Request, job: Job, app_id: str, with_logs: bool):
    """The status as server-sent events, one each time the request changes (the queue's
    notifier wakes it), each carrying only the log lines not yet sent."""
    jobs = jobs_of(request)
    with jobs.notifier.watch(job.id) as changes:  # before the first look: no change is missed
        sent, last = 0, None
        while True:
            job_now = jobs.get(job.id) or job
            new = job_now.logs[sent:]
            body = status_body(request, job_now, app_id, list(new) if with_logs else None)
            if body != last or new:
                yield f"data: {json.dumps(body)}\n\n"
                sent, last = sent + len(new), body
            if job_now.status == "COMPLETED":
                return
            if not await changes.changed(KEEP_ALIVE):  # a long wait: proxies keep it open
                yield ": keep-alive\n\n"


for _endpoint in ENDPOINTS:
    add_submit_routes(_endpoint)
    add_request_routes(_endpoint)


@files.get("/outputs/{name}", include_in_schema=False, name="output_file")
def output_file(name: str, request: Request):
    """A finished video, by its unguessable name; nothing else of the output folder."""
    path = request.app.state.output_dir / name
    is_video = path.suffix in CONTENT_TYPES and not name.endswith(".part")
    if not SAFE_NAME.match(name) or not is_video or not path.is_file():
        raise HTTPException(404, "No such file")
    kind = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=kind)  # answers byte ranges, for seeking


def build_api(jobs: JobQueue, output_dir: str | Path) -> FastAPI:
    """A FastAPI app with the fal routes over `jobs`; mount the page on it afterwards."""
    # /docs with Swagger UI 5 (OpenAPI 3.1) served from this app, not a CDN: it works offline
    api = FastAPIOffline(title="SVD Studio API", description="fal-ai/svd, self-hosted.")
    api.state.jobs, api.state.output_dir = jobs, Path(output_dir).resolve()
    api.state.reading = 0  # bytes of API bodies being read now
    api.include_router(router)
    api.include_router(files)
    return api
