"""fal's own clients, unchanged, against the live app.

Python `fal-client` (sync and async) talks over TLS to the main port and to the queue port
(fal's queue host); JavaScript `@fal-ai/client` (installed from npm here) goes through
/api/fal/proxy over plain http with `proxyUrl` alone. Webhooks are delivered to a listener
on 127.0.0.1, and the proxy refuses, without fetching, every target that is not this app.
"""

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trustme

from .conftest import make_picture
from .live import ROOT, as_env, free_port, serve_app, start_app, stop_app

KEY = "client-test-key"
CLIENTS = ROOT / "tests" / "clients"
AUTH = {"Authorization": f"Key {KEY}"}
LONG = {"steps": 100, "num_frames": 4, "width": 192, "height": 128}


class Listener:
    """An HTTP server on 127.0.0.1 that keeps what is POSTed to it; the first answer to each
    request id is a 500, so every delivery needs one retry."""

    def __init__(self):
        self.received: list[dict] = []
        self.answers: dict[str, int] = {}
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                listener.received.append(body)
                seen = listener.answers.setdefault(body.get("request_id", ""), 0)
                listener.answers[body.get("request_id", "")] = seen + 1
                self.send_response(500 if seen == 0 else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST  # a proxied request would land here too

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self, request_id: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [b for b in self.received if b.get("request_id") == request_id]
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"no webhook for {request_id}: {self.received}")


@pytest.fixture(scope="module")
def hooks():
    listener = Listener()
    yield listener
    listener.server.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A CA, the app's certificate for 127.0.0.1, the picture and its data: URI."""
    folder = tmp_path_factory.mktemp("clients")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    make_picture().save(folder / "picture.png")
    data = base64.b64encode((folder / "picture.png").read_bytes()).decode()
    (folder / "picture.txt").write_text("data:image/png;base64," + data)
    return folder


def app_settings(hooks) -> dict:
    return {"api_key": KEY, "allow_private_urls": f"127.0.0.1:{hooks.port}",
            "webhook_backoff": 0.2}  # fmt: skip


@pytest.fixture(scope="module")
def tls_app(files, hooks, tmp_path_factory):
    out = tmp_path_factory.mktemp("tls") / "outputs"
    out.mkdir()
    queue_port = free_port()
    env = {
        **app_settings(hooks),
        "queue_port": queue_port,
        "ssl_certfile": files / "cert.pem",
        "ssl_keyfile": files / "key.pem",
    }
    trust = ssl.create_default_context(cafile=str(files / "ca.pem"))
    proc, url = start_app(out, as_env(env), scheme="https", verify=trust)
    yield url, f"https://127.0.0.1:{queue_port}", trust
    stop_app(proc)


@pytest.fixture(scope="module")
def plain_app(hooks, tmp_path_factory):
    """The app built in this process, on plain http."""
    out = tmp_path_factory.mktemp("plain") / "outputs"
    with serve_app(out, **app_settings(hooks)) as served:
        yield served.url


def run_client(command: list[str], env: dict, timeout: float = 400) -> dict:
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout,
        cwd=CLIENTS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def python_run(tls_app, files, hooks):
    main, queue, _ = tls_app
    env = {"FAL_RUN_HOST": main.removeprefix("https://"), "FAL_KEY": KEY,
           "FAL_QUEUE_RUN_HOST": queue.removeprefix("https://"),
           "SSL_CERT_FILE": str(files / "ca.pem")}  # fmt: skip
    script = [sys.executable, "fal_python.py", str(files / "picture.png"), hooks.url]
    return run_client(script, env)


