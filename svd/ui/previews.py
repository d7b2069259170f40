"""What the page shows of the inputs before a run: the picture and mask as the model gets
them, the header line (what comes out, how long, the licence), and the API panel's code."""

from __future__ import annotations

import functools
import html
from pathlib import Path, PurePosixPath

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from svd.archive import decode_depth, depth_strip, fit_map, maps_for_a_video
from svd.errors import InputError
from svd.fetch import read_url
from svd.mask import mask_image, motion_map
from svd.media import decode_image, fit_image, video_size
from svd.outputs import OutputStore
from svd.settings import settings
from svd.ui import model_picker, snippets, summary
from svd.ui.choice import Backends
from svd.ui.fields import in_page_words, page_request
from svd.ui.files import mask_from_page

CROP_KEYS = ["image", "strokes", "mask_file", "width", "height", "resize_mode", "backend",
             "model"]  # fmt: skip
OUTCOME_KEYS = ["image", "control_maps", "num_frames", "fps", "width", "height", "resize_mode",
                "loop", "interpolate", "extend", "steps", "num_videos", "backend",
                "model"]  # fmt: skip


@functools.lru_cache(maxsize=32)
def maps_count(path: str) -> int | None:
    """The number of maps in an uploaded archive (each upload has a path of its own)."""
    try:
        return len(maps_for_a_video(read_url(path, "control_maps_data_url")))
    except InputError:
        return None


def maps_preview(path: str | None) -> tuple[Image.Image | None, str]:
    """A strip of an archive's maps in the order they will be used, and a line about them."""
    if not path:
        return None, ""
    try:
        entries = maps_for_a_video(read_url(path, "control_maps_data_url"))
        maps = np.stack([fit_map(decode_depth(e), 128, 72) for e in entries])
    except InputError as e:
        return None, f"⚠️ {html.escape(str(e))}"  # entry names are the uploader's text
    names = ", ".join(html.escape(PurePosixPath(e.name).name) for e in entries[:8])
    more = ", ..." if len(entries) > 8 else ""
    return depth_strip(
        maps
    ), f"{len(entries)} maps, so {len(entries)} frames, in this order: {names}{more}"


def bordered(image: Image.Image, color: str = "#2563eb", width: int = 3) -> Image.Image:
    """`image` with a visible frame, so a white mask shows its edges on a white page."""
    framed = image.convert("RGB")
    ImageDraw.Draw(framed).rectangle(
        (0, 0, framed.width - 1, framed.height - 1), outline=color, width=width
    )
    return framed


class Previews:
    """The page's previews, for the app's backends; pasted masks are saved in `mask_dir`,
    the time a run takes is drawn from the recent runs in `store`."""

    def __init__(self, backends: Backends, mask_dir: Path, store: OutputStore):
        self.backends, self.mask_dir, self.store = backends, mask_dir, store
        self.rates: dict[str, float | None] = {}  # seconds per unit of work, per backend

    def model_of(self, values: dict):
        """(the chosen backend, the chosen model's request name: None for its own)."""
        backend = self.backends.chosen(values.get("backend"))
        spec = model_picker.spec_for(backend, values.get("model"))
        return backend, model_picker.requested(backend, spec.name)

    def size_of(self, values: dict, picture: tuple[int, int]) -> tuple[int, int]:
        backend, model = self.model_of(values)
        return video_size(picture, backend.default_size(model),
                          int(values.get("width") or 0) or None,
                          int(values.get("height") or 0) or None,
                          values.get("resize_mode") or "crop")  # fmt: skip

    def fitted(self, values: dict) -> tuple[Image.Image | None, Image.Image | None]:
        """The picture and the mask as the model gets them (fitted to size and resize_mode)."""
        if not values.get("image"):
            return None, None
        try:
            picture = decode_image(Path(values["image"]).read_bytes(), "image_url")
        except (InputError, OSError):
            return None, None
        width, height = self.size_of(values, picture.size)
        mode = values.get("resize_mode") or "crop"
        fitted = fit_image(picture, width, height, mode)
        mask = mask_from_page(values.get("strokes"), values.get("mask_file"), self.mask_dir)
        if mask is None:
            return fitted, None
        try:
            moves = motion_map(decode_image(Path(mask).read_bytes(), "mask_image_url"), width,
                               height, mode)  # fmt: skip
        except (InputError, OSError):
            return fitted, None
        return fitted, mask_image(moves)

    def crop_preview(self, *args):
        values = dict(zip(CROP_KEYS, args, strict=True))
        picture, mask = self.fitted(values)
        return (
            gr.update(value=picture, visible=picture is not None),
            gr.update(value=bordered(mask) if mask is not None else None, visible=mask is not None),
        )

    def mask_preview(self, strokes, mask_file):
        path = mask_from_page(strokes, mask_file, self.mask_dir)
        if path is None:
            return gr.update(value=None, visible=False)
        shown = ImageOps.contain(Image.open(path).convert("L"), (512, 512))
        return gr.update(value=bordered(shown), visible=True)

    def rate(self, backend) -> float | None:
        if backend.name not in self.rates:
            self.rates[backend.name] = summary.seconds_per_work(self.store, backend)
        return self.rates[backend.name]

    def outcome(self, values: dict, maps: int | None = None) -> str:
        backend, model = self.model_of(values)
        picture = backend.default_size(model)
        if values.get("image"):
            try:
                with Image.open(values["image"]) as opened:
                    picture = opened.size
            except OSError:
                pass
        if maps is None and values.get("control_maps"):
            maps = maps_count(values["control_maps"])
        size = self.size_of(values, picture)
        return summary.outcome(values, backend, size, self.rate(backend), maps, model)

    def outcome_of(self, *args):
        return self.outcome(dict(zip(OUTCOME_KEYS, args, strict=True)))

    def api_code(self, values: dict, request: gr.Request) -> tuple[str, str, str]:
        """Snippets for the current inputs, against this server as the visitor reached it."""
        if not values.get("image"):
            text = "Upload a picture first: the snippets carry it."
            return text, "# " + text, "// " + text
        try:
            inp, _ = page_request({**values, "seed_mode": "fixed"}, self.backends, self.mask_dir)
        except InputError as e:
            text = in_page_words(str(e))
            return f"# {text}", f"# {text}", f"// {text}"
        picture, mask = self.fitted(values)
        body = inp.model_dump(exclude_none=True, exclude_defaults=True)
        body["image_url"] = snippets.data_uri(inp.image_url, picture)
        if inp.mask_image_url:
            body["mask_image_url"] = snippets.data_uri(inp.mask_image_url, mask)
        if inp.control_maps_data_url:
            body["control_maps_data_url"] = snippets.data_uri(inp.control_maps_data_url)
        base = str(request.base_url) if request is not None else "http://127.0.0.1:7860/"
        queue = None
        if settings().queue_port:
            scheme, _, rest = base.rstrip("/").partition("://")
            queue = f"{scheme}://{rest.rsplit(':', 1)[0]}:{settings().queue_port}"
        return snippets.snippets(body, base, queue, bool(settings().api_key))
