"""Depth control around diffusers' own SVD UNet: ControlNet residuals added through hooks.

diffusers' UNetSpatioTemporalConditionModel takes no residuals, so for the length of a run
hooks compute the ControlNet's residuals from the UNet's own inputs and add them to the skip
connections the up blocks receive and to the mid block's output. The pipeline is unforked.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from diffusers import UNetSpatioTemporalConditionModel

from svd.controlnet import ControlNetSDV


def down_block_skips(unet: UNetSpatioTemporalConditionModel) -> list[int]:
    """How many skips each down block hands to the up blocks: its resnets and downsampler."""
    # diffusers internal: the SVD down blocks' `resnets` and `downsamplers`, one skip each.
    return [len(b.resnets) + (1 if b.downsamplers else 0) for b in unet.down_blocks]


def skip_multipliers(unet: UNetSpatioTemporalConditionModel) -> list[int]:
    """How many times each skip gets its residual: once per down block from its own on.

    The published checkpoint was trained with a UNet that re-adds the residuals after
    every down block, so a skip made early gets its residual more often; this keeps that.
    """
    n = len(unet.down_blocks)
    counts = [n]  # the conv_in skip
    for i, skips in enumerate(down_block_skips(unet)):
        counts += [n - i] * skips
    return counts


def maps_to_cond(maps: np.ndarray, device, dtype) -> torch.Tensor:
    """Depth maps (frames, H, W) in 0-1 as the ControlNet's input: (1, frames, 3, H, W) in -1..1."""
    cond = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    cond = cond[None, :, None].expand(-1, -1, 3, -1, -1) * 2.0 - 1.0
    return cond.to(device=device, dtype=dtype)


def skip_levels(unet: UNetSpatioTemporalConditionModel) -> list[int]:
    """For each skip, how many down blocks must run to make it (0 for conv_in's)."""
    levels = [0]
    for i, skips in enumerate(down_block_skips(unet)):
        levels += [i + 1] * skips
    return levels


def up_block_slices(unet: UNetSpatioTemporalConditionModel) -> list[slice]:
    """Which of the down blocks' skips each up block takes, in up-block order."""
    slices, end = [], sum(len(block.resnets) for block in unet.up_blocks)
    # diffusers internal: the UNet hands its skips to the up blocks from the end, by `resnets`.
    for block in unet.up_blocks:
        slices.append(slice(end - len(block.resnets), end))
        end -= len(block.resnets)
    return slices


@contextmanager
def depth_control(
    unet: UNetSpatioTemporalConditionModel,
    controlnet: ControlNetSDV,
    cond: torch.Tensor,
    scale: float = 1.0,
):
    """While open, every UNet call is conditioned on `cond` (see `maps_to_cond`).

    On a step that reuses deep features (`svd.reuse`) only the last up block runs, so the
    ControlNet runs only as deep as that block's skips.
    """
    multipliers, slices = skip_multipliers(unet), up_block_slices(unet)
    shallow = max(skip_levels(unet)[slices[-1]])
    state: dict = {}

    def before_unet(module, args, kwargs):
        # diffusers internal: the UNet's forward names, as the SVD pipeline passes them.
        sample = args[0] if args else kwargs["sample"]
        down, mid = controlnet(
            sample,
            args[1] if len(args) > 1 else kwargs["timestep"],
            encoder_hidden_states=kwargs["encoder_hidden_states"],
            added_time_ids=kwargs["added_time_ids"],
            controlnet_cond=cond.expand(sample.shape[0], *cond.shape[1:]),  # both CFG halves
            conditioning_scale=scale,
            levels=shallow if getattr(module, "reusing_features", False) else None,
        )
        state.update(down=[r * m for r, m in zip(down, multipliers, strict=False)], mid=mid)

    def before_up_block(index):
        def hook(module, args, kwargs):
            residual = state["down"][slices[index]]
            # diffusers internal: the UNet passes an up block its skips as this keyword.
            skips = kwargs["res_hidden_states_tuple"]
            added = tuple(s + r for s, r in zip(skips, residual, strict=True))
            kwargs["res_hidden_states_tuple"] = added
            return args, kwargs

        return hook

    def after_mid_block(module, args, output):
        return output + state["mid"]

    # Hooks go on the blocks themselves, not on feature reuse's stand-ins for them.
    # diffusers internal: the UNet's `up_blocks` and `mid_block`, hooked by those names.
    up_blocks = [getattr(block, "reused_block", block) for block in unet.up_blocks]
    mid_block = getattr(unet.mid_block, "reused_block", unet.mid_block)
    handles = [unet.register_forward_pre_hook(before_unet, with_kwargs=True)]
    handles += [
        block.register_forward_pre_hook(before_up_block(i), with_kwargs=True)
        for i, block in enumerate(up_blocks)
    ]
    handles.append(mid_block.register_forward_hook(after_mid_block))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        state.clear()
