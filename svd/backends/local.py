"""The local backend: diffusers' StableVideoDiffusionPipeline, loaded once and kept warm."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from svd import models
from svd.archive import depth_strip, maps_from_archive
from svd.backends.base import BackendBase
from svd.backends.tiny import build_tiny_controlnet, build_tiny_pipeline
from svd.contract import Prepared, Rendered, video_seeds
from svd.control import depth_control, maps_to_cond
from svd.controlnet import ControlNetSDV
from svd.errors import BackendError
from svd.events import EventHandler, Preview, Stage, Step, emit
from svd.fast import channels_last, compile_unet
from svd.loading import load_controlnet, load_model, not_here
from svd.mask import MotionMask, mask_image, motion_map
from svd.media import as_uint8_frames, decode_image, fit_image, video_size
from svd.pipeline import SVDPipeline
from svd.preview import EVERY, LatentPreview
from svd.reuse import feature_reuse
from svd.sampler import noise_after, watched
from svd.schema import EXTRA_FIELDS, SVDInput
from svd.settings import settings
from svd.ticks import ticking

log = logging.getLogger(__name__)

DEFAULT_MODEL = models.DEFAULT.repo
DEFAULT_CONTROLNET = "CiaraRowles/temporal-controlnet-depth-svd-v1"  # trained on SVD, 14 frames
MASK_SEED_OFFSET = 0x9E3779B9  # the mask's noise must not repeat the pipeline's
NOISE_SEED_OFFSET = 0x85EBCA6B  # nor the sampler's fresh noise (consistency sampling)


@dataclass
class Plan:
    """One render's settled parts; `done` counts steps over every video and segment."""

    pipe: SVDPipeline
    image: Image.Image
    inp: SVDInput
    frames: int
    moves: np.ndarray | None  # where it moves (1) and stays still (0); None: all moves
    on_event: EventHandler | None
    total: int
    done: int = 0


def pick_device() -> str:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _run_error(error: RuntimeError) -> BackendError:
    """A failed run worded for the user; out of memory says what to lower."""
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower():
        return BackendError(
            "out of memory: try fewer frames, a smaller size or a lower decode chunk size"
        )
    return BackendError(f"generation failed: {error}")


