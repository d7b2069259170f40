import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch

import svd.run
from svd.backends import get_backend
from svd.backends.local import LocalBackend
from svd.backends.tiny import build_tiny_pipeline
from svd.errors import BackendError, InputError
from svd.events import Preview, Stage, Step
from svd.media import read_video
from svd.outputs import OutputStore
from svd.schema import SVDInput

from .conftest import SMALL


def run(backend, picture_path, events=None, **fields):
    """One video, kept in outputs/ beside the picture (the `store` fixture's folder)."""
    inp = SVDInput(image_url=picture_path, **{**SMALL, **fields})
    store = OutputStore(Path(picture_path).parent / "outputs")
    out = svd.run.run(backend, inp, store, events.append if events is not None else None)
    return out, read_video(urlparse(out.image.url).path)[0]


def test_video_has_the_asked_frames_and_size(tiny_backend, picture_path):
    out, frames = run(tiny_backend, picture_path, seed=1)
    assert frames.shape == (6, 128, 192, 3)
    assert out.image.content_type == "video/mp4"
    path = Path(urlparse(out.image.url).path)
    assert out.image.file_name == path.name and out.image.file_size == path.stat().st_size
    assert frames.std() > 1  # not a blank video


def test_same_seed_same_video_and_other_seed_other_video(tiny_backend, picture_path):
    a = run(tiny_backend, picture_path, seed=42)[1]
    b = run(tiny_backend, picture_path, seed=42)[1]
    c = run(tiny_backend, picture_path, seed=43)[1]
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_seed_is_echoed_or_drawn(tiny_backend, picture_path):
    assert run(tiny_backend, picture_path, seed=2**64 - 1)[0].seed == 2**64 - 1
    drawn = {run(tiny_backend, picture_path, steps=1)[0].seed for _ in range(2)}
    assert len(drawn) == 2 and all(isinstance(s, int) for s in drawn)


def test_drawn_seed_reproduces_the_video(tiny_backend, picture_path):
    out, first = run(tiny_backend, picture_path, steps=2)
    assert np.array_equal(first, run(tiny_backend, picture_path, steps=2, seed=out.seed)[1])


def test_fal_fields_reach_the_model(tiny_backend, picture_path):
    base = run(tiny_backend, picture_path, seed=5)[1].astype(int)
    for change in ({"motion_bucket_id": 10}, {"cond_aug": 1.0}, {"steps": 4}):
        other = run(tiny_backend, picture_path, seed=5, **change)[1].astype(int)
        assert np.abs(base - other).mean() > 0.5, change


def test_record_is_kept_beside_the_video(tiny_backend, picture_path, store):
    out, _ = run(tiny_backend, picture_path, seed=9, motion_bucket_id=80)
    video = Path(urlparse(out.image.url).path)
    record = json.loads(video.with_suffix(".json").read_text())
    assert record["seed"] == 9 and record["backend"] == "local" and record["model"] == "tiny"
    assert record["input"]["motion_bucket_id"] == 80 and record["input"]["image_url"]
    assert record["output"]["file_name"] == video.name
    assert record["num_frames"] == 6 and (record["width"], record["height"]) == (192, 128)
    assert record["timings"]["total_s"] >= record["timings"]["render_s"] > 0
    assert video.with_name(video.stem + ".input.png").exists()
    assert next(store.newest())["id"] == record["id"]


def test_events_in_order(tiny_backend, picture_path):
    events = []
    run(tiny_backend, picture_path, events, steps=3)
    steps = [e for e in events if isinstance(e, Step)]
    assert [(s.index, s.total) for s in steps] == [(1, 3), (2, 3), (3, 3)]
    stages = [e.name for e in events if isinstance(e, Stage)]
    assert stages[0] == "loading inputs" and stages[-1] == "writing video"
    assert stages.index("denoising") < stages.index("decoding")


def test_defaults_follow_the_model(tiny_backend, picture_path, store):
    out = svd.run.run(tiny_backend, SVDInput(image_url=picture_path, steps=1, seed=0), store)
    frames = read_video(urlparse(out.image.url).path)[0]
    assert frames.shape == (14, 128, 256, 3)  # tiny's own size and frame count


def test_an_event_handler_can_stop_a_run(tiny_backend, picture_path, store):
    class Stop(Exception):
        pass

    def stop_at_two(event):
        if isinstance(event, Step) and event.index == 2:
            raise Stop

    with pytest.raises(Stop):
        svd.run.run(tiny_backend, SVDInput(image_url=picture_path, **SMALL), store, stop_at_two)
    assert run(tiny_backend, picture_path, seed=1)[1].shape[0] == 6  # still serving


