"""The Gradio page: a picture, a mask, depth maps and fal's numbers in, a video out."""

from __future__ import annotations

import asyncio
import html
import inspect
import random
import tempfile
from pathlib import Path

import gradio as gr

from svd import history
from svd.backends import Step
from svd.backends.choice import Backends
from svd.depth_video import video_to_depth_archive
from svd.errors import BackendError, InputError
from svd.fetch import is_http
from svd.fields import FIELDS, KEYS, request_values
from svd.jobs import CANCELLED, JobQueue
from svd.schema import SVDOutput, parse_input
from svd.session import (
    local_path,
    maps_preview,
    mask_from_page,
    progress_line,
    request_json,
    scratch,
    servable,
    sweep_scratch,
)
from svd.settings import settings

TITLE = "SVD Studio"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
CSS = "#history .caption-label { font-size: 12px; } #dice { max-width: 3em; min-width: 3em; }"


def visitor(request: gr.Request | None) -> tuple[str, str]:
    """The browser session and client address of a page request."""
    if request is None:
        return "", ""
    client = getattr(request, "client", None)
    return request.session_hash or "", getattr(client, "host", "") or ""


def page_error(detail) -> str:
    """A failed run's message for the page (fal's 422 list as its first problem)."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(p) for p in detail[0].get("loc", []) if p != "body"]
        return f"{'.'.join(loc) or 'input'}: {detail[0].get('msg', 'invalid')}"
    return str(detail)


def history_label() -> str:
    if settings().history == "all":
        return "History (every video in the output folder)"
    return "Your videos (kept for this browser only)"


def painter_background(image: str | None) -> dict | None:
    """Show the uploaded picture under the mask painter, with no strokes yet."""
    if not image:
        return None
    return {"background": image, "layers": [], "composite": image}


def by_key(fn):
    """`fn(values, request, progress)` as a Gradio handler whose parameters are the field
    table's keys (they name the `generate` endpoint's parameters), in the table's order."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(k, kind) for k in KEYS]
    params += [inspect.Parameter("request", kind, default=None, annotation=gr.Request),
               inspect.Parameter("progress", kind, default=gr.Progress())]  # fmt: skip

    async def handler(*args, **kwargs):
        n = len(KEYS)
        extra = [*args[n:], *kwargs.values()]  # Gradio places these by its own rules
        request = next((a for a in extra if isinstance(a, gr.Request)), None)
        progress = next(a for a in extra if isinstance(a, gr.Progress))
        return await fn(dict(zip(KEYS, args[:n], strict=True)), request, progress)

    handler.__signature__ = inspect.Signature(params)
    handler.__annotations__ = {"request": gr.Request}  # Gradio reads the type hints here
    return handler


