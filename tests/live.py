"""Start the real app in a subprocess for tests that talk to it over HTTP."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(
    output_dir: Path, env: dict | None = None, timeout: float = 120, port: int | None = None,
    scheme: str = "http", verify: str | bool = True, python: str = sys.executable,
):  # fmt: skip
    """Run `python app.py` on a free port (or `port`); return (process, base url). With
    `scheme` https, `verify` is the CA file that signed the app's certificate; `python` is
    the interpreter to run it with."""
    port = port or free_port()
    env = {
        **os.environ,
        "SVD_MODEL": "tiny",
        "SVD_OUTPUT_DIR": str(output_dir),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "SVD_MAX_RUNS_PER_SESSION": "0",  # these tests are one visitor; test_public limits
        "SVD_MAX_RUNS_PER_ADDRESS": "0",
        "SVD_EXAMPLES": "click",  # not at start: the tests' apps share two cores
        "SVD_THREADS": "1",  # beside the test process: two threads each would fight
        **(env or {}),
    }
    log = open(output_dir.parent / f"app-{port}.log", "w")
    proc = subprocess.Popen(
        [python, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("app did not answer in time")


def stop_app(proc) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
