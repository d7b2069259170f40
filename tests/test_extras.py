"""Beyond fal: the picture's shape, loops and formats, on both backends."""

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

import svd.run
from svd.media import keep_size, read_video
from svd.outputs import OutputStore
from svd.post import apply_loop
from svd.schema import SVDInput, parse_input

from .conftest import SMALL


def run(backend, picture, **fields):
    """One video, kept in outputs/ beside the picture (the `store` fixture's folder)."""
    inp = SVDInput(image_url=picture, **{**SMALL, "seed": 2, **fields})
    out = svd.run.run(backend, inp, OutputStore(Path(picture).parent / "outputs"))
    return out, read_video(urlparse(out.image.url).path)[0].astype(np.float32)


def test_keep_size_follows_the_picture():
    pixels = 1024 * 576
    assert keep_size(1024, 576, pixels) == (1024, 576)
    assert keep_size(576, 1024, pixels) == (576, 1024)  # portraits stay portraits
    assert keep_size(1000, 1000, pixels) == (768, 768)
    assert keep_size(100_000, 10, pixels) == (2048, 64)


def test_resize_modes(tiny_backend, tmp_path):
    portrait = tmp_path / "portrait.png"
    Image.new("RGB", (300, 600), (250, 250, 250)).save(portrait)
    _, kept = run(tiny_backend, str(portrait), width=None, height=None, resize_mode="keep")
    assert kept.shape[1] > kept.shape[2]  # taller than wide
    out, padded = run(tiny_backend, str(portrait), resize_mode="pad", steps=1)
    assert padded.shape[1:3] == (128, 192)
    video = urlparse(out.image.url).path
    fitted = np.asarray(Image.open(video.replace(".mp4", ".input.png")), np.float32)
    assert fitted[:, :40].max() == 0 and fitted[:, 80:110].min() > 240  # bars beside it


def test_loops_join_the_ends():
    t = np.arange(12, dtype=np.float32)[:, None, None, None] * np.ones((12, 2, 2, 3), np.float32)
    ping = apply_loop(t, "pingpong")
    assert len(ping) == 22 and ping[11, 0, 0, 0] == 11 and ping[-1, 0, 0, 0] == 1
    fade = apply_loop(t, "crossfade")
    steps = np.abs(np.diff(np.concatenate([fade, fade[:1]]), axis=0)).max(axis=(1, 2, 3))
    assert len(fade) == 9 and steps.max() <= 2 * np.median(steps) + 1e-6  # no jump at the seam
    assert apply_loop(t[:2], "crossfade").shape == (2, 2, 2, 3)


def seam(frames):
    """The last-to-first step against the median adjacent step."""
    steps = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(len(frames) - 1)]
    return np.abs(frames[0] - frames[-1]).mean(), np.median(steps)


@pytest.mark.parametrize("loop, frames", [("pingpong", 10), ("crossfade", 5)])
def test_loop_on_a_generated_video(tiny_backend, picture_path, loop, frames):
    _, video = run(tiny_backend, picture_path, loop=loop)
    assert len(video) == frames
    last_to_first, typical = seam(video)
    assert last_to_first <= 1.5 * typical + 1


@pytest.mark.parametrize(
    "fmt, kind, head", [("webm", "video/webm", b"\x1aE\xdf\xa3"), ("gif", "image/gif", b"GIF8")]
)
def test_formats(tiny_backend, picture_path, fmt, kind, head):
    out, video = run(tiny_backend, picture_path, output_format=fmt)
    path = urlparse(out.image.url).path
    assert out.image.content_type == kind and out.image.file_name.endswith(f".{fmt}")
    assert open(path, "rb").read(4) == head and video.shape == (6, 128, 192, 3)


def test_fal_videos_get_loops_and_formats_here(monkeypatch, tmp_path, picture_path, store):
    from svd.backends.fal import FalBackend

    from .fal_emulator import FalEmulator, point_fal_client_at

    with FalEmulator(key="k") as fal:
        point_fal_client_at(fal, monkeypatch)
        backend = FalBackend(poll_interval=0.01)
        out = svd.run.run(
            backend, SVDInput(image_url=picture_path, loop="pingpong", output_format="gif"), store
        )
    frames = read_video(urlparse(out.image.url).path)[0]
    assert len(frames) == 6 and out.image.content_type == "image/gif"  # 4 frames, ping-ponged
    assert "loop" not in fal.requests[-1].body and list(store.root.glob("*.mp4")) == []


def moving_texture(frames: int = 9) -> np.ndarray:
    """A smooth random texture sliding 3 pixels a frame: a video with known in-betweens."""
    import cv2

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((200, 300, 3)) * 255).astype(np.uint8), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    return np.stack([texture[20:116, 10 + 3 * i : 138 + 3 * i] for i in range(frames)])


