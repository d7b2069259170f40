"""Renderer replicas on a real local Ray cluster (`ray start --head`, CPU only): two
replicas of the tiny model behind the one queue, driven through the API and the page."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from .live import ROOT, free_port, start_app, stop_app
from .test_queue import status, submit, wait_for

SMALL = {"width": 128, "height": 64, "num_frames": 2, "steps": 3}
LONG = {**SMALL, "steps": 100, "num_frames": 4}
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_cli() -> str:
    found = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    if not os.path.exists(found):
        pytest.fail("the `ray` command is missing: pip install -r requirements-cluster.txt")
    return found


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on this machine, two CPUs (one per replica); its address."""
    port = free_port()
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": str(ROOT)}
    start = [ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
             "--include-dashboard=false", "--disable-usage-stats",
             "--object-store-memory=200000000"]  # fmt: skip
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray_cli(), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cluster_app(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster") / "outputs"
    out.mkdir()
    env = {**RAY_ENV, "SVD_RAY_ADDRESS": cluster, "SVD_RAY_REPLICAS": "2"}
    proc, url = start_app(out, env=env, timeout=300)
    yield url, out
    stop_app(proc)


def replica_pids() -> list[int]:
    """The replicas' processes, by the title Ray gives them."""
    found = subprocess.run(["pgrep", "-f", "ServeReplica:svd-studio:Renderer"],
                           capture_output=True, text=True)  # fmt: skip
    return [int(p) for p in found.stdout.split()]


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def working_replica() -> int:
    """The replica that is using the CPU now."""
    before = {pid: cpu_ticks(pid) for pid in replica_pids()}
    time.sleep(1.0)
    return max(before, key=lambda pid: cpu_ticks(pid) - before[pid])


def record(out, client, url, request_id) -> dict:
    result = client.get(f"{url}/queue/fal-ai/svd/requests/{request_id}").json()
    return json.loads((out / result["image"]["file_name"]).with_suffix(".json").read_text())


def test_four_requests_on_two_replicas(cluster_app):
    """Four queued requests all give videos; both replicas' names are in the records; the
    logs carry each replica's steps."""
    url, out = cluster_app
    with httpx.Client(timeout=60) as client:
        ids = [submit(client, url, seed=n, **SMALL) for n in range(4)]
        finals = [wait_for(client, url, i, "COMPLETED", timeout=240) for i in ids]
        assert all("error" not in f for f in finals), finals
        assert all("step 3 of 3" in [e["message"] for e in f["logs"]] for f in finals)
        workers = {record(out, client, url, i)["worker"] for i in ids}
        assert len(workers) == 2 and all(w.startswith("node ") for w in workers)
        video = client.get(client.get(f"{url}/queue/fal-ai/svd/requests/{ids[0]}").json()
                           ["image"]["url"])  # fmt: skip
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_a_cancel_frees_its_replica_at_once(cluster_app):
    url, _ = cluster_app
    with httpx.Client(timeout=60) as client:
        long = [submit(client, url, seed=10 + n, **LONG) for n in range(2)]
        for request_id in long:
            wait_for(client, url, request_id, "IN_PROGRESS", timeout=120)
        small = submit(client, url, seed=12, **SMALL)
        assert status(client, url, small)["status"] == "IN_QUEUE"  # both replicas are busy
        client.put(f"{url}/queue/fal-ai/svd/requests/{long[0]}/cancel")
        done = wait_for(client, url, small, "COMPLETED", timeout=120)
        assert "error" not in done
        assert status(client, url, long[1])["status"] == "IN_PROGRESS"  # still on the other
        client.put(f"{url}/queue/fal-ai/svd/requests/{long[1]}/cancel")
        wait_for(client, url, long[1], "COMPLETED", timeout=120)


def test_a_replica_killed_mid_run_costs_only_that_run(cluster_app):
    """SIGKILL the replica running a request: that run goes to the other replica (or ends
    with a clear 5xx), the request queued beside it completes, the replica comes back."""
    url, _ = cluster_app
    with httpx.Client(timeout=60) as client:
        doomed = submit(client, url, seed=20, **{**LONG, "steps": 40, "width": 256,
                                                  "height": 128, "num_frames": 8})  # fmt: skip
        # (seconds of work: still running when the replica is found and killed)
        wait_for(client, url, doomed, "IN_PROGRESS", timeout=120)
        killed = working_replica()
        os.kill(killed, signal.SIGKILL)
        beside = submit(client, url, seed=21, **SMALL)
        assert "error" not in wait_for(client, url, beside, "COMPLETED", timeout=240)
        ended = wait_for(client, url, doomed, "COMPLETED", timeout=300)
        messages = [e["message"] for e in ended["logs"]]
        if "error" in ended:
            assert ended["error_type"] == "runner_server_error" and "lost" in ended["error"]
        else:
            assert "the worker running this was lost; trying another" in messages
        deadline = time.monotonic() + 120
        while len(replica_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(replica_pids()) == 2 and killed not in replica_pids()  # Ray brought it back
        again = submit(client, url, seed=22, **SMALL)
        assert "error" not in wait_for(client, url, again, "COMPLETED", timeout=240)


def test_the_page_runs_on_the_cluster(cluster_app, picture_path):
    from gradio_client import Client, handle_file

    url, out = cluster_app
    Client(url, verbose=False).predict(image=handle_file(picture_path), seed="3",
                                       api_name="/generate", **SMALL)  # fmt: skip

    newest = max(out.glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(newest.read_text())["worker"].startswith("node ")
    config = httpx.get(f"{url}/config", timeout=30).text
    assert "on a Ray cluster: 2 of 2 replicas up" in config


def test_no_cluster_at_the_address_is_a_clear_error(tmp_path):
    """`python app.py` builds the app before it listens: with nothing at the address that
    is a SystemExit, whose words Python prints alone (no traceback), naming the setting."""
    from svd.server import build
    from svd.settings import configured

    address = f"127.0.0.1:{free_port()}"
    with configured(model="tiny", output_dir=tmp_path, ray_address=address) as config:
        with pytest.raises(SystemExit) as stop:
            build(config)
    said = str(stop.value.code)
    assert said.startswith(f"SVD_RAY_ADDRESS={address}: no Ray cluster") and "ray start" in said
