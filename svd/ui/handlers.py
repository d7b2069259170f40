"""What the page's events do. Runs go through the queue the HTTP API shares; the layout that
wires these up is svd/ui/layout.py."""

from __future__ import annotations

import asyncio
import html
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image

from svd import history, models
from svd.backends import BACKENDS
from svd.depth_video import video_to_depth_archive
from svd.errors import BackendError, InputError
from svd.fetch import is_http
from svd.jobs import CANCELLED, Job, JobQueue
from svd.schema import EXTRA_FIELDS, SVDOutput
from svd.settings import settings
from svd.ui import examples, model_picker, progress
from svd.ui.adapters import visitor
from svd.ui.choice import Backends
from svd.ui.fields import FIELDS, KEYS, in_page_words, page_request
from svd.ui.files import local_path, scratch, servable, sweep_scratch
from svd.ui.previews import Previews

# What `generate` updates, in this order (a handler yields a dict of some of these names).
OUTPUTS = ["video", "seed_used", "status", "progress", "preview", "stop", "seed", "last_run",
           "outcome", "videos"]  # fmt: skip
KEEP_ALIVE = 5.0  # seconds between updates at most: Gradio notices a closed stream on a send
UNHEARD = 20.0  # seconds a visitor may leave every update unread before their run ends
PREVIEW_SIDE = 512  # the live preview is drawn this wide (it fills the video's place)


def ended() -> dict:
    """What a run's end puts back: Stop off, the live preview hidden. (The video comes back
    in an event of its own after the run: a script gets the video alone.)"""
    return {"stop": gr.update(interactive=False), "preview": gr.update(visible=False)}


def previewing() -> dict:
    """While a live preview shows: it stands where the video stands."""
    return {"preview": gr.update(visible=True), "video": gr.update(visible=False)}


def side_by_side(out: SVDOutput) -> dict:
    """A run's videos, each with its seed, in a row; hidden for a run of one."""
    if not out.videos:
        return gr.update(value=None, visible=False)
    pairs = zip(out.videos, out.seeds or [], strict=True)
    shown = [(local_path(f.url), f"seed {seed}") for f, seed in pairs]
    return gr.update(value=shown, columns=len(shown), visible=True)


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


def shown_index(index, count: int) -> bool:
    """Whether a click's index (the client's word) names one of `count` things shown."""
    return type(index) is int and 0 <= index < count  # not a bool, nor a string


def chosen_example(index) -> examples.Example:
    if not shown_index(index, len(examples.EXAMPLES)):  # a script, not a click on the page
        raise gr.Error("Examples: click one of the examples shown")
    return examples.EXAMPLES[index]


