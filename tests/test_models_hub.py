"""Every model of the registry from a Hugging Face cache laid out as the hub lays out the
real repos (tiny random weights of their own, real ids, HF_HUB_OFFLINE=1): through the API's
two routes, fal's Python client and the CLI, each with its own defaults."""

import base64
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import trustme

from svd import models
from svd.media import read_video

from .hub_cache import add_every_model
from .live import start_app, stop_app
from .test_cli import svd_cli_each

SMALL = {"width": 192, "height": 128}
HUB_MODELS = [m for m in models.MODELS.values() if m.repo]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """(HF_HOME with every model, the environment that uses it offline)."""
    home = tmp_path_factory.mktemp("hf")
    add_every_model(home)
    return home, {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "SVD_MODEL": ""}


@pytest.fixture(scope="module")
def hub_app(hub, tmp_path_factory):
    """The app with no SVD_MODEL (the default model, from the cache), on the offline cache,
    over TLS as fal's clients reach it: (url, output folder, CA file)."""
    folder = tmp_path_factory.mktemp("hub-app")
    out = folder / "outputs"
    out.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    env = {**hub[1], "SVD_MAX_LOADED_MODELS": "2", "SVD_SSL_CERTFILE": str(folder / "cert.pem"),
           "SVD_SSL_KEYFILE": str(folder / "key.pem")}  # fmt: skip
    trust = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    proc, url = start_app(out, env=env, scheme="https", verify=trust)
    global CLIENT
    CLIENT = httpx.Client(verify=trust, timeout=300)
    yield url, out, str(folder / "ca.pem")
    CLIENT.close()
    stop_app(proc)


CLIENT: httpx.Client


def post(url: str, body: dict) -> httpx.Response:
    return CLIENT.post(url, json=body)


@pytest.fixture(scope="module")
def picture_uri():
    import io

    from .conftest import make_picture

    data = io.BytesIO()
    make_picture().save(data, "PNG")
    return "data:image/png;base64," + base64.b64encode(data.getvalue()).decode()


def record_of(out: Path, video: dict) -> dict:
    return json.loads((out / video["file_name"]).with_suffix(".json").read_text())


def frames_of(out: Path, video: dict) -> np.ndarray:
    return read_video(out / video["file_name"])[0]


@pytest.mark.parametrize("spec", HUB_MODELS, ids=lambda m: m.name)
def test_each_model_runs_from_the_cache_with_its_own_defaults(hub_app, picture_uri, spec):
    """Frames, fps and steps left out are the model's own; its weights are its repo's."""
    url, out, _ = hub_app
    body = {"image_url": picture_uri, "model": spec.name, "seed": 7, **SMALL}
    if spec.steps > 4:
        body["steps"] = 1  # a Euler model's 20 steps of 25 frames is long on a CPU
    r = post(f"{url}/fal-ai/svd", body)
    assert r.status_code == 200, r.text
    record = record_of(out, r.json()["image"])
    assert record["model"] == spec.repo
    assert record["num_frames"] == spec.frames
    assert record["input"]["fps"] == spec.fps
    assert record["input"]["steps"] == body.get("steps", spec.steps)
    assert record["input"]["max_guidance_scale"] == spec.guidance[1]
    assert frames_of(out, r.json()["image"]).shape == (spec.frames, 128, 192, 3)


def test_one_seed_on_two_models_gives_two_videos(hub_app, picture_uri):
    url, out, _ = hub_app
    videos = []
    for name in ("svd-xt", "svd-xt-1-1"):
        body = {"image_url": picture_uri, "model": name, "seed": 3, "steps": 1, "fps": 7,
                "num_frames": 4, **SMALL}  # fmt: skip
        r = post(f"{url}/fal-ai/svd", body)
        assert r.status_code == 200, r.text
        videos.append(frames_of(out, r.json()["image"]).astype(int))
    assert np.abs(videos[0] - videos[1]).mean() > 1


