"""The page's fields, in one table: each one's label, widget, place, and what it sends.

A field's key is its request field where it has one (fal's names and our extras), else a
page-only name; the same key names the `generate` endpoint's parameter and the history
refill (`svd.history.settings`). Adding a field is one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from PIL import UnidentifiedImageError

from svd import models
from svd.backends import BACKENDS
from svd.errors import InputError
from svd.schema import SVDInput, parse_input
from svd.ui import model_picker
from svd.ui.files import mask_from_page

SCHEMA = SVDInput.model_fields


@dataclass(frozen=True)
class PageField:
    key: str
    place: str  # "picture", "model", "mask", "maps", "main", "seed", "advanced", "backend"
    label: str  # the page's word for it, in widgets and in error messages
    widget: Callable[[str], gr.Component]  # label -> the widget
    send: Callable | None = None  # page value -> request value; None: not sent as it is
    request: str | None = None  # the request field it fills, where it is not `key`


def _limits(name: str) -> tuple[float, float]:
    meta = {type(m).__name__: m for m in SCHEMA[name].metadata}
    return meta["Ge"].ge, meta["Le"].le


def _default(name: str):
    default = SCHEMA[name].default
    own = model_picker.own_values(models.DEFAULT)
    return own[name] if default is None and name in own else default


def elem_id(key: str) -> str:
    return key.replace("_", "-")


def slider(name: str, info: str, step: float, default_zero: bool = False):
    """A slider over a schema field's range; `default_zero`: 0 stands for the default."""
    low, high = _limits(name)

    def make(label: str) -> gr.Slider:
        value = 0 if default_zero else _default(name)
        return gr.Slider(
            0 if default_zero else low, high, value=value, step=step, label=label, info=info,
            elem_id=elem_id(name), precision=0 if float(step).is_integer() else None,
        )  # fmt: skip

    return make


def radio(name: str, info: str | None = None):
    choices = list(SCHEMA[name].annotation.__args__)

    def make(label: str) -> gr.Radio:
        return gr.Radio(
            choices, value=SCHEMA[name].default, label=label, info=info, elem_id=elem_id(name)
        )

    return make


def parse_seed(text: str | int | None) -> int | None:
    """The seed box: empty means random; anything else must be a whole number."""
    if text is None or str(text).strip() == "":
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise InputError("seed", f"expected a whole number, got {text!r}") from None


def _or_none(value) -> int | None:
    return int(value) or None  # 0 on the page: the model's own


def picture(image: gr.Image, name: str) -> gr.Image:
    """`image`, answering an upload it cannot read with "<name>: not a readable image"
    (Gradio's own reading would fail with a bare "Error" and a traceback in the log). Set on
    the instance: a subclass of a Gradio component makes Gradio write a stub file beside it."""
    read = image.preprocess

    def preprocess(payload):
        try:
            return read(payload)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise gr.Error(f"{name}: not a readable image", print_exception=False) from None

    image.preprocess = preprocess
    return image


def _painter(label: str) -> gr.ImageMask:
    return gr.ImageMask(
        label=label, type="numpy", format="png", sources=(), elem_id="mask",
        brush=gr.Brush(colors=[("#ff2d55", 0.6)], color_mode="fixed"),
    )  # fmt: skip


def _models(label: str) -> gr.Dropdown:
    """Every model; the layout narrows them to the backend's and picks its own."""
    return gr.Dropdown(
        [(model_picker.label(m), m.name) for m in models.MODELS.values()],
        value=models.DEFAULT.name, label=label, elem_id="model",
        info="Steps, fps and guidance follow its own, except those you set.",
    )  # fmt: skip


SEED_MODES = ["fixed", "random", "increment"]

