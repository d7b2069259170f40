"""The page, top to bottom: the header line, the examples, the picture with the action right
under it, the settings, then the video, the crop preview, the API panel and the history."""

from __future__ import annotations

import base64
import io
import random

import gradio as gr

from svd import history
from svd.jobs import JobQueue
from svd.settings import settings
from svd.ui import examples, model_picker, progress
from svd.ui.adapters import by_key, in_order, keyed
from svd.ui.choice import Backends
from svd.ui.fields import FIELDS, KEYS, make
from svd.ui.handlers import EXTRAS, OUTPUTS, Handlers, depth_note, painter_background
from svd.ui.previews import CROP_KEYS, OUTCOME_KEYS, maps_preview  # fmt: skip

TITLE = "SVD Studio"
ASSETS = examples.ASSETS
# Help text at 7:1 on white (Gradio's default grey is 1.9:1); focus rings on every control.
THEME = gr.themes.Default().set(
    block_info_text_color="#4b5563", block_info_text_color_dark="#d1d5db",
    body_text_color_subdued="#4b5563", body_text_color_subdued_dark="#d1d5db",
)  # fmt: skip
CSS = """
#history .caption-label { font-size: 12px; }
#dice { max-width: 3em; min-width: 3em; }
:is(button, input, textarea, select, [role="tab"]):focus-visible,
input[type="range"]:focus-visible { outline: 3px solid #1d4ed8 !important; outline-offset: 2px; }
.run-progress { min-height: 2.2em; display: flex; gap: .6em; align-items: center;
  flex-wrap: wrap; font-size: 15px; color: #111827; }
.run-progress progress { flex: 1 1 8em; height: .9em; accent-color: #1d4ed8; }
.run-progress.stopped .line { color: #92400e; }
.run-progress.done .line { color: #166534; }
.depth-strip { overflow-x: auto; } .depth-strip img { height: 72px; max-width: none; }
#outcome p { margin: 0; }
#examples .grid-container { grid-template-columns: repeat(auto-fill, minmax(150px, 230px))
  !important; }
#examples .thumbnail-item { aspect-ratio: 16 / 9; }
#examples .caption-label { font-size: 13px; white-space: normal; }
/* A phone: the picture, the action, the progress, then the video (or its live preview),
   then the settings and the rest; the columns give up their boxes to reorder them. */
@media (max-width: 700px) {
  #main { flex-direction: column; flex-wrap: nowrap; }
  #main > #inputs, #main > #results { display: contents; }
  #inputs > *, #results > * { order: 10; }
  #inputs > #image { order: 1; } #inputs > #action { order: 2; }
  #inputs > #run-progress { order: 3; } #results > #live-preview { order: 4; }
  #results > #video { order: 5; } #results > #seed-used { order: 6; }
}
"""
# iOS plays a video inline and on its own only when it is muted and `playsinline`; the dice
# is an icon, so it gets a name.
JS = """
() => {
  const fix = () => {
    document.querySelectorAll('#video video, #examples video').forEach((v) => {
      v.setAttribute('playsinline', '');
      v.playsInline = true;
      v.setAttribute('muted', '');
      v.muted = true;
    });
    const dice = document.querySelector('#dice');
    if (dice && !dice.getAttribute('aria-label')) {
      dice.setAttribute('aria-label', 'Draw a random seed');
      dice.setAttribute('title', 'Draw a random seed');
    }
  };
  new MutationObserver(fix).observe(document.body, { subtree: true, childList: true });
  fix();
}
"""


def history_label() -> str:
    if settings().history == "all":
        return "History (every video in the output folder)"
    return "Your videos (kept for this browser only)"


def _fields(place: str, w: dict) -> None:
    for field in FIELDS:
        if field.place == place:
            w[field.key] = make(field)


def strip_html(path: str | None) -> tuple[str, str]:
    """The depth maps as a strip (72 px high, scrolling sideways) and a line about them."""
    strip, info = maps_preview(path)
    if strip is None:
        return "", info
    buffer = io.BytesIO()
    strip.save(buffer, "PNG")
    src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    alt = "The depth maps in the order they are used"
    return f'<div class="depth-strip"><img src="{src}" alt="{alt}"></div>', info


