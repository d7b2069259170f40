"""Depth maps from a driving video: one map per frame by a depth-estimation model, packed
into the archive that `control_maps_data_url` takes."""

from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
from PIL import Image

from svd.archive import MAX_MAPS
from svd.errors import BackendError
from svd.fetch import read_url
from svd.settings import settings

FIELD = "control_video_url"
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
_models: dict[str, object] = {}
_lock = threading.Lock()


def build_tiny_depth_pipeline(seed: int = 0):
    """A tiny random Depth Anything, for tests and offline demos."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessorPil,
        pipeline,
    )

    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
        image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessorPil(
        size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14
    )
    return pipeline("depth-estimation", model=model, image_processor=processor, device="cpu")


def depth_pipeline(model: str | None = None):
    """The depth-estimation pipeline (`SVD_DEPTH_MODEL`, a small Depth Anything by default;
    "tiny" builds a random one), loaded once."""
    name = model or settings().depth_model or DEFAULT_DEPTH_MODEL
    with _lock:
        if name not in _models:
            if name == "tiny":
                _models[name] = build_tiny_depth_pipeline()
            else:
                from transformers import pipeline

                try:
                    _models[name] = pipeline("depth-estimation", model=name)
                except Exception as e:  # offline, no cache, a bad id...
                    raise BackendError(f"could not load the depth model {name!r}: {e}") from e
        return _models[name]


def video_to_depth_archive(url: str, model: str | None = None) -> bytes:
    """A zip of 16-bit PNG depth maps (depth/frame_0001.png, ...), one per frame of the
    video at `url`, at most 64 frames (evenly picked); near is bright, scaled over the
    whole video so the frames agree."""
    from svd.media import read_video_bytes

    frames = read_video_bytes(read_url(url, FIELD), FIELD, pick=MAX_MAPS)
    estimate = depth_pipeline(model)
    depths = [
        np.asarray(estimate(Image.fromarray(f))["predicted_depth"], np.float32) for f in frames
    ]
    low, high = min(d.min() for d in depths), max(d.max() for d in depths)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, depth in enumerate(depths, start=1):
            scaled = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
            png = io.BytesIO()
            Image.fromarray((scaled * 65535).round().astype(np.uint16)).save(png, "PNG")
            z.writestr(f"depth/frame_{i:04d}.png", png.getvalue())
    return buf.getvalue()