def psnr(a, b) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_flow_interpolation_beats_a_crossfade():
    from svd.post import interpolate

    frames = moving_texture()
    kept, held_out = frames[::2], frames[1::2]
    made = interpolate(kept, 1)
    assert len(made) == 2 * len(kept) - 1 and np.array_equal(made[::2], kept)
    flow = np.mean([psnr(a, b) for a, b in zip(made[1::2], held_out, strict=True)])
    fade = np.mean(
        [
            psnr((a.astype(float) + b) / 2, t)
            for a, b, t in zip(kept[:-1], kept[1:], held_out, strict=True)
        ]
    )
    assert flow > fade + 5, (flow, fade)  # measured: 43.2 dB against 27.9 dB


@pytest.mark.parametrize("between", [1, 3])
def test_interpolated_runs_keep_their_duration(tiny_backend, picture_path, between):
    out, video = run(tiny_backend, picture_path, interpolate=between)
    frames, fps = read_video(urlparse(out.image.url).path)
    assert len(frames) == 6 + 5 * between and fps == 7 * (between + 1)


def test_extend_goes_on_from_the_last_frame(tiny_backend, picture_path, tmp_path, store):
    events = []
    out = svd.run.run(
        tiny_backend,
        SVDInput(image_url=picture_path, **{**SMALL, "seed": 4, "extend": 2}),
        store,
        events.append,
    )
    video = read_video(urlparse(out.image.url).path)[0].astype(np.float32)
    assert len(video) == 6 + 5 + 5
    steps = [np.abs(video[i + 1] - video[i]).mean() for i in range(len(video) - 1)]
    for cut in (5, 10):  # the joins are ordinary steps
        assert steps[cut] <= 2 * np.median(steps) + 1, (cut, steps)
    assert [e.index for e in events if type(e).__name__ == "Step"] == list(range(1, 10))

    mask = np.full((128, 192), 255, np.uint8)
    mask[:, :96] = 0
    Image.fromarray(mask).save(tmp_path / "m.png")
    _, masked = run(tiny_backend, picture_path, extend=1, mask_image_url=str(tmp_path / "m.png"))
    spread = masked.std(axis=0).mean(axis=-1)
    assert len(masked) == 11 and spread[:, 104:].mean() <= 0.05 * spread[:, :88].mean()


def test_extend_with_depth_maps_is_refused(tiny_backend, picture_path, tmp_path):
    from svd.errors import InputError

    from .test_control import depth_zip

    maps = depth_zip(tmp_path, "m.zip", [1, 2, 3])
    with pytest.raises(InputError, match="extend: cannot go with depth maps"):
        parse_input({"image_url": picture_path, "extend": 1, "control_maps_data_url": maps})


def driving_video(tmp_path, frames: int = 5) -> str:
    """A small mp4: a bright disc moving right over a dark ramp."""
    from svd.media import write_video

    y, x = np.mgrid[0:64, 0:96]
    video = []
    for i in range(frames):
        img = np.repeat((y * 2.0)[..., None], 3, axis=2)
        img[(x - 20 - 12 * i) ** 2 + (y - 32) ** 2 < 150] = 250
        video.append(img.astype(np.uint8))
    return str(write_video(np.stack(video), 7, tmp_path / "drive.mp4", "mp4"))


def test_depth_maps_from_a_driving_video(tiny_backend, picture_path, tmp_path):
    from svd.archive import read_archive
    from svd.depth_video import video_to_depth_archive

    archive = video_to_depth_archive(driving_video(tmp_path), "tiny")
    entries = read_archive(archive)
    assert [e.name for e in entries] == [f"depth/frame_{i:04d}.png" for i in range(1, 6)]
    out, video = run(tiny_backend, picture_path, control_video_url=driving_video(tmp_path))
    assert len(video) == 5  # frames = the video's frames
    kept = Path(urlparse(out.image.url).path).with_suffix(".depth.zip")
    assert read_archive(kept.read_bytes())[0].name == "depth/frame_0001.png"
    (tmp_path / "maps.zip").write_bytes(archive)
    with pytest.raises(Exception, match="not both"):
        run(tiny_backend, picture_path, control_video_url=driving_video(tmp_path),
            control_maps_data_url=str(tmp_path / "maps.zip"))  # fmt: skip


def test_a_driving_video_for_fal_becomes_uploaded_maps(
    use_settings, monkeypatch, tmp_path, picture_path, store
):
    from svd.archive import read_archive
    from svd.backends.fal import FalBackend

    from .fal_emulator import FalEmulator, point_fal_client_at

    use_settings(depth_model="tiny")
    with FalEmulator(key="k") as fal:
        point_fal_client_at(fal, monkeypatch)
        svd.run.run(
            FalBackend(poll_interval=0.01),
            SVDInput(image_url=picture_path, control_video_url=driving_video(tmp_path)),
            store,
        )
    sent = fal.requests[-1].body
    assert "control_video_url" not in sent
    uploaded = {u.url: u for u in fal.uploads}[sent["control_maps_data_url"]]
    assert len(read_archive(uploaded.data)) == 5
