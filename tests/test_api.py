"""The fal-compatible HTTP API against a live server on `tiny`, through httpx."""

import base64
import concurrent.futures
import re
import time
from pathlib import Path

import httpx
import pytest

from svd.media import read_video

from .live import serve_app

FAST = {"steps": 2, "num_frames": 4, "width": 192, "height": 128}


@pytest.fixture(scope="module")
def picture_uri(tmp_path_factory):
    from .conftest import make_picture

    path = tmp_path_factory.mktemp("api") / "p.png"
    make_picture().save(path)
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def poll(client, status_url, until="COMPLETED", timeout=120):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = client.get(status_url, params={"logs": 1}).json()
        seen.append(status)
        if status["status"] == until:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"no {until} in time: {seen[-1]}")


def test_sync_request_returns_a_playable_video(app_url, picture_uri, tmp_path):
    url, out = app_url
    r = httpx.post(
        f"{url}/fal-ai/svd", json={"image_url": picture_uri, "seed": 8, **FAST}, timeout=120
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seed"] == 8 and set(body) == {"image", "seed"}
    assert body["image"]["content_type"] == "video/mp4"
    video = httpx.get(body["image"]["url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert len(video.content) == body["image"]["file_size"]
    (tmp_path / "v.mp4").write_bytes(video.content)
    assert read_video(tmp_path / "v.mp4")[0].shape == (4, 128, 192, 3)
    part = httpx.get(body["image"]["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    assert (out / body["image"]["file_name"]).exists()


def test_queue_lifecycle_with_logs(app_url, picture_uri):
    url, _ = app_url
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{url}/queue/fal-ai/svd", json={"image_url": picture_uri, **FAST})
        assert r.status_code == 200, r.text
        handle = r.json()
        assert handle["status"] == "IN_QUEUE" and handle["queue_position"] >= 0
        assert handle["status_url"].endswith(f"/requests/{handle['request_id']}/status")
        statuses = poll(client, handle["status_url"])
        final = statuses[-1]
        messages = [line["message"] for line in final["logs"]]
        assert "step 2 of 2" in messages and "writing video" in messages
        result = client.get(handle["response_url"])
        assert result.status_code == 200 and result.json()["image"]["url"].startswith(url)
        assert client.get(f"{url}/queue/fal-ai/svd/requests/nope/status").status_code == 404


def test_eight_at_once_all_complete_in_order(app_url, picture_uri):
    url, _ = app_url
    with httpx.Client(timeout=60) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            submit = lambda i: client.post(  # noqa: E731
                f"{url}/queue/fal-ai/svd", json={"image_url": picture_uri, "seed": i, **FAST}
            ).json()
            handles = list(pool.map(submit, range(8)))
        positions = sorted(h["queue_position"] for h in handles)
        assert positions[-1] >= 5  # most waited behind others
        results = []
        for h in handles:
            poll(client, h["status_url"])
            results.append(client.get(h["response_url"]).json())
        assert sorted(r["seed"] for r in results) == list(range(8))
        files = {r["image"]["file_name"] for r in results}
        assert len(files) == 8


def test_cancel_a_queued_and_a_running_request(app_url, picture_uri):
    url, out = app_url
    before = len(list(out.glob("*.mp4")))
    with httpx.Client(timeout=60) as client:
        long = client.post(
            f"{url}/queue/fal-ai/svd", json={"image_url": picture_uri, "steps": 100}
        ).json()
        queued = client.post(
            f"{url}/queue/fal-ai/svd", json={"image_url": picture_uri, **FAST}
        ).json()
        assert queued["status"] == "IN_QUEUE"  # behind the long one
        r = client.put(queued["cancel_url"])
        assert r.status_code == 202 and r.json()["status"] == "CANCELLATION_REQUESTED"
        assert client.get(queued["status_url"]).json()["status"] == "COMPLETED"
        cancelled = client.get(queued["response_url"])
        assert cancelled.status_code == 499  # fal's client_cancelled
        assert cancelled.headers["x-fal-error-type"] == "client_cancelled"
        poll(client, long["status_url"], until="IN_PROGRESS")
        assert client.put(long["cancel_url"]).status_code == 202
        poll(client, long["status_url"])
        assert "cancelled" in client.get(long["response_url"]).json()["detail"]
        assert client.put(long["cancel_url"]).status_code == 400  # already completed
    assert len(list(out.glob("*.mp4"))) == before


@pytest.mark.parametrize(
    "change, field",
    [
        ({"motion_bucket_id": 300}, "motion_bucket_id"),
        ({"motion_bucket_id": "12"}, "motion_bucket_id"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"cond_aug": "lots"}, "cond_aug"),
        ({"cond_aug": 11}, "cond_aug"),
        ({"seed": "x"}, "seed"),
        ({"image_url": None}, "image_url"),
        ({"image_url": "/etc/passwd"}, "image_url"),
        ({"mask_image_url": "file:///etc/passwd"}, "mask_image_url"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(app_url, picture_uri, change, field):
    url, _ = app_url
    body = {"image_url": picture_uri, **change}
    for route in ("/fal-ai/svd", "/queue/fal-ai/svd"):
        r = httpx.post(url + route, json=body, timeout=30)
        assert r.status_code == 422
        assert ["body", field] in [d["loc"] for d in r.json()["detail"]]


def test_unreadable_image_fails_the_request_not_the_server(app_url):
    url, _ = app_url
    bad = {"image_url": "data:image/png;base64,aGVsbG8="}
    r = httpx.post(f"{url}/fal-ai/svd", json=bad, timeout=120)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image_url"]
    assert httpx.get(f"{url}/openapi.json").status_code == 200


def test_openapi_describes_the_routes(app_url):
    paths = httpx.get(f"{app_url[0]}/openapi.json").json()["paths"]
    assert {"/fal-ai/svd", "/queue/fal-ai/svd"} <= set(paths)
    assert "/queue/fal-ai/svd/requests/{request_id}/cancel" in paths


def test_docs_work_offline(app_url):
    """Swagger UI 5 (FastAPI's schema is OpenAPI 3.1) from this server, no CDN."""
    url = app_url[0]
    page = httpx.get(f"{url}/docs").text
    assert "cdn." not in page and "jsdelivr" not in page and "unpkg" not in page
    scripts = re.findall(r'src="([^"]+\.js)"', page) + re.findall(r'href="([^"]+\.css)"', page)
    assert scripts and all(s.startswith("/") for s in scripts)
    for asset in scripts:
        r = httpx.get(f"{url}{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000, asset
    bundle = httpx.get(url + next(s for s in scripts if "bundle" in s)).text
    assert re.search(r'"5\.\d+\.\d+"', bundle)  # Swagger UI 5


def test_api_key(tmp_path, picture_uri):
    out = tmp_path / "outputs"
    out.mkdir()
    with serve_app(out, api_key="sekret") as served:
        url = served.url
        body = {"image_url": picture_uri, **FAST}
        assert httpx.post(f"{url}/fal-ai/svd", json=body).status_code == 401
        wrong = {"Authorization": "Key nope"}
        assert httpx.post(f"{url}/queue/fal-ai/svd", json=body, headers=wrong).status_code == 401
        right = {"Authorization": "Key sekret"}
        r = httpx.post(f"{url}/fal-ai/svd", json=body, headers=right, timeout=120)
        assert r.status_code == 200
        assert httpx.get(r.json()["image"]["url"]).status_code == 200  # files are public by name
        assert httpx.get(url).status_code == 200  # the page is not behind the key
    assert Path(out).exists()


def test_a_sync_client_that_leaves_cancels_its_request(app_url, picture_uri):
    url, out = app_url
    before = set(out.glob("*.mp4"))
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{url}/fal-ai/svd", json={"image_url": picture_uri, "steps": 100}, timeout=2)
    r = httpx.post(f"{url}/fal-ai/svd", json={"image_url": picture_uri, **FAST}, timeout=300)
    assert r.status_code == 200
    made = set(out.glob("*.mp4")) - before
    assert [p.name for p in made] == [r.json()["image"]["file_name"]]  # the long one never ran out
