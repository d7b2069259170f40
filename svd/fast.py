"""The fast path: channels-last convolutions and regional torch.compile of the SVD UNet."""

from __future__ import annotations

import torch
from diffusers import ModelMixin
from torch import nn

# The UNet's repeated blocks. Compiling these rather than the whole UNet compiles each kind
# once, and leaves the hooks on the larger blocks (ControlNet, feature reuse) outside the graphs.
REPEATED_BLOCKS = ("SpatioTemporalResBlock", "TransformerSpatioTemporalModel")


def channels_last(model: nn.Module) -> None:
    """Store the 2-D convolutions' weights channels-last. `model.to(memory_format=...)` fails
    on SVD, whose temporal layers hold 5-D weights, so it goes layer by layer."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)


# SVD-XT's UNet alone has 12 resnet shapes that share one forward; each is its own entry.
RECOMPILE_LIMIT = 64


def compile_unet(unet: ModelMixin, **options) -> int:
    """Compile the UNet's (or ControlNet's) repeated blocks in place with diffusers'
    `compile_repeated_blocks` (`options` go to torch.compile); the first run at each size pays
    the compilation. Returns how many blocks were compiled."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(
        config.accumulated_recompile_limit, RECOMPILE_LIMIT * 4
    )
    if not unet._repeated_blocks:  # diffusers internal: SVD's UNet sets none; set per instance
        unet._repeated_blocks = REPEATED_BLOCKS
    unet.compile_repeated_blocks(**options)
    return sum(type(m).__name__ in unet._repeated_blocks for m in unet.modules())
