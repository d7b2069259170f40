"""The Gradio page: a picture, a mask, depth maps and fal's numbers in, a video out."""

from __future__ import annotations

import asyncio
import html
import logging
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
from svd.jobs import CANCELLED, JobQueue
from svd.schema import SVDInput, SVDOutput, parse_input
from svd.session import (
    local_path,
    maps_preview,
    mask_from_page,
    parse_seed,
    progress_line,
    request_json,
    scratch,
    servable,
    sweep_scratch,
)
from svd.settings import settings

log = logging.getLogger(__name__)
TITLE = "SVD Studio"
FIELD = SVDInput.model_fields
ASSETS = Path(__file__).resolve().parent.parent / "assets"
CSS = "#history .caption-label { font-size: 12px; } #dice { max-width: 3em; min-width: 3em; }"


def _limits(name: str) -> tuple[float, float]:
    meta = {type(m).__name__: m for m in FIELD[name].metadata}
    return meta["Ge"].ge, meta["Le"].le


def _slider(name, label, info, step, elem_id, lo=None, value=None) -> gr.Slider:
    low, high = _limits(name)
    value = FIELD[name].default if value is None else value
    return gr.Slider(
        low if lo is None else lo, high, value=value, step=step, label=label, info=info,
        elem_id=elem_id,
    )  # fmt: skip


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


