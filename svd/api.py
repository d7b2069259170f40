"""The fal-compatible HTTP API, served beside the page: POST /fal-ai/svd and fal's queue."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from svd.backends import Backend
from svd.errors import BackendError
from svd.fetch import file_path
from svd.jobs import Job, JobQueue
from svd.outputs import CONTENT_TYPES
from svd.schema import URL_FIELDS, SVDInput, SVDOutput

APP_ID = "fal-ai/svd"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_key(request: Request) -> None:
    """With SVD_API_KEY set, every API call needs `Authorization: Key <key>`."""
    key = os.environ.get("SVD_API_KEY")
    if not key:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "key" or not secrets.compare_digest(value.strip().encode(), key.encode()):
        raise HTTPException(401, "Missing or wrong API key: send 'Authorization: Key <key>'")


def refuse_local_paths(inp: SVDInput) -> None:
    """Over HTTP only http(s) and data: URLs are read: no files of this machine."""
    errors = []
    for name in URL_FIELDS:
        value = getattr(inp, name)
        try:
            scheme = urlparse(value.strip()).scheme.lower() if value else "data"
        except ValueError:
            scheme = "malformed"
        if scheme not in ("http", "https", "data"):
            msg = "must be an http(s) URL or a data: URI; local paths are not accepted here"
            errors.append({"loc": ["body", name], "msg": msg, "type": "value_error"})
    if errors:
        raise HTTPException(422, errors)


def build_api(backend: Backend, output_dir: str | Path, queue_size: int = 64, run=None) -> FastAPI:
    """A FastAPI app with the fal routes for `backend`; mount the page on it afterwards.

    `run(backend, inp, on_event)` runs one request (the page's ZeroGPU wrapper, say).
    """
    output_dir = Path(output_dir).resolve()
    jobs = JobQueue(backend, max_size=queue_size, run=run)
    api = FastAPI(title="SVD Studio API", description="fal-ai/svd, self-hosted.")
    router = APIRouter(dependencies=[Depends(check_key)], tags=["fal-ai/svd"])

    def public(request: Request, job: Job) -> dict:
        """The job's output with its file:// URL turned into one served here."""
        out = dict(job.output)
        path = file_path(out["image"]["url"])
        url = str(request.url_for("output_file", name=path.name))
        return {**out, "image": {**out["image"], "url": url}}

    def result(request: Request, job: Job) -> JSONResponse:
        if job.error is not None:
            return JSONResponse({"detail": job.error[1]}, status_code=job.error[0])
        return JSONResponse(public(request, job))

    def submit(inp: SVDInput) -> Job:
        refuse_local_paths(inp)
        try:
            return jobs.submit(inp)
        except BackendError as e:
            raise HTTPException(429, str(e)) from None

    def job_or_404(request_id: str) -> Job:
        job = jobs.get(request_id)
        if job is None:
            raise HTTPException(404, f"Request {request_id} not found")
        return job

    def urls(request: Request, job: Job) -> dict:
        base = str(request.url_for("request_result", request_id=job.id))
        return {
            "request_id": job.id,
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
        }

    @router.post(f"/{APP_ID}", response_model=SVDOutput, summary="Run and wait for the video")
    async def run(inp: SVDInput, request: Request):
        loop, finished = asyncio.get_running_loop(), asyncio.Event()
        job = submit(inp)
        job.on_done.append(lambda: loop.call_soon_threadsafe(finished.set))
        while not job.done.is_set():  # waits without holding a thread
            try:
                await asyncio.wait_for(finished.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    jobs.cancel(job)  # nobody is left to take the video
                    return JSONResponse({"detail": "client went away"}, status_code=499)
        return result(request, job)

    @router.post(f"/queue/{APP_ID}", summary="Queue a request")
    def queue_submit(inp: SVDInput, request: Request):
        job = submit(inp)
        return {**urls(request, job), "status": job.status, "queue_position": jobs.position(job)}

    @router.get(f"/queue/{APP_ID}/requests/{{request_id}}/status", summary="A request's status")
    def queue_status(request_id: str, request: Request, logs: str | None = None):
        job = job_or_404(request_id)
        body = {**urls(request, job), "status": job.status, "logs": None}
        if logs not in (None, "", "0", "false", "False"):
            body["logs"] = list(job.logs)
        if job.status == "IN_QUEUE":
            body["queue_position"] = jobs.position(job)
        if job.status == "COMPLETED":
            body["metrics"] = {}
            if job.error is not None:
                body["error"] = job.error[1] if isinstance(job.error[1], str) else "invalid input"
        return body

    @router.get(f"/queue/{APP_ID}/requests/{{request_id}}", summary="A request's result")
    def request_result(request_id: str, request: Request):
        job = job_or_404(request_id)
        if not job.done.is_set():
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        return result(request, job)

    @router.put(f"/queue/{APP_ID}/requests/{{request_id}}/cancel", summary="Cancel a request")
    def queue_cancel(request_id: str):
        if jobs.cancel(job_or_404(request_id)):
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)

    @api.get("/outputs/{name}", include_in_schema=False, name="output_file")
    def output_file(name: str):
        path = output_dir / name
        is_video = path.suffix in CONTENT_TYPES and not name.endswith(".part")
        if not SAFE_NAME.match(name) or not is_video or not path.is_file():
            raise HTTPException(404, "No such file")
        kind = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=kind)  # answers byte ranges, for seeking

    api.include_router(router)
    api.state.jobs = jobs
    return api
