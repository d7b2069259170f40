"""A stranger's attacks on the live server (a public Space is the normal case)."""

from pathlib import Path

import httpx
import pytest

from .gradio_wire import call, file_data
from .live import ROOT, start_app, stop_app

SECRET = "sk-public-test-5f1e2d"


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    """The app on `tiny` with secrets in its environment and its own Gradio cache folder."""
    base = tmp_path_factory.mktemp("public")
    out, cache = base / "outputs", base / "gradio"
    out.mkdir()
    cache.mkdir()
    env = {"SVD_API_KEY": SECRET, "FAL_KEY": f"{SECRET}-fal", "GRADIO_TEMP_DIR": str(cache)}
    proc, url = start_app(out, env=env)
    yield url, out, cache
    stop_app(proc)


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def as_painter(part: str, value: dict) -> dict:
    editor = {"background": None, "layers": [], "composite": None}
    editor[part] = [value] if part == "layers" else value
    return editor


SERVER_FILES = ["/proc/self/environ", "/etc/passwd", str(ROOT / "svd" / "ui.py")]
PLACES = {  # a file input of the page -> how a server path is put into it
    "image": lambda v: ("image", v),
    "mask background": lambda v: ("mask", as_painter("background", v)),
    "mask layer": lambda v: ("mask", as_painter("layers", v)),
    "mask composite": lambda v: ("mask", as_painter("composite", v)),
    "mask file": lambda v: ("mask-file", v),
    "depth archive": lambda v: ("control-maps", v),
}


@pytest.mark.parametrize("place", PLACES)
def test_no_server_file_through_a_file_input(public_app, place):
    url, _, cache = public_app
    errors = []
    for path in [*SERVER_FILES, "/no/such/file.png"]:
        elem_id, value = PLACES[place](file_data(path))
        msg = call(url, "generate", {elem_id: value, "seed": "1", "steps": 1})
        assert msg["success"] is False, f"{path} through {place} was taken"
        error = str(msg["output"].get("error"))
        assert SECRET not in error and str(cache) not in error
        errors.append(error.replace(path, "<path>"))
    assert len(set(errors)) == 1, f"the answers tell which files exist: {errors}"
    assert files_holding(cache, SECRET.encode()) == []
    assert files_holding(cache, b"root:x:0:0") == []
    assert files_holding(cache, b"def build_app") == []


def test_no_server_file_through_the_driving_video(public_app):
    url, _, cache = public_app
    msg = call(url, "depth_maps", {"control-video": {"video": file_data("/proc/self/environ")}})
    assert msg["success"] is False
    assert files_holding(cache, SECRET.encode()) == []


def test_file_route_serves_no_server_file(public_app):
    url = public_app[0]
    for path in SERVER_FILES:
        r = httpx.get(f"{url}/gradio_api/file={path}", timeout=10)
        assert r.status_code in (403, 404) and SECRET not in r.text and "root:x" not in r.text
