"""Wrapper overhead: LocalBackend.generate against the same diffusers pipeline called directly.

Both sides load the picture, run the same pipeline with the same parameters and write the
mp4. Usage: python bench/overhead.py [--runs 7]
"""

from __future__ import annotations

import argparse

import torch
from common import PARAMS, medians, workdir
from PIL import Image, ImageOps

from svd.backends.local import LocalBackend
from svd.backends.tiny import build_tiny_pipeline
from svd.media import write_mp4
from svd.schema import SVDInput


def plain(pipe, image_path: str, out) -> None:
    size = (PARAMS["width"], PARAMS["height"])
    image = ImageOps.fit(Image.open(image_path).convert("RGB"), size, Image.Resampling.LANCZOS)
    frames = pipe(
        image,
        height=PARAMS["height"],
        width=PARAMS["width"],
        num_frames=PARAMS["num_frames"],
        num_inference_steps=PARAMS["steps"],
        fps=7,
        motion_bucket_id=127,
        noise_aug_strength=0.02,
        decode_chunk_size=PARAMS["num_frames"],
        generator=torch.Generator("cpu").manual_seed(PARAMS["seed"]),
        output_type="np",
    ).frames[0]
    write_mp4(frames, 7, out)


def main(runs: int = 7) -> None:
    tmp = workdir()
    picture = str(tmp / "picture.png")
    pipe = build_tiny_pipeline()
    backend = LocalBackend(pipe=pipe, output_dir=tmp / "outputs")
    inp = SVDInput(image_url=picture, **PARAMS)

    def ours():
        backend.load().clear_cache()  # its gain is measured apart, in cache.py
        backend.generate(inp, on_event=lambda e: None)

    t = medians(runs, plain=lambda: plain(pipe, picture, tmp / "plain.mp4"), ours=ours)
    print(f"tiny SVD {PARAMS}, {runs} runs, torch {torch.__version__}, {backend.device}")
    print(f"plain diffusers + mp4: {t['plain']:.3f} s (median)")
    print(f"LocalBackend.generate: {t['ours']:.3f} s (median)")
    print(f"overhead ratio: {t['ours'] / t['plain']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    main(parser.parse_args().runs)
