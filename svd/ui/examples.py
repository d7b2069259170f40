"""The page's examples, made with the project's own pictures: thumbnails that show the whole
picture, and videos made once per model and kept for every visitor: at start (SVD_EXAMPLES
start, the default) or at the first click (click). A making is one queued run shared by
whoever waits for it; a page going away never cancels it."""

from __future__ import annotations

import contextvars
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from svd.contract import Backend
from svd.errors import BackendError, InputError
from svd.fetch import file_path
from svd.jobs import Job, JobQueue
from svd.outputs import OutputStore
from svd.schema import SVDInput, SVDOutput
from svd.ui.files import scratch

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
SEED = 1


@dataclass(frozen=True)
class Example:
    name: str
    caption: str
    image: str
    mask: str | None = None
    maps: str | None = None

    def request(self) -> SVDInput:
        return SVDInput(
            image_url=str(ASSETS / self.image), seed=SEED,
            mask_image_url=str(ASSETS / self.mask) if self.mask else None,
            control_maps_data_url=str(ASSETS / self.maps) if self.maps else None,
        )  # fmt: skip

    def values(self) -> dict:
        """The page's inputs this example fills."""
        return {
            "image": str(ASSETS / self.image), "seed": str(SEED),
            "mask_file": str(ASSETS / self.mask) if self.mask else None,
            "control_maps": str(ASSETS / self.maps) if self.maps else None,
        }  # fmt: skip


EXAMPLES = [
    Example("lake", "A lake that moves under still hills (motion mask)", "sunset.png",
            mask="sunset-mask.png"),
    Example("ball", "A ball rolled by depth maps", "ball.png", maps="rolling-ball-depth.zip"),
]  # fmt: skip


def thumbnails() -> list[tuple[str, str]]:
    """(picture, caption) for the gallery: each picture whole, none of it cropped away."""
    folder = scratch("examples")
    shown = []
    for example in EXAMPLES:
        path = folder / f"{example.name}.png"
        if not path.exists():
            picture = Image.open(ASSETS / example.image).convert("RGB")
            ImageOps.contain(picture, (320, 180)).save(path)
        shown.append((str(path), example.caption))
    return shown


def cache_path(store: OutputStore, backend: Backend, example: Example) -> Path:
    """Where this backend's (and model's) video of `example` is kept in `store`."""
    model = getattr(backend, "model", None) or backend.name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{backend.name}-{model}").strip("-")
    return store.root / "examples" / f"{slug}-{example.name}.mp4"  # a name per model


def cached(store: OutputStore, backend: Backend, example: Example) -> Path | None:
    path = cache_path(store, backend, example)
    return path if path.is_file() else None


def keep(store: OutputStore, backend: Backend, example: Example, video: Path) -> Path:
    path = cache_path(store, backend, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".mp4.part")
    shutil.copyfile(video, part)
    part.replace(path)
    return path


class Makings:
    """The examples' videos being made for `backend` through `jobs` (and kept in its store):
    one run per example at a time, whoever asks."""

    def __init__(self, jobs: JobQueue, backend: Backend):
        self.jobs, self.backend = jobs, backend
        self._making: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, example: Example) -> Job | None:
        """The run making `example`'s video (started now if none is); None once it is kept."""
        with self._lock:
            if cached(self.jobs.outputs, self.backend, example) is not None:
                return None
            job = self._making.get(example.name)
            if job is None or job.done.is_set() and job.error is not None:
                # In a context of its own: a shared run spends no visitor's ZeroGPU quota.
                job = contextvars.Context().run(
                    self.jobs.submit, example.request(), "example", limited=False,
                    on_done=lambda: self._kept(example),
                )  # fmt: skip
                self._making[example.name] = job
            return job

    def start_all(self) -> None:
        """Queue every example not kept yet (at start, behind nothing but the warm-up)."""
        for example in EXAMPLES:
            try:
                self.start(example)
            except (BackendError, InputError) as e:  # a full queue, SVD_MAX_WORK: a click says
                log.warning("example %s not queued: %s", example.name, e)

    def _kept(self, example: Example) -> None:
        # No lock here: this may run under the queue's, which start() takes under ours.
        job = self._making.get(example.name)  # recorded: a run ends long after it is queued
        if job is None:
            return
        if job.error is None:
            video = SVDOutput.model_validate(job.output).image.url
            keep(
                self.jobs.outputs,
                self.backend,
                example,
                file_path(video) if video.startswith("file:") else Path(video),
            )
        else:
            log.warning("example %s not made: %s", example.name, job.error.detail)
