"""Feature reuse across denoising steps (DeepCache) for diffusers' SVD UNet.

Deep UNet features change little from one step to the next. Every `interval` steps the UNet
runs in full and the output of its second-last up block is kept; on the steps between, only
the shallow path runs (conv_in, the first down block, the last up block) and the kept
feature stands in for everything deeper. Faster, and slightly different from a full run.
"""

from __future__ import annotations

from contextlib import contextmanager

from diffusers import UNetSpatioTemporalConditionModel
from torch import nn

from svd.control import down_block_skips


class Skippable(nn.Module):
    """A UNet block that runs on full steps and is stood in for on reuse steps."""

    def __init__(self, block: nn.Module, state: dict, keep: bool = False, outputs: int = 0):
        super().__init__()
        self.block = block
        self.state = state
        self.keep = keep  # this block's output is the feature reused
        self.outputs = outputs  # skips a down block hands on; 0 for other blocks

    @property
    def reused_block(self) -> nn.Module:
        """The block stood in for."""
        return self.block

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # diffusers internal: the UNet reads resnets, has_cross_attention
            return getattr(self._modules["block"], name)

    def forward(self, *args, **kwargs):
        if not self.state["reuse"]:
            out = self.block(*args, **kwargs)
            if self.keep:
                self.state["kept"] = out
            return out
        if self.keep:
            return self.state["kept"]
        # diffusers internal: blocks take `hidden_states`; down blocks return (hidden, skips).
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        # Placeholders: the blocks that would read them are skipped too.
        return (hidden, (hidden,) * self.outputs) if self.outputs else hidden


@contextmanager
def feature_reuse(unet: UNetSpatioTemporalConditionModel, interval: int):
    """While open, the UNet runs in full every `interval` calls (one call is one step) and
    reuses its deep features in between. Enter it once per run; 1 leaves the UNet as it is."""
    if interval <= 1:
        yield
        return
    state = {"reuse": False, "kept": None, "calls": 0}
    down, mid, up = list(unet.down_blocks), unet.mid_block, list(unet.up_blocks)

    def before_unet(module, args):
        state["reuse"] = state["calls"] % interval != 0 and state["kept"] is not None
        state["calls"] += 1
        module.reusing_features = state["reuse"]  # read by the depth control's hook

    skips = down_block_skips(unet)
    # diffusers internal: the UNet's down_blocks, mid_block and up_blocks, swapped in place.
    for i, block in enumerate(down[1:], start=1):
        unet.down_blocks[i] = Skippable(block, state, outputs=skips[i])
    unet.mid_block = Skippable(mid, state)
    for i, block in enumerate(up[:-1]):
        unet.up_blocks[i] = Skippable(block, state, keep=i == len(up) - 2)
    handle = unet.register_forward_pre_hook(before_unet, prepend=True)
    try:
        yield
    finally:
        handle.remove()
        unet.__dict__.pop("reusing_features", None)
        for i, block in enumerate(down):
            unet.down_blocks[i] = block
        unet.mid_block = mid
        for i, block in enumerate(up):
            unet.up_blocks[i] = block
        state.clear()
