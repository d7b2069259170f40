"""A tiny random-weight SVD for tests and offline demos. It animates noise, not pictures."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from torch import nn
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

from svd.controlnet import ControlNetSDV
from svd.models import MODELS

TINY_SIZE = MODELS["tiny"].size  # width, height: its default video size, quick on a CPU
TINY_FRAMES = MODELS["tiny"].frames


# The scheduler of SVD-XT's repo (svd/models.py).
XT_SCHEDULER = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "v_prediction", "sigma_max": 700.0, "sigma_min": 0.002,
    "steps_offset": 1, "timestep_spacing": "leading", "timestep_type": "continuous",
    "use_karras_sigmas": True,
}  # fmt: skip


def build_tiny_pipeline(seed: int = 0) -> StableVideoDiffusionPipeline:
    """Build the tiny SVD on the CPU in float32; the same weights on every machine."""
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=16,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        num_attention_heads=4,
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=96,
        num_frames=TINY_FRAMES,
    )
    # Four levels, so it down-samples 8x like the real VAE.
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
    )
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=224,
            patch_size=32,
        )
    )
    scheduler = EulerDiscreteScheduler(**XT_SCHEDULER)
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessorPil(crop_size=224, size=224),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_controlnet(unet: UNetSpatioTemporalConditionModel, seed: int = 0) -> ControlNetSDV:
    """A tiny ControlNet for the tiny UNet; its output convolutions are not zero, so depth
    maps visibly change the video."""
    torch.manual_seed(seed)
    net = ControlNetSDV.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    outputs = [*net.controlnet_down_blocks, net.controlnet_mid_block]
    for conv in [*outputs, net.controlnet_cond_embedding.conv_out]:
        nn.init.normal_(conv.weight, std=0.05)
    return net
