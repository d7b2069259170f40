import json
import re
import time

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from svd.media import read_video
from svd.run import run

from .gradio_wire import messages, output_ids, upload

DEFAULTS = {
    "strokes": None,
    "mask_file": None,
    "control_maps": None,
    "motion_bucket_id": 127,
    "cond_aug": 0.02,
    "fps": 7,
    "num_frames": 4,  # the model's 14 where a test says 0: fewer frames, quicker runs
    "width": 0,
    "height": 0,
    "decode_chunk_size": 0,
    "control_scale": 1.0,
    "resize_mode": "crop",
    "loop": "none",
    "interpolate": 0,
    "extend": 0,
    "cache_interval": 1,
    "min_guidance_scale": 1.0,
    "max_guidance_scale": 3.0,
    "seed_mode": "fixed",
    "output_format": "mp4",
    "backend": "local",
    "fal_key": "",
}


# What the page's `generate` answers, in order (the Stop button and states are not sent).
RESULTS = ["video", "seed_used", "status", "progress", "preview", "seed", "outcome", "videos"]


def running(job) -> bool:
    """Whether a submitted page run shows steps in its progress display."""
    return any("step " in str(o[RESULTS.index("progress")]) for o in job.outputs())


def wait_running(job, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not running(job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(job), "the run never showed a step"


def generate_all(url, **fields) -> dict:
    client = Client(url, verbose=False)
    answer = client.predict(**{**DEFAULTS, **fields}, api_name="/generate")
    return dict(zip(RESULTS, answer, strict=True))


def generate(url, **fields):
    """Run the page's `generate`; returns (video, seed used, status line)."""
    answer = generate_all(url, **fields)
    return answer["video"], answer["seed_used"], answer["status"]


def video_frames(video):
    return read_video(video["video"] if isinstance(video, dict) else video)[0]


def newest_record(out):
    return json.loads(sorted(out.glob("*.json"))[-1].read_text())


def test_page_generates_a_video(app_url, picture_path):
    url, out = app_url
    before = len(list(out.glob("*.mp4")))
    video, seed, status = generate(
        url, image=handle_file(picture_path), motion_bucket_id=90, cond_aug=0.1, seed="1234",
        steps=2, num_frames=0,
    )  # fmt: skip
    assert seed == "1234"
    assert video_frames(video).shape == (14, 128, 256, 3)
    assert "tiny" in status
    assert len(list(out.glob("*.mp4"))) == before + 1
    record = newest_record(out)
    assert record["seed"] == 1234 and record["input"]["motion_bucket_id"] == 90
    assert record["input"]["mask_image_url"] is None


def test_empty_seed_is_drawn(app_url, picture_path):
    _, seed, _ = generate(app_url[0], image=handle_file(picture_path), seed="", steps=1)
    assert int(seed) >= 0


def test_errors_name_the_field_and_the_app_keeps_serving(app_url, picture_path):
    with pytest.raises(Exception, match="Image: upload an image"):
        generate(app_url[0], image=None, seed="1", steps=1)
    with pytest.raises(Exception, match="Seed: expected a whole number"):
        generate(app_url[0], image=handle_file(picture_path), seed="lucky", steps=1)
    _, seed, _ = generate(app_url[0], image=handle_file(picture_path), seed=" 2 ", steps=1)
    assert seed == "2"


@pytest.mark.parametrize("how", ["strokes", "file"])
def test_mask_from_strokes_or_file(app_url, picture_path, tmp_path, how):
    url, out = app_url
    w, h = Image.open(picture_path).size
    if how == "strokes":  # a layer painted over the left half, as the painter sends it
        layer = np.zeros((h, w, 4), np.uint8)
        layer[:, : w // 2] = (255, 45, 85, 153)
        Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
        fields = {
            "strokes": {
                "background": handle_file(picture_path),
                "layers": [handle_file(str(tmp_path / "layer.png"))],
                "composite": None,
                "id": None,
            }
        }
    else:
        mask = np.full((h, w), 255, np.uint8)
        mask[:, : w // 2] = 0
        Image.fromarray(mask).save(tmp_path / "mask.png")
        fields = {"mask_file": handle_file(str(tmp_path / "mask.png"))}
    video, _, _ = generate(url, image=handle_file(picture_path), seed="3", steps=2, **fields)
    record = newest_record(out)
    kept = np.asarray(Image.open(out / f"{record['id']}.mask.png"))
    assert kept.shape == (128, 256)
    assert kept[:, :120].max() == 0 and kept[:, 136:].min() == 255  # painted = black = moves
    spread = video_frames(video).astype(float).std(axis=0).mean(axis=-1)
    assert spread[:, 144:].mean() <= 0.05 * spread[:, :112].mean()


def test_stop_ends_a_run_and_the_next_one_works(app_url, picture_path):

    url, out = app_url
    client = Client(url, verbose=False)
    before = len(list(out.glob("*.mp4")))
    job = client.submit(
        **{**DEFAULTS, "image": handle_file(picture_path), "seed": "1", "steps": 100},
        api_name="/generate",
    )
    wait_running(job)
    client.predict(api_name="/stop")
    answer = dict(zip(RESULTS, job.result(timeout=120), strict=True))  # not an error
    assert re.search(r"Stopped after step \d+ of 100", answer["progress"])
    assert answer["video"] == {"__type__": "update"}  # no new video: the last one stays
    assert len(list(out.glob("*.mp4"))) == before  # nothing half-made is kept
    _, seed, _ = generate(url, image=handle_file(picture_path), seed="5", steps=1)
    assert seed == "5"


def test_stop_stays_on_in_every_chunk_of_a_run(app_url, picture_path):
    """Gradio streams a run as diffs of the chunk before, and its client edits a chunk in
    place: a chunk that leaves Stop out deletes the `interactive` the page may not have
    applied yet. So every chunk of a run keeps Stop on, and the last turns it off."""
    url, _ = app_url
    stop = output_ids(url, "generate").index("stop")
    values = {"image": upload(url, picture_path), "seed": "1", "steps": 6}
    chunks = [m["output"]["data"] for m in messages(url, "generate", values)
              if m.get("msg") in ("process_generating", "process_completed")]  # fmt: skip
    assert len(chunks) > 4, "the run streamed its progress"
    assert chunks[0][stop] == {"__type__": "update", "interactive": True}
    *during, done, completed = chunks[1:]
    for chunk in during:
        assert chunk[stop] == [], f"a chunk changed Stop: {chunk[stop]}"
    assert done[stop] == [["replace", ["interactive"], False]]
    assert completed[stop] == {"__type__": "update", "interactive": False}


def test_depth_archive_sets_the_frame_count(app_url, picture_path, tmp_path):
    from .test_control import depth_zip

    maps = depth_zip(tmp_path, "maps.zip", [255, 200, 150, 100, 50])
    video, _, _ = generate(
        app_url[0], image=handle_file(picture_path), control_maps=handle_file(maps), seed="1",
        steps=2,
    )  # fmt: skip
    assert video_frames(video).shape[0] == 5
    assert newest_record(app_url[1])["input"]["control_maps_data_url"]


def test_maps_preview_shows_the_order_and_count(tmp_path):
    from svd.ui.previews import maps_preview

    from .test_archive import make_zip, png

    path = tmp_path / "maps.zip"
    path.write_bytes(make_zip({"10.png": png(250), "9.png": png(90), "notes.txt": b"x"}))
    strip, info = maps_preview(str(path))
    assert info.startswith("2 maps, so 2 frames, in this order: 9.png, 10.png")
    left, right = np.asarray(strip)[:, :40].mean(), np.asarray(strip)[:, -40:].mean()
    assert left < 100 < right  # 9.png (dark) first, 10.png (bright) last
    path.write_bytes(b"not an archive")
    assert maps_preview(str(path)) == (
        None,
        "⚠️ control_maps_data_url: not a zip, tar or tar.gz archive",
    )


def test_history_settings_remake_the_inputs(tiny_backend, picture_path, tmp_path, store):
    from svd import history
    from svd.schema import SVDInput

    mask = tmp_path / "m.png"
    Image.new("L", (192, 128), 0).save(mask)
    inp = SVDInput(image_url=picture_path, mask_image_url=str(mask), seed=42, steps=2,
                   num_frames=6, width=192, height=128, motion_bucket_id=33,
                   cache_interval=2, min_guidance_scale=1.5)  # fmt: skip
    run(tiny_backend, inp, store)
    record = history.entries(store)[0]
    caption = "seed 42 · motion 33 · 2 steps · mask · deep features every 2 steps"
    assert caption in history.caption(record)
    s = history.settings(store, record)
    assert s["image"].endswith(".input.png") and s["mask_file"].endswith(".mask.png")
    assert (s["seed"], s["motion_bucket_id"], s["num_frames"], s["width"]) == ("42", 33, 6, 192)
    assert s["decode_chunk_size"] == 0 and s["backend"] == "local"
    assert s["cache_interval"] == 2
    assert s["model"] == "tiny" and s["num_videos"] == 1
    assert (s["min_guidance_scale"], s["max_guidance_scale"]) == (1.5, 3.0)


def test_stop_reaches_a_run_that_still_waits(tmp_path, picture_path):
    import threading

    from svd.jobs import CANCELLED, JobQueue
    from svd.schema import SVDInput

    gate, ran = threading.Event(), []

    def held(backend, inp, store, on_event):  # the worker's run, held until the gate opens
        ran.append(inp.seed)
        gate.wait(30)
        raise RuntimeError("not needed")

    jobs = JobQueue([object()], tmp_path, run=held)
    first = jobs.submit(SVDInput(image_url=picture_path, seed=1), "page", "a")
    while first.status != "IN_PROGRESS":
        first.done.wait(0.01)
    waiting = jobs.submit(SVDInput(image_url=picture_path, seed=2), "page", "b")
    assert jobs.position(waiting) == 0 and jobs.active(session="b") == [waiting]
    assert jobs.cancel(waiting)  # Stop while it waits: it never runs
    gate.set()
    first.done.wait(30)
    assert waiting.done.is_set() and waiting.error.detail == CANCELLED and ran == [1]
    assert jobs.get(waiting.id).error.detail == CANCELLED


def test_page_makes_depth_maps_from_a_video(app_url, tmp_path):
    from svd.archive import read_archive

    from .test_extras import driving_video

    client = Client(app_url[0], verbose=False)
    archive = client.predict(video=handle_file(driving_video(tmp_path)), api_name="/depth_maps")
    assert len(read_archive(open(archive, "rb").read())) == 5


def test_seed_modes(app_url, picture_path):
    image = handle_file(picture_path)
    kept = generate_all(app_url[0], image=image, seed="10", steps=1, seed_mode="fixed")
    assert kept["seed_used"] == "10" and kept["seed"] == {"__type__": "update"}  # box as it was
    counted = generate_all(app_url[0], image=image, seed="10", steps=1, seed_mode="increment")
    assert counted["seed_used"] == "10" and counted["seed"] == "11"  # the next run's seed
    drawn = generate_all(app_url[0], image=image, seed="10", steps=1, seed_mode="random")
    assert drawn["seed_used"] != "10"  # the box is not used


@pytest.mark.parametrize("loop", ["none", "pingpong", "crossfade"])
@pytest.mark.parametrize("between", [0, 2])
def test_the_header_counts_the_frames_the_file_gets(loop, between):
    from svd.post import finish
    from svd.ui.summary import frames_out

    made = np.zeros((14, 16, 16, 3), np.uint8)
    made[:, :8] = np.arange(14)[:, None, None, None] * 10  # frames that differ
    frames, fps = finish(made, 7, between, loop)
    assert frames_out(14, 7, between, loop, 0) == (len(frames), fps)


def test_choosing_fal_puts_back_what_it_hides(app_url):
    """A Frames value set for a local run must not block a fal run with a message about a
    field the page has hidden: choosing fal hides the local-only extras at their defaults."""
    import httpx

    from .gradio_wire import joined

    url, _ = app_url
    config = httpx.get(f"{url}/config", timeout=10).json()
    ids = {c["id"]: c["props"].get("elem_id") for c in config["components"]}
    dep = next(d for d in config["dependencies"]
               if [ids[i] for i in d["inputs"]] == ["backend", "model"] and "num-frames" in
               [ids[o] for o in d["outputs"]])  # fmt: skip
    *_, done = joined(url, dep["id"], ["fal", "tiny"])
    assert done.get("success"), done
    updates = dict(zip([ids[o] for o in dep["outputs"]], done["output"]["data"], strict=True))
    assert updates["num-frames"] == {"__type__": "update", "visible": False, "value": 0}
    assert updates["resize-mode"]["value"] == "crop" and not updates["resize-mode"]["visible"]
    assert updates["max-guidance-scale"]["value"] == 3.0  # svd-xt's own: left out of a run
    # fal runs only the models it hosts: its own (svd-xt) takes the place of tiny.
    assert [name for _, name in updates["model"]["choices"]] == ["svd-xt", "animatelcm-svd-xt"]
    assert updates["model"]["value"] == "svd-xt"
    *_, done = joined(url, dep["id"], ["local", "svd-xt"])
    back = dict(zip([ids[o] for o in dep["outputs"]], done["output"]["data"], strict=True))
    assert back["num-frames"] == {"__type__": "update", "visible": True}
    assert back["model"]["value"] == "svd-xt" and len(back["model"]["choices"]) == 5


def test_examples_are_made_at_start_once_and_shared(tiny_backend, tmp_path):
    """start_all queues every example not kept yet; whoever asks meanwhile gets the same
    run; once kept, nothing is made again. (Each run is small here: 2 steps at 128x64.)"""
    from svd.jobs import JobQueue
    from svd.ui import examples

    def quick(backend, inp, store, on_event):
        small = {"steps": 2, "width": 128, "height": 64}
        return run(backend, inp.model_copy(update=small), store, on_event)

    jobs = JobQueue([tiny_backend], tmp_path, run=quick)
    makings = examples.Makings(jobs, tiny_backend)
    for example in examples.EXAMPLES:
        examples.cache_path(jobs.outputs, tiny_backend, example).unlink(missing_ok=True)
    makings.start_all()
    first = examples.EXAMPLES[0]
    job = makings.start(first)
    assert job is not None and makings.start(first) is job  # a click joins the making
    assert job.surface == "example" and not jobs.active(session="", address="")
    for example in examples.EXAMPLES:
        running = makings.start(example)
        if running is not None:
            assert running.done.wait(300) and running.error is None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
        examples.cached(jobs.outputs, tiny_backend, e) for e in examples.EXAMPLES
    ):
        time.sleep(0.1)
    assert all(examples.cached(jobs.outputs, tiny_backend, e) for e in examples.EXAMPLES)
    assert makings.start(first) is None  # kept: nothing is made again


def test_the_progress_says_stopping_at_once_and_how_long(tmp_path):
    """The moment Stop is pressed the display says "Stopping..."; while steps run it says
    how long the run has taken and how long its steps still need at their pace."""
    from svd.events import Step
    from svd.jobs import Job
    from svd.ui import progress

    job = Job("x", 1, "page", status="IN_PROGRESS")
    job.started, job.first_step = 100.0, (110.0, 1)
    job.events.append(Step(5, 21))
    assert progress.timing(job, Step(5, 21), now=130.0) == "30 s, about 80 s of steps left"
    assert "step 5 of 21" in progress.of(job, 0)
    job.cancel.set()
    assert ">Stopping...<" in progress.of(job, 0)


def test_a_script_names_only_what_it_sets(app_url, picture_path):
    """The page's endpoint as a script sees it: the picture required, every other
    parameter optional with its widget's default, whole numbers typed as integers."""
    client = Client(app_url[0], verbose=False)
    info = client.view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in info["named_endpoints"]["/generate"]["parameters"]}
    assert [k for k, p in params.items() if not p["parameter_has_default"]] == ["image"]
    assert (
        params["seed"]["parameter_default"] is None and params["fal_key"]["parameter_has_default"]
    )
    assert params["steps"]["python_type"]["type"] == "int"
    assert params["cond_aug"]["python_type"]["type"] == "float"
    answer = client.predict(image=handle_file(picture_path), steps=2, num_frames=2, width=128,
                            height=64, api_name="/generate")  # fmt: skip
    assert (
        read_video(answer[0]["video"] if isinstance(answer[0], dict) else answer[0])[0].shape[0]
        == 2
    )


def test_a_long_run_whose_visitor_reads_is_not_ended(app_url, picture_path, monkeypatch):
    """A run ends when its visitor leaves updates unread (UNHEARD seconds); the update just
    sent, still on its way to the stream, is not an unread one."""
    from svd.ui import handlers

    monkeypatch.setattr(handlers, "UNHEARD", 0.5)
    _, seed, status = generate(app_url[0], image=handle_file(picture_path), seed="3", steps=12,
                               num_frames=6, width=192, height=128)  # fmt: skip
    assert seed == "3" and "tiny" in status
