"""The Gradio page: an image and fal's four numbers in, a video out."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import gradio as gr

from svd.backends import Backend, Event, Queued, Stage, Step, get_backend
from svd.errors import BackendError, InputError
from svd.mask import strokes_to_mask
from svd.schema import SVDInput, parse_input

TITLE = "SVD Studio"
FIELD = SVDInput.model_fields


def _limits(name: str) -> tuple[float, float]:
    meta = {type(m).__name__: m for m in FIELD[name].metadata}
    return meta["Ge"].ge, meta["Le"].le


def status_text(backend: Backend) -> str:
    """One line on what runs the videos, and any warning the user must see."""
    if backend.name != "local":
        return f"Backend: **{backend.name}**"
    if not backend.loaded:
        return f"Backend: **local**, model **{backend.model}** on {backend.device} (loading...)"
    text = f"Backend: **local**, model **{backend.model}** on {backend.device}"
    if backend.model == "tiny":
        text += " — a tiny random-weight test model: its videos are noise, not your picture."
    if backend.notice:
        text = f"⚠️ {backend.notice}\n\n{text}"
    return text


def progress_reporter(progress: gr.Progress):
    """An `on_event` handler that moves the page's progress bar."""

    def on_event(event: Event) -> None:
        if isinstance(event, Step):
            progress((event.index, event.total), desc=f"step {event.index} of {event.total}")
        elif isinstance(event, Stage):
            progress(None, desc=event.name)
        elif isinstance(event, Queued):
            progress(None, desc=f"queued, position {event.position}")

    return on_event


def local_path(url: str) -> str:
    """The file behind a file:// URL (what the local backends return)."""
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else url


def parse_seed(text: str | int | None) -> int | None:
    """The seed box: empty means random; anything else must be a whole number."""
    if text is None or str(text).strip() == "":
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise InputError("seed", f"expected a whole number, got {text!r}") from None


def painter_background(image: str | None) -> dict | None:
    """Show the uploaded picture under the mask painter, with no strokes yet."""
    if not image:
        return None
    return {"background": image, "layers": [], "composite": image}


def build_app(backend: Backend) -> gr.Blocks:
    """The page for `backend`; its API endpoint is `generate`."""
    mask_dir = Path(tempfile.mkdtemp(prefix="svd-masks-"))

    def mask_path(strokes: dict | None, mask_file: str | None) -> str | None:
        """The mask to send: an uploaded mask file, else the painted strokes, else none."""
        if mask_file:
            return mask_file
        mask = strokes_to_mask((strokes or {}).get("layers"))
        if mask is None:
            return None
        buf = io.BytesIO()
        mask.save(buf, "PNG")
        path = mask_dir / f"{hashlib.sha1(buf.getvalue()).hexdigest()}.png"  # one file per mask
        path.write_bytes(buf.getvalue())
        return str(path)

    def preview(strokes, mask_file):
        path = mask_path(strokes, mask_file)
        return gr.update(value=path, visible=path is not None)

    def generate(
        image, strokes, mask_file, motion_bucket_id, cond_aug, seed, steps, progress=gr.Progress()
    ):
        if not image:
            raise gr.Error("image_url: upload an image first")
        body = {
            "image_url": image,
            "mask_image_url": mask_path(strokes, mask_file),
            "motion_bucket_id": int(motion_bucket_id),
            "cond_aug": float(cond_aug),
            "steps": int(steps),
        }
        try:
            body["seed"] = parse_seed(seed)
            out = backend.generate(parse_input(body), progress_reporter(progress))
        except (InputError, BackendError) as e:
            raise gr.Error(str(e)) from None
        return local_path(out.image.url), str(out.seed), status_text(backend)

    mb_lo, mb_hi = _limits("motion_bucket_id")
    ca_lo, ca_hi = _limits("cond_aug")
    st_lo, st_hi = _limits("steps")
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nAnimate a picture with Stable Video Diffusion.")
        status = gr.Markdown(status_text(backend), elem_id="status")
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
                            label="Mask to be sent",
                            interactive=False,
                            visible=False,
                            elem_id="mask-preview",
                        )
                motion = gr.Slider(
                    mb_lo, mb_hi, value=FIELD["motion_bucket_id"].default, step=1,
                    label="Motion bucket id", info="More motion the higher it is.",
                    elem_id="motion-bucket-id",
                )  # fmt: skip
                cond_aug = gr.Slider(
                    ca_lo, ca_hi, value=FIELD["cond_aug"].default, step=0.01,
                    label="Conditioning augmentation",
                    info="Noise added to the picture: more motion, less likeness.",
                    elem_id="cond-aug",
                )  # fmt: skip
                steps = gr.Slider(
                    st_lo, st_hi, value=FIELD["steps"].default, step=1,
                    label="Steps", info="Denoising steps: more is slower and finer.",
                    elem_id="steps",
                )  # fmt: skip
                seed = gr.Textbox(
                    label="Seed", info="Empty for a random one.", placeholder="random",
                    elem_id="seed",
                )  # fmt: skip
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(
                    label="Video", autoplay=True, loop=True, interactive=False, elem_id="video"
                )
                seed_used = gr.Textbox(
                    label="Seed used", interactive=False, buttons=["copy"], elem_id="seed-used"
                )
        image.change(painter_background, inputs=image, outputs=strokes, api_name=False)
        # A stroke fires `input`/`apply`; a new background fires `change`.
        for event in (strokes.change, strokes.input, strokes.apply, mask_file.change):
            event(
                preview,
                inputs=[strokes, mask_file],
                outputs=mask_preview,
                api_name=False,
            )
        button.click(
            generate,
            inputs=[image, strokes, mask_file, motion, cond_aug, seed, steps],
            outputs=[video, seed_used, status],
            api_name="generate",
            concurrency_limit=1,
        )
        app.load(lambda: status_text(backend), outputs=status, api_name=False)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Serve the SVD Studio page.")
    p.add_argument("--backend", default=env("SVD_BACKEND", "auto"), choices=["auto", "local"])
    p.add_argument("--model", default=env("SVD_MODEL"), help="hub id, local folder or 'tiny'")
    p.add_argument("--controlnet", default=env("SVD_CONTROLNET"), help="ControlNet id or folder")
    p.add_argument("--output-dir", default=env("SVD_OUTPUT_DIR", "outputs"))
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--root-path", default=env("GRADIO_ROOT_PATH"), help="behind a proxy")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backend = get_backend(
        args.backend, model=args.model, controlnet=args.controlnet, output_dir=args.output_dir
    )
    if hasattr(backend, "load"):  # warm the model while the page comes up
        threading.Thread(target=_preload, args=(backend,), daemon=True).start()
    out_dir = Path(args.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(backend)
    app.queue(max_size=64)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        root_path=args.root_path,
        allowed_paths=[str(out_dir)],
        show_error=True,
    )


def _preload(backend) -> None:
    try:
        backend.load()
    except Exception as e:  # shown again, clearly, by the first generation
        print(f"model not loaded: {e}")