def _action(w: dict) -> None:
    """Generate and Stop, right under the picture, and the one progress display."""
    with gr.Row(equal_height=True, elem_id="action"):
        w["generate"] = gr.Button("Generate", variant="primary", elem_id="generate", scale=3,
                                  min_width=120)  # fmt: skip
        w["stop"] = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, scale=1,
                              min_width=80)  # fmt: skip
    w["progress"] = gr.HTML(progress.IDLE, elem_id="run-progress", padding=False)


def _inputs(w: dict, backend) -> None:
    """The left column: the picture, the model, the action, fal's numbers, then the optional
    parts."""
    _fields("picture", w)
    _fields("model", w)
    _action(w)
    _fields("main", w)
    with gr.Row(equal_height=True):
        w["seed"] = make(next(f for f in FIELDS if f.key == "seed"))
        w["dice"] = gr.Button("🎲", elem_id="dice", scale=0)
    w["seed_mode"] = make(next(f for f in FIELDS if f.key == "seed_mode"))
    with gr.Accordion("Motion mask (optional): paint what moves", open=False):
        _fields("mask", w)
        w["mask_preview"] = gr.Image(
            label="Mask to be sent (framed in blue)", interactive=False, visible=False,
            elem_id="mask-preview",
        )  # fmt: skip
    with gr.Accordion("Depth control maps (optional)", open=False) as w["depth"]:
        _fields("maps", w)
        with gr.Row():
            w["driving"] = gr.Video(
                label="...or make them from a driving video", sources=["upload"],
                elem_id="control-video",
            )  # fmt: skip
            w["make_maps"] = gr.Button("Make depth maps", elem_id="make-maps", scale=0)
        w["maps_info"] = gr.Markdown(elem_id="control-maps-info")
        w["maps_strip"] = gr.HTML(elem_id="control-maps-strip")
    w["depth_note"] = gr.Markdown(visible=False, elem_id="depth-note")
    with gr.Accordion("Advanced", open=False):
        _fields("advanced", w)
    with gr.Accordion("Backend", open=False):
        _fields("backend", w)
        w["backend"].value = backend.name
    _own_model(w, backend)


def _own_model(w: dict, backend) -> None:
    """The picker at the backend's own model, its choices the backend's; the sliders at
    that model's own values."""
    spec = backend.model_spec(None)
    w["model"].choices, w["model"].value = model_picker.choices(backend), spec.name
    for key, value in model_picker.own_values(spec).items():
        w[key].value = value
    w["steps"].maximum = spec.step_range[1]
    w["model_shown"] = gr.State(spec.name)  # the model the sliders' own values are of
    if "depth" not in spec.supports:
        w["depth"].visible = False
        w["depth_note"].visible, w["depth_note"].value = True, depth_note(spec)


def _results(w: dict, store) -> None:
    """The right column: the video (the live preview in its place while a run works), what
    the model gets, the API panel, the history."""
    w["preview"] = gr.Image(
        label="Live preview (rough, no decoder)", interactive=False, visible=False,
        elem_id="live-preview", buttons=[], format="jpeg",  # 1 ms to encode; webp took 20
    )  # fmt: skip
    w["video"] = gr.Video(
        label="Video", autoplay=True, loop=True, interactive=False, buttons=["download"],
        elem_id="video",
    )  # fmt: skip
    w["seed_used"] = gr.Textbox(
        label="Seed used", interactive=False, buttons=["copy"], elem_id="seed-used"
    )
    w["videos"] = gr.Gallery(
        label="The run's videos, each with its seed", columns=4, height="auto",
        object_fit="contain", visible=False, elem_id="videos",
    )  # fmt: skip
    with gr.Row():
        w["crop"] = gr.Image(
            label="What the model gets", interactive=False, visible=False, elem_id="crop-preview",
            buttons=[],
        )  # fmt: skip
        w["crop_mask"] = gr.Image(
            label="Its mask (framed)", interactive=False, visible=False, elem_id="crop-mask",
            buttons=[],
        )  # fmt: skip
    with gr.Accordion("Use this from code: curl, Python, JavaScript", open=False,
                      elem_id="api") as w["api"]:  # fmt: skip
        gr.Markdown(
            "The current inputs as runnable code against this server's fal-compatible API "
            "(`POST /fal-ai/svd`; the routes are in [/docs](/docs)). Files go in as "
            "`data:` URIs."
        )
        with gr.Tab("curl"):
            w["api_curl"] = gr.Code(language="shell", buttons=["copy"], elem_id="api-curl")
        with gr.Tab("Python"):
            w["api_python"] = gr.Code(language="python", buttons=["copy"], elem_id="api-python")
        with gr.Tab("JavaScript (@fal-ai/client)"):
            w["api_js"] = gr.Code(language="javascript", buttons=["copy"], elem_id="api-js")
    w["records"], w["picked"], w["last_run"] = gr.State([]), gr.State(None), gr.State(None)
    w["example"] = gr.State(None)  # the clicked example's index
    w["mine"] = gr.BrowserState(  # this browser's runs: the history is private
        [], storage_key="svd-studio-runs", secret=history.state_secret(store)
    )
    w["gallery"] = gr.Gallery(
        label=history_label(), columns=4, height=260, allow_preview=False, elem_id="history"
    )
    w["reuse"] = gr.Button("Use these settings", interactive=False, elem_id="use-settings")
    w["picked_json"] = gr.JSON(label="Picked video's record", elem_id="history-record")