def node_client() -> Path:
    """tests/clients with @fal-ai/client installed from npm (once)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("Node.js and npm are needed for the JavaScript client's test")
        pytest.skip("Node.js and npm are not installed")
    if not (CLIENTS / "node_modules" / "@fal-ai" / "client").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENTS, check=True, timeout=300,
        )  # fmt: skip
    return CLIENTS


@pytest.fixture(scope="module")
def js_run(plain_app, files):
    node_client()
    return run_client(["node", "fal_js.mjs", plain_app, str(files / "picture.txt")],
                      {"FAL_KEY": KEY})  # fmt: skip


# -- Python fal-client over TLS


def test_python_client_runs_over_tls(python_run, tls_app):
    main, queue, trust = tls_app
    ran = python_run["run"]
    assert ran["seed"] == 3 and ran["image"]["url"].startswith(f"{main}/outputs/")
    video = httpx.get(ran["image"]["url"], verify=trust)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) == ran["image"]["file_size"]


def test_python_client_queues_on_the_queue_port(python_run, tls_app):
    _, queue, _ = tls_app
    handle, followed = python_run["submit"], python_run["queue"]
    base = f"{queue}/fal-ai/svd/requests/{handle['request_id']}"  # fal's shape: no /queue
    assert handle["status_url"] == base + "/status" and handle["response_url"] == base
    assert handle["cancel_url"] == base + "/cancel"
    assert followed["first"] in ("Queued", "InProgress", "Completed")
    assert followed["events"][-1] == "Completed" and followed["error"] is None
    assert "step 2 of 2" in followed["logs"] and "writing video" in followed["logs"]
    assert followed["metrics"]["inference_time"] > 0
    assert followed["result"]["seed"] == 4 and followed["result"]["image"]["url"].startswith(queue)
    assert python_run["status_by_id"] == "Completed"
    assert python_run["result_by_id"]["seed"] == 4


def test_python_client_subscribes_with_updates(python_run):
    assert python_run["subscribe"]["seed"] == 5 and len(python_run["enqueued"]) == 1
    updates = python_run["subscribe_updates"]
    assert updates[-1] == "Completed" and "InProgress" in updates


def test_python_client_cancels_a_queued_and_a_running_request(python_run):
    for which in ("queued", "running"):
        followed, got = python_run["cancel"][which], python_run["cancel"][f"{which}_get"]
        assert followed["error"] == "Request was cancelled", which
        assert followed["error_type"] == "client_cancelled"
        assert got["status"] == 499 and got["error_type"] == "client_cancelled"
        assert got["request_id"]


def test_a_request_that_cannot_start_in_time_is_a_user_timeout(python_run):
    refused = python_run["start_timeout"]
    assert refused["status"] == 504 and refused["error_type"] == "request_timeout"
    assert refused["timeout_type"] == "user"  # so fal's clients do not retry it
    assert "could not start within 1.5 s" in refused["detail"]


def test_python_client_sees_a_422_naming_the_field(python_run):
    invalid = python_run["invalid"]
    assert invalid["status"] == 422
    assert invalid["detail"][0]["loc"] == ["body", "motion_bucket_id"]


def test_python_async_client(python_run):
    done = python_run["async"]
    assert done["run"]["seed"] == 21 and done["result"]["seed"] == 22
    assert done["events"][-1] == "Completed" and done["subscribed"]["seed"] == 23
    assert done["updates"][-1] == "Completed"


def test_webhooks_are_delivered_with_retries(python_run, hooks, tls_app):
    main, queue, _ = tls_app
    ok_id = python_run["webhook"]["request_id"]
    first, again = hooks.payloads(ok_id, 2)  # the listener's first answer is a 500
    assert first == again
    assert again["status"] == "OK" and again["error"] is None
    assert again["request_id"] == again["gateway_request_id"] == ok_id
    assert again["payload"]["seed"] == 11
    assert again["payload"]["image"] == python_run["webhook"]["result"]["image"]
    assert again["payload"]["image"]["url"].startswith(f"{queue}/outputs/")

    failed_id = python_run["webhook_failed"]["request_id"]
    assert python_run["webhook_failed"]["get"]["status"] == 422
    error = hooks.payloads(failed_id, 2)[-1]
    assert error["status"] == "ERROR" and error["error"] == "Invalid status code: 422"
    assert error["payload"]["detail"][0]["loc"] == ["body", "image_url"]


def test_a_refused_webhook_is_a_422_at_submit(python_run, hooks):
    refused = python_run["webhook_refused"]
    assert refused["status"] == 422
    assert refused["detail"][0]["loc"] == ["query", "fal_webhook"]
    assert "private or local address" in refused["detail"][0]["msg"]


# -- JavaScript @fal-ai/client through fal's proxy protocol


def test_js_client_through_the_proxy(js_run, plain_app):
    assert js_run["run"]["requestId"] and js_run["run"]["data"]["seed"] == 3
    sub = js_run["subscribe"]
    assert sub["requestId"] and sub["data"]["seed"] == 4
    assert sub["data"]["image"]["url"].startswith(f"{plain_app}/outputs/")
    assert sub["updates"][-1]["status"] == "COMPLETED"
    assert "step 2 of 2" in sub["updates"][-1]["logs"]
    queue = js_run["queue"]
    assert queue["requestId"] == queue["submitted"]["request_id"] and queue["data"]["seed"] == 6
    assert queue["statuses"][-1] == "COMPLETED"


def test_js_client_streams_status(js_run):
    streamed = js_run["streaming"]
    assert streamed["requestId"] and streamed["data"]["seed"] == 5
    last = streamed["updates"][-1]
    assert last["status"] == "COMPLETED"
    logs = last["logs"]  # the client gathers each event's new lines: each comes once
    assert "step 2 of 2" in logs and len(logs) == len(set(logs))


def test_js_client_cancels_and_sees_a_validation_error(js_run):
    cancelled = js_run["cancelled"]
    assert cancelled["status"]["error_type"] == "client_cancelled"
    assert cancelled["result"]["status"] == 499 and cancelled["result"]["requestId"]
    invalid = js_run["invalid"]
    assert invalid["status"] == 422 and invalid["name"] == "ValidationError"
    assert invalid["fieldErrors"][0]["loc"] == ["body", "motion_bucket_id"]


# -- raw HTTP: the proxy, the queue host, fal's status codes and headers


def test_the_proxy_refuses_every_other_target_and_fetches_nothing(plain_app, hooks):
    targets = [
        f"http://127.0.0.1:{hooks.port}/hook",
        f"https://127.0.0.1:{hooks.port}/fal-ai/svd",
        "https://fal.run/fal-ai/flux/dev",
        "https://queue.fal.run/fal-ai/flux/dev/requests/abc/status",
        "https://fal.run/fal-ai/svd/requests/abc",
        "https://fal.run.example.com/fal-ai/svd",
        "https://example.com/?https://fal.run/fal-ai/svd",
        "https://user@fal.run/fal-ai/svd",
        "https://fal.run:8443/fal-ai/svd",
        "http://fal.run/fal-ai/svd",
        "https://queue.fal.run/fal-ai/svd/requests/../../../etc/passwd",
        "https://rest.fal.ai/storage/upload/initiate",
        "not a url",
    ]
    before = len(hooks.received)
    with httpx.Client(base_url=plain_app, headers=AUTH, timeout=30) as client:
        for target in targets:
            for method in ("GET", "POST", "PUT"):
                r = client.request(method, "/api/fal/proxy", headers={"x-fal-target-url": target},
                                   json={"image_url": "x"})  # fmt: skip
                assert r.status_code == 403, (target, method, r.text)
                assert "only fal-ai/svd" in r.json()["detail"]
        assert client.post("/api/fal/proxy", json={}).status_code == 400  # no target
        r = client.request("DELETE", "/api/fal/proxy",
                           headers={"x-fal-target-url": "https://fal.run/fal-ai/svd"})  # fmt: skip
        assert r.status_code == 403
        preflight = client.options("/api/fal/proxy", headers={"Origin": "https://example.org"})
        assert preflight.status_code == 204
        assert "x-fal-request-id" in preflight.headers["access-control-expose-headers"]
        target = {"x-fal-target-url": "https://fal.run/fal-ai/svd"}
        anonymous = httpx.post(f"{plain_app}/api/fal/proxy", json={}, headers=target)
        assert anonymous.status_code == 401  # the proxy is the API: the same key
    assert len(hooks.received) == before


def test_queue_host_by_host_header(plain_app, files):
    uri = (files / "picture.txt").read_text()
    host = {"Host": "queue.svd.example.com", **AUTH}
    with httpx.Client(base_url=plain_app, timeout=30) as client:
        r = client.post("/fal-ai/svd", json={"image_url": uri, **LONG}, headers=host)
        assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE", r.text
        handle = r.json()
        request_id = handle["request_id"]
        base = f"http://queue.svd.example.com/fal-ai/svd/requests/{request_id}"
        assert handle["status_url"] == base + "/status"
        assert r.headers["x-fal-request-id"] == request_id
        path = f"/fal-ai/svd/requests/{request_id}"
        status = client.get(path + "/status", headers=host)
        assert status.status_code == 202 and status.headers["x-fal-request-id"] == request_id
        assert client.get(path, headers=host).status_code == 400  # still in progress
        assert client.get("/", headers=host).status_code == 404  # no page on the queue host
        assert client.put(path + "/cancel", headers=host).status_code == 202
        deadline = time.monotonic() + 60
        while (status := client.get(path + "/status", headers=host)).status_code == 202:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert status.status_code == 200 and status.json()["error_type"] == "client_cancelled"
        result = client.get(path, headers=host)
        assert result.status_code == 499
        assert result.headers["x-fal-error-type"] == "client_cancelled"
        # the same request through the /queue prefix, for curl users
        assert client.get(f"/queue{path}/status", headers=AUTH).status_code == 200


def test_urls_follow_a_trusted_proxys_forwarded_headers(plain_app, files):
    uri = (files / "picture.txt").read_text()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "svd.example.com", **AUTH}
    r = httpx.post(f"{plain_app}/queue/fal-ai/svd", json={"image_url": uri, **LONG},
                   headers=forwarded, timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status_url"].startswith("https://svd.example.com/queue/fal-ai/svd/requests/")
    httpx.put(r.json()["cancel_url"].replace("https://svd.example.com", plain_app), headers=AUTH)


def test_the_status_stream_ends_after_completed(plain_app, files):
    uri = (files / "picture.txt").read_text()
    with httpx.Client(base_url=plain_app, headers=AUTH, timeout=60) as client:
        body = {"image_url": uri, "steps": 2, "num_frames": 4, "width": 192, "height": 128}
        request_id = client.post("/queue/fal-ai/svd", json=body).json()["request_id"]
        path = f"/queue/fal-ai/svd/requests/{request_id}/status/stream"
        with client.stream("GET", path, params={"logs": 1}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["x-fal-request-id"] == request_id
            events = [json.loads(line[5:]) for line in stream.iter_lines()
                      if line.startswith("data:")]  # fmt: skip
    assert events[-1]["status"] == "COMPLETED" and events[-1]["metrics"]["inference_time"] > 0
    lines = [entry["message"] for event in events for entry in event["logs"]]
    assert "step 2 of 2" in lines and len(lines) == len(set(lines))


def test_a_start_timeout_header_out_of_range_is_a_422(plain_app, files):
    uri = (files / "picture.txt").read_text()
    for value in ("0.1", "0", "-3", "nan", "soon", "1e9"):
        r = httpx.post(f"{plain_app}/fal-ai/svd", json={"image_url": uri},
                       headers={"X-Fal-Request-Timeout": value, **AUTH})  # fmt: skip
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "header", value
    # fal takes any start timeout above 0.1 s
    r = httpx.post(f"{plain_app}/queue/fal-ai/svd", json={"image_url": uri, **LONG},
                   headers={"X-Fal-Request-Timeout": "0.5", **AUTH})  # fmt: skip
    assert r.status_code == 200, r.text
    httpx.put(r.json()["cancel_url"], headers=AUTH)


@pytest.mark.parametrize("trusted, seen", [
    ("127.0.0.1", ("https", "svd.example.com")),  # the proxy is believed
    ("192.0.2.1", ("http", "testserver")),  # another address is: its headers count for nothing
])  # fmt: skip
def test_forwarded_headers_count_only_from_a_trusted_proxy(trusted, seen):
    import asyncio

    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from svd.routing import FalRouting

    async def echo(scope, receive, send):
        request = Request(scope)
        body = {"scheme": request.url.scheme, "host": request.url.hostname}
        await JSONResponse(body)(scope, receive, send)

    async def ask():
        transport = httpx.ASGITransport(app=FalRouting(echo, trusted=trusted))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "svd.example.com"}
            return (await c.get("/", headers=headers)).json()

    answer = asyncio.run(ask())
    assert (answer["scheme"], answer["host"]) == seen


# -- the page's API panel: its Python and JavaScript snippets, run as they are


def snippet_body(files) -> dict:
    uri = (files / "picture.txt").read_text()
    return {"image_url": uri, "seed": 31, "steps": 2, "num_frames": 4, "width": 192,
            "height": 128, "interpolate": 1}  # fmt: skip


def test_the_python_snippet_runs_as_it_is(tls_app, files, tmp_path):
    from svd.ui.snippets import snippets

    main, queue, _ = tls_app
    _, code, _ = snippets(snippet_body(files), main, queue, keyed=True)
    (tmp_path / "snippet.py").write_text(code)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "snippet.py")], capture_output=True, text=True,
        env={**os.environ, "FAL_KEY": KEY, "SSL_CERT_FILE": str(files / "ca.pem")}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    url, seed = done.stdout.split()
    assert url.startswith(f"{main}/outputs/") and seed == "31"


def test_the_python_snippet_runs_as_it_is_on_plain_http(plain_app, files, tmp_path):
    """fal-client speaks https only: on a plain-http server the Python tab is plain httpx."""
    from svd.ui.snippets import snippets

    _, code, _ = snippets(snippet_body(files), plain_app, None, keyed=True)
    assert "import httpx" in code and "fal_client" not in code
    (tmp_path / "snippet.py").write_text(code)
    env = {**os.environ, "SVD_API_KEY": KEY}
    done = subprocess.run([sys.executable, str(tmp_path / "snippet.py")], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    url, seed = done.stdout.split()
    assert url.startswith(f"{plain_app}/outputs/") and seed == "31"


def test_the_javascript_snippet_runs_as_it_is(plain_app, files):
    from svd.ui.snippets import snippets

    folder = node_client()
    _, _, code = snippets(snippet_body(files), plain_app, None, keyed=True)
    script = folder / "snippet-test.mjs"  # beside node_modules, where the client resolves
    script.write_text(code)
    try:
        done = subprocess.run(["node", script.name], cwd=folder, capture_output=True, text=True,
                              env={**os.environ, "FAL_KEY": KEY}, timeout=120)  # fmt: skip
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    request_id, url, seed = done.stdout.split()[-3:]
    assert request_id and url.startswith(f"{plain_app}/outputs/") and seed == "31"


def test_routing_keeps_the_root_path_behind_a_prefixing_proxy():
    """Under --root-path, uvicorn puts the prefix in front of every path; so must we."""
    import asyncio

    from starlette.responses import JSONResponse

    from svd.routing import FalRouting

    async def echo(scope, receive, send):
        await JSONResponse({"path": scope["path"]})(scope, receive, send)

    async def ask(path, headers):
        transport = httpx.ASGITransport(app=FalRouting(echo), root_path="/svd")
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return (await c.post(path, headers=headers)).json()["path"]

    proxied = {"x-fal-target-url": "https://queue.fal.run/fal-ai/svd/requests/abc/status"}
    assert asyncio.run(ask("/svd/api/fal/proxy", proxied)) == (
        "/svd/queue/fal-ai/svd/requests/abc/status"
    )
    queue_host = {"host": "queue.svd.example.com"}
    assert asyncio.run(ask("/svd/fal-ai/svd", queue_host)) == "/svd/queue/fal-ai/svd"
    assert asyncio.run(ask("/svd/other", {})) == "/svd/other"
