"""fal's Python client, unchanged, against this app (run by tests/test_fal_clients.py).

The environment points it here: FAL_RUN_HOST (the main port), FAL_QUEUE_RUN_HOST (the queue
port), FAL_KEY (SVD_API_KEY) and SSL_CERT_FILE (the CA of the app's certificate). Prints one
JSON object: what each call gave.
"""

import asyncio
import json
import sys
import time

import fal_client
from fal_client.client import FalClientHTTPError

APP = "fal-ai/svd"


def kind(status) -> str:
    return type(status).__name__


def failure(call) -> dict:
    try:
        call()
    except FalClientHTTPError as e:
        return {"status": e.status_code, "detail": e.message, "error_type": e.error_type,
                "request_id": e.response_headers.get("x-fal-request-id"),
                "timeout_type": e.response_headers.get("x-fal-request-timeout-type")}  # fmt: skip
    return {"status": None}


def until_running(handle) -> None:
    deadline = time.monotonic() + 60
    while kind(handle.status()) != "InProgress" and time.monotonic() < deadline:
        time.sleep(0.05)


def follow(handle) -> dict:
    first = kind(handle.status(with_logs=True))
    events = list(handle.iter_events(with_logs=True, interval=0.05))
    last = events[-1]
    return {"first": first, "events": [kind(e) for e in events],
            "logs": [line["message"] for line in last.logs], "metrics": last.metrics,
            "error": last.error, "error_type": last.error_type}  # fmt: skip


def cancels(small: dict) -> dict:
    """A running request and one queued behind it, both cancelled."""
    running = fal_client.submit(APP, {**small, "steps": 100})
    queued = fal_client.submit(APP, small)
    until_running(running)
    queued.cancel()
    running.cancel()
    return {
        "queued": follow(queued), "queued_get": failure(queued.get),
        "running": follow(running), "running_get": failure(running.get),
    }  # fmt: skip


def start_timeout(small: dict) -> dict:
    """A request that cannot start within start_timeout, behind a long one."""
    running = fal_client.submit(APP, {**small, "steps": 100})
    until_running(running)
    began = time.monotonic()
    refused = failure(lambda: fal_client.subscribe(APP, small, start_timeout=1.5))
    refused["seconds"] = round(time.monotonic() - began, 2)
    running.cancel()
    return refused


async def with_async_client(small: dict) -> dict:
    client = fal_client.AsyncClient()
    ran = await client.run(APP, {**small, "seed": 21})
    handle = await client.submit(APP, {**small, "seed": 22})
    first = kind(await handle.status(with_logs=True))
    events = [kind(e) async for e in handle.iter_events(with_logs=True, interval=0.05)]
    result = await handle.get()
    updates = []
    subscribed = await client.subscribe(
        APP, {**small, "seed": 23}, with_logs=True, on_queue_update=updates.append
    )
    return {"run": ran, "first": first, "events": events, "result": result,
            "subscribed": subscribed, "updates": [kind(u) for u in updates]}  # fmt: skip


def main(picture_path: str, webhook: str) -> None:
    picture = fal_client.encode_file(picture_path)  # a data: URI, fal's own way
    small = {"image_url": picture, "steps": 2, "num_frames": 4, "width": 192, "height": 128}
    out = {"run": fal_client.run(APP, {**small, "seed": 3})}
    handle = fal_client.submit(APP, {**small, "seed": 4})
    out["submit"] = {
        "request_id": handle.request_id,
        "status_url": handle.status_url,
        "response_url": handle.response_url,
        "cancel_url": handle.cancel_url,
    }
    out["queue"] = {**follow(handle), "result": handle.get()}
    out["status_by_id"] = kind(fal_client.status(APP, handle.request_id, with_logs=True))
    out["result_by_id"] = fal_client.result(APP, handle.request_id)
    updates, enqueued = [], []
    out["subscribe"] = fal_client.subscribe(
        APP, {**small, "seed": 5}, with_logs=True, on_enqueue=enqueued.append,
        on_queue_update=lambda e: updates.append(kind(e)),
    )  # fmt: skip
    out["subscribe_updates"], out["enqueued"] = updates, enqueued
    out["cancel"] = cancels(small)
    out["start_timeout"] = start_timeout(small)
    out["invalid"] = failure(lambda: fal_client.run(APP, {**small, "motion_bucket_id": 300}))
    hooked = fal_client.submit(APP, {**small, "seed": 11}, webhook_url=webhook)
    out["webhook"] = {"request_id": hooked.request_id, "result": hooked.get()}
    broken = {**small, "image_url": "data:image/png;base64,AAAA"}
    failed = fal_client.submit(APP, broken, webhook_url=webhook)
    out["webhook_failed"] = {"request_id": failed.request_id, "get": failure(failed.get)}
    out["webhook_refused"] = failure(
        lambda: fal_client.submit(APP, small, webhook_url="http://127.0.0.1:1/hook")
    )
    out["async"] = asyncio.run(with_async_client(small))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