class Handlers:
    """What the page's events do; runs go through `jobs`, the queue the HTTP API shares."""

    def __init__(self, jobs: JobQueue, backends: Backends):
        self.jobs, self.backends = jobs, backends
        self.backend, self.store = backends.default, backends.default.store
        self.mask_dir = scratch("masks")

    def preview(self, strokes, mask_file):
        path = mask_from_page(strokes, mask_file, self.mask_dir)
        return gr.update(value=path, visible=path is not None)

    async def generate(self, values: dict, request: gr.Request, progress):
        try:
            if not values["image"]:
                raise InputError("image_url", "upload an image first")
            key = (values["fal_key"] or "").strip() or None
            chosen = self.backends.pick(values["backend"], key)
            inp = parse_input(
                {
                    **request_values(values),
                    "image_url": values["image"],
                    "mask_image_url": mask_from_page(
                        values["strokes"], values["mask_file"], self.mask_dir
                    ),
                    "control_maps_data_url": values["control_maps"] or None,
                }
            )
            job = self.jobs.submit(inp, "page", *visitor(request), backend=chosen)
        except (InputError, BackendError) as e:
            raise gr.Error(html.escape(str(e))) from None
        try:
            await self.follow(job, progress)
        finally:
            self.jobs.cancel(job)  # the visitor left (or the run ended): nothing runs for nobody
        if job.error is not None:
            if job.error.detail == CANCELLED:
                raise gr.Error("Stopped.", title="Stopped")
            raise gr.Error(html.escape(page_error(job.error.detail)))
        out = SVDOutput.model_validate(job.output)
        body = request_json(inp.model_copy(update={"seed": out.seed}))
        status = self.backends.chosen(values["backend"]).status()
        run_id = Path(out.image.file_name or "").stem
        return local_path(out.image.url), str(out.seed), body, status, run_id

    async def follow(self, job, progress) -> None:
        """Wait for `job`, showing its place in the queue, then its stage and step."""
        loop, finished = asyncio.get_running_loop(), asyncio.Event()
        job.on_done.append(lambda: loop.call_soon_threadsafe(finished.set))
        while not job.done.is_set():
            if job.status == "IN_QUEUE":
                progress(None, desc=progress_line(None, self.jobs.position(job)))
            else:
                steps = [e for e in job.events if isinstance(e, Step)]
                last = job.events[-1] if job.events else None
                if steps:
                    progress((steps[-1].index, steps[-1].total), desc=progress_line(last))
                else:
                    progress(None, desc=progress_line(last)[:120])
            try:
                await asyncio.wait_for(finished.wait(), timeout=0.25)
            except asyncio.TimeoutError:
                pass

    def depth_from_video(self, video):
        if not video:
            raise gr.Error("control_video_url: upload a video first")
        try:
            archive = video_to_depth_archive(video, self.backend.depth_model)
        except (InputError, BackendError) as e:
            raise gr.Error(html.escape(str(e))) from None
        path = Path(tempfile.mkdtemp(dir=scratch("depth"))) / "depth-maps.zip"
        path.write_bytes(archive)
        return str(path)

    def leave(self, request: gr.Request):
        for job in self.jobs.active(session=visitor(request)[0]):
            self.jobs.cancel(job)  # the visitor closed the page: nobody is left to watch

    def stop(self, request: gr.Request):
        running = self.jobs.active(session=visitor(request)[0])
        for job in running:
            self.jobs.cancel(job)
        if not running:
            gr.Info("Nothing is running.")

    def shown(self, mine):
        sweep_scratch()
        if settings().history == "all":
            records = history.entries(self.store)
        else:
            records = history.own_entries(self.store, mine)
        return [(servable(v), c) for v, c in history.gallery(records, self.store)], records

    def remember(self, mine, run_id):
        return history.remember(self.store, mine, run_id) if run_id else mine

    def pick(self, records, evt: gr.SelectData):
        record = records[evt.index]
        return record, gr.update(interactive=True), history.public_record(record)

    def reuse(self, record) -> list:
        """The page's values that remake a picked video, in the field table's order."""
        if not record:
            raise gr.Error("Pick a video in the history first")
        s = history.settings(self.store, record)
        for key in ("image", "mask_file", "control_maps"):
            if s[key] and not is_http(s[key]):
                s[key] = servable(s[key])
        if s["backend"] not in ("local", "fal"):
            s["backend"] = self.backend.name
        return [s.get(key, gr.update()) for key in KEYS]

    def fit_to(self, name):
        """The status line and the extras the chosen backend takes."""
        chosen = self.backends.chosen(name)
        return [chosen.status(), *(gr.update(visible=f in chosen.supports) for f in EXTRAS)]


EXTRAS = [f.key for f in FIELDS if f.place == "advanced" and f.key not in
          ("loop", "output_format", "interpolate")]  # fmt: skip


def _fields(place: str, w: dict) -> None:
    for field in FIELDS:
        if field.place == place:
            w[field.key] = field.widget()


def _inputs(w: dict, backend) -> None:
    """The left column: the picture, its mask and maps, the numbers, the buttons."""
    _fields("picture", w)
    with gr.Accordion("Motion mask (optional): paint what moves", open=False):
        _fields("mask", w)
        w["mask_preview"] = gr.Image(
            label="Mask to be sent", interactive=False, visible=False, elem_id="mask-preview"
        )
    with gr.Accordion("Depth control maps (optional)", open=False):
        _fields("maps", w)
        with gr.Row():
            w["driving"] = gr.Video(
                label="...or make them from a driving video", sources=["upload"],
                elem_id="control-video",
            )  # fmt: skip
            w["make_maps"] = gr.Button("Make depth maps", elem_id="make-maps", scale=0)
        w["maps_info"] = gr.Markdown(elem_id="control-maps-info")
        w["maps_strip"] = gr.Image(
            label="Maps in the order used", interactive=False, elem_id="control-maps-strip"
        )
    _fields("main", w)
    with gr.Row(equal_height=True):
        _fields("seed", w)
        w["dice"] = gr.Button("🎲", elem_id="dice", scale=0)
    with gr.Accordion("Advanced", open=False):
        _fields("advanced", w)
    with gr.Accordion("Backend", open=False):
        _fields("backend", w)
        w["backend"].value = backend.name
    with gr.Row():
        w["generate"] = gr.Button("Generate", variant="primary", elem_id="generate")
        w["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")


