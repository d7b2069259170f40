"""The page's fields, in one table: each one's widget, where it sits, and what it sends.

A field's key is its request field where it has one (fal's names and our extras), else a
page-only name; the same key names the `generate` endpoint's parameter and the history
refill (`svd.history.settings`). Adding a field is one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from svd.schema import SVDInput
from svd.session import parse_seed

SCHEMA = SVDInput.model_fields


@dataclass(frozen=True)
class PageField:
    key: str
    place: str  # "picture", "mask", "maps", "main", "advanced", "backend"
    widget: Callable[[], gr.Component]
    send: Callable | None = None  # page value -> request value; None: not sent as it is


def _limits(name: str) -> tuple[float, float]:
    meta = {type(m).__name__: m for m in SCHEMA[name].metadata}
    return meta["Ge"].ge, meta["Le"].le


def slider(name: str, label: str, info: str, step: float, default_zero: bool = False):
    """A slider over a schema field's range; `default_zero`: 0 stands for the default."""
    low, high = _limits(name)

    def make() -> gr.Slider:
        value = 0 if default_zero else SCHEMA[name].default
        return gr.Slider(
            0 if default_zero else low, high, value=value, step=step, label=label, info=info,
            elem_id=name.replace("_", "-"),
        )  # fmt: skip

    return make


def radio(name: str, label: str, info: str | None = None):
    choices = list(SCHEMA[name].annotation.__args__)

    def make() -> gr.Radio:
        return gr.Radio(
            choices, value=SCHEMA[name].default, label=label, info=info,
            elem_id=name.replace("_", "-"),
        )  # fmt: skip

    return make


def _or_none(value) -> int | None:
    return int(value) or None  # 0 on the page: the model's own


def _painter() -> gr.ImageMask:
    return gr.ImageMask(
        label="Paint the parts that move; the rest stays still", type="numpy", format="png",
        sources=(), brush=gr.Brush(colors=[("#ff2d55", 0.6)], color_mode="fixed"),
        elem_id="mask",
    )  # fmt: skip


FIELDS = [
    PageField("image", "picture",
              lambda: gr.Image(label="Image", type="filepath", elem_id="image")),
    PageField("strokes", "mask", _painter),
    PageField("mask_file", "mask", lambda: gr.Image(
        label="...or upload a mask (black moves, white stays still)", type="filepath",
        image_mode="RGBA", elem_id="mask-file")),
    PageField("control_maps", "maps", lambda: gr.File(
        label="Archive of depth maps, one per frame (zip, tar, tar.gz)",
        file_types=[".zip", ".tar", ".gz", ".tgz"], type="filepath", elem_id="control-maps")),
    PageField("motion_bucket_id", "main", slider(
        "motion_bucket_id", "Motion bucket id", "More motion the higher it is.", 1), int),
    PageField("cond_aug", "main", slider(
        "cond_aug", "Conditioning augmentation",
        "Noise added to the picture: more motion, less likeness.", 0.01), float),
    PageField("steps", "main", slider(
        "steps", "Steps", "Denoising steps: more is slower and finer.", 1), int),
    PageField("seed", "seed", lambda: gr.Textbox(
        label="Seed", info="Empty for a random one.", placeholder="random", elem_id="seed",
        scale=4), parse_seed),
    PageField("fps", "advanced", slider("fps", "Frames per second", "Also conditions SVD.", 1),
              int),
    PageField("num_frames", "advanced", slider(
        "num_frames", "Frames", "0: the model's own.", 1, default_zero=True), _or_none),
    PageField("width", "advanced", slider(
        "width", "Width", "0: the model's own.", 64, default_zero=True), _or_none),
    PageField("height", "advanced", slider(
        "height", "Height", "0: the model's own.", 64, default_zero=True), _or_none),
    PageField("decode_chunk_size", "advanced", slider(
        "decode_chunk_size", "Decode chunk size",
        "Frames decoded at once; 0: automatic. Lower saves memory.", 1, default_zero=True),
        _or_none),
    PageField("control_scale", "advanced", slider(
        "control_scale", "Depth control strength", "0 ignores the maps.", 0.05), float),
    PageField("resize_mode", "advanced", radio(
        "resize_mode", "Fit the picture",
        "crop: fill, cut edges (fal's); pad: bars; keep: its shape."), str),
    PageField("loop", "advanced", radio("loop", "Loop", "Make the end flow into the start."),
              str),
    PageField("output_format", "advanced", radio("output_format", "Format"), str),
    PageField("interpolate", "advanced", slider(
        "interpolate", "In-between frames",
        "New frames between each pair, by optical flow; the duration stays.", 1), int),
    PageField("extend", "advanced", slider(
        "extend", "Extend", "Go on from the last frame this many more times.", 1), int),
    PageField("cache_interval", "advanced", slider(
        "cache_interval", "Reuse deep features every",
        "Faster, slightly different: deep layers run every N steps (DeepCache); 1: off.", 1),
        int),
    PageField("backend", "backend", lambda: gr.Radio(
        ["local", "fal"], label="Run on",
        info="local: this machine's GPU; fal: fal.ai with your key.", elem_id="backend")),
    PageField("fal_key", "backend", lambda: gr.Textbox(
        label="fal key", type="password", placeholder="FAL_KEY if empty",
        info="Used for your requests only; never stored or logged.", elem_id="fal-key")),
]  # fmt: skip
KEYS = [f.key for f in FIELDS]


def request_values(values: dict) -> dict:
    """The request fields the page's values give directly (those with a `send`)."""
    return {f.key: f.send(values[f.key]) for f in FIELDS if f.send is not None}
