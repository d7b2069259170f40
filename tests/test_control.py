import io
import json
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from accelerate import init_empty_weights
from PIL import Image
from torch import nn

from svd.backends.local import LocalBackend
from svd.backends.tiny import build_tiny_controlnet, build_tiny_pipeline
from svd.control import skip_multipliers
from svd.controlnet import ControlNetSDV
from svd.errors import BackendError
from svd.media import read_video
from svd.outputs import OutputStore
from svd.run import run
from svd.schema import SVDInput

from .conftest import SMALL

DATA = Path(__file__).parent / "data"
# The config the published depth checkpoint was trained with: the img2vid UNet's own.
PUBLISHED_CONFIG = {
    "sample_size": 96,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 14,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
}


def test_parameter_names_match_the_published_controlnet():
    with init_empty_weights():
        net = ControlNetSDV(**PUBLISHED_CONFIG)
    ours = sorted(f"{n} {','.join(map(str, p.shape))}" for n, p in net.named_parameters())
    published = (DATA / "controlnet_sdv_params.txt").read_text().split()
    published = [" ".join(published[i : i + 2]) for i in range(0, len(published), 2)]
    assert ours == published
    assert sum(p.numel() for p in net.parameters()) == 682_021_537


def test_residual_counts_follow_the_published_unet():
    from diffusers import UNetSpatioTemporalConditionModel

    with init_empty_weights():
        unet = UNetSpatioTemporalConditionModel(num_attention_heads=(5, 10, 20, 20))
    assert skip_multipliers(unet) == [4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1]


def depth_zip(tmp_path, name, values, size=(192, 128)):
    """An archive of maps named 1.png..N.png, each a horizontal ramp times its value."""
    ramp = np.linspace(0, 1, size[0])[None, :].repeat(size[1], 0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, v in enumerate(values, start=1):
            png = io.BytesIO()
            Image.fromarray((ramp * v).astype(np.uint8)).save(png, "PNG")
            z.writestr(f"depth/{i}.png", png.getvalue())
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return str(path)


def frames(backend, picture_path, **fields):
    """One video, kept in outputs/ beside the picture (the `store` fixture's folder)."""
    inp = SVDInput(image_url=picture_path, **{**SMALL, "seed": 3, **fields})
    out = run(backend, inp, OutputStore(Path(picture_path).parent / "outputs"))
    return read_video(urlparse(out.image.url).path)[0].astype(np.float32), out


def test_one_frame_per_map_and_maps_change_the_video(tiny_backend, picture_path, tmp_path):
    a = depth_zip(tmp_path, "a.zip", [255, 200, 150, 100, 50])
    b = depth_zip(tmp_path, "b.zip", [0, 60, 120, 180, 240])
    va, out = frames(tiny_backend, picture_path, control_maps_data_url=a)
    vb, _ = frames(tiny_backend, picture_path, control_maps_data_url=b)
    assert va.shape[0] == 5 and vb.shape[0] == 5  # overrides num_frames=6
    assert np.abs(va - vb).mean() > 1
    video = Path(urlparse(out.image.url).path)
    record = json.loads(video.with_suffix(".json").read_text())
    assert record["num_frames"] == 5 and record["controlnet"]
    assert Image.open(video.with_name(video.stem + ".depth.png")).size[0] > 5 * 100


def test_scale_zero_or_zero_convolutions_change_nothing(tmp_path, picture_path):
    maps = depth_zip(tmp_path, "maps.zip", [255, 128, 64, 32, 16, 8])
    pipe = build_tiny_pipeline()
    plain, _ = frames(LocalBackend(pipe=pipe), picture_path)
    backend = LocalBackend(pipe=pipe, controlnet=build_tiny_controlnet(pipe.unet))
    scaled_out, _ = frames(backend, picture_path, control_maps_data_url=maps, control_scale=0.0)
    assert np.array_equal(plain, scaled_out)
    full, _ = frames(backend, picture_path, control_maps_data_url=maps)
    assert np.abs(full - plain).mean() > 1  # the tiny ControlNet does act

    zeroed = build_tiny_controlnet(pipe.unet)
    for conv in [*zeroed.controlnet_down_blocks, zeroed.controlnet_mid_block]:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    backend = LocalBackend(pipe=pipe, controlnet=zeroed)
    assert np.array_equal(plain, frames(backend, picture_path, control_maps_data_url=maps)[0])
    assert np.array_equal(plain, frames(LocalBackend(pipe=pipe), picture_path)[0])


def test_controlnet_loads_from_a_folder(tmp_path, picture_path):
    pipe = build_tiny_pipeline()
    build_tiny_controlnet(pipe.unet).save_pretrained(tmp_path / "cn" / "controlnet")
    maps = depth_zip(tmp_path, "maps.zip", [255, 128, 64])
    injected = LocalBackend(pipe=pipe, controlnet=build_tiny_controlnet(pipe.unet))
    loaded = LocalBackend(pipe=pipe, controlnet=str(tmp_path / "cn"))
    a, _ = frames(injected, picture_path, control_maps_data_url=maps)
    b, _ = frames(loaded, picture_path, control_maps_data_url=maps)
    assert np.array_equal(a, b)
    missing = LocalBackend(pipe=pipe, controlnet=str(tmp_path / "none"))
    with pytest.raises(BackendError, match="SVD_CONTROLNET"):
        frames(missing, picture_path, control_maps_data_url=maps)


def test_depth_and_mask_together(tiny_backend, picture_path, tmp_path):
    mask = np.full((128, 192), 255, np.uint8)
    mask[:, :96] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    maps = depth_zip(tmp_path, "maps.zip", [255, 200, 150, 100])
    video, _ = frames(
        tiny_backend,
        picture_path,
        control_maps_data_url=maps,
        mask_image_url=str(tmp_path / "mask.png"),
    )
    spread = video.std(axis=0).mean(axis=-1)
    assert video.shape[0] == 4 and spread[:, 104:].mean() <= 0.05 * spread[:, :88].mean()
