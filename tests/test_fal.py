"""FalBackend through the unmodified fal-client against a local HTTPS emulator of fal."""

import base64
import io
import json
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from svd.backends import get_backend
from svd.backends.fal import FalBackend
from svd.errors import BackendError, InputError
from svd.events import Log, Queued, Stage
from svd.media import read_video
from svd.run import run
from svd.schema import SVDInput

from .fal_emulator import (
    INVALID_MOTION_BUCKET,
    LOG_LINES,
    STEPS_FLAKY,
    STEPS_FOREVER,
    FalEmulator,
    point_fal_client_at,
)
from .live import free_port


@pytest.fixture
def fal(monkeypatch):
    with FalEmulator(key="good-key") as emulator:
        point_fal_client_at(emulator, monkeypatch)
        yield emulator


@pytest.fixture
def backend(fal):
    return FalBackend(poll_interval=0.01)


def video_of(out):
    return read_video(urlparse(out.image.url).path)[0]


def test_a_local_picture_is_uploaded_and_the_video_kept(fal, backend, picture_path, store):
    events = []
    out = run(backend, SVDInput(image_url=picture_path, seed=5, steps=20), store, events.append)
    assert out.seed == 5
    sent = fal.requests[-1].body
    assert sent == {
        "image_url": fal.uploads[0].url,
        "motion_bucket_id": 127,
        "cond_aug": 0.02,
        "seed": 5,
        "steps": 20,
    }
    assert fal.uploads[0].data == Path(picture_path).read_bytes()
    assert fal.uploads[0].content_type == "image/png"
    frames = video_of(out)
    picture = Image.open(picture_path).convert("RGB").resize(frames.shape[2:0:-1])
    assert np.abs(frames[0].astype(float) - np.asarray(picture, float)).mean() < 8
    assert [e.position for e in events if isinstance(e, Queued)] == [2, 1, 0]
    assert [e.message for e in events if isinstance(e, Log)] == list(LOG_LINES)
    assert Stage("downloading video") in events


def test_the_record_has_the_request_and_no_key(fal, backend, picture_path, store):
    out = run(backend, SVDInput(image_url=picture_path, seed=1, fps=12), store)
    video = Path(urlparse(out.image.url).path)
    text = video.with_suffix(".json").read_text()
    record = json.loads(text)
    assert record["backend"] == "fal" and record["model"] == "fal-ai/svd"
    assert record["request_id"] and record["remote_url"].startswith(fal.url)
    assert record["output"]["file_size"] == video.stat().st_size
    assert "good-key" not in text
    assert "fps" not in fal.requests[-1].body  # our extras stay local


def test_mask_and_archive_are_uploaded_and_their_urls_sent(
    fal, backend, picture_path, tmp_path, store
):
    mask = tmp_path / "mask.png"
    Image.new("L", (32, 32), 0).save(mask)
    archive = tmp_path / "depth.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("1.png", mask.read_bytes())
        z.writestr("2.png", mask.read_bytes())
    data_uri = "data:image/png;base64," + base64.b64encode(Path(picture_path).read_bytes()).decode()
    inp = SVDInput(image_url=data_uri, mask_image_url=str(mask), control_maps_data_url=str(archive))
    run(backend, inp, store)
    sent = fal.requests[-1].body
    uploaded = {u.url: u for u in fal.uploads}
    assert uploaded[sent["image_url"]].data == Path(picture_path).read_bytes()
    assert uploaded[sent["mask_image_url"]].data == mask.read_bytes()
    assert uploaded[sent["control_maps_data_url"]].data == archive.read_bytes()
    assert uploaded[sent["control_maps_data_url"]].content_type == "application/zip"


def test_https_urls_are_passed_through(fal, backend, picture_path, store):
    run(backend, SVDInput(image_url=picture_path), store)
    remote = fal.requests[-1].body["image_url"]
    count = len(fal.uploads)
    run(backend, SVDInput(image_url=remote), store)
    assert fal.requests[-1].body["image_url"] == remote and len(fal.uploads) == count


def test_video_output_key_is_accepted(monkeypatch, picture_path, store):
    with FalEmulator(key="k", result_key="video") as emulator:
        point_fal_client_at(emulator, monkeypatch)
        out = run(FalBackend(poll_interval=0.01), SVDInput(image_url=picture_path), store)
        assert video_of(out).shape[0] == 4


