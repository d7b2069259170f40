import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# torch's threads in each test process (xdist runs one per core): the cores shared with the
# other test processes and with the app processes, browsers and clients beside them. Two
# threads on two busy cores made a tiny run ten times slower. Each app process started here
# gets SVD_THREADS=1 (live.py).
CORES = len(os.sched_getaffinity(0))


def threads(workers: int) -> int:
    return max(1, CORES // (workers + 1))


torch.set_num_threads(threads(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one test process per core this process may use, at most four (each holds
    torch and its apps' processes in memory)."""
    return max(1, min(4, CORES))


# The longest modules first (seconds of tests in each, two processes on two cores, December
# 2026). Each test process takes whole modules (--dist loadfile) in this order, the next
# when it is done, so the processes end together rather than one waiting on a long module.
LONGEST_FIRST = [
    "test_speed", "test_browser", "test_cluster", "test_models_hub", "test_public",
    "test_local", "test_ui", "test_bench", "test_fal_clients", "test_models",
]  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest as found


def pytest_report_header(config):
    workers = getattr(config.option, "numprocesses", None) or 1
    return f"torch threads: {threads(workers)} in each of {workers} test processes, {CORES} cores"


SMALL = {"width": 192, "height": 128, "num_frames": 6, "steps": 3}


def make_picture(width: int = 320, height: int = 200) -> Image.Image:
    """A smooth, asymmetric test picture: gradients and a dark square in one corner."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 1 - x / width], axis=-1) * 255
    rgb[: height // 4, : width // 4] = 20
    return Image.fromarray(rgb.astype(np.uint8))


def picture_data_uri(width: int = 320, height: int = 200) -> str:
    """The test picture as a PNG `data:` URI."""
    import base64
    import io

    buffer = io.BytesIO()
    make_picture(width, height).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def use_settings():
    """Settings for one test, passed to the code rather than set in the environment:
    `use_settings(max_work=0.5)` (Settings' field names), until the test ends."""
    import contextlib

    from svd.settings import configured

    with contextlib.ExitStack() as stack:
        yield lambda **values: stack.enter_context(configured(**values))


@pytest.fixture
def picture_path(tmp_path):
    path = tmp_path / "picture.png"
    make_picture().save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_backend():
    from svd.backends.local import LocalBackend

    return LocalBackend(model="tiny")


@pytest.fixture
def store(tmp_path):
    """Where a test's runs keep their videos and records: outputs/ in its folder."""
    from svd.outputs import OutputStore

    return OutputStore(tmp_path / "outputs")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The real app on `tiny`, built in this process and served on a port, one per test
    module: (url, output folder)."""
    from .live import serve_app

    out = tmp_path_factory.mktemp("app") / "outputs"
    out.mkdir()
    with serve_app(out) as served:
        yield served.url, out


MAX_APP_PROCESSES = 8  # the app as a process of its own: only where a test needs one


def pytest_sessionstart(session):
    from .live import STARTS

    if not hasattr(session.config, "workerinput"):  # the run's first process, not a worker
        STARTS.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from .live import STARTS

    starts = STARTS.read_text().splitlines() if STARTS.exists() else []
    terminalreporter.write_line(f"app processes started: {len(starts)}")
    full_run = config.args == config.getini("testpaths") and not config.option.keyword
    if full_run and len(starts) > MAX_APP_PROCESSES:
        terminalreporter.write_line(
            f"FAILED: over {MAX_APP_PROCESSES} app processes; by test:\n" + "\n".join(starts)
        )
        terminalreporter._session.exitstatus = 1
