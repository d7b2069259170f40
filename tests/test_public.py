"""A stranger's attacks on the live server (a public Space is the normal case)."""

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from .gradio_wire import call, file_data, joined, page_event
from .live import ROOT, serve_app, start_app, stop_app

SECRET = "sk-public-test-5f1e2d"


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    """The app on `tiny` with secrets in its environment and its own Gradio cache folder."""
    base = tmp_path_factory.mktemp("public")
    out, cache = base / "outputs", base / "gradio"
    out.mkdir()
    cache.mkdir()
    env = {"SVD_API_KEY": SECRET, "FAL_KEY": f"{SECRET}-fal", "GRADIO_TEMP_DIR": str(cache),
           "SVD_BACKEND": "local", "SVD_MAX_DOWNLOAD_MB": "2"}  # fmt: skip
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


def test_history_is_private_to_each_browser(public_app, picture_path):
    from playwright.sync_api import sync_playwright

    from .test_browser import CHROMIUM, CHROMIUM_ARGS, set_slider

    url, out, _ = public_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        alice, bob = browser.new_context(), browser.new_context()
        page = alice.new_page()
        page.goto(url)
        page.locator("#image input[type=file]").set_input_files(picture_path)
        page.get_by_text("Advanced").click()
        for elem_id, value in (("steps", 1), ("num-frames", 2), ("width", 128), ("height", 64)):
            set_slider(page, elem_id, value)
        page.locator("#generate").click()
        page.locator("#history img, #history video").first.wait_for(timeout=120_000)
        page.reload()  # kept in the browser: still there after a reload
        page.locator("#history img, #history video").first.wait_for(timeout=30_000)
        other = bob.new_page()
        other.goto(url)
        other.wait_for_timeout(3000)
        assert other.locator("#history img, #history video").count() == 0
        browser.close()
    assert list(out.glob("*.mp4")), "the run was kept"


def test_history_entries_need_the_servers_token(tiny_backend, picture_path, store):
    from svd import history
    from svd.run import run
    from svd.schema import SVDInput

    from .conftest import SMALL

    out = run(tiny_backend, SVDInput(image_url=picture_path, **SMALL), store)
    run_id = out.image.file_name.split(".")[0]
    forged = [{"id": run_id, "token": "0" * 32}, {"id": "../../etc/passwd", "token": "x"}]
    assert history.own_entries(store, forged) == []
    mine = history.remember(store, [], run_id)
    record = history.own_entries(store, mine)[0]
    assert record["id"] == run_id
    shown = json.dumps(history.public_record(record))
    assert str(store.root) not in shown and picture_path not in shown
    # the browser state's secret is public (in /config): it is no token of any run id
    secret = history.state_secret(store)
    assert all(secret[:32] != history.token(store, i) for i in ("state", "", run_id))
    # a list stuffed with junk is read only as far as a real one goes
    junk = [{"id": f"junk{i}", "token": "0" * 32} for i in range(100_000)]
    assert history.own_entries(store, [*junk[: history.KEPT], *mine]) == []
    assert history.own_entries(store, [*junk[: history.KEPT - 1], *mine])[0]["id"] == run_id
    assert len(history.remember(store, junk, run_id)) == history.KEPT


@pytest.fixture(scope="module")
def open_app(tmp_path_factory):
    """The app as a Space runs it by default: no API key, the default per-visitor limits."""
    out = tmp_path_factory.mktemp("open") / "outputs"
    with serve_app(out, max_runs_per_session=1, max_runs_per_address=3) as served:
        yield served.url, out


LONG = {"steps": 100, "num_frames": 2, "width": 128, "height": 64}


def picture_uri() -> str:
    from .conftest import picture_data_uri

    return picture_data_uri(64, 64)


def test_one_address_gets_three_runs_at_a_time(open_app):
    url = open_app[0]
    with httpx.Client(base_url=url, timeout=30) as client:
        ids = []
        for seed in range(3):
            body = {"image_url": picture_uri(), "seed": seed, **LONG}
            r = client.post("/queue/fal-ai/svd", json=body)
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
        r = client.post("/queue/fal-ai/svd", json={"image_url": picture_uri(), **LONG})
        assert r.status_code == 429 and "3 runs queued or running" in r.json()["detail"]
        assert r.headers["retry-after"].isdigit()  # fal-client and browsers wait that long
        for i in ids:
            client.put(f"/queue/fal-ai/svd/requests/{i}/cancel")