def test_a_rejected_key_is_a_clear_error(fal, picture_path, store):
    bad = FalBackend(key="wrong-key", poll_interval=0.01)
    with pytest.raises(BackendError, match="fal rejected the API key") as e:
        run(bad, SVDInput(image_url=picture_path), store)
    assert "wrong-key" not in str(e.value)
    with pytest.raises(BackendError, match="fal rejected the API key"):  # no upload needed
        run(bad, SVDInput(image_url=f"{fal.url}/files/none/x.png"), store)


def test_no_key_names_fal_key(fal, monkeypatch, picture_path, store):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BackendError, match="FAL_KEY"):
        run(FalBackend(), SVDInput(image_url=picture_path), store)
    monkeypatch.setenv("FAL_KEY_ID", "good")
    monkeypatch.setenv("FAL_KEY_SECRET", "key")
    assert get_backend("auto").name == "fal"


def test_fal_validation_error_names_the_field(backend, picture_path, store):
    inp = SVDInput(image_url=picture_path, motion_bucket_id=INVALID_MOTION_BUCKET)
    with pytest.raises(InputError) as e:
        run(backend, inp, store)
    assert e.value.field == "motion_bucket_id" and "253" in e.value.message


def test_local_only_options_are_refused_before_fal(fal, backend, picture_path, store):
    for field, value in (("extend", 1), ("cache_interval", 2)):
        with pytest.raises(InputError, match=f"{field}: runs on the local backend only"):
            run(backend, SVDInput(image_url=picture_path, **{field: value}), store)
    assert fal.requests == []


def test_a_503_is_retried(fal, backend, picture_path, store):
    out = run(backend, SVDInput(image_url=picture_path, steps=STEPS_FLAKY), store)
    assert fal.unavailable and video_of(out).shape[0] == 4


def test_timeout_cancels_on_fal(fal, picture_path, store):
    slow = FalBackend(timeout=1.0, poll_interval=0.05)
    with pytest.raises(BackendError, match=r"no result after 1 s.*cancelled on fal"):
        run(slow, SVDInput(image_url=picture_path, steps=STEPS_FOREVER), store)
    assert len(fal.cancelled) == 1
    assert not list(store.root.glob("*.mp4"))


def test_stop_cancels_on_fal(fal, backend, picture_path, store):
    class Stop(Exception):
        pass

    def stop_when_running(event):
        if isinstance(event, Log):
            raise Stop

    with pytest.raises(Stop):
        run(
            backend, SVDInput(image_url=picture_path, steps=STEPS_FOREVER), store, stop_when_running
        )
    assert len(fal.cancelled) == 1


def test_bad_local_input_fails_before_fal(fal, backend, tmp_path, store):
    with pytest.raises(InputError, match="image_url: no such file"):
        run(backend, SVDInput(image_url=str(tmp_path / "missing.png")), store)
    assert fal.requests == []


def test_network_failure_is_a_clear_error(fal, monkeypatch, store):
    nobody = f"https://127.0.0.1:{free_port()}/queue/"  # nothing listens there
    monkeypatch.setattr("fal_client.client.QUEUE_URL_FORMAT", nobody)
    monkeypatch.setattr("fal_client.client.MAX_ATTEMPTS", 2)
    backend = FalBackend(poll_interval=0.01)
    with pytest.raises(BackendError, match="could not reach fal"):
        run(backend, SVDInput(image_url=f"{fal.url}/files/x/y.png"), store)


def test_content_types():
    from svd.backends.fal import content_type_of

    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "JPEG")
    assert content_type_of(buf.getvalue()) == "image/jpeg"
    assert content_type_of(b"PK\x03\x04rest") == "application/zip"
    assert content_type_of(b"\x1f\x8b...") == "application/gzip"
    assert content_type_of(b"x", "maps.tar") == "application/x-tar"
    assert content_type_of(b"????") == "application/octet-stream"