def _header(w: dict, backend) -> None:
    gr.Markdown(
        f"# {TITLE}\nAnimate a picture with Stable Video Diffusion. "
        "[Use it from code](#api) · [API docs](docs)"
    )
    w["outcome"] = gr.Markdown(elem_id="outcome")
    w["status"] = gr.Markdown(backend.status(), elem_id="status")
    w["examples"] = gr.Gallery(
        examples.thumbnails(), label="Examples: click one to see its video", columns=4,
        rows=1, height=150, allow_preview=False, object_fit="contain", elem_id="examples",
        buttons=[],
    )  # fmt: skip


OFF = {"api_name": False}


def _wire(app: gr.Blocks, w: dict, h: Handlers) -> None:
    """The events: previews as inputs change, then Generate and Stop, then the history."""
    _wire_inputs(w, h)
    _wire_run(w, h)
    _wire_history(app, w, h)


def _wire_inputs(w: dict, h: Handlers) -> None:
    """What the inputs show as they change: the mask, the fitted picture, the outcome, the
    maps; the backend's and the model's own settings."""
    off = OFF
    # The painter takes the picture at once, ahead of the queued previews. An upload that is
    # no picture is said once, by the first event that reads it: the rest follow its success.
    picture = w["image"].change(painter_background, inputs=w["image"], outputs=w["strokes"],
                                queue=False, **off)  # fmt: skip
    see = h.previews  # what the model will get, before a run
    strokes, mask_file = w["strokes"], w["mask_file"]
    # A stroke fires `input`/`apply`; a new background fires `change`.
    masks = [w["strokes"], w["mask_file"]]
    for event in (strokes.change, strokes.input, strokes.apply):
        event(see.mask_preview, inputs=masks, outputs=w["mask_preview"], **off)
    mask = mask_file.change(see.mask_preview, inputs=masks, outputs=w["mask_preview"], **off)
    crop = [w[k] for k in CROP_KEYS]
    cropped = {"fn": see.crop_preview, "inputs": crop, "outputs": [w["crop"], w["crop_mask"]],
               **off}  # fmt: skip
    for key in ("width", "height", "resize_mode", "backend", "model"):
        w[key].change(**cropped)
    for event in (picture.success, mask.success, strokes.apply):
        event(**cropped)
    shown = [w[k] for k in OUTCOME_KEYS]
    for key in OUTCOME_KEYS:
        if key != "image":
            w[key].change(see.outcome_of, inputs=shown, outputs=w["outcome"], **off)
    picture.success(see.outcome_of, inputs=shown, outputs=w["outcome"], **off)
    w["control_maps"].change(
        strip_html, inputs=w["control_maps"], outputs=[w["maps_strip"], w["maps_info"]], **off
    )
    w["make_maps"].click(
        h.depth_from_video, inputs=w["driving"], outputs=w["control_maps"], api_name="depth_maps"
    )
    w["dice"].click(lambda: str(random.randrange(2**32)), outputs=w["seed"], **off)
    extras = [w[k] for k in EXTRAS]
    w["backend"].change(h.fit_to, inputs=[w["backend"], w["model"]],
                        outputs=[w["status"], *extras, w["model"]], **off)  # fmt: skip
    fitted = ["steps", "fps", "min_guidance_scale", "max_guidance_scale", "num_frames", "width",
              "height", "model_shown", "depth", "control_maps", "depth_note"]  # fmt: skip
    w["model"].change(
        in_order(h.fit_model, fitted),
        inputs=[w[k] for k in ("model", "backend", "model_shown", "steps", "fps",
                               "min_guidance_scale", "max_guidance_scale")],
        outputs=[w[k] for k in fitted], queue=False, **off,
    )  # fmt: skip