def test_the_schema_lists_the_models_and_both_routes(hub_app):
    url, _, _ = hub_app
    spec = CLIENT.get(f"{url}/openapi.json").json()
    assert {"/fal-ai/svd", "/fal-ai/fast-svd-lcm", "/queue/fal-ai/fast-svd-lcm"} <= set(
        spec["paths"]
    )
    body = spec["paths"]["/fal-ai/svd"]["post"]["requestBody"]["content"]["application/json"]
    choices = next(c for c in body["schema"]["properties"]["model"]["anyOf"] if "enum" in c)
    assert choices["enum"] == list(models.MODELS)
    lcm = spec["paths"]["/fal-ai/fast-svd-lcm"]["post"]["requestBody"]["content"]
    steps = lcm["application/json"]["schema"]["properties"]["steps"]
    assert (steps["default"], steps["maximum"]) == (4, 20)


def test_the_default_model_is_the_cached_one_not_tiny(hub_app, picture_uri):
    url, out, _ = hub_app
    body = {"image_url": picture_uri, "seed": 1, "steps": 1, "num_frames": 3, **SMALL}
    r = post(f"{url}/fal-ai/svd", body)
    assert r.status_code == 200, r.text
    assert record_of(out, r.json()["image"])["model"] == models.DEFAULT.repo


