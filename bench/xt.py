"""The SVD-XT architecture with random weights, from the configs of
stabilityai/stable-video-diffusion-img2vid-xt (speed does not depend on the weights)."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

from svd.backends.tiny import build_tiny_pipeline

SIZE = (1024, 576)  # width, height
FRAMES = 25

UNET = {  # unet/config.json
    "sample_size": 96,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
}
VAE = {  # vae/config.json
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "force_upcast": True,
}
CLIP = {  # image_encoder/config.json: ViT-H/14
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 16,
    "num_hidden_layers": 32,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}


def build_xt(device: str = "cpu", dtype: torch.dtype = torch.float16):
    """SVD-XT with random weights, built straight on `device` ("meta" builds no weights)."""
    diffusers_logging.set_verbosity_error()  # casting the built models is meant here
    tiny = build_tiny_pipeline()  # for its scheduler, the XT's
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**UNET)
        vae = AutoencoderKLTemporalDecoder(**VAE)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP))
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=clip,
        unet=unet,
        scheduler=tiny.scheduler,
        feature_extractor=CLIPImageProcessorPil(crop_size=224, size=224),
    )
    pipe.set_progress_bar_config(disable=True)
    # Some scalars are made on the CPU whatever the default device; this moves them too.
    return pipe.to(device, dtype)
