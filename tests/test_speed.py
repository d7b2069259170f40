import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch

from svd.backends.tiny import TINY_FRAMES, TINY_SIZE, build_tiny_pipeline
from svd.media import read_video
from svd.pipeline import SVDPipeline
from svd.reuse import feature_reuse
from svd.run import run

from .conftest import SMALL, make_picture


@pytest.fixture(scope="module")
def plain():
    return build_tiny_pipeline()


def frames(pipe, picture, seed=0, size=(192, 128), **kw):
    kw = {"num_frames": 4, "num_inference_steps": 2, "output_type": "np", **kw}
    out = pipe(
        picture,
        height=size[1],
        width=size[0],
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )
    return out.frames[0]


def test_conditioning_cache_keeps_outputs_identical(plain):
    cached = SVDPipeline.of(plain)
    picture = make_picture(192, 128)
    runs = [
        ({"seed": 1}, {"embedding": 0, "latent": 0}),
        ({"seed": 1, "motion_bucket_id": 30}, {"embedding": 1, "latent": 1}),
        ({"seed": 1, "num_inference_steps": 3}, {"embedding": 2, "latent": 2}),
        ({"seed": 2}, {"embedding": 3, "latent": 2}),  # new noise on the picture
        ({"seed": 3, "noise_aug_strength": 0.0}, {"embedding": 4, "latent": 2}),
        ({"seed": 4, "noise_aug_strength": 0.0}, {"embedding": 5, "latent": 3}),  # no noise
    ]
    for kw, hits in runs:
        assert np.array_equal(frames(cached, picture, **kw), frames(plain, picture, **kw)), kw
        assert cached.hits == {**hits, "picture": 0}, kw


def test_caching_pipeline_keeps_the_wrapped_pipelines_models_and_settings():
    pipe = build_tiny_pipeline()
    pipe.register_to_config(_name_or_path="some/model")
    pipe.set_progress_bar_config(disable=True, desc="svd")
    cached = SVDPipeline.of(pipe)
    assert all(cached.components[k] is v for k, v in pipe.components.items())  # not copies
    assert cached.name_or_path == "some/model" and cached.dtype == pipe.dtype
    assert cached._progress_bar_config == {"disable": True, "desc": "svd"}
    assert SVDPipeline.of(cached) is cached


def test_conditioning_cache_tells_pictures_apart(plain):
    cached = SVDPipeline.of(plain)
    one, other = make_picture(192, 128), make_picture(192, 128)
    other.putpixel((100, 100), (255, 0, 0))  # one pixel apart
    frames(cached, one, seed=1)
    assert np.array_equal(frames(cached, other, seed=1), frames(plain, other, seed=1))
    assert cached.hits == {"embedding": 0, "latent": 0, "picture": 0}


def test_conditioning_cache_is_bounded(plain):
    cached = SVDPipeline.of(plain)
    for n in range(6):
        frames(cached, make_picture(192 + n, 128), seed=n, num_inference_steps=1)
    assert len(cached.embeddings) == 4 and len(cached.latents) == 4


def psnr(a, b):
    return 10 * np.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))


def count_calls(module):
    calls = []
    return calls, module.register_forward_hook(lambda *_: calls.append(1))


def test_feature_reuse_skips_the_deep_blocks_between_full_steps(plain):
    picture = make_picture(192, 128)
    unet = plain.unet
    blocks = (list(unet.down_blocks), unet.mid_block, list(unet.up_blocks))
    full = frames(plain, picture, seed=5, num_inference_steps=6)
    mid_calls, mid_hook = count_calls(unet.mid_block)
    first_calls, first_hook = count_calls(unet.down_blocks[0])
    try:
        with feature_reuse(unet, 3):
            reused = frames(plain, picture, seed=5, num_inference_steps=6)
    finally:
        mid_hook.remove()
        first_hook.remove()
    assert len(mid_calls) == 2 and len(first_calls) == 6  # steps 1 and 4 run in full
    assert not np.array_equal(reused, full)
    assert psnr(reused, full) > 25  # close to the full run (40 dB at interval 2 here)
    # Left as it was: the same blocks, and the same video as before.
    assert (list(unet.down_blocks), unet.mid_block, list(unet.up_blocks)) == blocks
    assert np.array_equal(frames(plain, picture, seed=5, num_inference_steps=6), full)


