"""The fal emulator, driven by the unmodified fal_client."""

import io

import fal_client
import httpx
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from .conftest import make_picture
from .fal_emulator import FalEmulator, point_fal_client_at

KEY = "good-key"
FAST = 0.01  # poll interval


@pytest.fixture
def fal(monkeypatch):
    with FalEmulator(key=KEY) as emulator:
        point_fal_client_at(emulator, monkeypatch)
        yield emulator


@pytest.fixture
def client(fal):
    return fal_client.SyncClient(key=KEY)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def read_mp4(data: bytes, tmp_path) -> tuple[dict, list[np.ndarray]]:
    path = tmp_path / "out.mp4"
    path.write_bytes(data)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    return meta, frames


ROUTES = {
    "fal_v3": ["POST /storage/auth/token", "POST /files/upload"],
    "fal": ["POST /storage/upload/initiate", "PUT /signed/"],
}


@pytest.mark.parametrize("repository", ["fal_v3", "fal"])
def test_upload_file_round_trip(fal, client, tmp_path, repository):
    path = tmp_path / "picture.png"
    make_picture(64, 48).save(path)
    url = client.upload_file(path, repository=repository)
    want = ROUTES[repository]
    assert [hit[: len(w)] for hit, w in zip(fal.hits, want, strict=True)] == want
    assert url.startswith(fal.url + "/files/")
    assert httpx.get(url).content == path.read_bytes()
    assert [(u.content_type, u.file_name, u.url) for u in fal.uploads] == [
        ("image/png", "picture.png", url)
    ]


def test_upload_image_through_module_functions(fal):
    url = fal_client.upload_image(make_picture(32, 32), format="png")
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (32, 32)


def test_subscribe_makes_a_video_of_the_picture(fal, client, tmp_path):
    picture = make_picture(96, 64)
    image_url = client.upload(png(picture), "image/png", "in.png")
    updates = []
    args = {"image_url": image_url, "motion_bucket_id": 127, "cond_aug": 0.02, "seed": 7}
    result = client.subscribe(
        "fal-ai/svd", args, with_logs=True, on_queue_update=updates.append, interval=FAST
    )

    assert result["seed"] == 7
    video = result["image"]
    assert video["content_type"] == "video/mp4" and video["file_name"].endswith(".mp4")
    data = httpx.get(video["url"]).content
    assert len(data) == video["file_size"]
    meta, frames = read_mp4(data, tmp_path)
    assert meta["size"] == (96, 64) and len(frames) == 4
    diff = np.abs(frames[0].astype(int) - np.asarray(picture, dtype=int)).mean()
    assert diff < 8, diff  # the first frame is the picture, up to compression

    queued = [u.position for u in updates if isinstance(u, fal_client.Queued)]
    assert queued == [2, 1, 0]
    logs = [u.logs for u in updates if isinstance(u, fal_client.InProgress)]
    assert [len(lines) for lines in logs] == [1, 2]
    assert {"message", "level", "source", "timestamp"} <= set(logs[-1][0])
    assert isinstance(updates[-1], fal_client.Completed)

    (req,) = fal.requests
    assert (req.app, req.route, req.body) == ("fal-ai/svd", "queue", args)
    assert "authorization" not in {k.lower() for k in req.headers}


def test_run_with_data_uri_and_video_key(monkeypatch, tmp_path):
    with FalEmulator(key=KEY, result_key="video") as fal:
        point_fal_client_at(fal, monkeypatch)
        uri = fal_client.encode(png(make_picture(40, 40)), "image/png")
        result = fal_client.run("fal-ai/svd", {"image_url": uri})
        assert isinstance(result["seed"], int) and "image" not in result
        meta, frames = read_mp4(httpx.get(result["video"]["url"]).content, tmp_path)
        assert meta["size"] == (32, 32) and len(frames) == 4
        assert fal.requests[0].route == "run"


def test_wrong_or_missing_key_is_401(fal):
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.SyncClient(key="bad-key").subscribe(
            "fal-ai/svd", {"image_url": "data:,x"}, interval=FAST
        )
    assert err.value.status_code == 401 and isinstance(err.value.message, str)
    # fal_client cannot send no key at all; check the bare route instead
    response = httpx.post(fal.url + "/queue/fal-ai/svd", json={})
    assert response.status_code == 401 and isinstance(response.json()["detail"], str)
    assert fal.requests == []


def test_invalid_motion_bucket_is_422(fal, client):
    args = {"image_url": client.upload(png(make_picture(32, 32)), "image/png")}
    args["motion_bucket_id"] = 254
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        client.subscribe("fal-ai/svd", args, interval=FAST)
    assert err.value.status_code == 422
    assert err.value.message[0]["loc"] == ["body", "motion_bucket_id"]
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        client.run("fal-ai/svd", args)
    assert err.value.status_code == 422


def test_a_503_once_is_retried(fal, client):
    args = {"image_url": client.upload(png(make_picture(32, 32)), "image/png"), "steps": 98}
    assert client.subscribe("fal-ai/svd", args, interval=FAST)["image"]["url"]
    assert client.run("fal-ai/svd", args)["image"]["url"]
    assert len(fal.unavailable) == 2
    assert [r.route for r in fal.requests] == ["queue", "run", "run"]


def test_cancel_a_request_that_never_ends(fal, client):
    args = {"image_url": client.upload(png(make_picture(32, 32)), "image/png"), "steps": 99}
    handle = client.submit("fal-ai/svd", args)
    statuses = [handle.status(with_logs=True) for _ in range(8)]
    assert all(isinstance(s, fal_client.InProgress) for s in statuses[3:])
    handle.cancel()
    assert fal.cancelled == [handle.request_id]
    assert isinstance(handle.status(), fal_client.Completed)

    with pytest.raises(fal_client.FalClientTimeoutError) as err:
        client.subscribe("fal-ai/svd", args, interval=FAST, client_timeout=1.5)
    assert fal.cancelled[-1] == err.value.request_id
    assert fal.requests[-1].headers["x-fal-request-timeout"] == "1.5"
