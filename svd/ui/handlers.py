"""What the page's events do. Runs go through the queue the HTTP API shares; the layout that
wires these up is svd/ui/layout.py."""

from __future__ import annotations

import asyncio
import functools
import html
import inspect
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image, ImageDraw, ImageOps

from svd import history
from svd.backends.choice import Backends
from svd.depth_video import video_to_depth_archive
from svd.errors import BackendError, InputError
from svd.fetch import is_http
from svd.jobs import CANCELLED, Job, JobQueue
from svd.mask import mask_image, motion_map
from svd.media import decode_image, fit_image, video_size
from svd.schema import SVDOutput, parse_input
from svd.session import local_path, mask_from_page, scratch, servable, sweep_scratch
from svd.settings import settings
from svd.ui import examples, progress, snippets, summary
from svd.ui.fields import FIELDS, KEYS, in_page_words, request_values

# What `generate` updates, in this order (a handler yields a dict of some of these names).
OUTPUTS = ["video", "seed_used", "status", "progress", "preview", "stop", "seed", "last_run",
           "outcome"]  # fmt: skip
POLL = 0.25  # seconds between looks at a running job
PREVIEW_SIDE = 256  # the live preview is shown this wide


def visitor(request: gr.Request | None) -> tuple[str, str]:
    """The browser session and client address of a page request."""
    if request is None:
        return "", ""
    client = getattr(request, "client", None)
    return request.session_hash or "", getattr(client, "host", "") or ""


def page_error(detail) -> str:
    """A failed run's message in the page's words (fal's 422 list as its first problem)."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(p) for p in detail[0].get("loc", []) if p != "body"]
        detail = f"{'.'.join(loc) or 'input'}: {detail[0].get('msg', 'invalid')}"
    return in_page_words(str(detail))


def refused(error: Exception) -> gr.Error:
    return gr.Error(html.escape(in_page_words(str(error))))


def painter_background(image: str | None) -> dict | None:
    """Show the uploaded picture under the mask painter, with no strokes yet."""
    if not image:
        return None
    return {"background": image, "layers": [], "composite": image}


def by_key(fn, outputs: list[str] = OUTPUTS):
    """`fn(values, request)`, an async generator of {output name: value} dicts, as a Gradio
    handler whose parameters are the field table's keys (they name the `generate`
    endpoint's parameters) and whose yields are lists in `outputs` order."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(k, kind) for k in KEYS]
    params.append(inspect.Parameter("request", kind, default=None, annotation=gr.Request))

    async def handler(*args, **kwargs):
        n = len(KEYS)
        extra = [*args[n:], *kwargs.values()]  # Gradio places the request by its own rules
        request = next((a for a in extra if isinstance(a, gr.Request)), None)
        async for update in fn(dict(zip(KEYS, args[:n], strict=True)), request):
            yield [update.get(name, gr.update()) for name in outputs]

    handler.__signature__ = inspect.Signature(params)
    handler.__annotations__ = {"request": gr.Request}  # Gradio reads the type hints here
    return handler