def test_fast_svd_lcm_route_has_its_own_fields_and_defaults(hub_app, picture_uri):
    """fal-ai/fast-svd-lcm: 4 steps and fps 10 by default, steps over 20 a 422 naming
    steps, its video under `video`; its queue routes as fal's Python client uses them."""
    url, out, ca = hub_app
    body = {"image_url": picture_uri, "seed": 5, "num_frames": 4, **SMALL}
    r = post(f"{url}/fal-ai/fast-svd-lcm", body)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"video", "seed"}
    record = record_of(out, r.json()["video"])
    assert record["model"] == models.MODELS["animatelcm-svd-xt"].repo
    assert (record["input"]["steps"], record["input"]["fps"]) == (4, 10)
    for path, extra in (
        ("/fal-ai/fast-svd-lcm", {}),
        ("/fal-ai/svd", {"model": "animatelcm-svd-xt"}),
    ):
        r = post(url + path, {**body, **extra, "steps": 21})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "steps"]
    r = post(f"{url}/fal-ai/svd", {**body, "model": "svd-9"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "model"]
    host = url.removeprefix("https://")
    env = {**os.environ, "FAL_RUN_HOST": host, "FAL_QUEUE_RUN_HOST": f"{host}/queue",
           "FAL_KEY": "unused", "SSL_CERT_FILE": ca}  # fmt: skip
    got = subprocess.run([sys.executable, "-c", FAL_PYTHON, json.dumps({**body, "seed": 6})],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert got.returncode == 0, got.stderr[-3000:]
    ran, subscribed, updates = json.loads(got.stdout.strip().splitlines()[-1])
    assert ran["seed"] == 6 and ran["video"]["url"].startswith(url)
    assert subscribed["seed"] == 6 and updates[-1] == "Completed"
    assert record_of(out, subscribed["video"])["input"]["steps"] == 4


# fal's Python client, unchanged: run and subscribe (fal's queue routes) on fast-svd-lcm.
FAL_PYTHON = """
import json, sys
import fal_client
body = json.loads(sys.argv[1])
ran = fal_client.run("fal-ai/fast-svd-lcm", body)
updates = []
subscribed = fal_client.subscribe("fal-ai/fast-svd-lcm", body, with_logs=True,
                                  on_queue_update=lambda u: updates.append(type(u).__name__))
print(json.dumps([ran, subscribed, updates]))
"""


def test_three_videos_three_seeds_the_first_as_image(hub_app, picture_uri):
    url, out, _ = hub_app
    body = {"image_url": picture_uri, "model": "tiny", "seed": 20, "num_videos": 3,
            "steps": 1, "num_frames": 3, **SMALL}  # fmt: skip
    r = post(f"{url}/fal-ai/svd", body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["seeds"] == [20, 21, 22] and answer["seed"] == 20
    assert answer["image"] == answer["videos"][0] and len(answer["videos"]) == 3
    videos = [frames_of(out, v).astype(int) for v in answer["videos"]]
    assert all(np.abs(videos[a] - videos[b]).mean() > 0.5 for a, b in ((0, 1), (1, 2), (0, 2)))
    alone = post(f"{url}/fal-ai/svd", {**body, "seed": 21, "num_videos": 1})
    again = frames_of(out, alone.json()["image"]).astype(int)  # batched or not, the same video
    same, other = (np.abs(again - videos[n]).mean() for n in (1, 0))  # (H.264 is lossy)
    assert same * 5 < other
    r = post(f"{url}/fal-ai/svd", {**body, "num_videos": 5})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "num_videos"]


def test_every_model_through_the_cli(hub, picture_path, tmp_path):
    _, env = hub
    small = ["--steps", "1", "--num-frames", "3", "--width", "192", "--height", "128"]
    commands = [["generate", "--image-url", picture_path, "--model", spec.name, *small,
                 "--out-dir", str(tmp_path)] for spec in HUB_MODELS]  # fmt: skip
    for spec, r in zip(HUB_MODELS, svd_cli_each(*commands, env=env), strict=True):
        assert r.returncode == 0, r.stderr[-2000:]
        video = Path(urlparse(json.loads(r.stdout.strip().splitlines()[-1])["image"]["url"]).path)
        record = json.loads(video.with_suffix(".json").read_text())
        assert record["model"] == spec.repo and record["input"]["fps"] == spec.fps


def test_every_model_through_the_page(hub_app, picture_path):
    """The page's picker runs each model from the cache (choosing one in a browser moves
    the sliders to its own: tests/test_browser.py)."""
    from gradio_client import Client, handle_file

    url, out, _ = hub_app
    client = Client(url, verbose=False, ssl_verify=False)  # the test's own certificate
    for spec in HUB_MODELS:
        client.predict(image=handle_file(picture_path), model=spec.name, steps=1, num_frames=3,
                       fps=spec.fps, seed="4", api_name="/generate", **SMALL)  # fmt: skip
        record = max(out.glob("*.json"), key=lambda p: p.stat().st_mtime)
        made = json.loads(record.read_text())
        assert made["model"] == spec.repo  # the default model is sent as left out


LOADED = """
import json
from svd.backends.local import LocalBackend
b = LocalBackend(model="tiny")
b.max_loaded = 2
xt = b.load("svd-xt")
lcm = b.load("animatelcm-svd-xt")
shared = lcm.vae is xt.vae and lcm.image_encoder is xt.image_encoder and lcm.unet is not xt.unet
b.load("svd")  # a third: the least recently used (svd-xt) goes
kept = list(b._pipes)
b.load("animatelcm-svd-xt")  # still loaded: used, not loaded again
print(json.dumps({"shared": shared, "kept": kept, "again": list(b._pipes),
                  "sampler": type(lcm.scheduler).__name__}))
"""


def test_loaded_models_share_parts_and_the_least_recently_used_goes(hub):
    """AnimateLCM over SVD-XT shares SVD-XT's loaded VAE and image encoder; past
    SVD_MAX_LOADED_MODELS the least recently used pipeline is let go."""
    _, env = hub
    done = subprocess.run([sys.executable, "-c", LOADED], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    lcm, xt, svd = (models.MODELS[n].repo for n in ("animatelcm-svd-xt", "svd-xt", "svd"))
    assert got["shared"] is True and got["sampler"] == "ConsistencyScheduler"
    assert got["kept"] == [lcm, svd] and got["again"] == [svd, lcm]
