"""A depth ControlNet for SVD, with the architecture and parameter names of the public
temporal ControlNet for SVD (CiaraRowles/temporal-controlnet-depth-svd-v1), so its
checkpoint loads with `from_pretrained`.

It copies the SVD UNet's encoder (conv_in, time embeddings, down blocks, mid block), adds a
per-frame conditioning embedding to the first features, and returns one residual per UNet
skip connection and one for the mid block, each through a 1x1 convolution.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import ConfigMixin, ModelMixin, UNetSpatioTemporalConditionModel

# diffusers internal: these module paths, not exported at the top level.
from diffusers.configuration_utils import register_to_config
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_3d_blocks import UNetMidBlockSpatioTemporal, get_down_block
from torch import nn

from svd.fast import REPEATED_BLOCKS

# diffusers internal: UNetSpatioTemporalConditionModel's attribute names.
COPIED_FROM_UNET = ("conv_in", "time_embedding", "add_embedding", "down_blocks", "mid_block")


def _per_block(value, n: int) -> list:
    return [value] * n if isinstance(value, int) else list(value)


class ControlNetSDV(ModelMixin, ConfigMixin):
    """ControlNet residuals for SVD's UNetSpatioTemporalConditionModel."""

    _repeated_blocks = REPEATED_BLOCKS  # for compile_repeated_blocks: the UNet's own blocks

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,  # kept for the published config; unused
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        up_block_types: tuple[str, ...] = (  # kept for the published config; unused
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int, ...] = 2,
        cross_attention_dim: int | tuple[int, ...] = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 10, 20),
        num_frames: int = 25,
        conditioning_channels: int = 3,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ):
        super().__init__()
        n = len(down_block_types)
        heads = _per_block(num_attention_heads, n)
        cross = _per_block(cross_attention_dim, n)
        layers = _per_block(layers_per_block, n)
        transformer_layers = _per_block(transformer_layers_per_block, n)
        time_dim = block_out_channels[0] * 4

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_dim)
        self.add_time_proj = Timesteps(addition_time_embed_dim, True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, time_dim)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=block_out_channels[0],
            conditioning_channels=conditioning_channels,
            block_out_channels=conditioning_embedding_out_channels,
        )

        self._add_down_blocks(down_block_types, block_out_channels, layers, transformer_layers,
                              cross, heads, time_dim)  # fmt: skip
        self.mid_block = UNetMidBlockSpatioTemporal(
            block_out_channels[-1],
            temb_channels=time_dim,
            transformer_layers_per_block=transformer_layers[-1],
            cross_attention_dim=cross[-1],
            num_attention_heads=heads[-1],
        )
        self.controlnet_mid_block = _zero_conv(block_out_channels[-1])

    def _add_down_blocks(self, down_block_types, block_out_channels, layers,
                         transformer_layers, cross, heads, time_dim) -> None:  # fmt: skip
        """The UNet's down blocks, each skip with its zero convolution."""
        n = len(down_block_types)
        self.down_blocks = nn.ModuleList()
        self.controlnet_down_blocks = nn.ModuleList([_zero_conv(block_out_channels[0])])
        out_ch = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            in_ch, out_ch = out_ch, block_out_channels[i]
            last = i == n - 1
            self.down_blocks.append(
                get_down_block(
                    block_type,
                    num_layers=layers[i],
                    transformer_layers_per_block=transformer_layers[i],
                    in_channels=in_ch,
                    out_channels=out_ch,
                    temb_channels=time_dim,
                    add_downsample=not last,
                    resnet_eps=1e-5,
                    cross_attention_dim=cross[i],
                    num_attention_heads=heads[i],
                    resnet_act_fn="silu",
                )
            )
            skips = layers[i] + (0 if last else 1)
            self.controlnet_down_blocks.extend(_zero_conv(out_ch) for _ in range(skips))

    @classmethod
    def from_unet(
        cls,
        unet: UNetSpatioTemporalConditionModel,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        load_weights_from_unet: bool = True,
    ) -> ControlNetSDV:
        """A ControlNet shaped like `unet`, its encoder weights copied (how one is trained)."""
        keep = set(inspect.signature(cls.__init__).parameters) - {"up_block_types", "out_channels"}
        config = {k: v for k, v in unet.config.items() if k in keep}
        net = cls(**config, conditioning_embedding_out_channels=conditioning_embedding_out_channels)
        if load_weights_from_unet:
            for name in COPIED_FROM_UNET:
                getattr(net, name).load_state_dict(getattr(unet, name).state_dict())
        if net.dtype != unet.dtype:
            net.to(dtype=unet.dtype)
        return net.to(unet.device)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        levels: int | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Residuals for the UNet's skips (in its order) and its mid block.

        sample: (batch, frames, 8, h, w), as the UNet gets it; controlnet_cond: (batch,
        frames, 3, 8h, 8w) in -1..1. Residuals come out frame-flattened, times the scale.
        `levels` runs only that many down blocks: the skips they make, and no mid residual.
        """
        batch, frames = sample.shape[:2]
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=sample.device)
        timestep = timestep.reshape(-1)[:1].to(sample.device).expand(batch)
        emb = self.time_embedding(self.time_proj(timestep).to(sample.dtype))
        time_ids = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1)
        emb = emb + self.add_embedding(time_ids.to(emb.dtype))
        emb = emb.repeat_interleave(frames, dim=0)
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)
        indicator = torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device)

        hidden = self.conv_in(sample.flatten(0, 1))
        cond = controlnet_cond.flatten(0, 1).to(hidden.dtype)
        hidden = hidden + self.controlnet_cond_embedding(cond)
        skips = [hidden]
        blocks = self.down_blocks if levels is None else self.down_blocks[:levels]
        for block in blocks:
            # diffusers internal: the SVD blocks' forward keyword names, as the UNet calls them.
            kwargs = {"temb": emb, "image_only_indicator": indicator}
            if getattr(block, "has_cross_attention", False):
                kwargs["encoder_hidden_states"] = context
            hidden, res = block(hidden_states=hidden, **kwargs)
            skips.extend(res)
        convs = self.controlnet_down_blocks[: len(skips)]
        down = [conv(s) * conditioning_scale for conv, s in zip(convs, skips, strict=True)]
        if len(blocks) < len(self.down_blocks):
            return down, None
        hidden = self.mid_block(
            hidden_states=hidden,
            temb=emb,
            encoder_hidden_states=context,
            image_only_indicator=indicator,
        )
        return down, self.controlnet_mid_block(hidden) * conditioning_scale


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv
