"""The local backend: diffusers' StableVideoDiffusionPipeline, loaded once and kept warm."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from svd import models
from svd.archive import depth_strip, maps_from_archive
from svd.backends.base import BackendBase, EventHandler, Preview, Stage, Step, emit
from svd.backends.tiny import build_tiny_controlnet, build_tiny_pipeline
from svd.control import depth_control, maps_to_cond
from svd.controlnet import ControlNetSDV
from svd.errors import BackendError
from svd.fast import channels_last, compile_unet
from svd.mask import MotionMask, mask_image, motion_map
from svd.media import as_uint8_frames, decode_image, fit_image, video_size
from svd.outputs import OutputStore
from svd.pipeline import SVDPipeline
from svd.preview import EVERY, LatentPreview
from svd.reuse import feature_reuse
from svd.run import Prepared, Rendered
from svd.schema import EXTRA_FIELDS, SVDInput
from svd.settings import settings
from svd.ticks import ticking

log = logging.getLogger(__name__)

DEFAULT_MODEL = models.DEFAULT.repo
DEFAULT_CONTROLNET = "CiaraRowles/temporal-controlnet-depth-svd-v1"  # trained on SVD, 14 frames
MASK_SEED_OFFSET = 0x9E3779B9  # the mask's noise must not repeat the pipeline's


def pick_device() -> str:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def random_seed() -> int:
    """A seed for a request that gave none."""
    return secrets.randbelow(2**32)


def load_pretrained(model: str, dtype: torch.dtype) -> StableVideoDiffusionPipeline:
    """Load a hub id or a local folder; the fp16 files where there are some and fp16 is asked."""
    if dtype == torch.float16:
        try:
            return StableVideoDiffusionPipeline.from_pretrained(model, dtype=dtype, variant="fp16")
        except (OSError, ValueError):
            log.info("no fp16 variant of %s; loading the full-precision files", model)
    return StableVideoDiffusionPipeline.from_pretrained(model, dtype=dtype)


def load_controlnet(source: str, dtype: torch.dtype) -> ControlNetSDV:
    """A depth ControlNet from a hub id or folder, in its `controlnet` subfolder or at its root."""
    error: Exception | None = None
    for where in ({"subfolder": "controlnet"}, {}):
        try:
            return ControlNetSDV.from_pretrained(source, dtype=dtype, **where)
        except (OSError, ValueError) as e:
            error = e
    raise BackendError(f"could not load the ControlNet {source!r} (SVD_CONTROLNET): {error}")


def not_here(model: str, error: Exception) -> str:
    """Why `model` did not load, and how to get it (an error names the `model` setting; a
    folder's path is the host's business, not said)."""
    kind = type(error).__name__
    if Path(model).exists():
        return f"model: the folder SVD_MODEL names holds no loadable pipeline ({kind})"
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return f"model: SVD_MODEL names no hub id and no folder there is ({kind})"
    return (
        f"model: the weights of {model} are not on this machine and could not be fetched "
        f"({kind}). Get them with `hf download {model}` (accept the model's licence on "
        "Hugging Face and `hf auth login` first if it is gated), or point SVD_MODEL at a "
        "folder that holds them"
    )


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

    def __init__(
        self,
        model: str | None = None,
        controlnet: str | ControlNetSDV | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        pipe: StableVideoDiffusionPipeline | None = None,
        output_dir: str | None = None,
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
        self.store = OutputStore(output_dir or config.output_dir)
        self._pipe = SVDPipeline.of(pipe) if pipe is not None else None
        if self._pipe is not None:
            if self.memory == "low":
                self._place(self._pipe)
            self._speed_up(self._pipe.unet, self._pipe.vae)
        if pipe is not None and self.explicit_model is None:
            self.model = getattr(pipe, "name_or_path", None) or "custom pipeline"
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
        return self._pipe is not None

    def load(self) -> SVDPipeline:
        """The pipeline, loaded on first use."""
        with self._load_lock:
            if self._pipe is None:
                self._pipe = self._load()
            return self._pipe

    def _load(self) -> SVDPipeline:
        started = time.perf_counter()
        if self.model == "tiny":
            pipe = build_tiny_pipeline()
        else:
            try:
                pipe = load_pretrained(self.model, self.dtype)
            except Exception as e:  # offline, no cache, gated, bad folder...
                if self.explicit_model is not None:
                    raise BackendError(not_here(self.model, e)) from e
                self.notice = (
                    f"The model {self.model} could not be loaded ({type(e).__name__}), so this "
                    "runs on 'tiny', a small random-weight test model: its videos are noise. "
                    "Set SVD_MODEL to a hub id or a local folder with the weights."
                )
                log.warning(self.notice)
                self.model = "tiny"
                pipe = build_tiny_pipeline()
        pipe = SVDPipeline.of(pipe)
        if pipe.dtype != self.dtype:
            pipe.to(dtype=self.dtype)
        self._place(pipe)
        self._speed_up(pipe.unet, pipe.vae)
        pipe.set_progress_bar_config(disable=True)
        elapsed = time.perf_counter() - started
        log.info("loaded %s on %s in %.1f s", self.model, self.device, elapsed)
        return pipe

    def load_controlnet(self) -> ControlNetSDV:
        """The depth ControlNet, loaded on first use (`SVD_CONTROLNET`)."""
        pipe = self.load()
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

    def default_size(self) -> tuple[int, int]:
        return self.spec.size

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
        """Fit the inputs to the model's size and denoise (each `extend` segment going on
        from the last frame)."""
        inp = prepared.inp
        picture = decode_image(prepared.data["image_url"], "image_url")
        seed = inp.seed if inp.seed is not None else random_seed()
        if not self.loaded:
            emit(on_event, Stage("loading model"))
        pipe = self.load()
        width, height = self._size(inp, picture.size)
        image = fit_image(picture, width, height, inp.resize_mode)
        kept = {"input": image}
        num_frames = inp.num_frames or self.default_frames()
        control, controlnet = contextlib.nullcontext(), None
        if prepared.maps is not None:
            maps = maps_from_archive(prepared.maps, width, height, inp.resize_mode)
            num_frames, kept["depth"] = len(maps), depth_strip(maps)  # one frame per map
            cond = maps_to_cond(maps, pipe._execution_device, pipe.unet.dtype)
            net = self.load_controlnet()
            control = depth_control(pipe.unet, net, cond, inp.control_scale)
            controlnet = self.controlnet_name
        moves = None
        if "mask_image_url" in prepared.data:
            mask = decode_image(prepared.data["mask_image_url"], "mask_image_url")
            moves = motion_map(mask, width, height, inp.resize_mode)
            kept["mask"] = mask_image(moves)
        emit(on_event, Stage("denoising"))
        with self._run_lock, control:
            try:
                frames = self._segments(pipe, image, inp, num_frames, seed, moves, on_event)
            except RuntimeError as e:  # torch's out-of-memory error is a RuntimeError too
                raise _run_error(e) from e
            finally:
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
        facts = {
            "model": self.model, "device": self.device, "fast": self.fast,
            "dtype": str(self.dtype).removeprefix("torch."), "controlnet": controlnet,
            "width": width, "height": height, "num_frames": num_frames,
        }  # fmt: skip
        return Rendered(seed, frames=frames, fps=inp.fps, kept=kept, facts=facts)

    def _segments(self, pipe, image, inp, num_frames, seed, moves, on_event) -> np.ndarray:
        """The run's frames; with `extend`, more segments, each from the last frame."""
        segments, start = [], image
        masked = moves is not None and moves.min() < 1.0  # else exactly a run without one
        for n in range(inp.extend + 1):
            part_seed = (seed + n) % 2**64
            mask = None
            if masked:  # the still part stays the picture in every segment
                mask = MotionMask(moves, image, (part_seed + MASK_SEED_OFFSET) % 2**64)
            steps = (n * inp.steps, (inp.extend + 1) * inp.steps)
            part = self._denoise(pipe, start, inp, num_frames, part_seed, mask, steps, on_event)
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

    def _denoise(self, pipe, image, inp, num_frames, seed, mask, steps, on_event) -> np.ndarray:
        """One run of diffusers' pipeline: float frames (N, H, W, 3) in 0-1.

        `steps` is (steps done before, steps in all), for progress over several segments.
        """
        done, total = steps
        preview = LatentPreview(self.preview_every)

        def on_step_end(pipeline, i, t, kwargs):
            latents = kwargs["latents"]
            # diffusers' Euler scheduler: sigmas[i] is the step's noise level, [i + 1] the next
            sigmas = pipeline.scheduler.sigmas
            picture = preview.after_step(latents, sigmas, i, inp.steps)
            if mask is not None:
                if i == 0:
                    mask.prepare(pipeline, tuple(latents.shape))
                kwargs["latents"] = mask.blend_latents(latents, float(sigmas[i + 1]))
            emit(on_event, Step(done + i + 1, total))
            if picture is not None:
                emit(on_event, Preview(picture, done + i + 1, total))
            if i + 1 == inp.steps:
                emit(on_event, Stage("decoding"))
            return kwargs

        # Ticks are Python calls inside compiled blocks on the fast path: there a run stops
        # at the step's end.
        ticks = contextlib.nullcontext() if self.fast else ticking(pipe, on_event)
        with feature_reuse(pipe.unet, inp.cache_interval), ticks:
            return pipe(
                image,
                height=image.height,
                width=image.width,
                num_frames=num_frames,
                num_inference_steps=inp.steps,
                fps=inp.fps,
                motion_bucket_id=inp.motion_bucket_id,
                noise_aug_strength=inp.cond_aug,
                min_guidance_scale=inp.min_guidance_scale,
                max_guidance_scale=inp.max_guidance_scale,
                decode_chunk_size=inp.decode_chunk_size or self._decode_chunk(num_frames),
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
                callback_on_step_end=on_step_end,
            ).frames[0]

    def _size(self, inp: SVDInput, picture: tuple[int, int]) -> tuple[int, int]:
        return video_size(picture, self.default_size(), inp.width, inp.height, inp.resize_mode)

    def default_frames(self) -> int:
        """Frames a run makes when none are asked: the loaded UNet's, else by the model's name."""
        if self._pipe is not None:
            return self._pipe.unet.config.num_frames or self.spec.frames
        return self.spec.frames

    def _decode_chunk(self, num_frames: int) -> int:
        # diffusers' docs suggest 8 on a GPU to bound memory (2 with SVD_MEMORY=low).
        if self.memory == "low":
            return min(2, num_frames)
        return min(8, num_frames) if self.device != "cpu" else num_frames

    def close(self) -> None:
        self._pipe = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
