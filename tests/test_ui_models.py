"""The page's model picker and several videos, through the real app on `tiny`."""

import json

import httpx
import numpy as np
from gradio_client import Client, handle_file

from svd import history
from svd.media import read_video
from svd.outputs import OutputStore

from .conftest import picture_data_uri
from .gradio_wire import joined, page_event
from .test_ui import generate_all, newest_record, video_frames

SMALL = {"num_frames": 4, "width": 192, "height": 128}


def test_the_sliders_start_at_the_models_own(app_url, picture_path):
    """A script that leaves steps, fps and guidance at the page's values gets the video the
    API makes with them left out: the sliders start at the model's own, sent as left out."""
    url, out = app_url
    client = Client(url, verbose=False)
    page = client.predict(image=handle_file(picture_path), seed="5", **SMALL, api_name="/generate")
    sent = newest_record(out)["input"]
    api = httpx.post(f"{url}/fal-ai/svd", json={"image_url": picture_data_uri(), "seed": 5,
                                                 **SMALL}, timeout=120)  # fmt: skip
    assert api.status_code == 200, api.text
    made = read_video(out / api.json()["image"]["file_name"])[0]
    assert (sent["steps"], sent["fps"], sent["max_guidance_scale"]) == (20, 7, 3.0)
    assert np.array_equal(video_frames(page[0]), made)


def event(url: str, inputs: list[str]) -> tuple[int, list, list]:
    """The page event whose inputs begin with these elem_ids: its fn_index and the elem_ids
    of its inputs and outputs (None for a state or an accordion)."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    ids = {c["id"]: c["props"].get("elem_id") for c in config["components"]}
    dep = next(d for d in config["dependencies"]
               if [ids[i] for i in d["inputs"]][: len(inputs)] == inputs)  # fmt: skip
    return dep["id"], [ids[i] for i in dep["inputs"]], [ids[o] for o in dep["outputs"]]


def endpoint_of(url: str, fn_index: int) -> tuple[int, list[dict]]:
    """The event's inputs (elem_id and default value), as gradio_wire.endpoint gives them."""
    config = httpx.get(f"{url}/config", timeout=10).json()
    props = {c["id"]: c["props"] for c in config["components"]}
    dep = next(d for d in config["dependencies"] if d["id"] == fn_index)
    return fn_index, [{"elem_id": props[i].get("elem_id"), "value": props[i].get("value")}
                      for i in dep["inputs"]]  # fmt: skip


def choose(url: str, session: str, model: str, **values) -> dict:
    """Choose `model` on the page (the sliders at `values`); its updates by elem_id."""
    fn_index, inputs, outputs = event(url, ["model", "backend"])
    sent = {"model": model, "backend": "local", **values}
    data = [sent.get(i.replace("-", "_")) if i else None for i in inputs]
    *_, done = joined(url, fn_index, data, session=session)
    assert done.get("success"), done
    return dict(zip(outputs, done["output"]["data"], strict=True))


def test_choosing_a_model_moves_what_the_visitor_left(app_url):
    """Choosing AnimateLCM moves the steps (and their range), fps and guidance still at
    tiny's own to its own; a guidance the visitor set stays, and so does its depth maps'
    place: hidden, with a note. Back on tiny, a steps value set on AnimateLCM stays."""
    url, _ = app_url
    left = {"steps": 20, "fps": 7, "min_guidance_scale": 1.5, "max_guidance_scale": 3.0}
    lcm = choose(url, "picker", "animatelcm-svd-xt", **left)
    assert lcm["steps"]["value"] == 4 and lcm["steps"]["maximum"] == 20
    assert lcm["fps"]["value"] == 8
    assert (lcm["min-guidance-scale"]["value"], lcm["max-guidance-scale"]["value"]) == (1.5, 1.2)
    assert "(25)" in lcm["num-frames"]["info"] and "(1024)" in lcm["width"]["info"]
    assert lcm["depth-note"]["visible"] and "animatelcm-svd-xt" in lcm["depth-note"]["value"]
    assert lcm["control-maps"] is None  # emptied: the model takes no maps
    back = choose(url, "picker", "tiny", steps=10, fps=8, min_guidance_scale=1.5,
                  max_guidance_scale=1.2)  # fmt: skip
    assert back["steps"]["value"] == 10 and back["steps"]["maximum"] == 100  # set: stays
    assert back["fps"]["value"] == 7 and back["max-guidance-scale"]["value"] == 3.0
    assert "(14)" in back["num-frames"]["info"] and not back["depth-note"]["visible"]