def test_feature_reuse_of_one_is_a_plain_run(plain):
    picture = make_picture(192, 128)
    with feature_reuse(plain.unet, 1):
        reused = frames(plain, picture, seed=6)
    assert np.array_equal(reused, frames(plain, picture, seed=6))


def test_feature_reuse_with_depth_control(plain):
    from svd.backends.tiny import build_tiny_controlnet
    from svd.control import depth_control, maps_to_cond

    net = build_tiny_controlnet(plain.unet)
    ramp = np.linspace(0, 1, 192, dtype=np.float32)[None, None].repeat(128, 1).repeat(4, 0)
    cond = maps_to_cond(ramp, "cpu", torch.float32)
    picture = make_picture(192, 128)
    with depth_control(plain.unet, net, cond):
        controlled = frames(plain, picture, seed=7, num_inference_steps=4)
        with feature_reuse(plain.unet, 2):
            both = frames(plain, picture, seed=7, num_inference_steps=4)
    with feature_reuse(plain.unet, 2):
        reused = frames(plain, picture, seed=7, num_inference_steps=4)
    assert psnr(both, controlled) > 25
    assert np.abs(both - reused).mean() > 0.01  # the ControlNet still acts
    with feature_reuse(plain.unet, 2), depth_control(plain.unet, net, cond):  # either order
        assert np.array_equal(frames(plain, picture, seed=7, num_inference_steps=4), both)


def test_backend_runs_with_feature_reuse(tiny_backend, picture_path, store):
    from svd.schema import SVDInput

    inp = SVDInput(image_url=picture_path, **{**SMALL, "seed": 3})
    full = run(tiny_backend, inp, store)
    reused = run(tiny_backend, inp.model_copy(update={"cache_interval": 2}), store)
    a, b = (read_video(urlparse(o.image.url).path)[0] for o in (full, reused))
    assert a.shape == b.shape and not np.array_equal(a, b)
    record = json.loads(Path(urlparse(reused.image.url).path).with_suffix(".json").read_text())
    assert record["input"]["cache_interval"] == 2


def test_fast_path_gives_the_same_video(plain, tmp_path):
    """channels-last and torch.compile (inductor, on the CPU here), compiled in the warm-up at
    the model's default size and frame count, the ones the runs below use."""
    from svd.backends.local import LocalBackend

    backend = LocalBackend(model="tiny", pipe=build_tiny_pipeline(), fast=True)
    backend.warm_up()
    fast = backend.load()
    conv = fast.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    compiled = [m for m in fast.unet.modules() if getattr(m, "_compiled_call_impl", None)]
    assert len(compiled) == 12  # the resnets and transformers of the tiny UNet
    picture = make_picture(*TINY_SIZE)
    latents = {"size": TINY_SIZE, "num_frames": TINY_FRAMES, "output_type": "latent"}
    for interval in (1, 2):  # with feature reuse the compiled blocks are used as they are
        with feature_reuse(fast.unet, interval):
            got = frames(fast, picture, seed=8, **latents)
        with feature_reuse(plain.unet, interval):
            want = frames(plain, picture, seed=8, **latents)
        assert (got - want).abs().max() < 1e-3, interval


def test_fast_flag_and_environment(monkeypatch):
    from svd.server import parse_args
    from svd.settings import configure

    def fast(argv):
        return configure(**vars(parse_args(argv))).fast

    monkeypatch.delenv("SVD_FAST", raising=False)
    assert fast([]) is False and fast(["--fast"]) is True
    monkeypatch.setenv("SVD_FAST", "1")
    assert fast([]) is True and fast(["--no-fast"]) is False
    configure()


