"""The model registry: each model's numbers in one place, read by whatever needs them."""

import re
from pathlib import Path

from svd import models
from svd.backends.fal import FalBackend
from svd.backends.local import LocalBackend

SVD = Path(__file__).resolve().parent.parent / "svd"


def test_each_models_own_numbers():
    assert models.find("svd").frames == 14 and models.find("svd-xt").frames == 25
    assert models.DEFAULT.name == "svd-xt"
    xt11 = models.find("stabilityai/stable-video-diffusion-img2vid-xt-1-1")
    assert (xt11.name, xt11.fps, xt11.motion_bucket_id) == ("svd-xt-1-1", 6, 127)
    lcm = models.find("animatelcm-svd-xt")
    assert (lcm.steps, lcm.step_range, lcm.guidance, lcm.fps) == (4, (1, 20), (1.0, 1.2), 8)
    assert lcm.scheduler == "consistency" and lcm.unet_file.endswith(".safetensors")
    assert models.for_fal_endpoint("fal-ai/fast-svd-lcm") is lcm
    assert models.for_fal_endpoint("fal-ai/svd") is models.DEFAULT
    assert models.find("./my-folder") is None


def test_backends_read_the_registry(tmp_path):
    """Before any weights load, a backend's frames and size are its model's."""
    assert LocalBackend(model="stabilityai/stable-video-diffusion-img2vid").default_frames() == 14
    assert LocalBackend(model="svd-xt").default_frames() == 25
    tiny = LocalBackend(model="tiny")
    assert tiny.default_size() == (256, 128)
    from svd.schema import SVDInput

    asked = SVDInput(image_url="x", model="svd")  # another model's run: its own size
    assert tiny._size(asked, (320, 200)) == (1024, 576)
    lcm = FalBackend(endpoint="fal-ai/fast-svd-lcm")
    assert lcm.default_frames() == 25 and lcm.default_size() == (1024, 576)


def test_no_model_numbers_outside_the_registry():
    """A model's repo id, frame count or size is written in svd/models.py only."""
    found = []
    for path in SVD.rglob("*.py"):
        if path.name == "models.py":
            continue
        text = path.read_text()
        for pattern in (r"img2vid", r"1024,\s*576", r"256,\s*128", r"or 25\b", r'"xt"'):
            if re.search(pattern, text):
                found.append(f"{path.relative_to(SVD)}: {pattern}")
    assert found == []


def test_the_default_model_loads_from_a_hub_shaped_offline_cache(tmp_path, picture_path):
    """SVD-XT's repo id, laid out in a Hugging Face cache as the hub lays it out (tiny
    weights), offline: the default model loads from it, not falling back to tiny."""
    import json
    from urllib.parse import urlparse

    from .hub_cache import add_diffusers_repo
    from .test_cli import svd_cli

    home = tmp_path / "hf"
    snapshot = add_diffusers_repo(home, models.DEFAULT.repo, frames=models.DEFAULT.frames)
    assert (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_symlink()
    out = tmp_path / "out"
    r = svd_cli(
        "generate", "--image-url", picture_path, "--steps", "1", "--num-frames", "3",
        "--width", "192", "--height", "128", "--seed", "5", "--out-dir", str(out),
        env={"SVD_MODEL": "", "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "could not be loaded" not in r.stderr
    video = Path(urlparse(json.loads(r.stdout.strip().splitlines()[-1])["image"]["url"]).path)
    record = json.loads(video.with_suffix(".json").read_text())
    assert record["model"] == models.DEFAULT.repo


def test_svd_model_takes_a_registry_name_and_a_missing_one_says_how_to_get_it(
    tmp_path, picture_path
):
    """SVD_MODEL=svd loads SVD's repo from the offline cache (14 frames, its own); a model
    not on the machine (asked for by name) is an error naming `model` and how to get its
    weights."""
    import json
    from urllib.parse import urlparse

    from .hub_cache import add_diffusers_repo
    from .test_cli import svd_cli_each

    home = tmp_path / "hf"
    add_diffusers_repo(home, models.find("svd").repo, frames=models.find("svd").frames)
    offline = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    small = ["--steps", "1", "--width", "192", "--height", "128", "--out-dir", str(tmp_path)]
    named, missing = svd_cli_each(  # one process, SVD_MODEL=svd; then a request for another
        ["generate", "--image-url", picture_path, *small],
        ["generate", "--image-url", picture_path, "--model", "svd-xt-1-1", *small],
        env={"SVD_MODEL": "svd", **offline},
    )
    assert named.returncode == 0, named.stderr[-2000:]
    video = Path(urlparse(json.loads(named.stdout.strip().splitlines()[-1])["image"]["url"]).path)
    record = json.loads(video.with_suffix(".json").read_text())
    assert record["model"] == models.find("svd").repo and record["num_frames"] == 14
    repo = models.find("svd-xt-1-1").repo
    assert missing.returncode == 1
    assert f"model: the weights of svd-xt-1-1 ({repo})" in missing.stderr
    assert f"hf download {repo}" in missing.stderr