def keyed(fn):
    """`fn(values, request)` as a Gradio handler whose parameters are the field table's keys."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(k, kind) for k in KEYS]
    params.append(inspect.Parameter("request", kind, default=None, annotation=gr.Request))

    def handler(*args, **kwargs):
        n = len(KEYS)
        extra = [*args[n:], *kwargs.values()]
        request = next((a for a in extra if isinstance(a, gr.Request)), None)
        return fn(dict(zip(KEYS, args[:n], strict=True)), request)

    handler.__signature__ = inspect.Signature(params)
    handler.__annotations__ = {"request": gr.Request}
    return handler


def in_order(fn, outputs: list[str]):
    """`fn`, an async generator of {output name: value} dicts, yielding lists in `outputs`
    order (Gradio reads `fn`'s own signature for what to inject)."""

    @functools.wraps(fn)
    async def handler(*args, **kwargs):
        async for update in fn(*args, **kwargs):
            yield [update.get(name, gr.update()) for name in outputs]

    return handler


def bordered(image: Image.Image, color: str = "#2563eb", width: int = 3) -> Image.Image:
    """`image` with a visible frame, so a white mask shows its edges on a white page."""
    framed = image.convert("RGB")
    ImageDraw.Draw(framed).rectangle(
        (0, 0, framed.width - 1, framed.height - 1), outline=color, width=width
    )
    return framed


class Handlers:
    """What the page's events do; runs go through `jobs`, the queue the HTTP API shares."""

    def __init__(self, jobs: JobQueue, backends: Backends):
        self.jobs, self.backends = jobs, backends
        self.backend, self.store = backends.default, backends.default.store
        self.mask_dir = scratch("masks")
        self.rates: dict[str, float | None] = {}  # seconds per unit of work, per backend

    # -- the run

    def request(self, values: dict) -> tuple:
        """The page's values as (SVDInput, the backend for it); InputError names the field."""
        if not values["image"]:
            raise InputError("image_url", "upload an image first")
        key = (values["fal_key"] or "").strip() or None
        chosen = self.backends.pick(values["backend"], key)
        body = {
            **request_values(values),
            "image_url": values["image"],
            "mask_image_url": mask_from_page(values["strokes"], values["mask_file"], self.mask_dir),
            "control_maps_data_url": values["control_maps"] or None,
        }
        if values.get("seed_mode") == "random":
            body["seed"] = None
        return parse_input(body), chosen

    async def generate(self, values: dict, request: gr.Request):
        try:
            inp, chosen = self.request(values)
            job = self.jobs.submit(inp, "page", *visitor(request), backend=chosen)
        except (InputError, BackendError) as e:
            raise refused(e) from None
        yield {"stop": gr.update(interactive=True), "progress": progress.panel("Starting")}
        try:
            async for update in self.follow(job):
                yield update
        finally:
            self.jobs.cancel(job)  # the visitor left (or the run ended): nothing runs for nobody
        done = {"stop": gr.update(interactive=False), "preview": gr.update(visible=False)}
        if job.error is not None and job.error.detail == CANCELLED:
            words = progress.stopped(job)
            gr.Info(words)  # a normal outcome: the last video stays
            yield {**done, "progress": progress.panel(words, kind="stopped")}
            return
        if job.error is not None:
            yield {**done, "progress": progress.IDLE}
            raise gr.Error(html.escape(page_error(job.error.detail)))
        out = SVDOutput.model_validate(job.output)
        name = values["backend"]
        self.rates.pop(self.backends.chosen(name).name, None)  # a new run: a new estimate
        seconds = job.inference_time or 0
        yield {
            **done, "video": local_path(out.image.url), "seed_used": str(out.seed),
            "status": self.backends.chosen(name).status(),
            "progress": progress.panel(f"Done in {seconds:.1f} s: seed {out.seed}", kind="done"),
            "last_run": Path(out.image.file_name or "").stem, "outcome": self.outcome(values),
            "seed": str(out.seed + 1) if values.get("seed_mode") == "increment" else gr.update(),
        }  # fmt: skip

    async def follow(self, job: Job):
        """Updates while `job` waits or runs: its place in the queue, stage, step, preview."""
        loop, finished = asyncio.get_running_loop(), asyncio.Event()
        job.on_done.append(lambda: loop.call_soon_threadsafe(finished.set))
        shown_panel, shown_preview = None, None
        while not job.done.is_set():
            panel = progress.of(job, self.jobs.position(job))
            preview = progress.last_preview(job)
            update = {}
            if panel != shown_panel:
                update["progress"] = shown_panel = panel
            if preview is not None and preview is not shown_preview:
                shown_preview = preview
                picture = Image.fromarray(preview.image)
                scale = PREVIEW_SIDE / picture.width
                size = (PREVIEW_SIDE, max(1, round(picture.height * scale)))
                update["preview"] = gr.update(value=picture.resize(size), visible=True)
            if update:
                yield update
            try:
                await asyncio.wait_for(finished.wait(), timeout=POLL)
            except asyncio.TimeoutError:
                pass

    def stop(self, request: gr.Request):
        running = self.jobs.active(session=visitor(request)[0])
        for job in running:
            self.jobs.cancel(job)
        if not running:
            gr.Info("Nothing is running.")

    def leave(self, request: gr.Request):
        for job in self.jobs.active(session=visitor(request)[0]):
            self.jobs.cancel(job)  # the visitor closed the page: nobody is left to watch

    # -- the examples

    async def example(self, evt: gr.SelectData, request: gr.Request):
        """Fill the inputs with an example and show its video (made once per model)."""
        chosen = examples.EXAMPLES[evt.index]
        filled = chosen.values()
        kept = examples.cached(self.backend, chosen)
        if kept is None:
            try:
                job = self.jobs.submit(chosen.request(), "page", *visitor(request))
            except BackendError as e:
                raise refused(e) from None
            yield {**filled, "stop": gr.update(interactive=True),
                   "progress": progress.panel(f"Making the example: {chosen.caption}")}  # fmt: skip
            try:
                async for update in self.follow(job):
                    yield update
            finally:
                self.jobs.cancel(job)
            done = {"stop": gr.update(interactive=False), "preview": gr.update(visible=False)}
            if job.error is not None:
                words = progress.stopped(job) if job.error.detail == CANCELLED else None
                yield {**done, "progress": progress.panel(words or "", kind="stopped")}
                if words is None:
                    raise gr.Error(html.escape(page_error(job.error.detail)))
                return
            video = SVDOutput.model_validate(job.output).image.url
            kept = examples.keep(self.backend, chosen, Path(local_path(video)))
            filled.update(done)
        yield {**filled, "video": servable(str(kept)), "seed_used": str(examples.SEED),
               "progress": progress.panel(f"Example: {chosen.caption}", kind="done")}  # fmt: skip

    # -- previews of what the model gets

    def size_of(self, values: dict, picture: tuple[int, int]) -> tuple[int, int]:
        backend = self.backends.chosen(values.get("backend"))
        return video_size(picture, backend.default_size(), int(values.get("width") or 0) or None,
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

    # -- the header line and the API panel

    def rate(self, backend) -> float | None:
        if backend.name not in self.rates:
            self.rates[backend.name] = summary.seconds_per_work(backend)
        return self.rates[backend.name]

    def outcome(self, values: dict, maps: int | None = None) -> str:
        backend = self.backends.chosen(values.get("backend"))
        if values.get("image"):
            try:
                with Image.open(values["image"]) as picture:
                    values = {**values, "picture_size": picture.size}
            except OSError:
                pass
        if maps is None and values.get("control_maps"):
            maps = self.maps_count(values["control_maps"])
        return summary.outcome(values, backend, self.rate(backend), maps)

    def maps_count(self, path: str) -> int | None:
        from svd.archive import maps_for_a_video
        from svd.fetch import read_url

        try:
            return len(maps_for_a_video(read_url(path, "control_maps_data_url")))
        except InputError:
            return None

    def outcome_of(self, *args):
        return self.outcome(dict(zip(OUTCOME_KEYS, args, strict=True)))

    def api_code(self, values: dict, request: gr.Request) -> tuple[str, str, str]:
        """Snippets for the current inputs, against this server as the visitor reached it."""
        if not values.get("image"):
            text = "Upload a picture first: the snippets carry it."
            return text, "# " + text, "// " + text
        try:
            inp, _ = self.request({**values, "seed_mode": "fixed"})
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

    # -- depth maps, history

    def depth_from_video(self, video):
        if not video:
            raise gr.Error("Driving video: upload a video first")
        try:
            archive = video_to_depth_archive(video, self.backend.depth_model)
        except (InputError, BackendError) as e:
            raise refused(e) from None
        path = Path(tempfile.mkdtemp(dir=scratch("depth"))) / "depth-maps.zip"
        path.write_bytes(archive)
        return str(path)

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

    def model_help(self) -> list:
        """The Advanced sliders' help, with the loaded model's own numbers."""
        frames, (width, height) = self.backend.default_frames(), self.backend.default_size()
        return [gr.update(info=f"0: the model's own ({frames})"),
                gr.update(info=f"0: the model's own ({width})"),
                gr.update(info=f"0: the model's own ({height})")]  # fmt: skip


EXTRAS = [f.key for f in FIELDS if f.place == "advanced" and f.key not in
          ("loop", "output_format", "interpolate")]  # fmt: skip
CROP_KEYS = ["image", "strokes", "mask_file", "width", "height", "resize_mode", "backend"]
OUTCOME_KEYS = ["image", "control_maps", "num_frames", "fps", "width", "height", "resize_mode",
                "loop", "interpolate", "extend", "steps", "backend"]  # fmt: skip
