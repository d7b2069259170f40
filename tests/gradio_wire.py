"""Gradio's own wire protocol, spoken by hand: what a hostile script sends, not the page."""

from __future__ import annotations

import json
import secrets

import httpx


def endpoint(url: str, api_name: str) -> tuple[int, list[dict]]:
    """The event's fn_index and its input components (id, type, elem_id, default value)."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    components = {c["id"]: c for c in config["components"]}
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    inputs = [
        {
            "id": i,
            "type": components[i]["type"],
            "elem_id": components[i]["props"].get("elem_id"),
            "value": components[i]["props"].get("value"),
        }
        for i in dep["inputs"]
    ]
    return dep["id"], inputs


def file_data(path: str) -> dict:
    """A file value as the page would send it after an upload, pointing at `path`."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}


def upload(url: str, path) -> dict:
    """Upload `path` as the page does; its value for an input."""
    with open(path, "rb") as f:
        r = httpx.post(f"{url}/gradio_api/upload", files={"files": f}, timeout=30)
    r.raise_for_status()
    return file_data(r.json()[0])


def output_ids(url: str, api_name: str) -> list[str | None]:
    """The elem_ids of the event's outputs, in the order its messages carry them."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    components = {c["id"]: c for c in config["components"]}
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    return [components[i]["props"].get("elem_id") for i in dep["outputs"]]


def messages(url: str, api_name: str, values: dict, timeout: float = 120, session: str = ""):
    """Join the queue for `api_name` with inputs by elem_id (others: their defaults) and
    yield the queue's messages up to `process_completed`."""
    fn_index, inputs = endpoint(url, api_name)
    data = [values.get(i["elem_id"], i["value"]) for i in inputs]
    yield from joined(url, fn_index, data, timeout=timeout, session=session)


def page_event(url: str, outputs: list[str]) -> int:
    """The fn_index of the page's event (no api_name) whose outputs have these elem_ids."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    components = {c["id"]: c for c in config["components"]}
    return next(
        d["id"] for d in config["dependencies"]
        if [components[i]["props"].get("elem_id") for i in d["outputs"]] == outputs
    )  # fmt: skip


def joined(url: str, fn_index: int, data: list, event_data=None, timeout: float = 120,
           session: str = ""):  # fmt: skip
    """Join the queue for event `fn_index` with `data` (and a click's `event_data`), as any
    script can; yield the queue's messages up to `process_completed`."""
    session = session or secrets.token_hex(6)
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "trigger_id": None,
            "event_data": event_data}  # fmt: skip
    with httpx.Client(base_url=url, timeout=timeout) as client:
        answer = client.post("/gradio_api/queue/join", json=body)
        if answer.status_code != 200:
            yield {"success": False, "status_code": answer.status_code, "output": answer.json()}
            return
        with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as r:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                yield msg
                if msg.get("msg") == "process_completed":
                    return
    raise AssertionError("the queue stream ended without a result")


def call(url: str, api_name: str, values: dict, timeout: float = 120, session: str = "") -> dict:
    """The `process_completed` message of `api_name` called with `values` (see `messages`)."""
    *_, last = messages(url, api_name, values, timeout, session)
    return last