def test_cli_runs_through_fal(fal, picture_path, tmp_path):
    from .fal_emulator import env
    from .test_cli import svd_cli

    run_env = {**env(fal, key="good-key"), "SVD_BACKEND": "fal", "SVD_FAL_POLL_INTERVAL": "0.02"}
    r = svd_cli(
        "generate", "--image-url", picture_path, "--seed", "9", "--out-dir", str(tmp_path),
        env=run_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["seed"] == 9 and fal.uploads[0].data == Path(picture_path).read_bytes()
    assert read_video(urlparse(out["image"]["url"]).path)[0].shape[0] == 4
    assert "queued, position 2" in r.stderr and LOG_LINES[0] in r.stderr
    bad = svd_cli(
        "generate", "--image-url", picture_path, "--out-dir", str(tmp_path),
        env={**run_env, "FAL_KEY": "nope"},
    )  # fmt: skip
    assert bad.returncode == 1 and "fal rejected the API key" in bad.stderr


def test_page_runs_through_fal(fal, picture_path, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    from .live import serve_app
    from .test_ui import DEFAULTS, generate

    out_dir = tmp_path / "outputs"
    monkeypatch.delenv("FAL_KEY")  # the app runs locally
    with serve_app(out_dir, fal_poll_interval=0.02) as served:
        url = served.url
        client = Client(url, verbose=False)
        # fal takes no frame count: the local run at the end sets its own.
        fields = {**DEFAULTS, "image": handle_file(picture_path), "seed": "4", "steps": 20,
                  "num_frames": 0}  # fmt: skip
        # The app runs locally (no FAL_KEY); this session picks fal and types its key.
        video, seed, status = generate(url, **{**fields, "backend": "fal", "fal_key": "good-key"})
        assert seed == "4" and "fal" in status
        assert read_video(video["video"] if isinstance(video, dict) else video)[0].shape[0] == 4
        assert fal.requests[-1].body["seed"] == 4
        with pytest.raises(Exception, match="fal rejected the API key"):
            client.predict(**{**fields, "backend": "fal", "fal_key": "bad"}, api_name="/generate")
        with pytest.raises(Exception, match="FAL_KEY"):
            client.predict(**{**fields, "backend": "fal"}, api_name="/generate")
        _, _, status = generate(url, **{**fields, "num_frames": 4, "steps": 2})  # local works
        assert "tiny" in status
        assert "bad" not in (out_dir.parent / f"app-{url.rsplit(':', 1)[1]}.log").read_text()


def test_each_model_goes_to_its_fal_endpoint(fal, backend, picture_path, store):
    """animatelcm-svd-xt runs on fal-ai/fast-svd-lcm with that endpoint's fields (its own
    steps and fps); the default on fal-ai/svd; a model fal does not host is an error."""
    out = run(backend, SVDInput(image_url=picture_path, model="animatelcm-svd-xt", seed=2), store)
    sent = fal.requests[-1]
    assert sent.app == "fal-ai/fast-svd-lcm" and sent.route == "queue"
    assert sent.body == {"image_url": fal.uploads[-1].url, "motion_bucket_id": 127,
                         "cond_aug": 0.02, "seed": 2, "steps": 4, "fps": 8}  # fmt: skip
    assert out.seed == 2 and video_of(out).shape[0] == 4  # fal's `video` kept
    record = json.loads(Path(urlparse(out.image.url).path).with_suffix(".json").read_text())
    assert record["model"] == "fal-ai/fast-svd-lcm"
    run(backend, SVDInput(image_url=picture_path, model="svd-xt", seed=2), store)
    assert fal.requests[-1].app == "fal-ai/svd" and "fps" not in fal.requests[-1].body
    with pytest.raises(InputError, match="^model: fal does not host svd-xt-1-1; it hosts svd-xt"):
        run(backend, SVDInput(image_url=picture_path, model="svd-xt-1-1"), store)
    masked = SVDInput(image_url=picture_path, mask_image_url=picture_path,
                      model="animatelcm-svd-xt")  # fmt: skip
    with pytest.raises(InputError, match="^mask_image_url: fal-ai/fast-svd-lcm on fal does not"):
        run(backend, masked, store)


def test_several_videos_are_requests_at_once_from_consecutive_seeds(
    fal, backend, picture_path, store
):
    out = run(backend, SVDInput(image_url=picture_path, seed=40, num_videos=3), store)
    runs = [r for r in fal.requests if r.route == "queue"]
    assert sorted(r.body["seed"] for r in runs) == [40, 41, 42]
    assert len({r.body["image_url"] for r in runs}) == 1  # the picture went up once
    assert out.seeds == [40, 41, 42] and out.seed == 40 and out.image == out.videos[0]
    assert len({v.url for v in out.videos}) == 3
    for video, seed in zip(out.videos, out.seeds, strict=True):
        record = json.loads(Path(urlparse(video.url).path).with_suffix(".json").read_text())
        assert record["seed"] == seed and record["input"]["num_videos"] == 1
