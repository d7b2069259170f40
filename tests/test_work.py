"""The work one request may ask is bounded, and a cancelled run stops inside a step."""

import pytest

from svd.api import build_api
from svd.errors import InputError
from svd.events import Step, Tick
from svd.jobs import JobQueue
from svd.run import run
from svd.schema import SVDInput

from .conftest import SMALL
from .inprocess import post


def test_work_past_the_limit_is_a_422_naming_it(
    use_settings, tiny_backend, tmp_path, monkeypatch, store
):
    """2048 x 2048 x 64 frames is refused at submit, before it waits or costs memory."""
    monkeypatch.delenv("SVD_API_KEY", raising=False)
    app = build_api(JobQueue([tiny_backend], tmp_path), tmp_path)
    body = {"image_url": "https://example.com/a.png", "width": 2048, "height": 2048,
            "num_frames": 64, "steps": 100}  # fmt: skip

    r = post(app, "/queue/fal-ai/svd", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "steps"] and "SVD_MAX_WORK" in detail["msg"]
    assert "2048x2048 px x 64 frames x 100 steps" in detail["msg"]
    use_settings(max_work="0.5")  # the host sets it: small runs only
    with pytest.raises(InputError, match="over this server's limit of 0"):
        run(tiny_backend, SVDInput(image_url="x", **{**SMALL, "steps": 10}), store)


def test_a_cancelled_run_stops_inside_a_step(tiny_backend, picture_path, store):
    """Ticks come before each UNet block and decode chunk: a run cancelled at the first one
    stops there, before its first step ends; the model is left without hooks."""
    seen = []

    class Stop(Exception):
        pass

    def on_event(event):
        seen.append(event)
        if isinstance(event, Tick):
            raise Stop

    with pytest.raises(Stop):
        run(
            tiny_backend, SVDInput(image_url=picture_path, **{**SMALL, "steps": 1}), store, on_event
        )
    assert not any(isinstance(e, Step) for e in seen)
    ticks = []
    out = run(
        tiny_backend,
        SVDInput(image_url=picture_path, seed=1, **SMALL),
        store,
        lambda e: ticks.append(e),
    )
    assert out.seed == 1
    unet = tiny_backend.load().unet
    blocks = len(unet.down_blocks) + 1 + len(unet.up_blocks)
    steps = SMALL["steps"]
    assert sum(isinstance(e, Tick) for e in ticks) >= blocks * steps + 1  # + the decode
    assert not any(b._forward_pre_hooks for b in [*unet.down_blocks, *unet.up_blocks])
