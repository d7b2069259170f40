"""Wrapper overhead: LocalBackend.generate against the same diffusers pipeline called directly.

Both sides load the picture, run the same pipeline with the same parameters and write the
mp4; the median of several runs of each, interleaved, is compared.
Usage: python bench/overhead.py [--runs 7] [--model tiny]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from svd.backends.local import LocalBackend  # noqa: E402
from svd.backends.tiny import build_tiny_pipeline  # noqa: E402
from svd.media import write_mp4  # noqa: E402
from svd.schema import SVDInput  # noqa: E402
from tests.conftest import make_picture  # noqa: E402

PARAMS = {"width": 192, "height": 128, "num_frames": 6, "steps": 3, "seed": 0}


def plain(pipe, image_path: str, out: Path) -> None:
    image = Image.open(image_path).convert("RGB").resize((PARAMS["width"], PARAMS["height"]))
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    image_path = str(tmp / "picture.png")
    make_picture().save(image_path)
    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    backend = LocalBackend(pipe=pipe, output_dir=tmp / "outputs")
    inp = SVDInput(image_url=image_path, **PARAMS)
    plain(pipe, image_path, tmp / "warm.mp4")
    backend.generate(inp)
    ours, theirs = [], []
    for i in range(args.runs):
        t = time.perf_counter()
        plain(pipe, image_path, tmp / f"plain-{i}.mp4")
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        backend.generate(inp, on_event=lambda e: None)
        ours.append(time.perf_counter() - t)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"tiny SVD {PARAMS}, {args.runs} runs, torch {torch.__version__}, {backend.device}")
    print(f"plain diffusers + mp4: {b:.3f} s (median)")
    print(f"LocalBackend.generate: {a:.3f} s (median)")
    print(f"overhead ratio: {a / b:.3f}")


if __name__ == "__main__":
    main()
