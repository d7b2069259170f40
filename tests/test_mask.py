import io
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from svd.errors import InputError
from svd.fetch import read_url
from svd.mask import mask_image, motion_map, strokes_to_mask
from svd.media import decode_image, read_video
from svd.outputs import OutputStore
from svd.run import run
from svd.schema import SVDInput

from .conftest import SMALL

W, H = SMALL["width"], SMALL["height"]


def save_mask(tmp_path, array, name="mask.png", mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    return str(path)


def half_mask(width=W, height=H):
    """Left half black (moves), right half white (still)."""
    m = np.full((height, width), 255, np.uint8)
    m[:, : width // 2] = 0
    return m


def load_motion_mask(url: str, width: int, height: int) -> np.ndarray:
    """The mask at `url`, fitted as a run fits it (1 moves, 0 stays still)."""
    picture = decode_image(read_url(url, "mask_image_url"), "mask_image_url")
    return motion_map(picture, width, height)


def frames_of(backend, picture_path, **fields):
    """One video, kept in outputs/ beside the picture (the `store` fixture's folder)."""
    inp = SVDInput(image_url=picture_path, **{**SMALL, "seed": 7, **fields})
    out = run(backend, inp, OutputStore(Path(picture_path).parent / "outputs"))
    return read_video(urlparse(out.image.url).path)[0].astype(np.float32), out


def motion(frames):
    """Per-pixel standard deviation across frames, averaged over colour."""
    return frames.std(axis=0).mean(axis=-1)


def test_white_half_stays_still_black_half_moves(tiny_backend, picture_path, tmp_path):
    mask = save_mask(tmp_path, half_mask())
    masked, _ = frames_of(tiny_backend, picture_path, mask_image_url=mask)
    free, _ = frames_of(tiny_backend, picture_path)
    edge, margin = W // 2, 8
    moving, still = motion(masked)[:, : edge - margin], motion(masked)[:, edge + margin :]
    assert still.mean() <= 0.05 * moving.mean()
    left, right = motion(free)[:, : edge - margin].mean(), motion(free)[:, edge + margin :].mean()
    assert 0.5 < left / right < 2  # without the mask both halves move alike


def test_still_region_shows_the_picture(tiny_backend, picture_path, tmp_path):
    white = np.full((H, W), 255, np.uint8)
    frames, _ = frames_of(tiny_backend, picture_path, mask_image_url=save_mask(tmp_path, white))
    picture = np.asarray(Image.open(picture_path).convert("RGB").resize((W, H)), np.float32)
    assert motion(frames).max() < 2  # a still video
    assert np.abs(frames - picture[None]).mean() < 4  # of the input picture


def test_all_black_mask_is_exactly_no_mask(tiny_backend, picture_path, tmp_path):
    black = np.zeros((H, W), np.uint8)
    masked, _ = frames_of(tiny_backend, picture_path, mask_image_url=save_mask(tmp_path, black))
    free, _ = frames_of(tiny_backend, picture_path)
    assert np.array_equal(masked, free)


def test_mask_is_fitted_like_the_picture(tmp_path):
    # A 3:1 mask cropped to 3:2 keeps columns 75-225; black 0-150 becomes the left half.
    m = np.full((100, 300), 255, np.uint8)
    m[:, :150] = 0
    moves = load_motion_mask(save_mask(tmp_path, m), W, H)
    assert moves.shape == (H, W)
    assert moves[:, :90].min() > 0.95 and moves[:, 102:].max() < 0.05


def test_grey_is_partial_and_transparent_is_still(tmp_path):
    grey = np.full((H, W), 128, np.uint8)
    assert abs(load_motion_mask(save_mask(tmp_path, grey), W, H).mean() - 0.5) < 0.01
    rgba = np.zeros((H, W, 4), np.uint8)  # transparent everywhere...
    rgba[:, :10] = (0, 0, 0, 255)  # ...but an opaque black strip
    moves = load_motion_mask(save_mask(tmp_path, rgba, "a.png", "RGBA"), W, H)
    assert moves[:, :8].min() > 0.99 and moves[:, 20:].max() < 0.01


def test_bad_masks_name_the_field(tiny_backend, picture_path, tmp_path, store):
    not_image = tmp_path / "mask.png"
    not_image.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (not_image, empty, tmp_path / "missing.png"):
        with pytest.raises(InputError) as e:
            inp = SVDInput(image_url=picture_path, mask_image_url=str(path), **SMALL)
            run(tiny_backend, inp, store)
        assert e.value.field == "mask_image_url"


def test_mask_is_kept_with_the_video(tiny_backend, picture_path, tmp_path):
    _, out = frames_of(tiny_backend, picture_path, mask_image_url=save_mask(tmp_path, half_mask()))
    video = Path(urlparse(out.image.url).path)
    kept = np.asarray(Image.open(video.with_name(video.stem + ".mask.png")))
    assert np.array_equal(kept, half_mask())


def test_mask_image_round_trip():
    moves = np.array([[1.0, 0.0], [0.5, 0.25]], np.float32)
    buf = io.BytesIO()
    mask_image(moves).save(buf, "PNG")
    assert np.asarray(Image.open(buf)).tolist() == [[0, 255], [128, 191]]


def test_painted_strokes_become_black_on_white():
    layer = np.zeros((4, 6, 4), np.uint8)
    layer[1:3, 2:4] = (255, 45, 85, 153)  # a translucent stroke
    other = np.zeros((4, 6, 4), np.uint8)
    other[0, 0, 3] = 255
    mask = np.asarray(strokes_to_mask([layer, other]))
    expected = np.full((4, 6), 255, np.uint8)
    expected[1:3, 2:4] = 0
    expected[0, 0] = 0
    assert np.array_equal(mask, expected)
    assert strokes_to_mask([np.zeros((4, 6, 4), np.uint8)]) is None
    assert strokes_to_mask(None) is None