class LocalBackend(BackendBase):
    """Runs SVD on this machine. `model`: hub id, local folder or "tiny" (`SVD_MODEL`)."""

    name = "local"
    supports = EXTRA_FIELDS
    preview_every = EVERY  # steps between live previews; 0: none
    batch_videos = True  # a request's videos through the UNet as one batch, where they can go

    def __init__(
        self,
        model: str | None = None,
        controlnet: str | ControlNetSDV | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        pipe: StableVideoDiffusionPipeline | None = None,
        memory: str | None = None,
        fast: bool | None = None,
    ):
        config = settings()
        self.explicit_model = model or config.model or None
        named = models.find(self.explicit_model)  # a registry name stands for its repo
        if named is not None and named.repo is not None:
            self.explicit_model = named.repo
        self.model = self.explicit_model or DEFAULT_MODEL
        self._controlnet = controlnet if isinstance(controlnet, ControlNetSDV) else None
        if self._controlnet is not None:  # a ready ControlNet is used as it is
            controlnet = getattr(controlnet, "name_or_path", None) or "custom ControlNet"
        self.controlnet = controlnet or config.controlnet or None
        self.device = device or (str(pipe.device) if pipe is not None else pick_device())
        if dtype is None:
            dtype = pipe.dtype if pipe is not None else None
        self.dtype = dtype or (torch.float16 if self.device.startswith("cuda") else torch.float32)
        self.memory = (memory or config.memory).lower()
        if self.memory not in ("normal", "low"):
            raise ValueError(f"SVD_MEMORY: expected normal or low, got {self.memory!r}")
        if fast is None:
            fast = config.fast
        if fast and self.memory == "low":
            raise ValueError(
                "SVD_FAST and SVD_MEMORY=low do not go together: low memory runs the "
                "feed-forward layers frame by frame, which compiles into outsized graphs"
            )
        self.fast = fast
        self._depth_model = config.depth_model
        self.notice: str | None = None  # why the model is not the one asked for (logged)
        if pipe is not None and self.explicit_model is None:
            self.model = getattr(pipe, "name_or_path", None) or "custom pipeline"
        self._pipes: OrderedDict[str, SVDPipeline] = OrderedDict()  # by source, oldest first
        if pipe is not None:
            given = self._pipes[self.model] = SVDPipeline.of(pipe)
            if self.memory == "low":
                self._place(given)
            self._speed_up(given.unet, given.vae)
        self.max_loaded = config.max_loaded_models or (1 if self.device.startswith("cuda") else 2)
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # direct callers (CLI, Python) share one pipeline
        self.needs_gpu = self.device.startswith("cuda")

    @property
    def depth_model(self) -> str | None:
        """What makes depth maps from a driving video: SVD_DEPTH_MODEL, else a tiny one
        beside the tiny SVD, else the default (None). The default model may fall back to
        tiny when it loads, so it is loaded first: the answer must not change later."""
        if self._depth_model:
            return self._depth_model
        if self.model != "tiny" and self.explicit_model is None:
            self.load()
        return "tiny" if self.model == "tiny" else None

    @property
    def loaded(self) -> bool:
        """Whether the default model is loaded."""
        return self.model in self._pipes

    def source_of(self, model: str | None) -> str:
        """What `model` (a registry name; None: the default) loads from: a hub id, a
        folder, or "tiny"."""
        if model is None:
            return self.model
        return models.MODELS[model].repo or model

    def model_spec(self, model: str | None = None) -> models.Model:
        """The registry's entry for `model` (None: the default model's; the default's for a
        folder or an unlisted hub id)."""
        return self.spec if model is None else models.MODELS[model]

    def load(self, model: str | None = None) -> SVDPipeline:
        """The pipeline of `model` (None: the default), loaded on first use; past
        SVD_MAX_LOADED_MODELS, the least recently used other one is let go."""
        with self._load_lock:
            source = self.source_of(model)
            pipe = self._pipes.get(source)
            if pipe is None:
                pipe = self._load(source, model)
                source = self.source_of(model)  # the default may have become tiny
                self._pipes[source] = pipe
                while len(self._pipes) > self.max_loaded:
                    gone = next(iter(self._pipes))
                    del self._pipes[gone]
                    log.info("let %s go (SVD_MAX_LOADED_MODELS=%d)", gone, self.max_loaded)
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            self._pipes.move_to_end(source)
            return pipe

    def _load(self, source: str, name: str | None) -> SVDPipeline:
        started = time.perf_counter()
        spec = models.find(name or source)
        if source == "tiny":
            pipe = build_tiny_pipeline()
        else:
            base = None
            if spec is not None and spec.base:
                base = self._pipes.get(self.source_of(spec.base))  # its parts are shared
            try:
                pipe = load_model(spec, source, self.dtype, base)
            except Exception as e:  # offline, no cache, gated, bad folder...
                if name is not None or self.explicit_model is not None:
                    raise BackendError(not_here(source, e, name)) from e
                self.notice = (
                    f"The model {source} could not be loaded ({type(e).__name__}), so this "
                    "runs on 'tiny', a small random-weight test model: its videos are noise. "
                    "Set SVD_MODEL to a hub id or a local folder with the weights."
                )
                log.warning(self.notice)
                self.model = source = "tiny"
                pipe = build_tiny_pipeline()
        pipe = SVDPipeline.of(pipe)
        if pipe.dtype != self.dtype:
            pipe.to(dtype=self.dtype)
        self._place(pipe)
        self._speed_up(pipe.unet, pipe.vae)
        pipe.set_progress_bar_config(disable=True)
        elapsed = time.perf_counter() - started
        log.info("loaded %s on %s in %.1f s", source, self.device, elapsed)
        return pipe

    def load_controlnet(self, model: str | None = None) -> ControlNetSDV:
        """The depth ControlNet, loaded on first use (`SVD_CONTROLNET`)."""
        pipe = self.load(model)
        with self._load_lock:
            if self._controlnet is None:
                if self.model == "tiny" and not self.controlnet:
                    net = build_tiny_controlnet(pipe.unet)
                else:
                    net = load_controlnet(self.controlnet or DEFAULT_CONTROLNET, self.dtype)
                self._controlnet = net.to(self.device)
                self._speed_up(net)
            return self._controlnet

    def _place(self, pipe: StableVideoDiffusionPipeline) -> None:
        """Put the pipeline on its device. SVD_MEMORY=low trades speed for memory: each model
        visits the GPU only while it runs, and the UNet's feed-forward layers go frame by
        frame; small decode chunks follow in `_decode_chunk`."""
        if self.memory == "low":
            # dim 0 is frames in the spatial blocks; the temporal ones chunk frames anyway.
            pipe.unet.enable_forward_chunking(chunk_size=1, dim=0)
            if self.device.startswith("cuda"):
                pipe.enable_model_cpu_offload(device=self.device)
                return
        pipe.to(self.device)

    def _speed_up(self, unet, vae=None) -> None:
        """The fast path (`fast`, SVD_FAST): channels-last convolutions, and the repeated
        blocks of the UNet (or ControlNet) compiled; the first run at each size compiles."""
        if not self.fast:
            return
        for model in (unet, vae):
            if model is not None:
                channels_last(model)
        compile_unet(unet)
        log.info("%s compiles on first use", type(unet).__name__)

    def warm_up(self) -> None:
        """Load the model; on the fast path, also compile: one step at the default size and
        frame count (the sizes a page run starts with)."""
        pipe = self.load()
        if not self.fast:
            return
        width, height = self.default_size()
        frames = self.default_frames()
        started = time.perf_counter()
        with self._run_lock:
            pipe(
                Image.new("RGB", (width, height)),
                height=height,
                width=width,
                num_frames=frames,
                num_inference_steps=1,
                output_type="latent",
            )
        log.info("compiled for %dx%d, %d frames in %.0f s", width, height, frames,
                 time.perf_counter() - started)  # fmt: skip

    def default_size(self, model: str | None = None) -> tuple[int, int]:
        return self.model_spec(model).size

    @property
    def spec(self) -> models.Model:
        """The registry's entry for the model (the default model's for a folder)."""
        return models.find(self.model) or models.DEFAULT

    def status(self) -> str:
        """One line for a visitor (why a model fell back is the host's: it is in the log)."""
        if self.model == "tiny":
            return "⚠️ This runs **tiny**, a test model: its videos are noise, not your picture."
        text = f"Model **{self.model}** on this server's {self.device.split(':')[0].upper()}"
        if not self.loaded:
            return text + " (loading...)"
        if self.fast:
            text += ", fast path (compiled)"
        if self.memory == "low":
            text += ", low-memory mode"
        return text

    def render(self, prepared: Prepared, on_event: EventHandler | None = None) -> Rendered:
        """Fit the inputs to the model's size and denoise: `num_videos` videos from seeds
        seed, seed + 1, ... (each `extend` segment going on from the last frame). The first
        video is returned, the others in its `others`."""
        inp = prepared.inp
        picture = decode_image(prepared.data["image_url"], "image_url")
        seeds = video_seeds(inp)
        if self.source_of(inp.model) not in self._pipes:
            emit(on_event, Stage("loading model"))
        pipe = self.load(inp.model)
        width, height = self._size(inp, picture.size)
        image = fit_image(picture, width, height, inp.resize_mode)
        kept = {"input": image}
        num_frames = inp.num_frames or self.default_frames(inp.model)
        control, controlnet = contextlib.nullcontext(), None
        if prepared.maps is not None:
            maps = maps_from_archive(prepared.maps, width, height, inp.resize_mode)
            num_frames, kept["depth"] = len(maps), depth_strip(maps)  # one frame per map
            cond = maps_to_cond(maps, pipe._execution_device, pipe.unet.dtype)
            net = self.load_controlnet(inp.model)
            control = depth_control(pipe.unet, net, cond, inp.control_scale)
            controlnet = self.controlnet_name
        moves = None
        if "mask_image_url" in prepared.data:
            mask = decode_image(prepared.data["mask_image_url"], "mask_image_url")
            moves = motion_map(mask, width, height, inp.resize_mode)
            kept["mask"] = mask_image(moves)
            if moves.min() >= 1.0:  # nothing held still: exactly a run without a mask
                moves = None
        emit(on_event, Stage("denoising"))
        total = inp.steps * (inp.extend + 1) * len(seeds)
        plan = Plan(pipe, image, inp, num_frames, moves, on_event, total)
        with self._run_lock, control:
            try:
                videos = self._videos(plan, seeds, together=prepared.maps is None)
            except RuntimeError as e:  # torch's out-of-memory error is a RuntimeError too
                raise _run_error(e) from e
            finally:
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
        facts = {
            "model": self.source_of(inp.model), "device": self.device, "fast": self.fast,
            "dtype": str(self.dtype).removeprefix("torch."), "controlnet": controlnet,
            "width": width, "height": height, "num_frames": num_frames,
        }  # fmt: skip
        return Rendered.joined([
            Rendered(seed, frames=frames, fps=inp.fps, kept=kept, facts=facts)
            for seed, frames in zip(seeds, videos, strict=True)
        ])  # fmt: skip

    def _videos(self, plan: Plan, seeds: list[int], together: bool) -> list[np.ndarray]:
        """Each seed's video: in one batch through the UNet where it can go (no mask, no
        extend, no depth maps; and memory allows: out of memory, they go one after
        another), else one after another. A video is the same either way."""
        together = together and self.batch_videos and plan.moves is None and not plan.inp.extend
        if len(seeds) > 1 and together:
            try:
                return self._denoise(plan, [plan.image] * len(seeds), seeds, None)
            except torch.OutOfMemoryError:
                log.warning("%d videos at once ran out of memory; one after another", len(seeds))
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                plan.done = 0
        return [self._segments(plan, seed) for seed in seeds]

    def _segments(self, plan: Plan, seed: int) -> np.ndarray:
        """One video; with `extend`, more segments, each from the last frame."""
        segments, start = [], plan.image
        for n in range(plan.inp.extend + 1):
            part_seed = (seed + n) % 2**64
            mask = None
            if plan.moves is not None:  # the still part stays the picture in every segment
                mask = MotionMask(plan.moves, plan.image, (part_seed + MASK_SEED_OFFSET) % 2**64)
            part = self._denoise(plan, [start], [part_seed], mask)[0]
            if mask is not None:
                part = mask.composite(part)
            segments.append(part if n == 0 else part[1:])  # its first frame repeats
            start = Image.fromarray(as_uint8_frames(part[-1:])[0])
        return np.concatenate(segments)

    @property
    def controlnet_name(self) -> str:
        """The ControlNet that runs: its source, or "tiny" for the random one beside tiny."""
        if self.controlnet:
            return self.controlnet
        return "tiny" if self.model == "tiny" else DEFAULT_CONTROLNET

    def _denoise(self, plan: Plan, images: list, seeds: list[int], mask) -> list[np.ndarray]:
        """One call of diffusers' pipeline: float frames (N, H, W, 3) in 0-1 per picture,
        each picture with its seed (as a batch when there are several)."""
        inp, done = plan.inp, plan.done
        preview = LatentPreview(self.preview_every)

        def on_step_end(pipeline, i, t, kwargs):
            latents = kwargs["latents"]
            picture = preview.after_step(pipeline.scheduler.denoised, i, inp.steps)
            if mask is not None:
                if i == 0:
                    mask.prepare(pipeline, tuple(latents.shape))
                kwargs["latents"] = mask.blend_latents(latents, noise_after(pipeline.scheduler, i))
            plan.done = done + (i + 1) * len(images)
            emit(plan.on_event, Step(plan.done, plan.total))
            if picture is not None:
                emit(plan.on_event, Preview(picture, plan.done, plan.total))
            if i + 1 == inp.steps:
                emit(plan.on_event, Stage("decoding"))
            return kwargs

        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        noise = [torch.Generator("cpu").manual_seed((s + NOISE_SEED_OFFSET) % 2**64)
                 for s in seeds]  # fmt: skip
        one = len(images) == 1  # a lone picture as itself: its conditioning is cached
        # Ticks are Python calls inside compiled blocks on the fast path: there a run stops
        # at the step's end.
        ticks = contextlib.nullcontext() if self.fast else ticking(plan.pipe, plan.on_event)
        with feature_reuse(plan.pipe.unet, inp.cache_interval), ticks:
            with watched(plan.pipe.scheduler, noise):
                frames = plan.pipe(
                    images[0] if one else images,
                    height=plan.image.height,
                    width=plan.image.width,
                    num_frames=plan.frames,
                    num_inference_steps=inp.steps,
                    fps=inp.fps,
                    motion_bucket_id=inp.motion_bucket_id,
                    noise_aug_strength=inp.cond_aug,
                    min_guidance_scale=inp.min_guidance_scale,
                    max_guidance_scale=inp.max_guidance_scale,
                    decode_chunk_size=inp.decode_chunk_size or self._decode_chunk(plan.frames),
                    generator=generators[0] if one else generators,
                    output_type="np",
                    callback_on_step_end=on_step_end,
                ).frames
        return list(frames)

    def _size(self, inp: SVDInput, picture: tuple[int, int]) -> tuple[int, int]:
        return video_size(
            picture, self.default_size(inp.model), inp.width, inp.height, inp.resize_mode
        )

    def default_frames(self, model: str | None = None) -> int:
        """Frames a run makes when none are asked: the loaded UNet's, else the registry's."""
        pipe = self._pipes.get(self.source_of(model))
        if pipe is not None:
            return pipe.unet.config.num_frames or self.model_spec(model).frames
        return self.model_spec(model).frames

    def _decode_chunk(self, num_frames: int) -> int:
        # diffusers' docs suggest 8 on a GPU to bound memory (2 with SVD_MEMORY=low).
        if self.memory == "low":
            return min(2, num_frames)
        return min(8, num_frames) if self.device != "cpu" else num_frames

    def close(self) -> None:
        self._pipes.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
