"""Watchers are told, not polling: the status stream wakes when the request changes, one
event per step as the worker emits it, and lets go of its subscription when it ends."""

import asyncio
import json
import threading
import time

import httpx
import uvicorn

from svd.api import build_api
from svd.events import Step
from svd.jobs import JobQueue
from svd.notify import Notifier
from svd.schema import SVDOutput

from .live import free_port

PICTURE = "data:image/png;base64,iVBORw0KGgo="


def test_a_subscription_wakes_on_publish_from_another_thread():
    notifier = Notifier()

    async def watch():
        with notifier.watch("a") as changes:
            assert notifier.watching("a") == 1
            assert await changes.changed(0.05) is False  # nothing yet: it times out
            threading.Timer(0.01, notifier.publish, ("a",)).start()
            assert await changes.changed(30) is True
            notifier.publish("b")  # another request: not this watcher's business
            assert await changes.changed(0.05) is False
        assert notifier.watching("a") == 0

    asyncio.run(watch())


def test_the_status_stream_sends_each_step_as_it_happens(tmp_path):
    """The worker emits a step only once the stream has shown the one before: a stream that
    waited on a timer would still pass, but one per step and in order, with the stream
    subscribed while it runs."""
    shown = [threading.Event() for _ in range(4)]

    def stepping(backend, inp, store, on_event):
        for i in range(1, 4):
            on_event(Step(i, 3))
            assert shown[i].wait(30), f"step {i} was not streamed"
        return SVDOutput.model_validate(
            {"image": {"url": "file:///x.mp4", "content_type": "video/mp4"}, "seed": 1}
        )

    jobs = JobQueue([object()], tmp_path, run=stepping)
    port = free_port()  # a real server: httpx's ASGI transport holds a stream until it ends
    server = uvicorn.Server(uvicorn.Config(build_api(jobs, tmp_path), port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)

    async def follow():
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            r = await client.post("/queue/fal-ai/svd", json={"image_url": PICTURE})
            request_id = r.json()["request_id"]
            url = f"/queue/fal-ai/svd/requests/{request_id}/status/stream?logs=1"
            events, watchers = [], set()
            async with client.stream("GET", url) as stream:
                async for line in stream.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    body = json.loads(line[6:])
                    events.append(body)
                    if body["status"] != "COMPLETED":  # once it is, the stream lets go
                        watchers.add(jobs.notifier.watching(request_id))
                    for entry in body["logs"]:
                        if entry["message"].startswith("step "):
                            shown[int(entry["message"].split()[1])].set()
            return request_id, events, watchers

    try:
        request_id, events, watchers = asyncio.run(follow())
    finally:
        server.should_exit = True
    steps = [
        e["message"] for body in events for e in body["logs"] if e["message"].startswith("step")
    ]
    assert steps == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert events[-1]["status"] == "COMPLETED"
    assert watchers == {1} and jobs.notifier.watching(request_id) == 0