def test_feature_reuse_and_depth_control_on_the_svd_xt_architecture():
    """The real UNet has four levels where tiny has two: run it on the meta device (shapes
    and FLOPs, no weights) with the published ControlNet's architecture."""
    from diffusers import UNetSpatioTemporalConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from svd.control import depth_control
    from svd.controlnet import ControlNetSDV

    meta = torch.device("meta")
    with meta:
        unet = UNetSpatioTemporalConditionModel()  # its defaults are SVD's config
        net = ControlNetSDV()  # the published depth ControlNet's
    unet.to(meta)
    net.to(meta)
    with meta:
        sample, hidden = torch.empty(2, 14, 8, 72, 128), torch.empty(2, 1, 1024)
        ids, t = torch.empty(2, 3), torch.tensor([1.0])
        cond = torch.empty(1, 14, 3, 576, 1024)

    def step() -> tuple[float, torch.Size]:
        with FlopCounterMode(display=False) as counter, meta:
            out = unet(sample, t, encoder_hidden_states=hidden, added_time_ids=ids)[0]
        return counter.get_total_flops(), out.shape

    full, shape = step()
    with feature_reuse(unet, 2):
        assert step() == (full, shape)
        reused, reused_shape = step()
    assert reused_shape == shape and 0.3 < reused / full < 0.5  # 0.417 at this size
    with depth_control(unet, net, cond), feature_reuse(unet, 2):
        controlled, _ = step()
        controlled_reuse, out_shape = step()
    assert out_shape == shape
    control, shallow_control = controlled - full, controlled_reuse - reused
    assert 0 < shallow_control < control / 2  # the ControlNet stops after its first level


def test_page_status_names_the_fast_path_and_low_memory(tmp_path):
    from svd.backends.local import LocalBackend

    plain_status = LocalBackend(pipe=build_tiny_pipeline()).status()
    assert "fast path" not in plain_status and "low-memory" not in plain_status
    fast = LocalBackend(pipe=build_tiny_pipeline(), fast=True)
    assert "fast path (compiled)" in fast.status()
    low = LocalBackend(pipe=build_tiny_pipeline(), memory="low")
    assert "low-memory mode" in low.status()
    with pytest.raises(ValueError, match="SVD_FAST and SVD_MEMORY=low do not go together"):
        LocalBackend(model="tiny", fast=True, memory="low")


def test_motion_mask_encodes_the_picture_once_across_segments(tmp_path, picture_path, store):
    from PIL import Image

    from svd.backends.local import LocalBackend
    from svd.schema import SVDInput

    mask = np.full((128, 192), 255, np.uint8)
    mask[:, :96] = 0
    Image.fromarray(mask).save(tmp_path / "m.png")
    backend = LocalBackend(pipe=build_tiny_pipeline())
    inp = SVDInput(image_url=picture_path, mask_image_url=str(tmp_path / "m.png"), extend=1,
                   **{**SMALL, "steps": 1})  # fmt: skip
    run(backend, inp, store)
    assert backend.load().hits["picture"] == 1  # the second segment reused the first's


def test_compiled_blocks_of_svd_xt_stay_within_the_recompile_limit():
    """SVD-XT's UNet has a dozen resnet shapes sharing one forward; every one must compile,
    at two frame counts (traced by Dynamo on the meta device, no weights, no codegen)."""
    from diffusers import UNetSpatioTemporalConditionModel

    from svd.fast import compile_unet

    meta = torch.device("meta")
    with meta:
        unet = UNetSpatioTemporalConditionModel()  # SVD's config
    unet.to(meta)
    try:
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            assert compile_unet(unet, backend="eager") == 38
            for frames in (14, 25):
                with meta:
                    sample, hidden = torch.empty(2, frames, 8, 72, 128), torch.empty(2, 1, 1024)
                    ids, t = torch.empty(2, 3), torch.tensor([1.0])
                    out = unet(sample, t, encoder_hidden_states=hidden, added_time_ids=ids)[0]
                assert out.shape == (2, frames, 4, 72, 128)
    finally:
        torch._dynamo.reset()
