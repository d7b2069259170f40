"""The fast path: channels-last convolutions and regional torch.compile of the SVD UNet."""

from __future__ import annotations

import torch
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


def compile_unet(unet: nn.Module, **options) -> int:
    """Compile the UNet's repeated blocks in place (`options` go to torch.compile); the first
    run at each size pays the compilation. Returns how many blocks were compiled."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(
        config.accumulated_recompile_limit, RECOMPILE_LIMIT * 4
    )
    count = 0
    for module in unet.modules():
        if type(module).__name__ in REPEATED_BLOCKS:
            module.compile(**options)
            count += 1
    return count