FIELDS = [
    PageField("image", "picture", "Image",
              lambda label: picture(gr.Image(label=label, type="filepath", height=260,
                                             elem_id="image"), "Image"),
              request="image_url"),
    PageField("model", "model", "Model", _models),
    PageField("strokes", "mask", "Motion mask (painted)", _painter, request="mask_image_url"),
    PageField("mask_file", "mask", "Motion mask (file)", lambda label: picture(gr.Image(
        label="...or upload a mask (black moves, white stays still)", type="filepath",
        image_mode="RGBA", elem_id="mask-file"), "Motion mask"), request="mask_image_url"),
    PageField("control_maps", "maps", "Depth control maps", lambda label: gr.File(
        label="Archive of depth maps, one per frame (zip, tar, tar.gz)",
        file_types=[".zip", ".tar", ".gz", ".tgz"], type="filepath", elem_id="control-maps"),
        request="control_maps_data_url"),
    PageField("motion_bucket_id", "main", "Motion bucket id",
              slider("motion_bucket_id", "More motion the higher it is.", 1), int),
    PageField("cond_aug", "main", "Conditioning augmentation", slider(
        "cond_aug", "Noise added to the picture: more motion, less likeness.", 0.01), float),
    PageField("steps", "main", "Steps",
              slider("steps", "Denoising steps: more is slower and finer.", 1), int),
    PageField("num_videos", "main", "Videos",
              slider("num_videos", "Each from its own seed, the next ones counting up.", 1), int),
    PageField("seed", "seed", "Seed", lambda label: gr.Textbox(
        label=label, info="Empty for a random one.", placeholder="random", elem_id="seed",
        scale=4), parse_seed),
    PageField("seed_mode", "seed", "After each run", lambda label: gr.Radio(
        SEED_MODES, value="fixed", label=label, scale=3, elem_id="seed-mode",
        info="fixed: keep the seed; random: a new one each run; increment: add 1.")),
    PageField("fps", "advanced", "Frames per second",
              slider("fps", "Also conditions SVD.", 1), int),
    PageField("num_frames", "advanced", "Frames",
              slider("num_frames", "0: the model's own.", 1, default_zero=True), _or_none),
    PageField("width", "advanced", "Width",
              slider("width", "0: the model's own.", 64, default_zero=True), _or_none),
    PageField("height", "advanced", "Height",
              slider("height", "0: the model's own.", 64, default_zero=True), _or_none),
    PageField("min_guidance_scale", "advanced", "Guidance at the first frame", slider(
        "min_guidance_scale", "Classifier-free guidance, rising frame by frame to...", 0.1),
        float),
    PageField("max_guidance_scale", "advanced", "Guidance at the last frame", slider(
        "max_guidance_scale", "...this. Higher follows the picture more closely.", 0.1), float),
    PageField("decode_chunk_size", "advanced", "Decode chunk size", slider(
        "decode_chunk_size", "Frames decoded at once; 0: automatic. Lower saves memory.", 1,
        default_zero=True), _or_none),
    PageField("control_scale", "advanced", "Depth control strength",
              slider("control_scale", "0 ignores the maps.", 0.05), float),
    PageField("resize_mode", "advanced", "Fit the picture", radio(
        "resize_mode", "crop: fill, cut edges (fal's); pad: bars; keep: its shape."), str),
    PageField("loop", "advanced", "Loop", radio("loop", "Make the end flow into the start."),
              str),
    PageField("output_format", "advanced", "Format", radio("output_format"), str),
    PageField("interpolate", "advanced", "In-between frames", slider(
        "interpolate", "New frames between each pair, by optical flow; the duration stays.",
        1), int),
    PageField("extend", "advanced", "Extend",
              slider("extend", "Go on from the last frame this many more times.", 1), int),
    PageField("cache_interval", "advanced", "Reuse deep features every", slider(
        "cache_interval",
        "Faster, slightly different: deep layers run every N steps (DeepCache); 1: off.", 1),
        int),
    PageField("backend", "backend", "Run on", lambda label: gr.Radio(
        list(BACKENDS), label=label,
        info="local: this machine's GPU; fal: fal.ai with your key.", elem_id="backend")),
    PageField("fal_key", "backend", "fal key", lambda label: gr.Textbox(
        label=label, type="password", placeholder="FAL_KEY if empty", elem_id="fal-key",
        info="Used for your requests only; never stored or logged.")),
]  # fmt: skip
KEYS = [f.key for f in FIELDS]


LABELS = {f.request or f.key: f.label for f in FIELDS}  # request field -> the page's word
LABELS.update(control_video_url="Driving video", image_url="Image", mask_image_url="Motion mask")


def make(field: PageField) -> gr.Component:
    return field.widget(field.label)


def request_values(values: dict) -> dict:
    """The request fields the page's values give directly (those with a `send`)."""
    return {f.key: f.send(values[f.key]) for f in FIELDS if f.send is not None}


def in_page_words(message: str) -> str:
    """An error message with its request field named as the page names it:
    "image_url: not a picture" -> "Image: not a picture"."""
    field, sep, rest = message.partition(": ")
    if sep and field in LABELS:
        return f"{LABELS[field]}: {rest}"
    return message


def page_request(values: dict, backends, mask_dir) -> tuple:
    """The page's values as (SVDInput, the backend for it); InputError names the field."""
    if not values["image"]:
        raise InputError("image_url", "upload an image first")
    key = (values["fal_key"] or "").strip() or None
    chosen = backends.pick(values["backend"], key)
    runs = chosen or backends.default
    name = values.get("model")
    if name == model_picker.default_name(backends.default):
        name = None  # the page's default stands for each backend's own (a script's default)
    model = model_picker.requested(runs, name)
    body = {
        **request_values(values),
        "image_url": values["image"],
        "mask_image_url": mask_from_page(values["strokes"], values["mask_file"], mask_dir),
        "control_maps_data_url": values["control_maps"] or None,
        "model": model,
    }
    if model is None or model in models.MODELS:  # else the schema names the field
        for name, own in model_picker.own_values(runs.model_spec(model)).items():
            if model_picker.at_own(body.get(name), own):
                body[name] = None  # the model's own: as the API leaves it out
    if values.get("seed_mode") == "random":
        body["seed"] = None
    return parse_input(body), chosen
