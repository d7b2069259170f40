"""The HTTP API's own bounds, driven in-process through the real FastAPI app."""

import asyncio

import httpx
import pytest

from svd.api import build_api
from svd.jobs import JobQueue

from .inprocess import post


@pytest.fixture
def api(use_settings, tmp_path, monkeypatch):
    monkeypatch.delenv("SVD_API_KEY", raising=False)
    use_settings(max_body_mb="1")
    use_settings(max_bodies_mb="1")
    return build_api(JobQueue([], tmp_path), tmp_path)  # no worker: nothing runs


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_json_nested_deeper_than_python_reads_is_a_422(api):
    deep = b"[" * 100_000 + b"]" * 100_000

    r = post(api, "/fal-ai/svd", content=deep, headers={"content-type": "application/json"})
    assert (
        r.status_code == 422 and r.json()["detail"][0]["msg"] == "nested too deeply to be a request"
    )


def test_bodies_read_at_once_are_bounded(api):
    """Two bodies of 0.7 MB each at once pass SVD_MAX_BODIES_MB=1: the second is a 503 with
    Retry-After while the first is still arriving; once it is read, the room is back."""
    part = b" " * 700_000
    held = asyncio.Event()

    async def slow_body():
        yield part
        await held.wait()
        yield b"{}"

    async def send():
        async with client(api) as c:
            first = asyncio.create_task(c.post("/fal-ai/svd", content=slow_body()))
            await asyncio.sleep(0.2)  # the first body is being read
            second = await c.post("/fal-ai/svd", content=part + b"{}")
            held.set()
            await first
            third = await c.post("/fal-ai/svd", content=part + b"{}")
            return second, third

    second, third = asyncio.run(send())
    assert second.status_code == 503 and second.headers["retry-after"] == "5"
    assert third.status_code == 422  # read whole, then refused for what it says