class Handlers:
    """What the page's events do; runs go through `jobs`, the queue the HTTP API shares."""

    def __init__(self, jobs: JobQueue, backends: Backends, makings: examples.Makings):
        self.jobs, self.backends, self.makings = jobs, backends, makings
        self.blocks: gr.Blocks | None = None  # the page, once built
        self.defaults: dict = {}  # each field's value when the page opens
        self.backend, self.store = backends.default, jobs.outputs
        self.mask_dir = scratch("masks")
        self.previews = Previews(backends, self.mask_dir, self.store)

    # -- the run

    async def generate(self, values: dict, request: gr.Request):
        try:
            inp, chosen = page_request(values, self.backends, self.mask_dir)
            session = visitor(request)[0]
            job = self.jobs.submit(inp, "page", *visitor(request), backend=chosen,
                                   watched=lambda: self.listening(session))  # fmt: skip
        except (InputError, BackendError) as e:
            raise refused(e) from None
        first = {"progress": progress.panel("Starting")}
        async for update in self.watch(job, first, visitor(request)[0]):
            yield update
        if job.error is not None:  # stopped: said so already
            return
        out = SVDOutput.model_validate(job.output)
        name = values["backend"]
        self.previews.rates.pop(self.backends.chosen(name).name, None)  # a new run: a new estimate
        seconds = job.inference_time or 0
        used = out.seeds or [out.seed]  # the list is set only for several videos
        seeds, said = ", ".join(map(str, used)), "seeds" if len(used) > 1 else "seed"
        yield {
            **ended(), "video": local_path(out.image.url), "seed_used": seeds,
            "videos": side_by_side(out), "status": self.backends.chosen(name).status(),
            "progress": progress.panel(f"Done in {seconds:.1f} s: {said} {seeds}", kind="done"),
            "last_run": [Path(f.file_name or "").stem for f in out.videos or [out.image]],
            "outcome": self.previews.outcome(values),
            "seed": str(used[-1] + 1) if values.get("seed_mode") == "increment" else gr.update(),
        }  # fmt: skip

    async def watch(self, job: Job, first: dict, session: str = "", shared: bool = False):
        """Updates from `first` to the end of `job`. A stop ends with its info line (the last
        video stays); a failure with gr.Error. A finished run's own last update is the
        caller's. A visitor who leaves ends their run, unless it is `shared`."""
        running = {"stop": gr.update(interactive=True)}
        yield {**first, **running}
        try:
            async for update in self.follow(job, "" if shared else session):
                # Every chunk repeats Stop's state (and, once a preview shows, the preview's
                # and the video's): Gradio sends a chunk as a diff of the one before, and its
                # client edits that chunk in place, so a prop update left out of the next
                # chunk can be undone before the page has applied it.
                if "preview" in update:
                    running.update(previewing())
                yield {**running, **update}
        finally:
            if not shared:  # the visitor left (or the run ended): nothing runs for nobody
                self.jobs.cancel(job)
        if job.error is not None and job.error.detail == CANCELLED:
            words = progress.stopped(job)
            gr.Info(words)  # a normal outcome: the last video stays
            yield {**ended(), "progress": progress.panel(words, kind="stopped")}
        elif job.error is not None:
            yield {**ended(), "progress": progress.IDLE}
            raise gr.Error(html.escape(page_error(job.error.detail)))

    async def follow(self, job: Job, session: str = ""):
        """Updates while `job` waits or runs: its place in the queue, stage, step, preview.
        One at least every KEEP_ALIVE seconds, so a closed page is noticed; a visitor who
        leaves every update unread for UNHEARD seconds never listened: their run ends."""
        loop = asyncio.get_running_loop()
        with self.jobs.notifier.watch(job.id) as changes:  # woken by each change, no polling
            shown_panel, shown_preview = None, None
            sent, unheard = loop.time(), None
            while not job.done.is_set():
                update = self._changes(job, shown_panel, shown_preview)
                shown_panel = update.get("progress", shown_panel)
                shown_preview = update.pop("shown", shown_preview)
                if not update and loop.time() - sent >= KEEP_ALIVE:
                    update["progress"] = shown_panel
                if update:
                    yield update
                    sent = loop.time()
                # The update just sent may still wait for the stream's turn on this loop;
                # an older one still waiting means nobody reads.
                if self.unread(session) > 1:
                    unheard = unheard or loop.time()
                    if loop.time() - unheard > UNHEARD:
                        self.jobs.cancel(job)
                else:
                    unheard = None
                await changes.changed(KEEP_ALIVE)

    def _changes(self, job: Job, shown_panel, shown_preview) -> dict:
        """What to send of `job` that the page does not show yet (a new preview's event as
        "shown")."""
        update = {}
        panel = progress.of(job, self.jobs.position(job))
        if panel != shown_panel:
            update["progress"] = panel
        preview = progress.last_preview(job)
        if preview is not None and preview is not shown_preview:
            picture = Image.fromarray(preview.image)
            scale = PREVIEW_SIDE / picture.width
            size = (PREVIEW_SIDE, max(1, round(picture.height * scale)))
            update["preview"] = gr.update(value=picture.resize(size), visible=True)
            update["shown"] = preview
        return update

    def listening(self, session: str) -> bool:
        """Whether Gradio still has a live event of `session`: a stream the visitor closed
        makes its events dead, and Gradio then stops asking our generator for updates, so
        the run is ended from the queue's side."""
        # gradio internal: Queue.active_jobs, lists of Events with session_hash and alive
        # (tests/test_internals.py)
        active = getattr(getattr(self.blocks, "_queue", None), "active_jobs", None)
        if active is None:  # no queue to look at: it cannot be told
            return True
        for events in list(active):
            for event in list(events or []):
                if event.session_hash == session and event.alive:
                    return True
        return False

    def unread(self, session: str) -> int:
        """Updates Gradio holds for `session` that no stream has taken."""
        # gradio internal: Blocks._queue.pending_messages_per_session (tests/test_internals.py)
        pending = getattr(getattr(self.blocks, "_queue", None), "pending_messages_per_session", {})
        messages = pending.get(session) if session else None
        return messages.qsize() if messages is not None else 0

    def stop(self, request: gr.Request):
        """Stop this browser's runs; the progress says so at once."""
        running = self.jobs.active(session=visitor(request)[0])
        for job in running:
            self.jobs.cancel(job)
        if not running:
            gr.Info("Nothing is running.")
            return gr.update()
        return progress.panel("Stopping...", kind="stopped")

    def leave(self, request: gr.Request):
        for job in self.jobs.active(session=visitor(request)[0]):
            self.jobs.cancel(job)  # the visitor closed the page: nobody is left to watch

    # -- the examples

    def example_inputs(self, evt: gr.SelectData) -> dict:
        """Fill the inputs with the clicked example. One plain answer, so nothing that comes
        after can edit it before the page has applied it (see `watch`)."""
        return {**chosen_example(evt.index).values(), "example": evt.index}

    async def example_video(self, index: int | None, request: gr.Request):
        """Show the example's video: made once per model (at start, or now), kept after.
        Its making is shared: leaving the page does not stop it."""
        chosen = chosen_example(index)
        done = {"progress": progress.panel(f"Example: {chosen.caption}", kind="done")}
        try:
            job = self.makings.start(chosen)
        except (BackendError, InputError) as e:
            raise refused(e) from None
        if job is None:
            video = servable(str(examples.cached(self.store, self.backend, chosen)))
        else:
            making = {"progress": progress.panel(f"Making the example: {chosen.caption}")}
            async for update in self.watch(job, making, visitor(request)[0], shared=True):
                yield update
            video = local_path(SVDOutput.model_validate(job.output).image.url)
            done.update(ended())
        yield {**done, "video": video, "seed_used": str(examples.SEED),
               "videos": gr.update(visible=False)}  # fmt: skip

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

    def remember(self, mine, run_ids):
        """The browser's list with a run's videos added, its first video first."""
        for run_id in reversed(run_ids or []):
            mine = history.remember(self.store, mine, run_id)
        return mine

    def pick(self, records, evt: gr.SelectData):
        if not shown_index(evt.index, len(records)):
            raise gr.Error("History: pick one of the videos shown")
        record = records[evt.index]
        return record, gr.update(interactive=True), history.public_record(record)

    def reuse(self, record) -> list:
        """The page's values that remake a picked video, in the field table's order, then the
        model the sliders' values are of (its own, so choosing it moves none of them)."""
        if not record:
            raise gr.Error("Pick a video in the history first")
        s = history.settings(self.store, record)
        for key in ("image", "mask_file", "control_maps"):
            if s[key] and not is_http(s[key]):
                s[key] = servable(s[key])
        if s["backend"] not in BACKENDS:
            s["backend"] = self.backend.name
        chosen = self.backends.chosen(s["backend"])
        s["model"] = model_picker.spec_for(chosen, s["model"]).name
        return [*(s.get(key, gr.update()) for key in KEYS), s["model"]]

    def fit_to(self, name, model):
        """The status line, the extras the chosen backend takes and the models it runs. The
        extras it does not take are hidden and put back to their defaults (a value left
        behind would refuse the run); a model it does not run gives way to its own."""
        chosen = self.backends.chosen(name)
        spec = model_picker.spec_for(chosen, model)
        defaults = {**self.defaults, **model_picker.own_values(spec)}
        shown = [f in chosen.supports for f in EXTRAS]
        return [chosen.status(), *(
            gr.update(visible=True) if show else gr.update(visible=False, value=defaults[f])
            for f, show in zip(EXTRAS, shown, strict=True)
        ), gr.update(choices=model_picker.choices(chosen), value=spec.name)]  # fmt: skip

    def fit_model(self, name, backend, shown, steps, fps, low, high) -> dict:
        """What choosing model `name` moves: the sliders still at the `shown` model's own
        values go to its own (the others stay), the steps' range, the help lines, the depth
        maps (hidden and emptied for a model that takes none)."""
        chosen = self.backends.chosen(backend)
        new = model_picker.spec_for(chosen, name)
        old = models.MODELS.get(shown) or new
        values = dict(zip(model_picker.OWN, (steps, fps, low, high), strict=True))
        moved = {k: gr.update(value=v) for k, v in model_picker.moved(old, new, values).items()}
        moved["steps"]["maximum"] = new.step_range[1]
        depth = "depth" in new.supports
        return {
            **moved, **self.model_help(backend, name), "model_shown": new.name,
            "depth": gr.update(visible=depth), "control_maps": gr.update() if depth else None,
            "depth_note": gr.update(visible=not depth, value=depth_note(new)),
        }  # fmt: skip

    def model_help(self, backend, name) -> dict:
        """The Advanced sliders' help, with the chosen model's own numbers."""
        chosen = self.backends.chosen(backend)
        model = model_picker.requested(chosen, model_picker.spec_for(chosen, name).name)
        frames, (width, height) = chosen.default_frames(model), chosen.default_size(model)
        return {"num_frames": gr.update(info=f"0: the model's own ({frames})"),
                "width": gr.update(info=f"0: the model's own ({width})"),
                "height": gr.update(info=f"0: the model's own ({height})")}  # fmt: skip


def depth_note(spec: models.Model) -> str:
    return f"Depth control maps: {spec.name} takes none (choose another model for them)."


# The extras a backend may not take: hidden where the chosen one does not (its `supports`).
EXTRAS = [f.key for f in FIELDS if f.place == "advanced" and f.key in EXTRA_FIELDS]
