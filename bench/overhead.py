"""Wrapper overhead: a video made as the app makes it (svd.run around LocalBackend) against
the same diffusers pipeline called directly.

Both sides load the picture, fit it, run the same pipeline with the same parameters and
write the mp4; ours also keeps the input and the JSON record. Ours clears its conditioning
cache before each run: that cache's gain is cache.py's, not lower overhead.
Usage: python bench/overhead.py [--runs 7]
"""

from __future__ import annotations

import argparse

import torch
from common import PARAMS, environment, forget_pictures, make_video, paired, workdir
from PIL import Image, ImageOps

from svd.backends.local import LocalBackend
from svd.backends.tiny import build_tiny_pipeline
from svd.media import write_video
from svd.schema import SVDInput


def plain(pipe, image: str | Image.Image, out, params: dict = PARAMS) -> None:
    """diffusers' pipeline called directly on a picture (a path or an image), and the mp4."""
    size = (params["width"], params["height"])
    if isinstance(image, str):
        image = Image.open(image)
    image = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
    frames = pipe(
        image,
        height=params["height"],
        width=params["width"],
        num_frames=params["num_frames"],
        num_inference_steps=params["steps"],
        fps=7,
        motion_bucket_id=127,
        noise_aug_strength=0.02,
        decode_chunk_size=params["num_frames"],
        generator=torch.Generator("cpu").manual_seed(params["seed"]),
        output_type="np",
    ).frames[0]
    write_video(frames, 7, out, "mp4")


def main(runs: int = 7) -> None:
    tmp = workdir()
    picture = str(tmp / "picture.png")
    pipe = build_tiny_pipeline()
    backend = LocalBackend(pipe=pipe)
    inp = SVDInput(image_url=picture, **PARAMS)

    def ours():
        forget_pictures(backend)
        make_video(backend, inp, tmp / "outputs", on_event=lambda e: None)

    t = paired(runs, plain=lambda: plain(pipe, picture, tmp / "plain.mp4"), ours=ours)
    print(f"tiny SVD {PARAMS}, {environment(backend.device)}")
    print(f"plain diffusers + mp4: {t.spread('plain')} (median, min-max)")
    print(f"svd.run on LocalBackend: {t.spread('ours')}")
    print(f"overhead ratio, paired by round: {t.ratio('ours', 'plain')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="paired rounds")
    main(parser.parse_args().runs)