def _results(w: dict, store) -> None:
    """The right column: the video, the seed, the request, this browser's videos."""
    w["video"] = gr.Video(
        label="Video", autoplay=True, loop=True, interactive=False, buttons=["download"],
        elem_id="video",
    )  # fmt: skip
    w["seed_used"] = gr.Textbox(
        label="Seed used", interactive=False, buttons=["copy"], elem_id="seed-used"
    )
    w["body"] = gr.Code(
        label="The request, as fal takes it", language="json", interactive=False,
        elem_id="request-json",
    )  # fmt: skip
    w["records"], w["picked"], w["last_run"] = gr.State([]), gr.State(None), gr.State(None)
    w["mine"] = gr.BrowserState(  # this browser's runs: the history is private
        [], storage_key="svd-studio-runs", secret=history.token(store, "state")
    )
    w["gallery"] = gr.Gallery(
        label=history_label(), columns=4, height=260, allow_preview=False, elem_id="history"
    )
    w["reuse"] = gr.Button("Use these settings", interactive=False, elem_id="use-settings")
    w["picked_json"] = gr.JSON(label="Picked video's record", elem_id="history-record")


def _examples(w: dict) -> None:
    gr.Examples(
        [
            [str(ASSETS / "sunset.png"), str(ASSETS / "sunset-mask.png"), None],
            [str(ASSETS / "ball.png"), None, str(ASSETS / "rolling-ball-depth.zip")],
        ],
        inputs=[w["image"], w["mask_file"], w["control_maps"]],
        label="Examples: a lake that moves under still hills; a ball driven by depth maps",
        cache_examples=False,
    )


def _wire(app: gr.Blocks, w: dict, h: Handlers) -> None:
    """The events: previews as inputs change, then Generate and Stop, then the history."""
    off = {"api_name": False}
    w["image"].change(painter_background, inputs=w["image"], outputs=w["strokes"], **off)
    strokes, mask_file = w["strokes"], w["mask_file"]
    # A stroke fires `input`/`apply`; a new background fires `change`.
    for event in (strokes.change, strokes.input, strokes.apply, mask_file.change):
        event(h.preview, inputs=[strokes, mask_file], outputs=w["mask_preview"], **off)
    w["control_maps"].change(
        maps_preview, inputs=w["control_maps"], outputs=[w["maps_strip"], w["maps_info"]], **off
    )
    w["make_maps"].click(
        h.depth_from_video, inputs=w["driving"], outputs=w["control_maps"], api_name="depth_maps"
    )
    w["dice"].click(lambda: str(random.randrange(2**32)), outputs=w["seed"], **off)
    extras = [w[k] for k in EXTRAS]
    w["backend"].change(h.fit_to, inputs=w["backend"], outputs=[w["status"], *extras], **off)
    w["generate"].click(
        by_key(h.generate),
        inputs=[w[k] for k in KEYS],
        outputs=[w["video"], w["seed_used"], w["body"], w["status"], w["last_run"]],
        api_name="generate",
        concurrency_limit=None,  # the shared queue orders the runs
    ).then(h.remember, inputs=[w["mine"], w["last_run"]], outputs=w["mine"], **off).then(
        h.shown, inputs=w["mine"], outputs=[w["gallery"], w["records"]], **off
    )
    w["stop"].click(h.stop, api_name="stop", concurrency_limit=None, queue=False)
    w["gallery"].select(
        h.pick, inputs=w["records"], outputs=[w["picked"], w["reuse"], w["picked_json"]], **off
    )
    w["reuse"].click(h.reuse, inputs=w["picked"], outputs=[w[k] for k in KEYS], **off)
    app.unload(h.leave)
    app.load(
        lambda mine: (h.backend.status(), *h.shown(mine)),
        inputs=w["mine"],
        outputs=[w["status"], w["gallery"], w["records"]],
        **off,
    )


def build_app(jobs: JobQueue, backends: Backends) -> gr.Blocks:
    """The page: the field table's widgets laid out, and their events. Endpoint: `generate`."""
    handlers = Handlers(jobs, backends)
    w: dict = {}
    # Gradio's copies of uploads and shown files go after a day (checked hourly).
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as app:
        gr.Markdown(f"# {TITLE}\nAnimate a picture with Stable Video Diffusion.")
        w["status"] = gr.Markdown(handlers.backend.status(), elem_id="status")
        with gr.Row():
            with gr.Column():
                _inputs(w, handlers.backend)
            with gr.Column():
                _results(w, handlers.store)
        _examples(w)
        _wire(app, w, handlers)
    return app