def build_app(jobs: JobQueue, backends: Backends) -> gr.Blocks:
    """The page; runs go through `jobs`, the queue the HTTP API shares. Endpoint: `generate`."""
    backend = backends.default
    store = backend.store
    mask_dir = scratch("masks")

    def preview(strokes, mask_file):
        path = mask_from_page(strokes, mask_file, mask_dir)
        return gr.update(value=path, visible=path is not None)

    async def generate(
        image, strokes, mask_file, control_maps, motion_bucket_id, cond_aug, seed, steps,
        fps, num_frames, width, height, decode_chunk_size, control_scale, resize_mode, loop,
        between, extend, cache_interval, output_format, backend_name, fal_key,
        request: gr.Request,
        progress=gr.Progress(),
    ):  # fmt: skip
        try:
            if not image:
                raise InputError("image_url", "upload an image first")
            chosen = backends.pick(backend_name, (fal_key or "").strip() or None)
            inp = parse_input(
                {
                    "image_url": image,
                    "mask_image_url": mask_from_page(strokes, mask_file, mask_dir),
                    "control_maps_data_url": control_maps or None,
                    "motion_bucket_id": int(motion_bucket_id),
                    "cond_aug": float(cond_aug),
                    "steps": int(steps),
                    "seed": parse_seed(seed),
                    "fps": int(fps),
                    "num_frames": int(num_frames) or None,
                    "width": int(width) or None,
                    "height": int(height) or None,
                    "decode_chunk_size": int(decode_chunk_size) or None,
                    "control_scale": float(control_scale),
                    "resize_mode": resize_mode,
                    "loop": loop,
                    "interpolate": int(between),
                    "extend": int(extend),
                    "cache_interval": int(cache_interval),
                    "output_format": output_format,
                }
            )
            job = jobs.submit(inp, "page", *visitor(request), backend=chosen)
        except (InputError, BackendError) as e:
            raise gr.Error(html.escape(str(e))) from None
        try:
            await follow(job, progress)
        finally:
            jobs.cancel(job)  # the visitor left (or the run ended): nothing runs for nobody
        if job.error is not None:
            if job.error.detail == CANCELLED:
                raise gr.Error("Stopped.", title="Stopped")
            raise gr.Error(html.escape(page_error(job.error.detail)))
        out = SVDOutput.model_validate(job.output)
        body = request_json(inp.model_copy(update={"seed": out.seed}))
        status = backends.chosen(backend_name).status()
        run_id = Path(out.image.file_name or "").stem
        return local_path(out.image.url), str(out.seed), body, status, run_id

    async def follow(job, progress) -> None:
        """Wait for `job`, showing its place in the queue, then its stage and step."""
        loop, finished = asyncio.get_running_loop(), asyncio.Event()
        job.on_done.append(lambda: loop.call_soon_threadsafe(finished.set))
        while not job.done.is_set():
            if job.status == "IN_QUEUE":
                progress(None, desc=progress_line(None, jobs.position(job)))
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

    def depth_from_video(video):
        if not video:
            raise gr.Error("control_video_url: upload a video first")
        try:
            archive = video_to_depth_archive(video, backend.depth_model)
        except (InputError, BackendError) as e:
            raise gr.Error(html.escape(str(e))) from None
        path = Path(tempfile.mkdtemp(dir=scratch("depth"))) / "depth-maps.zip"
        path.write_bytes(archive)
        return str(path)

    def leave(request: gr.Request):
        for job in jobs.active(session=visitor(request)[0]):
            jobs.cancel(job)  # the visitor closed the page: nobody is left to watch

    def stop(request: gr.Request):
        running = jobs.active(session=visitor(request)[0])
        for job in running:
            jobs.cancel(job)
        if not running:
            gr.Info("Nothing is running.")

    def shown(mine):
        sweep_scratch()
        if settings().history == "all":
            records = history.entries(store)
        else:
            records = history.own_entries(store, mine)
        return [(servable(v), c) for v, c in history.gallery(records, store)], records

    def remember(mine, run_id):
        return history.remember(store, mine, run_id) if run_id else mine

    def pick(records, evt: gr.SelectData):
        record = records[evt.index]
        return record, gr.update(interactive=True), history.public_record(record)

    def reuse(record):
        if not record:
            raise gr.Error("Pick a video in the history first")
        s = history.settings(store, record)
        for key in ("image", "mask_file", "control_maps"):
            if s[key] and not is_http(s[key]):
                s[key] = servable(s[key])
        if s["backend"] not in ("local", "fal"):
            s["backend"] = backend.name
        return {component: s[key] for key, component in refill.items()}

    # Gradio's copies of uploads and shown files go after a day (checked hourly).
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as app:
        gr.Markdown(f"# {TITLE}\nAnimate a picture with Stable Video Diffusion.")
        status = gr.Markdown(backend.status(), elem_id="status")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Image", type="filepath", elem_id="image")
                with gr.Accordion("Motion mask (optional): paint what moves", open=False):
                    strokes = gr.ImageMask(
                        label="Paint the parts that move; the rest stays still",
                        type="numpy",
                        format="png",
                        sources=(),
                        brush=gr.Brush(colors=[("#ff2d55", 0.6)], color_mode="fixed"),
                        elem_id="mask",
                    )
                    with gr.Row():
                        mask_file = gr.Image(
                            label="...or upload a mask (black moves, white stays still)",
                            type="filepath",
                            image_mode="RGBA",
                            elem_id="mask-file",
                        )
                        mask_preview = gr.Image(
                            label="Mask to be sent", interactive=False, visible=False,
                            elem_id="mask-preview",
                        )  # fmt: skip
                with gr.Accordion("Depth control maps (optional)", open=False):
                    control_maps = gr.File(
                        label="Archive of depth maps, one per frame (zip, tar, tar.gz)",
                        file_types=[".zip", ".tar", ".gz", ".tgz"],
                        type="filepath",
                        elem_id="control-maps",
                    )
                    with gr.Row():
                        driving = gr.Video(
                            label="...or make them from a driving video", sources=["upload"],
                            elem_id="control-video",
                        )  # fmt: skip
                        make_maps = gr.Button("Make depth maps", elem_id="make-maps", scale=0)
                    maps_info = gr.Markdown(elem_id="control-maps-info")
                    maps_strip = gr.Image(
                        label="Maps in the order used", interactive=False,
                        elem_id="control-maps-strip",
                    )  # fmt: skip
                motion = _slider(
                    "motion_bucket_id", "Motion bucket id", "More motion the higher it is.", 1,
                    "motion-bucket-id",
                )  # fmt: skip
                cond_aug = _slider(
                    "cond_aug", "Conditioning augmentation",
                    "Noise added to the picture: more motion, less likeness.", 0.01, "cond-aug",
                )  # fmt: skip
                steps = _slider(
                    "steps", "Steps", "Denoising steps: more is slower and finer.", 1, "steps"
                )
                with gr.Row(equal_height=True):
                    seed = gr.Textbox(
                        label="Seed", info="Empty for a random one.", placeholder="random",
                        elem_id="seed", scale=4,
                    )  # fmt: skip
                    dice = gr.Button("🎲", elem_id="dice", scale=0)
                with gr.Accordion("Advanced", open=False):
                    fps = _slider("fps", "Frames per second", "Also conditions SVD.", 1, "fps")
                    num_frames = _slider(
                        "num_frames", "Frames", "0: the model's own (25 for SVD-XT).", 1,
                        "num-frames", lo=0, value=0,
                    )  # fmt: skip
                    with gr.Row():
                        width = _slider(
                            "width", "Width", "0: the model's (1024).", 64, "width", lo=0, value=0
                        )
                        height = _slider(
                            "height", "Height", "0: the model's (576).", 64, "height", lo=0,
                            value=0,
                        )  # fmt: skip
                    decode_chunk = _slider(
                        "decode_chunk_size", "Decode chunk size",
                        "Frames decoded at once; 0: automatic. Lower saves memory.", 1,
                        "decode-chunk-size", lo=0, value=0,
                    )  # fmt: skip
                    control_scale = _slider(
                        "control_scale", "Depth control strength", "0 ignores the maps.", 0.05,
                        "control-scale",
                    )  # fmt: skip
                    with gr.Row():
                        resize_mode = gr.Radio(
                            ["crop", "pad", "keep"], value="crop", label="Fit the picture",
                            info="crop: fill, cut edges (fal's); pad: bars; keep: its shape.",
                            elem_id="resize-mode",
                        )  # fmt: skip
                        loop = gr.Radio(
                            ["none", "pingpong", "crossfade"], value="none", label="Loop",
                            info="Make the end flow into the start.", elem_id="loop",
                        )  # fmt: skip
                        output_format = gr.Radio(
                            ["mp4", "webm", "gif"], value="mp4", label="Format",
                            elem_id="output-format",
                        )  # fmt: skip
                    between = _slider(
                        "interpolate", "In-between frames",
                        "New frames between each pair, by optical flow; the duration stays.", 1,
                        "interpolate",
                    )  # fmt: skip
                    extend = _slider(
                        "extend", "Extend", "Go on from the last frame this many more times.",
                        1, "extend",
                    )  # fmt: skip
                    cache_interval = _slider(
                        "cache_interval", "Reuse deep features every",
                        "Faster, slightly different: deep layers run every N steps (DeepCache);"
                        " 1: off.", 1, "cache-interval",
                    )  # fmt: skip
                with gr.Accordion("Backend", open=False):
                    backend_name = gr.Radio(
                        ["local", "fal"], value=backend.name, label="Run on",
                        info="local: this machine's GPU; fal: fal.ai with your key.",
                        elem_id="backend",
                    )  # fmt: skip
                    fal_key = gr.Textbox(
                        label="fal key", type="password", placeholder="FAL_KEY if empty",
                        info="Used for your requests only; never stored or logged.",
                        elem_id="fal-key",
                    )  # fmt: skip
                with gr.Row():
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column():
                video = gr.Video(
                    label="Video", autoplay=True, loop=True, interactive=False,
                    buttons=["download"], elem_id="video",
                )  # fmt: skip
                seed_used = gr.Textbox(
                    label="Seed used", interactive=False, buttons=["copy"], elem_id="seed-used"
                )
                body = gr.Code(
                    label="The request, as fal takes it", language="json", interactive=False,
                    elem_id="request-json",
                )  # fmt: skip
                records = gr.State([])
                picked = gr.State(None)
                last_run = gr.State(None)
                mine = gr.BrowserState(  # this browser's runs: the history is private
                    [], storage_key="svd-studio-runs", secret=history.token(store, "state")
                )
                gallery = gr.Gallery(
                    label=history_label(), columns=4, height=260,
                    allow_preview=False, elem_id="history",
                )  # fmt: skip
                reuse_button = gr.Button(
                    "Use these settings", interactive=False, elem_id="use-settings"
                )
                picked_json = gr.JSON(label="Picked video's record", elem_id="history-record")
        gr.Examples(
            [
                [str(ASSETS / "sunset.png"), str(ASSETS / "sunset-mask.png"), None],
                [str(ASSETS / "ball.png"), None, str(ASSETS / "rolling-ball-depth.zip")],
            ],
            inputs=[image, mask_file, control_maps],
            label="Examples: a lake that moves under still hills; a ball driven by depth maps",
            cache_examples=False,
        )

        image.change(painter_background, inputs=image, outputs=strokes, api_name=False)
        # A stroke fires `input`/`apply`; a new background fires `change`.
        for event in (strokes.change, strokes.input, strokes.apply, mask_file.change):
            event(preview, inputs=[strokes, mask_file], outputs=mask_preview, api_name=False)
        control_maps.change(
            maps_preview, inputs=control_maps, outputs=[maps_strip, maps_info], api_name=False
        )
        make_maps.click(
            depth_from_video, inputs=driving, outputs=control_maps, api_name="depth_maps"
        )
        dice.click(lambda: str(random.randrange(2**32)), outputs=seed, api_name=False)
        extras = {  # the extras a backend may not take: shown only where they work
            "fps": fps, "num_frames": num_frames, "width": width, "height": height,
            "decode_chunk_size": decode_chunk, "control_scale": control_scale,
            "resize_mode": resize_mode, "extend": extend, "cache_interval": cache_interval,
        }  # fmt: skip

        def fit_to(name):
            chosen = backends.chosen(name)
            return [chosen.status(), *(gr.update(visible=f in chosen.supports) for f in extras)]

        backend_name.change(
            fit_to, inputs=backend_name, outputs=[status, *extras.values()], api_name=False
        )
        refill = {  # history.settings' keys -> the inputs they refill
            "image": image, "mask_file": mask_file, "control_maps": control_maps,
            "motion_bucket_id": motion, "cond_aug": cond_aug, "steps": steps, "seed": seed,
            "fps": fps, "num_frames": num_frames, "width": width, "height": height,
            "decode_chunk_size": decode_chunk, "control_scale": control_scale,
            "resize_mode": resize_mode, "loop": loop, "interpolate": between, "extend": extend,
            "cache_interval": cache_interval, "output_format": output_format,
            "backend": backend_name,
        }  # fmt: skip
        button.click(
            generate,
            inputs=[
                image, strokes, mask_file, control_maps, motion, cond_aug, seed, steps, fps,
                num_frames, width, height, decode_chunk, control_scale, resize_mode, loop,
                between, extend, cache_interval, output_format, backend_name, fal_key,
            ],
            outputs=[video, seed_used, body, status, last_run],
            api_name="generate",
            concurrency_limit=None,  # the shared queue orders the runs
        ).then(remember, inputs=[mine, last_run], outputs=mine, api_name=False).then(
            shown, inputs=mine, outputs=[gallery, records], api_name=False
        )  # fmt: skip
        stop_button.click(stop, api_name="stop", concurrency_limit=None, queue=False)
        gallery.select(
            pick, inputs=records, outputs=[picked, reuse_button, picked_json], api_name=False
        )
        reuse_button.click(reuse, inputs=picked, outputs=list(refill.values()), api_name=False)
        app.unload(leave)
        app.load(
            lambda mine: (backend.status(), *shown(mine)),
            inputs=mine,
            outputs=[status, gallery, records],
            api_name=False,
        )
    return app