def test_one_browser_session_gets_one_run_at_a_time(open_app, picture_path):
    from gradio_client import Client, handle_file

    from .test_ui import DEFAULTS, RESULTS, wait_running

    client = Client(open_app[0], verbose=False)  # one session, as one browser tab
    fields = {**DEFAULTS, "image": handle_file(picture_path), "seed": "1", **LONG}
    first = client.submit(**fields, api_name="/generate")
    wait_running(first)
    with pytest.raises(Exception, match="you already have 1 run"):
        client.predict(**fields, api_name="/generate")
    client.predict(api_name="/stop")
    assert "Stopped after step" in first.result(timeout=60)[RESULTS.index("progress")]


def send_headers_only(url: str, path: str, headers: dict) -> int:
    """Announce a huge body, send none of it, and return the status the server answers."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             "Content-Length: 629145600", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_the_key_is_checked_and_the_size_refused_before_the_body_is_read(public_app):
    url = public_app[0]
    for path in ("/fal-ai/svd", "/queue/fal-ai/svd"):
        assert send_headers_only(url, path, {}) == 401
        assert send_headers_only(url, path, {"Authorization": f"Key {SECRET}"}) == 413

    def chunks():  # no Content-Length: counted as it comes
        for _ in range(80):
            yield b" " * (1024 * 1024)

    r = httpx.post(f"{url}/fal-ai/svd", content=chunks(), timeout=30,
                   headers={"Authorization": f"Key {SECRET}"})  # fmt: skip
    assert r.status_code == 413 and "64 MB" in r.json()["detail"]


@pytest.mark.parametrize("body", ['{"image_url": "x", "cond_aug": NaN}',
                                  '{"image_url": "x", "cond_aug": Infinity}',
                                  '{"image_url": "x", "cond_aug": 1e309}'])  # fmt: skip
def test_non_finite_numbers_are_a_422_naming_the_field(public_app, body):
    r = httpx.post(f"{public_app[0]}/fal-ai/svd", content=body, timeout=30,
                   headers={"Authorization": f"Key {SECRET}"})  # fmt: skip
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "cond_aug"]


def test_model_and_videos_a_script_makes_up_are_refused_or_bounded(public_app, picture_path):
    """The page's generate endpoint joined by hand with a model or a count the page never
    offers: a model not in the list or steps past the model's range are refused by name;
    a count past the slider's range makes at most 4 videos (Gradio holds a slider to its
    range); the app serves on."""
    from .gradio_wire import upload

    url, _, _ = public_app
    small = {"steps": 1, "num_frames": 2, "width": 128, "height": 64}

    def generate(**values) -> dict:
        return call(url, "generate", {"image": upload(url, picture_path), **small, **values})

    junk = generate(model="/etc/passwd")
    assert junk["success"] is False and "not in the list of choices" in junk["output"]["error"]
    steps = generate(model="animatelcm-svd-xt", steps=99)
    assert steps["output"]["error"] == "Steps: animatelcm-svd-xt takes 1 to 20 steps; got 99"
    for count in (99, float("nan")):
        done = generate(num_videos=count)
        seeds = done["output"]["data"][1] if done["success"] else ""
        assert done["success"] is False or 1 <= len(seeds.split(", ")) <= 4, done
    assert httpx.get(f"{url}/config", timeout=10).status_code == 200


def test_gradio_serves_no_record_input_or_part_file(public_app, picture_path):
    url, out, _ = public_app
    msg = call(url, "generate", {"image": file_data(picture_path), "seed": "1", "steps": 1})
    # a path the visitor did not upload is refused; this one is on the server, like a record
    assert msg["success"] is False
    r = httpx.post(f"{url}/fal-ai/svd", json={"image_url": picture_uri(), **LONG, "steps": 1},
                   headers={"Authorization": f"Key {SECRET}"}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    run_id = r.json()["image"]["file_name"].split(".")[0]
    (out / f"{run_id}.mp4.part").write_bytes(b"half")
    for name in (f"{run_id}.json", f"{run_id}.input.png", f"{run_id}.mp4.part", f"{run_id}.mp4"):
        assert httpx.get(f"{url}/gradio_api/file={out / name}", timeout=10).status_code == 403
    assert httpx.get(f"{url}/outputs/{run_id}.json", timeout=10).status_code == 404
    assert httpx.get(f"{url}/outputs/{run_id}.mp4.part", timeout=10).status_code == 404
    assert httpx.get(f"{url}/outputs/{'a' * 300}.mp4", timeout=10).status_code == 404
    assert httpx.get(f"{url}/outputs/{run_id}.mp4", timeout=10).status_code == 200


def last(messages) -> dict:
    *_, final = messages
    return final


@pytest.mark.parametrize("index", [None, 99, -1, True, "0"])
def test_clicks_a_script_makes_up_get_a_clear_error(public_app, index):
    """The examples' and the history's events, joined by hand with a made-up click, or the
    video step with no click before it: an error naming what to click, and the app serves."""
    url, _, _ = public_app
    fill = page_event(url, ["image", "seed", "mask-file", "control-maps", None])
    video = page_event(
        url, ["video", "seed-used", "run-progress", "live-preview", "stop", "videos"]
    )
    pick = page_event(url, [None, "use-settings", "history-record"])
    click = {"index": index, "value": None, "selected": True}
    said = last(joined(url, fill, [], event_data=click))["output"]["error"]
    assert said == "Examples: click one of the examples shown"
    said = last(joined(url, video, [None]))["output"]["error"]  # its State holds no example
    assert said == "Examples: click one of the examples shown"
    said = last(joined(url, pick, [None], event_data=click))["output"]["error"]
    assert said == "History: pick one of the videos shown"
    filled = last(joined(url, fill, [], event_data={**click, "index": 1}))
    assert filled["success"] and filled["output"]["data"][1] == "1"  # a real click still works


def test_a_pasted_fal_key_with_a_newline_works_and_never_shows(monkeypatch, store):
    from svd.backends.fal import FalBackend
    from svd.errors import BackendError
    from svd.run import run
    from svd.schema import SVDInput

    from .fal_emulator import FalEmulator, point_fal_client_at

    with FalEmulator(key="good-key") as fal:
        point_fal_client_at(fal, monkeypatch, key="good-key\n")
        backend = FalBackend(poll_interval=0.01)
        out = run(backend, SVDInput(image_url=picture_uri(), seed=3), store)
        assert out.seed == 3
        record = store.root / f"{out.image.file_name.split('.')[0]}.json"
        assert "good-key" not in record.read_text()
        monkeypatch.setenv("FAL_KEY", "sk-wrong-9a8b\n")
        with pytest.raises(BackendError) as e:
            run(FalBackend(poll_interval=0.01), SVDInput(image_url=picture_uri()), store)
        assert "sk-wrong-9a8b" not in str(e.value) and "rejected the API key" in str(e.value)


def test_fal_timeout_bounds_the_whole_call_when_fal_never_answers(use_settings, monkeypatch, store):
    from svd.backends.fal import FalBackend
    from svd.errors import BackendError
    from svd.run import run
    from svd.schema import SVDInput

    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    for name in ("FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST"):
        monkeypatch.setenv(name, host)
    use_settings(fal_rest_url=f"https://{host}")
    monkeypatch.setenv("FAL_KEY", "k")
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"no result after 2 s \(SVD_FAL_TIMEOUT\)"):
        run(FalBackend(timeout=2), SVDInput(image_url=picture_uri()), store)
    assert time.monotonic() - started < 20  # fal-client alone retried for over 200 s
    silent.close()


def test_an_unreadable_upload_shows_no_server_path(public_app, tmp_path):
    from gradio_client import Client, handle_file

    from .test_ui import DEFAULTS

    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"this is not a picture")
    with pytest.raises(Exception) as e:
        Client(public_app[0], verbose=False).predict(
            **{**DEFAULTS, "image": handle_file(str(fake)), "seed": "1", "steps": 1},
            api_name="/generate",
        )
    said = str(e.value)
    assert "/tmp" not in said and str(public_app[2]) not in said and "holiday" not in said
    assert "Image: not a readable image" in said


def test_an_unreadable_picture_is_said_on_upload(public_app, tmp_path):
    """The upload's first event (the painter takes the picture) answers it; the previews
    that follow it do not run."""
    import secrets

    from .gradio_wire import page_event, upload

    url = public_app[0]
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"this is not a picture")
    body = {
        "data": [upload(url, fake)],
        "fn_index": page_event(url, ["mask"]),
        "session_hash": secrets.token_hex(6),
        "event_data": None,
        "trigger_id": None,
    }
    r = httpx.post(f"{url}/gradio_api/run/predict", json=body, timeout=30)
    assert r.json()["error"] == "Image: not a readable image", r.text


def test_a_redirect_to_a_data_uri_is_a_clear_input_error(use_settings):
    import http.server
    import threading

    from svd.errors import InputError
    from svd.fetch import read_url

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "data:image/png;base64," + "A" * 5000)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    use_settings(allow_private_urls="1")
    with pytest.raises(InputError, match="image_url: .* redirected to something not http") as e:
        read_url(f"http://127.0.0.1:{server.server_port}/p.png", "image_url")
    assert len(str(e.value)) < 200
    server.shutdown()


def test_the_oldest_videos_go_past_max_outputs(use_settings, picture_path, store):
    from svd.backends.local import LocalBackend
    from svd.backends.tiny import build_tiny_pipeline
    from svd.run import run
    from svd.schema import SVDInput

    from .conftest import SMALL

    use_settings(max_outputs="2")
    backend = LocalBackend(pipe=build_tiny_pipeline())
    names = [
        run(backend, SVDInput(image_url=picture_path, seed=i, **SMALL), store).image.file_name
        for i in range(3)
    ]
    assert sorted(p.name for p in store.root.glob("*.mp4")) == sorted(names[1:])
    assert not list(store.root.glob(f"{names[0].split('.')[0]}*"))  # record and inputs too


def test_half_written_files_are_swept_at_start(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "20260101-000000-000000-0123456789abcdef.mp4.part").write_bytes(b"half")
    with serve_app(out):
        assert not list(out.glob("*.part"))


def test_zero_gpu_budget_follows_the_work_and_fal_holds_no_gpu(tmp_path):
    from svd.backends.fal import FalBackend
    from svd.schema import SVDInput
    from svd.zerogpu import gpu_seconds

    small = SVDInput(image_url="x", steps=10, num_frames=14, width=512, height=320)
    assert gpu_seconds(SVDInput(image_url="x", steps=10, extend=2)) > 2.5 * (
        gpu_seconds(SVDInput(image_url="x", steps=10)) - 30
    )
    assert gpu_seconds(small) < gpu_seconds(SVDInput(image_url="x", steps=10))
    one = gpu_seconds(SVDInput(image_url="x", steps=10)) - 30
    assert abs(gpu_seconds(SVDInput(image_url="x", steps=10, num_videos=3)) - 30 - 3 * one) <= 2
    lcm = SVDInput(image_url="x", model="animatelcm-svd-xt")  # 4 steps by default, not 20
    assert abs(gpu_seconds(lcm) - 30 - 0.4 * one) <= 1
    assert FalBackend().needs_gpu is False


def test_uploads_are_bounded_and_no_key_is_kept_in_the_browser(public_app):
    url = public_app[0]
    big = {"files": ("big.png", b"\x89PNG" + b"0" * (3 * 1024 * 1024), "image/png")}
    r = httpx.post(f"{url}/gradio_api/upload", files=big, timeout=30)
    assert r.status_code == 413
    small = {"files": ("small.png", b"\x89PNG" + b"0" * 1024, "image/png")}
    assert httpx.post(f"{url}/gradio_api/upload", files=small, timeout=30).status_code == 200
    assert httpx.get(f"{url}/config", timeout=10).json()["run_history"] is False


def test_one_depth_map_is_refused_before_a_run_and_in_the_preview(tmp_path):
    from svd.archive import maps_for_a_video
    from svd.errors import InputError
    from svd.ui.previews import maps_preview

    from .test_archive import make_zip, png

    one = make_zip({"1.png": png(10)})
    with pytest.raises(InputError, match="control_maps_data_url: the archive holds 1 map"):
        maps_for_a_video(one)
    (tmp_path / "one.zip").write_bytes(one)
    assert maps_preview(str(tmp_path / "one.zip"))[1].startswith("⚠️ control_maps_data_url")


def test_archive_names_reach_the_page_as_text_not_html(tmp_path):
    from svd.ui.previews import maps_preview

    from .test_archive import make_zip, png

    hostile = "<img src=x onerror=alert(1)>"
    path = tmp_path / "maps.zip"
    path.write_bytes(make_zip({f"1{hostile}.png": png(10), "2.png": png(20)}))
    info = maps_preview(str(path))[1]
    assert "<img" not in info and "&lt;img" in info
    path.write_bytes(make_zip({f"1{hostile}.png": b"not a png", "2.png": png(20)}))
    assert "<img" not in maps_preview(str(path))[1]


def test_a_fal_key_with_a_break_inside_is_refused_and_never_shown(public_app, picture_path):
    """A key pasted with a line break inside would fail in an HTTP header whose error
    repeats it: it is refused before any request, naming the field, never showing it."""
    from gradio_client import Client, handle_file

    from svd.backends.fal import FalBackend
    from svd.errors import BackendError, InputError

    from .test_ui import DEFAULTS

    pasted = "sk-pasted-71c3\n9d0e-key"
    fields = {**DEFAULTS, "image": handle_file(picture_path), "backend": "fal",
              "fal_key": pasted, "seed": "1", "steps": 1}  # fmt: skip
    with pytest.raises(Exception) as e:
        Client(public_app[0], verbose=False).predict(**fields, api_name="/generate")
    assert "key" in str(e.value) and "71c3" not in str(e.value) and "9d0e" not in str(e.value)
    log = next(public_app[1].parent.glob("app-*.log")).read_text()
    assert "71c3" not in log
    with pytest.raises(InputError, match="^fal_key: has a space"):
        FalBackend(key=pasted)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FAL_KEY", pasted)
        with pytest.raises(BackendError, match="^FAL_KEY has a space") as e:
            FalBackend()._client()
        assert "71c3" not in str(e.value)


def test_a_second_app_on_the_same_output_folder_stops_clearly(open_app):
    """Two apps on one folder would both claim its queue: the second stops at once, saying
    why, and the first serves on."""
    from svd.server import build
    from svd.settings import configured

    with configured(model="tiny", output_dir=open_app[1]) as config:
        with pytest.raises(SystemExit, match="Another SVD Studio app is serving the output"):
            build(config)  # what `python app.py` runs before it listens
    assert httpx.get(open_app[0], timeout=10).status_code == 200


def test_page_runs_whose_visitor_vanished_end(open_app, picture_path, monkeypatch):
    """A script joins the page's queue and never reads its stream, or closes it at once:
    neither run is left queued or running for nobody (after UNHEARD seconds: 3 here)."""
    import secrets
    import sqlite3

    from svd.ui import handlers

    from .gradio_wire import endpoint, upload

    monkeypatch.setattr(handlers, "UNHEARD", 3.0)
    url, out = open_app
    fn_index, inputs = endpoint(url, "generate")
    values = {"image": upload(url, picture_path), "seed": "1", "steps": 100, "num_frames": 25,
              "width": 512, "height": 320}  # fmt: skip
    data = [values.get(i["elem_id"], i["value"]) for i in inputs]
    with httpx.Client(base_url=url, timeout=30) as client:
        for listen in (False, True):
            session = secrets.token_hex(6)
            body = {"data": data, "fn_index": fn_index, "session_hash": session,
                    "trigger_id": None, "event_data": None}  # fmt: skip
            assert client.post("/gradio_api/queue/join", json=body).status_code == 200
            if listen:  # read one message, then go
                with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as r:
                    next(r.iter_lines())
    db = sqlite3.connect(out / "queue.sqlite3")
    query = "SELECT status, error FROM requests WHERE surface = 'page' ORDER BY seq DESC LIMIT 2"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = db.execute(query).fetchall()
        if len(rows) == 2 and all(status == "COMPLETED" for status, _ in rows):
            break
        time.sleep(1)
    assert rows == [("COMPLETED", '"Request was cancelled"')] * 2
