"""Hostile and broken input, faults and load: clear errors, nothing lost, still serving."""

import json
import math
import struct
import zlib
from pathlib import Path
from urllib.parse import urlparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from svd.archive import read_archive
from svd.backends.local import LocalBackend
from svd.backends.tiny import build_tiny_pipeline
from svd.errors import BackendError, InputError
from svd.media import decode_image, read_video
from svd.models import MODELS
from svd.outputs import OutputStore
from svd.run import run
from svd.schema import parse_input

from .conftest import SMALL
from .test_archive import make_tar, make_zip, png

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["image_url", "mask_image_url", "control_maps_data_url", "motion_bucket_id", "cond_aug",
          "seed", "steps", "fps", "num_frames", "width", "height", "decode_chunk_size"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), JSON, max_size=8))
def test_any_json_body_is_accepted_or_refused_by_field(body):
    try:
        inp = parse_input(body)
    except InputError as e:
        assert e.field and e.message and e.details
        return
    assert inp.image_url and 1 <= inp.motion_bucket_id <= 255 and 1 <= (inp.steps or 1) <= 100
    assert inp.model is None or inp.model in MODELS
    assert math.isfinite(inp.cond_aug) and 0 <= inp.cond_aug <= 10


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_as_an_image(data):
    try:
        img = decode_image(data, "image_url")
    except InputError as e:
        assert e.field == "image_url"
    else:
        assert img.mode == "RGB"


VALID = [make_zip({"1.png": png(10), "2.png": png(20)}), make_tar({"1.png": png(10)}, "w:gz")]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
)
def test_fuzzed_archives(archive, flips):
    data = bytearray(archive)
    for at, value in flips:
        data[at % len(data)] = value
    try:
        entries = read_archive(bytes(data))
    except InputError as e:
        assert e.field == "control_maps_data_url"
    else:
        assert 1 <= len(entries) <= 64


def bomb_png(width: int, height: int) -> bytes:
    """A small PNG file that declares a huge image."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(InputError, match="over the 40,000,000 pixel limit"):
        decode_image(bomb_png(50_000, 50_000), "image_url")


@pytest.mark.parametrize("size", [(1, 1), (4000, 10), (10, 4000), (3, 2)])
def test_tiny_and_extreme_pictures_make_videos(tiny_backend, tmp_path, size, store):
    path = tmp_path / "odd.png"
    Image.new("RGB", size, (200, 50, 50)).save(path)
    out = run(tiny_backend, parse_input({"image_url": str(path), **SMALL}), store)
    assert read_video(urlparse(out.image.url).path)[0].shape == (6, 128, 192, 3)


class FailingUNet:
    """Wraps a UNet so that its second call fails like a GPU out of memory."""

    def __init__(self, unet):
        self.unet, self.calls = unet, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.unet(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.unet, name)


def test_out_of_memory_mid_run_then_the_next_run_works(tmp_path, picture_path, store):
    backend = LocalBackend(pipe=build_tiny_pipeline())
    pipe = backend.load()
    real = pipe.unet
    pipe.unet = FailingUNet(real)
    with pytest.raises(BackendError, match="out of memory: try fewer frames"):
        run(backend, parse_input({"image_url": picture_path, **SMALL}), store)
    assert not list(tmp_path.glob("outputs/*"))  # nothing half-made
    pipe.unet = real
    out = run(backend, parse_input({"image_url": picture_path, **SMALL}), store)
    assert Path(urlparse(out.image.url).path).exists()


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path, picture_path):
    blocked = tmp_path / "outputs"
    blocked.write_text("a file where the folder should be")
    backend = LocalBackend(pipe=build_tiny_pipeline())
    with pytest.raises(BackendError, match="could not save the video: ") as e:
        run(backend, parse_input({"image_url": picture_path, **SMALL}), OutputStore(blocked))
    assert str(tmp_path) not in str(e.value)  # no server path in what a visitor reads


@pytest.mark.parametrize(
    "error, said",
    [(OSError(30, "Read-only file system"), "the output folder is read-only"),
     (BrokenPipeError(32, "Broken pipe"), "the output folder is read-only"),
     (OSError(28, "No space left on device"), "the disk is full")],
)  # fmt: skip
def test_a_failed_save_says_why_in_a_few_true_words(tmp_path, error, said):
    store = OutputStore(tmp_path)
    with pytest.raises(BackendError) as e, store.saving("x"):
        raise error
    assert str(e.value) == f"could not save the video: {said}"


def test_history_survives_a_restart(tmp_path, picture_path, store):
    first = LocalBackend(pipe=build_tiny_pipeline())
    out = run(first, parse_input({"image_url": picture_path, "seed": 5, **SMALL}), store)
    again = OutputStore(store.root)  # as a new process would see it
    record = next(again.newest())
    assert record["seed"] == 5 and record["output"]["file_name"] == out.image.file_name
    (store.root / "broken.json").write_text("{not json")
    assert [r["seed"] for r in OutputStore(store.root).newest()] == [5]  # a bad one is skipped


def test_eight_page_requests_at_once(app_url, picture_path):
    import concurrent.futures

    from gradio_client import Client, handle_file

    from .test_ui import DEFAULTS

    url, out = app_url
    before = len(list(out.glob("*.mp4")))
    client = Client(url, verbose=False)
    fields = {**DEFAULTS, "image": handle_file(picture_path), "steps": 1, "num_frames": 2,
              "width": 128, "height": 64}  # fmt: skip
    jobs = [client.submit(**{**fields, "seed": str(i)}, api_name="/generate") for i in range(8)]
    import httpx

    assert httpx.get(url, timeout=5).status_code == 200  # the page answers meanwhile
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seeds = list(pool.map(lambda job: job.result(timeout=240)[1], jobs))
    assert sorted(int(s) for s in seeds) == list(range(8))
    assert len(list(out.glob("*.mp4"))) == before + 8
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert {r["seed"] for r in records} >= set(range(8))


@pytest.mark.parametrize("url", [
    "http://[64:ff9b::7f00:1]/",  # NAT64 to 127.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64 to 10.0.0.1
    "http://[2002:7f00:1::1]/",  # 6to4 from 127.0.0.1
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::ffff:169.254.169.254]/",  # mapped
])  # fmt: skip
def test_an_ipv6_address_standing_for_a_private_ipv4_one_is_refused(url):
    from svd import webhooks

    with pytest.raises(InputError, match="^fal_webhook: .* is a private or local address"):
        webhooks.check(url)
    assert webhooks.check("http://[2606:4700::1111]/hook") == "http://[2606:4700::1111]/hook"
