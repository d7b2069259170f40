"""The app on a ZeroGPU Space, through the real `spaces` package and a stand-in of ZeroGPU's
device API (tests/zerogpu_standin.py).

The package works only beside a CUDA build of torch (it reads the CUDA version at import),
as every ZeroGPU Space has. So the app runs here in a virtual environment that adds torch's
CUDA build to this one's packages (made once, kept in ~/.cache). This machine has no GPU: a
run crosses into the GPU worker, which then cannot start, and must say exactly that.
"""

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client, handle_file

from svd.schema import SVDInput
from svd.zerogpu import gpu_seconds

from .conftest import SMALL, make_picture, picture_data_uri
from .live import start_app, stop_app
from .test_ui import DEFAULTS
from .zerogpu_standin import DeviceAPI

TORCH = torch.__version__.split("+")[0]
NO_GPU = "ZeroGPU: the GPU worker could not start: there is no GPU for it"


def cuda_python() -> str:
    """A Python with torch's CUDA build and this environment's other packages."""
    if torch.backends.cuda.is_built():
        return sys.executable
    home = Path.home() / ".cache" / "svd-studio" / f"zerogpu-torch-{TORCH}"
    python = home / "bin" / "python"
    if not (home / "ready").exists():
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--clear", str(home)],
            check=True,
        )
        # `===` takes the release as published (the CUDA build), not a local "+cpu" one.
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"torch==={TORCH}"], check=True
        )
        (home / "ready").write_text(TORCH)
    return str(python)


def ip_token(user: str) -> str:
    """A token shaped like the one Hugging Face's page hands a Space (a JWT)."""
    payload = base64.urlsafe_b64encode(json.dumps({"sub": user}).encode()).decode()
    return f"eyJhbGciOiJub25lIn0.{payload.rstrip('=')}.signature"


@pytest.fixture(scope="module")
def zero_app(tmp_path_factory):
    """The app in ZeroGPU mode: (url, device API stand-in, the app's log file)."""
    python = cuda_python()
    api = DeviceAPI()
    root = tmp_path_factory.mktemp("zerogpu")
    out = root / "outputs"
    out.mkdir()
    env = {
        "SPACES_ZERO_GPU": "true",
        "SPACES_ZERO_DEVICE_API_URL": api.url,
        "SPACE_ID": "someone/svd-studio",
        "ZEROGPU_OFFLOAD_DIR": str(root / "tensors"),
        "ZEROGPU_MMAP_AUTOPRUNE_PATTERN": str(root / "none" / "*"),
    }
    proc, url = start_app(out, env=env, timeout=300, python=python)
    yield url, api, proc
    stop_app(proc)
    api.close()


def picture_uri() -> str:
    return picture_data_uri(192, 128)


def budget(inp: SVDInput) -> int:
    """The seconds the package asks ZeroGPU for: our budget times the GPU's duration factor."""
    from spaces.zero.config import get_config

    return round(gpu_seconds(inp) * get_config()["duration_factor"])


def test_start_up_report_and_an_api_run(zero_app):
    """The package's start-up runs although Gradio is mounted, not launched; an API run
    crosses into a GPU worker on the Space's own quota and comes back with a clear error."""
    url, api, _ = zero_app
    assert len(api.called("/startup-report")) == 1
    body = {"image_url": picture_uri(), "seed": 3, **SMALL}
    r = httpx.post(f"{url}/fal-ai/svd", json=body, timeout=120)
    assert r.status_code == 500
    assert r.json()["detail"].startswith(NO_GPU), r.text
    schedule = api.called("/schedule")[-1]
    assert "token" not in schedule  # the Space's own quota
    assert int(schedule["durationSeconds"]) == budget(SVDInput(**body))
    allow = api.called("/allow")[-1]
    assert int(allow["pid"]) not in (0, 1, zero_app[2].pid)  # a forked worker asked
    assert api.called("/release")[-1] == {"allowToken": allow["allowToken"], "fail": "true"}


def test_a_page_run_spends_the_visitors_quota(zero_app, tmp_path):
    """A page run is scheduled with the visitor's x-ip-token (their quota) and the budget
    of their request, from inside their Gradio request."""
    url, api, _ = zero_app
    picture = tmp_path / "picture.png"
    make_picture(192, 128).save(picture)
    token = ip_token("visitor")
    client = Client(url, headers={"x-ip-token": token}, verbose=False)
    fields = {**DEFAULTS, "image": handle_file(str(picture)), "seed": "1", **SMALL}
    with pytest.raises(Exception, match="no GPU for it"):
        client.predict(**fields, api_name="/generate")
    schedule = api.called("/schedule")[-1]
    assert schedule["token"] == token
    asked = SVDInput(image_url="x", **SMALL)
    assert int(schedule["durationSeconds"]) == budget(asked)
    assert api.called("/release")[-1]["fail"] == "true"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU for ZeroGPU's worker")
def test_on_a_gpu_a_page_run_shows_its_steps_and_video(zero_app, tmp_path):
    """Where the worker has a GPU: the steps cross back from the worker as they happen, and
    the video comes back."""
    url, _, _ = zero_app
    picture = tmp_path / "picture.png"
    make_picture(192, 128).save(picture)
    client = Client(url, headers={"x-ip-token": ip_token("visitor")}, verbose=False)
    fields = {**DEFAULTS, "image": handle_file(str(picture)), "seed": "1", **SMALL}
    job = client.submit(**fields, api_name="/generate")
    video = job.result(timeout=300)[0]
    assert Path(video["video"] if isinstance(video, dict) else video).stat().st_size > 0
    assert any("step " in str(update[3]) for update in job.outputs())


def test_no_gpu_worker_outlives_the_app(zero_app):
    """A GPU worker ends with the app that forked it, however the app ends: here the app is
    killed while its worker waits for ZeroGPU's /allow."""
    url, api, proc = zero_app
    api.allowing.clear()
    asked = len(api.called("/allow"))
    body = {"image_url": picture_uri(), **SMALL}
    threading.Thread(target=_post, args=(f"{url}/fal-ai/svd", body), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while len(api.called("/allow")) == asked and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = int(api.called("/allow")[-1]["pid"])
        assert alive(worker)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker), "the GPU worker outlived the app"
    finally:
        api.allowing.set()


def _post(url: str, body: dict) -> None:
    try:
        httpx.post(url, json=body, timeout=120)
    except httpx.HTTPError:  # the app is killed meanwhile
        pass


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaping has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
