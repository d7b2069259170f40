"""Loading a model's pipeline from the hub (or its cache) or a folder, and the words for one
that is not there. A model with a `unet_file` (AnimateLCM) is its own UNet over its base
model's other parts, sampled by its own scheduler."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from diffusers import StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel

from svd import models
from svd.consistency import ConsistencyScheduler
from svd.controlnet import ControlNetSDV
from svd.errors import BackendError

log = logging.getLogger(__name__)


def load_pretrained(model: str, dtype: torch.dtype, **parts) -> StableVideoDiffusionPipeline:
    """Load a hub id or a local folder; the fp16 files where there are some and fp16 is
    asked. `parts` replace the repo's own (a UNet, a scheduler)."""
    if dtype == torch.float16:
        try:
            return StableVideoDiffusionPipeline.from_pretrained(
                model, dtype=dtype, variant="fp16", **parts
            )
        except (OSError, ValueError):
            log.info("no fp16 variant of %s; loading the full-precision files", model)
    return StableVideoDiffusionPipeline.from_pretrained(model, dtype=dtype, **parts)


def load_unet_file(spec: models.Model, dtype: torch.dtype) -> UNetSpatioTemporalConditionModel:
    """`spec`'s UNet: the base model's UNet config, filled with the state dict in the file at
    the root of `spec.repo` (diffusers' key names; every key must be there)."""
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    base = models.MODELS[spec.base]
    config = UNetSpatioTemporalConditionModel.load_config(base.repo, subfolder="unet")
    with torch.device("meta"):  # no random weights made only to be overwritten
        unet = UNetSpatioTemporalConditionModel.from_config(config)
    weights = load_file(hf_hub_download(spec.repo, spec.unet_file))
    unet.load_state_dict(weights, strict=True, assign=True)
    return unet.to(dtype=dtype).eval()


def load_model(
    spec: models.Model | None, source: str, dtype: torch.dtype,
    base: StableVideoDiffusionPipeline | None = None,
) -> StableVideoDiffusionPipeline:  # fmt: skip
    """The pipeline of `source` (a hub id or folder; `spec` its registry entry, if any). A
    model over a base model shares the base's loaded parts when `base` is given."""
    if spec is None or spec.unet_file is None:
        return load_pretrained(source, dtype)
    unet, scheduler = load_unet_file(spec, dtype), scheduler_for(spec)
    if base is not None:
        parts = {k: v for k, v in base.components.items() if k not in ("unet", "scheduler")}
        return StableVideoDiffusionPipeline(unet=unet, scheduler=scheduler, **parts)
    return load_pretrained(models.MODELS[spec.base].repo, dtype, unet=unet, scheduler=scheduler)


def scheduler_for(spec: models.Model) -> ConsistencyScheduler:
    if spec.scheduler != "consistency":
        raise ValueError(f"{spec.name}: no scheduler named {spec.scheduler!r}")
    return ConsistencyScheduler()


def load_controlnet(source: str, dtype: torch.dtype) -> ControlNetSDV:
    """A depth ControlNet from a hub id or folder, in its `controlnet` subfolder or at its root."""
    error: Exception | None = None
    for where in ({"subfolder": "controlnet"}, {}):
        try:
            return ControlNetSDV.from_pretrained(source, dtype=dtype, **where)
        except (OSError, ValueError) as e:
            error = e
    raise BackendError(f"could not load the ControlNet {source!r} (SVD_CONTROLNET): {error}")


def not_here(model: str, error: Exception, name: str | None = None) -> str:
    """Why `model` did not load, and how to get it (an error names the `model` field or
    setting; a folder's path is the host's business, not said). `name`: the registry name
    a request asked for."""
    kind = type(error).__name__
    if Path(model).exists():
        return f"model: the folder SVD_MODEL names holds no loadable pipeline ({kind})"
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return f"model: SVD_MODEL names no hub id and no folder there is ({kind})"
    spec = models.find(name or model)
    repos = [model]
    if spec is not None and spec.base:
        repos.append(models.MODELS[spec.base].repo)
    called = f"{name} ({model})" if name else model
    fetch = " and ".join(f"`hf download {r}`" for r in repos)
    elsewhere = "" if name else ", or point SVD_MODEL at a folder that holds them"
    return (
        f"model: the weights of {called} are not on this machine and could not be fetched "
        f"({kind}). Get them with {fetch} (accept the model's licence on Hugging Face and "
        f"`hf auth login` first if it is gated){elsewhere}"
    )
