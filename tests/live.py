"""The real app for tests that talk to it over HTTP: built in this process and served on a
port by uvicorn in a thread (`serve_app`), or as a process of its own (`start_app`) for the
few tests that need one: a kill and restart, TLS with fal's clients, another interpreter."""

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The app's settings in tests: tiny, one visitor (test_public tests the limits), examples on
# the first click (not at start: the tests share two cores).
IN_TESTS = {"model": "tiny", "host": "127.0.0.1", "examples": "click",
            "max_runs_per_session": 0, "max_runs_per_address": 0}  # fmt: skip
STARTS = ROOT / ".pytest-app-starts"  # one line per app process a test started
GRADIO_NAMES = {"host": "GRADIO_SERVER_NAME", "port": "GRADIO_SERVER_PORT"}


def as_env(values: dict) -> dict[str, str]:
    """Settings (Settings' field names) as the environment of an app process."""
    return {GRADIO_NAMES.get(k, f"SVD_{k.upper()}"): str(v) for k, v in values.items()}


@dataclass
class Served:
    url: str
    app: object  # svd.server.App: its queue is `app.jobs`
    output_dir: Path


@contextlib.contextmanager
def serve_app(output_dir: Path, run=None, **values):
    """The whole app, built here on `IN_TESTS` and `values` (Settings' field names) and
    served on a free port until the block ends. `run` replaces the queue's run."""
    from svd import server
    from svd.settings import configured

    port = values.pop("port", None) or free_port()
    values = {**IN_TESTS, "output_dir": output_dir, "port": port, **values}
    log = logging.FileHandler(Path(output_dir).parent / f"app-{port}.log")  # as start_app's
    logging.getLogger().addHandler(log)
    with contextlib.ExitStack() as cleanup, configured(**values) as config:
        cleanup.callback(log.close)
        cleanup.callback(logging.getLogger().removeHandler, log)
        app = server.build(config, run=run)
        uv, sockets = server.listening(app, config)
        thread = threading.Thread(target=uv.run, kwargs={"sockets": sockets}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not uv.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the app did not start serving")
                time.sleep(0.02)
            scheme = "https" if config.ssl_certfile else "http"
            yield Served(f"{scheme}://127.0.0.1:{port}", app, Path(output_dir))
        finally:
            uv.should_exit = uv.force_exit = True  # open streams (a client's) end too
            thread.join(15)
            app.close()


def start_app(
    output_dir: Path, env: dict | None = None, timeout: float = 120, port: int | None = None,
    scheme: str = "http", verify: str | bool = True, python: str = sys.executable,
):  # fmt: skip
    """Run `python app.py` on a free port (or `port`); return (process, base url). With
    `scheme` https, `verify` is the CA file that signed the app's certificate; `python` is
    the interpreter to run it with."""
    port = port or free_port()
    # One torch thread: beside the test process, two threads each would fight.
    values = {**IN_TESTS, "output_dir": output_dir, "port": port, "threads": 1}
    env = {**os.environ, **as_env(values), "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    log = open(output_dir.parent / f"app-{port}.log", "w")
    with open(STARTS, "a") as starts:  # the suite counts these (conftest.py)
        starts.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}\n")
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
