"""Driving videos are read as a stream: frames counted, capped and picked, never all held."""

import re
import tracemalloc

import imageio_ffmpeg
import numpy as np
import pytest

from svd.archive import MAX_MAPS, read_archive
from svd.depth_video import FIELD, video_to_depth_archive
from svd.errors import InputError
from svd.media import read_video, read_video_bytes, write_video


def grey_clip(path, frames: int, width: int = 64, height: int = 48):
    """An mp4 whose frame i is a flat grey of level 20 + 2 * (i % 100), kept exactly (RGB, qp 0)."""
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=25, codec="libx264rgb", pix_fmt_out="rgb24",
        macro_block_size=1, output_params=["-preset", "ultrafast", "-qp", "0"],
        ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)
    for i in range(frames):
        writer.send(np.full((height, width, 3), 20 + 2 * (i % 100), np.uint8))
    writer.close()
    return str(path)


def test_a_clip_over_the_frame_cap_is_refused(use_settings, tmp_path):
    use_settings(max_video_frames="100")
    path = grey_clip(tmp_path / "long.mp4", 150)
    message = f"{FIELD}: the video has more than 100 frames (SVD_MAX_VIDEO_FRAMES)"
    with pytest.raises(InputError, match=re.escape(message)):
        video_to_depth_archive(path, "tiny")
    use_settings(max_video_frames="150")  # at the cap is fine
    assert len(read_video_bytes(open(path, "rb").read(), FIELD, pick=MAX_MAPS)) == MAX_MAPS


def test_frames_over_the_pixel_limit_are_refused_before_decoding(use_settings, tmp_path):
    use_settings(max_image_pixels="1000")
    data = open(grey_clip(tmp_path / "big.mp4", 3), "rb").read()
    with pytest.raises(InputError, match=r"64x48, over the 1,000 pixel limit \(SVD_MAX_IMAGE_"):
        read_video_bytes(data, FIELD, pick=MAX_MAPS)


def test_memory_is_bounded_by_the_frames_kept(tmp_path):
    path = grey_clip(tmp_path / "many.mp4", 1000, 320, 240)
    tracemalloc.start()
    try:
        frames = read_video(path, pick=MAX_MAPS)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kept = MAX_MAPS * 240 * 320 * 3  # 14.7 MB; all 1000 frames would be 230 MB
    assert frames.shape == (MAX_MAPS, 240, 320, 3)
    assert peak < 3 * kept + 4_000_000, f"peak {peak / 1e6:.0f} MB"


def test_the_picked_frames_are_evenly_spaced(tmp_path):
    path = grey_clip(tmp_path / "greys.mp4", 100)
    picked = read_video_bytes(open(path, "rb").read(), FIELD, pick=MAX_MAPS)
    index = np.linspace(0, 99, MAX_MAPS).round().astype(int)
    assert np.array_equal(picked, read_video(path)[0][index])
    assert np.array_equal(picked[:, 0, 0, 0], 20 + 2 * index)


def test_a_gif_driving_video(monkeypatch, tmp_path):
    greys = np.arange(80, dtype=np.uint8)[:, None, None, None] * 3
    path = write_video(np.broadcast_to(greys, (80, 48, 64, 3)), 10, tmp_path / "d.gif", "gif")
    frames, fps = read_video(path)
    assert frames.shape == (80, 48, 64, 3) and fps == 10
    picked = read_video_bytes(path.read_bytes(), FIELD, pick=MAX_MAPS)
    index = np.linspace(0, 79, MAX_MAPS).round().astype(int)
    assert np.array_equal(picked[:, 0, 0, 0], greys[index, 0, 0, 0])
    monkeypatch.setattr("svd.depth_video.MAX_MAPS", 4)  # a depth map costs 0.3 s on a CPU
    assert len(read_archive(video_to_depth_archive(str(path), "tiny"))) == 4
