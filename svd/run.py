"""One run in three rooms: prepare (shared), render (the backend's), store (shared)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from svd.archive import maps_for_a_video
from svd.contract import MAPS, Backend, Prepared, Rendered
from svd.depth_video import video_to_depth_archive
from svd.errors import InputError
from svd.events import EventHandler, Stage, emit
from svd.fetch import is_http, read_url
from svd.media import read_video, write_video
from svd.outputs import OutputStore
from svd.post import finish
from svd.schema import EXTRA_FIELDS, URL_FIELDS, File, SVDInput, SVDOutput
from svd.settings import settings


def settle(backend: Backend, inp: SVDInput, frames: int | None = None) -> SVDInput:
    """The request as `backend` runs it: extras it does not take refused, what is left out
    set to the model's defaults, the work checked against SVD_MAX_WORK."""
    refuse_unsupported(backend, inp)
    inp = inp.with_defaults(backend.model_spec(inp.model))
    check_work(backend, inp, frames)
    return inp


def refuse_unsupported(backend: Backend, inp: SVDInput) -> None:
    """An extra the backend does not take is an error unless left at its default."""
    for name in EXTRA_FIELDS - backend.supports:
        default = SVDInput.model_fields[name].default
        if getattr(inp, name) != default:
            leave = "leave it out" if default is None else f"leave it at {default}"
            raise InputError(name, f"runs on the local backend only; {leave} on {backend.name}")


def check_work(backend: Backend, inp: SVDInput, frames: int | None = None) -> None:
    """Refuse a run past SVD_MAX_WORK: megapixels x frames x steps x segments, with the
    backend's own size and frame count for what the request leaves out (`frames`: the
    count depth maps set)."""
    width, height = backend.default_size(inp.model)
    width, height = inp.width or width, inp.height or height
    frames = frames or inp.num_frames or backend.default_frames(inp.model)
    work = width * height / 1e6 * frames * inp.steps * (inp.extend + 1) * inp.num_videos
    limit = settings().max_work
    if work > limit:
        segments = f" x {inp.extend + 1} segments" if inp.extend else ""
        if inp.num_videos > 1:
            segments += f" x {inp.num_videos} videos"
        raise InputError(
            "steps",
            f"{width}x{height} px x {frames} frames x {inp.steps} steps{segments} is "
            f"{work:,.0f} megapixel-frame-steps, over this server's limit of {limit:,.0f} "
            "(SVD_MAX_WORK): ask fewer steps, frames or pixels",
        )


def prepare(backend: Backend, inp: SVDInput, on_event: EventHandler | None = None) -> Prepared:
    """Check the request against the backend, then read its inputs (see `Prepared`)."""
    inp = settle(backend, inp)
    emit(on_event, Stage("loading inputs"))
    data = {}
    for name in URL_FIELDS:
        url = getattr(inp, name)
        if url and name != "control_video_url" and not (backend.takes_urls and is_http(url)):
            data[name] = read_url(url, name)
    made = None
    if inp.control_video_url:
        emit(on_event, Stage("estimating depth"))
        made = data[MAPS] = video_to_depth_archive(inp.control_video_url, backend.depth_model)
    if MAPS in data:
        maps = maps_for_a_video(data[MAPS])  # a bad archive fails here, before any model work
        check_work(backend, inp, len(maps))
    return Prepared(inp, data, made)


def keep(
    store: OutputStore, backend: Backend, prepared: Prepared, rendered: Rendered,
    timings: dict[str, float], on_event: EventHandler | None = None,
) -> SVDOutput:  # fmt: skip
    """Finish the frames (in-between frames, loop, format), keep each video and its record
    in `store` (a request for several videos keeps one record per video, with its own
    seed)."""
    emit(on_event, Stage("writing video"))
    files = [_keep(store, backend.name, prepared, made, timings) for made in rendered.all]
    store.prune(settings().max_outputs)
    out = SVDOutput(image=files[0], seed=rendered.seed)
    if len(files) > 1:
        out.videos, out.seeds = files, [made.seed for made in rendered.all]
    return out


def _keep(
    out: OutputStore, backend: str, prepared: Prepared, rendered: Rendered, timings: dict
) -> File:
    inp = prepared.inp
    if prepared.inp.num_videos > 1:  # its record asks for this one video again
        inp = inp.model_copy(update={"seed": rendered.seed, "num_videos": 1})
    run_id = out.new_id()
    started = time.perf_counter()
    with out.saving(run_id):
        video = _write(out.video_path(run_id, f".{inp.output_format}"), inp, rendered)
        for name, image in rendered.kept.items():
            out.save_image(run_id, name, image)
        if prepared.made_maps is not None:
            out.save_bytes(run_id, "depth.zip", prepared.made_maps)
        timings = {**timings, "write_s": time.perf_counter() - started}
        timings = {**timings, **rendered.timings, "total_s": sum(timings.values())}
        return out.record(
            run_id, video, inp, rendered.seed, backend=backend, **rendered.facts,
            timings={k: round(v, 3) for k, v in timings.items()},
        )  # fmt: skip


def _write(target: Path, inp: SVDInput, rendered: Rendered) -> Path:
    asked_fps = "fps" in inp.model_fields_set
    if rendered.video is not None:
        plain = inp.loop == "none" and not inp.interpolate and not asked_fps
        if plain and rendered.video.suffix == target.suffix:
            # kept as made, not re-encoded; moved, as its folder may be another file system
            shutil.move(rendered.video, target)
            return target
        frames, fps = read_video(rendered.video)
        fps = inp.fps if asked_fps else round(fps) or inp.fps  # `run` removes the file
    else:
        frames, fps = rendered.frames, rendered.fps or inp.fps
    frames, fps = finish(frames, fps, inp.interpolate, inp.loop)
    return write_video(frames, fps, target, inp.output_format)


def run(
    backend: Backend, inp: SVDInput, store: OutputStore, on_event: EventHandler | None = None,
    render=None,
) -> SVDOutput:  # fmt: skip
    """Prepare, render on `backend` (or with `render(prepared, on_event)`, such as in a GPU
    worker), keep in `store`: the request's videos and their records."""
    started = time.perf_counter()
    prepared = prepare(backend, inp, on_event)
    ready = time.perf_counter()
    rendered = (render or backend.render)(prepared, on_event)
    timings = {"inputs_s": ready - started, "render_s": time.perf_counter() - ready}
    try:
        return keep(store, backend, prepared, rendered, timings, on_event)
    finally:
        for made in rendered.all:  # a downloaded file not kept (stopped, failed)
            if made.video is not None:
                made.video.unlink(missing_ok=True)
