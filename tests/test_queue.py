"""The one durable queue: it survives a kill -9, shares positions between the page and the
API, and feeds one worker per device."""

import base64
import io
import signal
import threading
import time

import httpx
from gradio_client import Client, handle_file

from .conftest import make_picture
from .live import serve_app, start_app

SMALL = {"width": 128, "height": 64, "num_frames": 2}
LONG = {**SMALL, "steps": 100}  # a few seconds on tiny: long enough to catch it running


def status(client: httpx.Client, url: str, request_id: str) -> dict:
    r = client.get(f"{url}/queue/fal-ai/svd/requests/{request_id}/status", params={"logs": 1})
    body = r.json()
    assert r.status_code == (200 if body["status"] == "COMPLETED" else 202), r.text  # as fal
    return body


def wait_for(client, url, request_id, wanted: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status(client, url, request_id)
        if body["status"] == wanted:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{request_id} never reached {wanted}: {body}")


def picture_data_uri() -> str:
    buf = io.BytesIO()
    make_picture().save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def submit(client, url, **fields) -> str:
    body = {"image_url": picture_data_uri(), **fields}
    r = client.post(f"{url}/queue/fal-ai/svd", json=body)
    assert r.status_code == 200, r.text
    return r.json()["request_id"]


def test_a_kill_mid_run_leaves_a_clear_status_and_the_queued_request_runs(tmp_path):
    """The app as a process, killed mid-run; then an app on the same folder (built here)."""
    out = tmp_path / "outputs"
    out.mkdir()
    proc, url = start_app(out)
    with httpx.Client(timeout=30) as client:
        running = submit(client, url, seed=1, **LONG)
        wait_for(client, url, running, "IN_PROGRESS")
        queued = submit(client, url, seed=2, steps=2, **SMALL)
        assert status(client, url, queued)["queue_position"] == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with serve_app(out) as served:
            url = served.url
            gone = status(client, url, running)
            assert gone["status"] == "COMPLETED" and "interrupted by a restart" in gone["error"]
            result = client.get(f"{url}/queue/fal-ai/svd/requests/{running}")
            assert result.status_code == 500 and "restart" in result.json()["detail"]
            done = wait_for(client, url, queued, "COMPLETED")
            assert "error" not in done
            video = client.get(f"{url}/queue/fal-ai/svd/requests/{queued}").json()
            assert video["seed"] == 2 and client.get(video["image"]["url"]).status_code == 200
            assert client.get(f"{url}/queue/fal-ai/svd/requests/nope/status").status_code == 404


class Held:
    """The queue's run, with runs of the seeds in `seeds` held at their first step until
    `go` is set: a run that is surely running, without a long real one."""

    def __init__(self, *seeds: int):
        self.seeds, self.go, self.holding, self.ran = set(seeds), threading.Event(), [], []

    def __call__(self, backend, inp, store, on_event):
        from svd import zerogpu
        from svd.events import Step

        if inp.seed in self.seeds:
            self.holding.append(inp.seed)
            on_event(Step(1, inp.steps or 1))
            assert self.go.wait(60), "never let go"
        self.ran.append(inp.seed)
        return zerogpu.generate(backend, inp, store, on_event)


def test_page_and_api_share_one_queue_and_positions_go_down(tmp_path, picture_path):
    held = Held(1)
    with serve_app(tmp_path / "outputs", run=held) as served:
        url = served.url
        page = Client(url, verbose=False)
        from .test_ui import DEFAULTS, RESULTS, wait_running

        fields = {**DEFAULTS, "image": handle_file(picture_path), "seed": "1", "steps": 2}
        fields.update(num_frames=2, width=128, height=64)
        run = page.submit(**fields, api_name="/generate")
        with httpx.Client(timeout=30) as client:
            wait_running(run)  # the page's run is on the worker
            first = submit(client, url, seed=2, steps=1, **SMALL)
            second = submit(client, url, seed=3, steps=1, **SMALL)
            assert status(client, url, first)["queue_position"] == 0
            assert status(client, url, second)["queue_position"] == 1
            held.go.set()
            wait_for(client, url, second, "COMPLETED")
        assert run.result(timeout=30)[RESULTS.index("seed_used")] == "1"
        assert held.ran == [1, 2, 3]  # the page's run, then the API's in their order


def test_two_workers_run_two_requests_at_once(tmp_path):
    held = Held(1, 2)
    with serve_app(tmp_path / "outputs", run=held, devices="cpu,cpu") as served:
        url = served.url
        with httpx.Client(timeout=30) as client:
            ids = [submit(client, url, seed=i, steps=1, **SMALL) for i in (1, 2)]
            deadline = time.monotonic() + 60
            while len(held.holding) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sorted(held.holding) == [1, 2], "the second request waited for the first"
            assert all(status(client, url, i)["status"] == "IN_PROGRESS" for i in ids)
            held.go.set()
            for i in ids:
                wait_for(client, url, i, "COMPLETED")
                assert client.get(f"{url}/queue/fal-ai/svd/requests/{i}").status_code == 200


def test_a_start_deadline_holds_no_thread_once_the_request_ran(tmp_path, picture_path):
    from svd.jobs import JobQueue
    from svd.schema import SVDInput

    def run(backend, inp, store, on_event):
        raise RuntimeError("done at once")

    jobs = JobQueue([object()], tmp_path, run=run)
    job = jobs.submit(SVDInput(image_url=picture_path), start_timeout=3600)
    assert job.done.wait(30) and job.error.error_type == "runner_server_error"
    job.deadline.join(5)  # cancelled when it started: no thread sleeps an hour for it
    assert not job.deadline.is_alive()