def _wire_run(w: dict, h: Handlers) -> None:
    """Generate, Stop, the examples and the code for the current inputs."""
    off, see = OFF, h.previews
    run = w["generate"].click(
        by_key(h.generate, OUTPUTS), inputs=[w[k] for k in KEYS], outputs=[w[k] for k in OUTPUTS],
        api_name="generate", show_progress="hidden",
        concurrency_limit=None,  # the shared queue orders the runs
    )  # fmt: skip
    run.then(h.remember, inputs=[w["mine"], w["last_run"]], outputs=w["mine"], **off).then(
        h.shown, inputs=w["mine"], outputs=[w["gallery"], w["records"]], **off
    )
    run.then(lambda: gr.update(interactive=False), outputs=w["stop"], **off)  # even on errors
    show_video = {"fn": lambda: gr.update(visible=True), "outputs": w["video"], "queue": False,
                  **off}  # in the place its live preview stood  # fmt: skip
    run.then(**show_video)
    w["stop"].click(h.stop, outputs=w["progress"], api_name="stop", concurrency_limit=None,
                    queue=False)  # fmt: skip
    filled = ["image", "seed", "mask_file", "control_maps", "example"]
    shown_example = ["video", "seed_used", "progress", "preview", "stop", "videos"]
    w["examples"].select(
        in_order(h.example_inputs, filled), outputs=[w[k] for k in filled], queue=False, **off
    ).then(
        in_order(h.example_video, shown_example), inputs=w["example"],
        outputs=[w[k] for k in shown_example], show_progress="hidden", concurrency_limit=None,
        **off,
    ).then(**show_video)  # fmt: skip
    code = [w["api_curl"], w["api_python"], w["api_js"]]
    w["api"].expand(keyed(see.api_code), inputs=[w[k] for k in KEYS], outputs=code, **off)
    run.then(keyed(see.api_code), inputs=[w[k] for k in KEYS], outputs=code, **off)


def _wire_history(app: gr.Blocks, w: dict, h: Handlers) -> None:
    """This browser's runs: picked, reused; and what the page shows as it loads."""
    off, see, shown = OFF, h.previews, [w[k] for k in OUTCOME_KEYS]
    w["gallery"].select(
        h.pick, inputs=w["records"], outputs=[w["picked"], w["reuse"], w["picked_json"]], **off
    )
    w["reuse"].click(h.reuse, inputs=w["picked"],
                     outputs=[*(w[k] for k in KEYS), w["model_shown"]], **off)  # fmt: skip
    app.unload(h.leave)
    helped = ["num_frames", "width", "height"]
    app.load(
        lambda mine, backend, model, *values: (
            h.backend.status(), *h.shown(mine), see.outcome_of(*values),
            *in_order(h.model_help, helped)(backend, model),
        ),
        inputs=[w["mine"], w["backend"], w["model"], *shown],
        outputs=[w["status"], w["gallery"], w["records"], w["outcome"], *(w[k] for k in helped)],
        **off,
    )  # fmt: skip


def build_app(jobs: JobQueue, backends: Backends, makings: examples.Makings | None = None):
    """The page: the field table's widgets laid out, and their events. Endpoint: `generate`.
    `makings`: where the examples' videos are made (by default, in `jobs` on first click)."""
    handlers = Handlers(jobs, backends, makings or examples.Makings(jobs, backends.default))
    w: dict = {}
    # Gradio's copies of uploads and shown files go after a day (checked hourly).
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as app:
        _header(w, handlers.backend)
        with gr.Row(elem_id="main"):
            with gr.Column(scale=5, elem_id="inputs"):
                _inputs(w, handlers.backend)
            with gr.Column(scale=6, elem_id="results"):
                _results(w, handlers.store)
        _wire(app, w, handlers)
    handlers.blocks = app
    handlers.defaults = {key: w[key].value for key in KEYS}
    return app
