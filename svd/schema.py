"""The fal-ai/svd request and response contract, plus our optional extras."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

from svd import models
from svd.errors import InputError, RuleError

ModelName = Literal[tuple(models.MODELS)]  # the registry's names
MAX_VIDEOS = 4
SEED_MIN = -(2**63)
SEED_MAX = 2**64 - 1


def _int(lo: int, hi: int, **kw) -> object:
    return Field(strict=True, ge=lo, le=hi, **kw)


def _float(lo: float, hi: float, **kw) -> object:
    return Field(strict=True, ge=lo, le=hi, allow_inf_nan=False, **kw)


class SVDInput(BaseModel):
    """The fal-ai/svd input. Unknown fields are ignored, as fal does."""

    model_config = ConfigDict(extra="ignore")

    image_url: Annotated[str, Field(min_length=1, description="The image to animate.")]
    mask_image_url: Annotated[
        str | None,
        Field(min_length=1, description="Black moves, white stays still."),
    ] = None
    control_maps_data_url: Annotated[
        str | None,
        Field(min_length=1, description="An archive of per-frame depth maps."),
    ] = None
    control_video_url: Annotated[
        str | None,
        Field(min_length=1, description="A video whose depth, frame by frame, drives the run."),
    ] = None
    motion_bucket_id: Annotated[int, _int(1, 255, description="More motion the higher it is.")] = (
        127
    )
    cond_aug: Annotated[
        float, _float(0, 10, description="Noise added to the conditioning image.")
    ] = 0.02
    seed: Annotated[
        int | None,
        _int(SEED_MIN, SEED_MAX, description="Same seed and inputs, same video."),
    ] = None
    steps: Annotated[
        int | None,
        _int(
            1,
            100,
            description="Denoising steps; the model's own by default (20; "
            "4 for animatelcm-svd-xt, at most 20 there).",
        ),
    ] = None

    # Extras, not part of fal's schema. Each is optional and None means the default.
    model: Annotated[
        ModelName | None,
        Field(
            description="The model: "
            + "; ".join(models.described())
            + ". The server's default when left out."
        ),
    ] = None
    num_videos: Annotated[
        int, _int(1, MAX_VIDEOS, description="Videos to make, each from its own seed.")
    ] = 1
    fps: Annotated[
        int | None,
        _int(1, 60, description="Frames per second of the video; the model's own by default."),
    ] = None
    num_frames: Annotated[
        int | None,
        _int(2, 64, description="Frames to generate; the model's own by default."),
    ] = None
    width: Annotated[
        int | None,
        _int(64, 2048, multiple_of=64, description="Video width; 1024 by default."),
    ] = None
    height: Annotated[
        int | None,
        _int(64, 2048, multiple_of=64, description="Video height; 576 by default."),
    ] = None
    control_scale: Annotated[
        float, _float(0, 2, description="Strength of the depth control maps.")
    ] = 1.0
    resize_mode: Annotated[
        Literal["crop", "pad", "keep"],
        Field(description="crop: fill and cut (fal's); pad: add bars; keep: the picture's shape."),
    ] = "crop"
    loop: Annotated[
        Literal["none", "pingpong", "crossfade"],
        Field(description="Make the last frame flow into the first."),
    ] = "none"
    extend: Annotated[
        int, _int(0, 4, description="Continue from the last frame this many more times.")
    ] = 0
    interpolate: Annotated[
        int, _int(0, 4, description="New frames between each pair, by optical flow; 0: none.")
    ] = 0
    output_format: Annotated[
        Literal["mp4", "webm", "gif"],
        Field(description="mp4 (H.264), webm (VP9) or gif."),
    ] = "mp4"
    cache_interval: Annotated[
        int,
        _int(
            1,
            5,
            description="Run the UNet's deep layers every N steps and reuse them between "
            "(DeepCache): faster, slightly different. 1: off.",
        ),
    ] = 1
    decode_chunk_size: Annotated[
        int | None,
        _int(1, 64, description="Frames decoded at once; lower saves memory."),
    ] = None
    min_guidance_scale: Annotated[
        float | None,
        _float(
            0,
            20,
            description="Classifier-free guidance at the first frame; the model's own by default.",
        ),
    ] = None
    max_guidance_scale: Annotated[
        float | None,
        _float(
            0,
            20,
            description="Classifier-free guidance at the last frame; the model's own by default.",
        ),
    ] = None

    @model_validator(mode="after")
    def _one_way_to_drive_frames(self) -> SVDInput:
        if self.control_maps_data_url and self.control_video_url:
            raise RuleError(
                "control_video_url", "give control_maps_data_url or control_video_url, not both"
            )
        if self.extend and (self.control_maps_data_url or self.control_video_url):
            raise RuleError("extend", "cannot go with depth maps (the maps set the frames)")
        low, high = self.min_guidance_scale, self.max_guidance_scale
        if low is not None and high is not None and high < low:
            raise RuleError(
                "max_guidance_scale",
                f"must be at least min_guidance_scale ({low:g}); got {high:g}",
            )
        if self.model is not None:
            self._check_model(models.MODELS[self.model])
        return self

    def _check_model(self, spec: models.Model) -> None:
        lo, hi = spec.step_range
        if self.steps is not None and not lo <= self.steps <= hi:
            raise RuleError("steps", f"{spec.name} takes {lo} to {hi} steps; got {self.steps}")
        depth = "control_maps_data_url" if self.control_maps_data_url else "control_video_url"
        if getattr(self, depth) and "depth" not in spec.supports:
            raise RuleError(depth, f"{spec.name} does not take depth control")

    def with_defaults(self, spec: models.Model) -> SVDInput:
        """This request with what it leaves out set to `spec`'s defaults (steps, fps,
        guidance), checked against that model. The fields the caller set stay the set ones."""
        try:
            self._check_model(spec)
        except RuleError as e:
            raise InputError(e.field, str(e)) from None
        update = {k: v for k, v in spec.own.items() if getattr(self, k) is None}
        low = update.get("min_guidance_scale", self.min_guidance_scale)
        high = update.get("max_guidance_scale", self.max_guidance_scale)
        if self.max_guidance_scale is None:  # the model's maximum under the caller's minimum
            update["max_guidance_scale"] = max(low, high)
        elif high < low:  # the model's minimum over the caller's maximum
            update["min_guidance_scale"] = high
        filled = self.model_copy(update=update)
        object.__setattr__(filled, "__pydantic_fields_set__", set(self.model_fields_set))
        return filled


class FastSVDInput(SVDInput):
    """fal-ai/fast-svd-lcm's input: fal-ai/svd's with its own steps and fps, always on
    animatelcm-svd-xt; our extras work as they do there."""

    steps: Annotated[int, _int(1, 20, description="Denoising steps: more is finer and slower.")] = 4
    fps: Annotated[
        int, _int(1, 25, description="Frames per second: the higher, the faster it plays.")
    ] = 10
    model: Annotated[
        Literal["animatelcm-svd-xt"], Field(description="The model this endpoint runs.")
    ] = "animatelcm-svd-xt"


URL_FIELDS = ("image_url", "mask_image_url", "control_maps_data_url", "control_video_url")
FAL_FIELDS = frozenset({
    "image_url", "mask_image_url", "control_maps_data_url", "motion_bucket_id", "cond_aug",
    "seed", "steps",
})  # fmt: skip

EXTRA_FIELDS = frozenset(SVDInput.model_fields) - FAL_FIELDS


class File(BaseModel):
    """A file, as fal describes one."""

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None


class SVDOutput(BaseModel):
    """The fal-ai/svd output: the video and the seed used; with num_videos over 1, also
    every video and seed (`image` and `seed` are the first)."""

    image: File
    seed: int
    videos: list[File] | None = None
    seeds: list[int] | None = None

    @model_serializer(mode="wrap")
    def _as_fal(self, handler) -> dict:  # fal's two fields, the lists only when there are some
        data = handler(self)
        return {k: v for k, v in data.items() if k not in ("videos", "seeds") or v is not None}


class FastSVDOutput(BaseModel):
    """fal-ai/fast-svd-lcm's output: the video under `video`, and the seed; the lists as in
    SVDOutput."""

    video: File
    seed: int
    videos: list[File] | None = None
    seeds: list[int] | None = None


def parse_input(data: dict, schema: type[SVDInput] = SVDInput) -> SVDInput:
    """Validate a request body; raise InputError naming the field and the limit."""
    if not isinstance(data, dict):
        raise InputError("input", "expected a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise InputError.from_validation(e) from None