def test_bad_image_is_an_input_error(tiny_backend, tmp_path, store):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="image_url"):
        svd.run.run(tiny_backend, SVDInput(image_url=str(bad), **SMALL), store)


def test_injected_pipe_is_used_as_it_is(picture_path):
    pipe = build_tiny_pipeline(seed=1)
    backend = LocalBackend(pipe=pipe)
    assert backend.load().components == pipe.components
    assert backend.device == "cpu" and backend.dtype == torch.float32
    frames = run(backend, picture_path, seed=3)[1]
    assert frames.shape == (6, 128, 192, 3)


def test_an_explicit_model_that_cannot_load_is_a_clear_error(tmp_path, picture_path, store):
    backend = LocalBackend(model=str(tmp_path / "no-such-model"))
    with pytest.raises(BackendError, match="^model: SVD_MODEL names no hub id and no folder") as e:
        svd.run.run(backend, SVDInput(image_url=picture_path, **SMALL), store)
    assert str(tmp_path) not in str(e.value)  # a server path is the host's business


def test_default_model_falls_back_to_tiny_and_says_so(tmp_path, picture_path, monkeypatch):
    monkeypatch.delenv("SVD_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("svd.backends.local.DEFAULT_MODEL", str(tmp_path / "not-cached"))
    backend = get_backend("local")
    out, frames = run(backend, picture_path, seed=1)
    assert backend.model == "tiny" and "could not be loaded" in backend.notice
    assert frames.shape[0] == 6 and out.seed == 1


def test_a_missing_depth_archive_names_its_field(tiny_backend, picture_path, tmp_path, store):
    missing = str(tmp_path / "maps.zip")
    with pytest.raises(InputError, match="control_maps_data_url: no such file") as e:
        inp = SVDInput(image_url=picture_path, control_maps_data_url=missing)
        svd.run.run(tiny_backend, inp, store)
    assert e.value.field == "control_maps_data_url"


def test_an_option_a_backend_does_not_take_is_an_error():
    with pytest.raises(ValueError, match="the local backend takes no option endpont"):
        get_backend("local", endpont="fal-ai/svd")
    with pytest.raises(ValueError, match="the fal backend takes no option model"):
        get_backend("fal", model="tiny")
    with pytest.raises(ValueError, match="the local backend takes no option output_dir"):
        get_backend("local", output_dir="outputs")  # the run is given its store


def test_low_memory_mode_gives_the_same_video(picture_path):
    normal = LocalBackend(pipe=build_tiny_pipeline())
    low = LocalBackend(pipe=build_tiny_pipeline(), memory="low")
    assert low._decode_chunk(25) == 2
    # Chunked feed-forward layers are exact; only the decode chunk differs, so match it.
    a = run(normal, picture_path, seed=3, decode_chunk_size=2)[1]
    b = run(low, picture_path, seed=3)[1]
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="SVD_MEMORY"):
        LocalBackend(model="tiny", memory="tiny")


def test_live_previews_every_two_steps_change_nothing(tiny_backend, picture_path):
    events = []
    _, with_previews = run(tiny_backend, picture_path, events, seed=9, steps=5)
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.index for p in previews] == [2, 4]  # none on the last step: the VAE follows
    assert all(p.image.shape == (128 // 8, 192 // 8, 3) for p in previews)
    assert all(p.image.dtype == np.uint8 for p in previews)
    tiny_backend.preview_every = 0
    try:
        quiet = []
        _, without = run(tiny_backend, picture_path, quiet, seed=9, steps=5)
    finally:
        tiny_backend.preview_every = LocalBackend.preview_every
    assert not [e for e in quiet if isinstance(e, Preview)]
    assert np.array_equal(with_previews, without)


def test_guidance_scales_reach_diffusers_and_are_checked(tiny_backend, picture_path):
    default = run(tiny_backend, picture_path, seed=4)[1]
    again = run(tiny_backend, picture_path, seed=4, min_guidance_scale=1.0,
                max_guidance_scale=3.0)[1]  # fmt: skip
    other = run(tiny_backend, picture_path, seed=4, min_guidance_scale=2.0,
                max_guidance_scale=6.0)[1]  # fmt: skip
    assert np.array_equal(default, again)
    assert np.abs(default.astype(int) - other.astype(int)).mean() > 0.5
    with pytest.raises(InputError, match="max_guidance_scale: must be at least"):
        from svd.schema import parse_input

        parse_input({"image_url": "x", "min_guidance_scale": 3, "max_guidance_scale": 2})