def test_the_header_line_follows_the_model(app_url):
    """The header line says the chosen model's frames, fps and licence."""
    url, _ = app_url
    fn_index = page_event(url, ["outcome"])
    _, inputs = endpoint_of(url, fn_index)
    sent = {"model": "animatelcm-svd-xt", "fps": 8, "steps": 4, "backend": "local"}
    data = [sent.get(i["elem_id"].replace("-", "_"), i["value"]) for i in inputs]
    *_, done = joined(url, fn_index, data)
    line = done["output"]["data"][0]
    assert "**25 frames at 8 fps = 3.1 s**, 1024×576" in line
    repo = "wangfuyun/AnimateLCM-SVD-xt"
    assert f"model licence: [{repo}](https://huggingface.co/{repo})" in line


def test_the_estimate_counts_the_models_steps_and_frames(tiny_backend):
    from svd.ui.summary import outcome

    own = outcome({}, tiny_backend, (256, 128), 1.0)  # 20 steps x 14 frames x 0.03 Mpx
    lcm = outcome({}, tiny_backend, (1024, 576), 1.0, model="animatelcm-svd-xt")
    assert "14 frames at 7 fps" in own and "about 9 s a run" in own
    assert "25 frames at 8 fps" in lcm and "about 59 s a run" in lcm  # 4 x 25 x 0.59 Mpx
    two = outcome({"num_videos": 2}, tiny_backend, (256, 128), 1.0)
    assert "2 videos" in two and "about 18 s a run" in two


def test_a_run_of_two_videos_shows_both_with_their_seeds(app_url, picture_path):
    """Two videos on `tiny`: side by side, each with its seed, different from each other;
    each kept as a run of its own (its seed, one video), so the history offers both."""
    url, out = app_url
    answer = generate_all(url, image=handle_file(picture_path), model="tiny", num_videos=2,
                          seed="40", seed_mode="increment", steps=2, **SMALL)  # fmt: skip
    assert answer["seed_used"] == "40, 41" and answer["seed"] == "42"  # on from the last
    assert answer["videos"]["visible"] and answer["videos"]["columns"] == 2
    shown = answer["videos"]["value"]
    assert [v["caption"] for v in shown] == ["seed 40", "seed 41"]
    first, second = (video_frames(v["video"]) for v in shown)
    assert first.shape == (4, 128, 192, 3) and not np.array_equal(first, second)
    assert np.array_equal(video_frames(answer["video"]), first)
    kept = [json.loads(r.read_text()) for r in sorted(out.glob("*.json"))[-2:]]
    assert sorted(r["seed"] for r in kept) == [40, 41]
    assert all(r["input"]["num_videos"] == 1 and r["input"]["seed"] == r["seed"] for r in kept)
    # The second one's settings, as "Use these settings" fills them, remake it alone.
    settings = history.settings(OutputStore(out), next(r for r in kept if r["seed"] == 41))
    assert (settings["seed"], settings["num_videos"], settings["model"]) == ("41", 1, "tiny")
    assert history.caption(kept[0]).endswith("2 steps · local")  # the page's default: unsaid
    files = {"image": handle_file(settings["image"]), "mask_file": None, "control_maps": None}
    one = generate_all(url, **{**settings, **files})
    again = video_frames(one["video"]).astype(int)
    same, other = (np.abs(again - v.astype(int)).mean() for v in (second, first))
    assert same * 5 < other  # batched or not, the same video (H.264 is lossy)
    assert one["videos"]["visible"] is False  # a run of one: no row


def test_the_history_names_a_model_asked_for():
    record = {"seed": 3, "backend": "local", "input": {"model": "animatelcm-svd-xt", "steps": 4,
                                                        "motion_bucket_id": 127}}  # fmt: skip
    assert history.caption(record) == "seed 3 · motion 127 · 4 steps · animatelcm-svd-xt · local"
