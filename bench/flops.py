"""Where the work of an SVD-XT video goes, counted in FLOPs on the real architecture.

Runs every model of SVD-XT on PyTorch's meta device under its FLOP counter: no weights, no
GPU, a few seconds. This bounds what each speed-up can give at 1024x576 and 25 frames,
whatever the machine. Usage: python bench/flops.py [--steps 25]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xt import FRAMES, SIZE, build_xt  # noqa: E402

from svd.controlnet import ControlNetSDV  # noqa: E402
from svd.reuse import feature_reuse  # noqa: E402

META = torch.device("meta")
DTYPE = torch.float16


def flops(fn) -> float:
    """TFLOPs that `fn` runs; its tensors live on the meta device."""
    with FlopCounterMode(display=False) as counter, META:
        fn()
    return counter.get_total_flops() / 1e12


def meta(*shape) -> torch.Tensor:
    return torch.empty(*shape, device=META, dtype=DTYPE)


def main(steps: int = 25) -> None:
    pipe = build_xt("meta", DTYPE)
    width, height = SIZE
    h, w = height // 8, width // 8
    batch = 2  # classifier-free guidance: both halves in one batch
    sample, hidden = meta(batch, FRAMES, 8, h, w), meta(batch, 1, 1024)
    ids, t = meta(batch, 3), torch.tensor([1.0], device=META)

    def unet_step():
        pipe.unet(sample, t, encoder_hidden_states=hidden, added_time_ids=ids)

    full = flops(unet_step)
    with feature_reuse(pipe.unet, 2):
        flops(unet_step)  # a full step, keeps the feature
        reused = flops(unet_step)
    with META:
        net = ControlNetSDV().to(META, DTYPE)
    cond = meta(batch, FRAMES, 3, height, width)
    control = flops(
        lambda: net(
            sample, t, encoder_hidden_states=hidden, added_time_ids=ids, controlnet_cond=cond
        )  # fmt: skip
    )
    shallow = flops(
        lambda: net(
            sample,
            t,
            encoder_hidden_states=hidden,
            added_time_ids=ids,
            controlnet_cond=cond,
            levels=1,
        )  # fmt: skip
    )
    clip = flops(lambda: pipe.image_encoder(meta(1, 3, 224, 224)))
    encode = flops(lambda: pipe.vae.encode(meta(1, 3, height, width)))
    decode = flops(lambda: pipe.vae.decode(meta(FRAMES, 4, h, w), num_frames=FRAMES))
    video = steps * full + clip + encode + decode

    print(f"SVD-XT at {width}x{height}, {FRAMES} frames, {steps} steps, CFG batch of 2")
    print(f"UNet step: {full:.1f} TFLOPs; with reused deep features: {reused:.1f} "
          f"({reused / full:.3f} of a full step)")  # fmt: skip
    print(f"ControlNet: {control:.1f} TFLOPs a step; a step with it costs "
          f"{(full + control) / full:.3f} plain steps")  # fmt: skip
    print(f"ControlNet on a step that reuses deep features: {shallow:.1f} TFLOPs "
          f"({shallow / control:.3f} of its full cost)")  # fmt: skip
    print(f"CLIP image encode {clip:.3f}, VAE encode {encode:.2f}, VAE decode {decode:.1f} TFLOPs")
    print(f"video: {video:.0f} TFLOPs; the denoising loop is {steps * full / video:.3f} of it")
    print(f"conditioning cache, most it can save: {(clip + encode) / video:.4f} of a video")
    for interval in (2, 3, 4):
        fulls = -(-steps // interval)
        cost = fulls * full + (steps - fulls) * reused + clip + encode + decode
        controlled = cost + fulls * control + (steps - fulls) * shallow
        print(f"cache_interval={interval}: {video / cost:.2f}x fewer FLOPs per video; "
              f"{(video + steps * control) / controlled:.2f}x with depth maps")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=25)
    main(parser.parse_args().steps)
