import base64
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from svd.errors import InputError
from svd.fetch import read_url
from svd.media import as_uint8_frames, decode_image, fit_image, read_video, write_video

from .conftest import make_picture


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def http_server():
    """A plain HTTP server on 127.0.0.1 with a few fixed routes."""
    picture = png_bytes(make_picture())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", self.path.split("to=", 1)[1])
                self.end_headers()
                return
            if self.path == "/slow":
                time.sleep(3)
            if self.path == "/missing":
                self.send_error(404)
                return
            body = b"x" * 3_000_000 if self.path == "/big" else picture
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if self.path != "/big":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", picture
    server.shutdown()


@pytest.fixture
def allow_local_servers(use_settings):
    use_settings(allow_private_urls="1")


def test_read_http(http_server, allow_local_servers):
    base, picture = http_server
    assert read_url(f"{base}/a.png", "image_url") == picture
    assert read_url(f"{base}/redirect?to=/a.png", "image_url") == picture


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://localhost:8080/a.png",
        "http://10.1.2.3/a.png",
        "http://192.168.0.1/a.png",
        "http://172.16.5.4/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://100.64.0.1/a.png",
        "http://0.0.0.0/a.png",
    ],
)
def test_private_addresses_are_refused(use_settings, url):
    use_settings(allow_private_urls="")
    with pytest.raises(InputError, match="image_url: .*private or local address"):
        read_url(url, "image_url")


def test_redirects_are_checked_at_every_hop(use_settings, http_server):
    base, picture = http_server
    host = base.removeprefix("http://")
    use_settings(allow_private_urls=host)  # only this server
    assert read_url(f"{base}/a.png", "image_url") == picture
    inward = f"{base}/redirect?to=http://169.254.169.254/latest/meta-data/"
    with pytest.raises(InputError, match="169.254.169.254 is a private or local address"):
        read_url(inward, "image_url")
    with pytest.raises(InputError, match="redirected to something not http"):
        read_url(f"{base}/redirect?to=file:///etc/passwd", "image_url")
    with pytest.raises(InputError, match="cannot resolve"):
        read_url("http://no-such-host.invalid/a.png", "image_url")


def test_read_http_errors(http_server, allow_local_servers):
    base, _ = http_server
    with pytest.raises(InputError, match=r"image_url: .*404"):
        read_url(f"{base}/missing", "image_url")
    with pytest.raises(InputError, match=r"mask_image_url: .*1 MB limit"):
        read_url(f"{base}/big", "mask_image_url", max_bytes=1024 * 1024)
    with pytest.raises(InputError, match=r"image_url: .*longer than 0.5 s"):
        read_url(f"{base}/slow", "image_url", timeout=0.5)
    with pytest.raises(InputError, match="image_url: could not fetch"):
        read_url("http://127.0.0.1:9/none.png", "image_url")


def test_read_data_uri():
    data = b"\x89PNG fake bytes"
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    assert read_url(uri, "image_url") == data
    assert read_url("data:text/plain,hello%20world", "f") == b"hello world"
    with pytest.raises(InputError, match="bad base64"):
        read_url("data:image/png;base64,@@@", "image_url")
    with pytest.raises(InputError, match="no comma"):
        read_url("data:image/png;base64", "image_url")
    with pytest.raises(InputError, match="limit"):
        read_url("data:;base64," + "A" * 4000, "image_url", max_bytes=1000)


def test_read_local(tmp_path):
    path = tmp_path / "a b.bin"
    path.write_bytes(b"abc")
    assert read_url(str(path), "image_url") == b"abc"
    assert read_url(path.as_uri(), "image_url") == b"abc"
    with pytest.raises(InputError, match="no such file"):
        read_url(str(tmp_path / "nope.png"), "image_url")
    with pytest.raises(InputError, match="local files are not accepted"):
        read_url(str(path), "image_url", allow_local=False)
    with pytest.raises(InputError, match="unsupported URL scheme 'ftp'"):
        read_url("ftp://example.com/a.png", "image_url")


def test_decode_modes_become_rgb():
    rgb = make_picture(64, 48)
    for img in (rgb.convert("L"), rgb.convert("P"), rgb.convert("CMYK"), rgb.convert("RGBA")):
        fmt = "JPEG" if img.mode == "CMYK" else "PNG"
        out = decode_image(png_bytes(img, fmt), "image_url")
        assert out.mode == "RGB" and out.size == (64, 48)


def test_transparency_is_laid_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out = np.asarray(decode_image(png_bytes(img), "image_url"))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[4, 4]) == (255, 255, 255)


def test_16_bit_grayscale_is_scaled():
    arr = np.full((4, 4), 65535, np.uint16)
    arr[0, 0] = 0
    arr[1, 1] = 32768
    out = np.asarray(decode_image(png_bytes(Image.fromarray(arr)), "image_url"))
    assert out[0, 0, 0] == 0 and out[2, 2, 0] == 255 and abs(int(out[1, 1, 0]) - 128) <= 1


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    out = decode_image(png_bytes(img, "JPEG", exif=exif.tobytes(), quality=95), "image_url")
    assert out.size == (20, 40)
    arr = np.asarray(out).mean(axis=2)
    assert arr[:10].mean() > 200 and arr[-10:].mean() < 50  # the left side is now on top


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(decode_image(buf.getvalue(), "image_url"))
    assert out[8, 8, 0] > 200 and out[8, 8, 2] < 50


def test_bad_images_name_the_field():
    with pytest.raises(InputError, match="image_url: empty file"):
        decode_image(b"", "image_url")
    with pytest.raises(InputError, match="image_url: not a readable image"):
        decode_image(b"<html>not an image</html>", "image_url")
    truncated = png_bytes(make_picture())[:300]
    with pytest.raises(InputError, match="image_url"):
        decode_image(truncated, "image_url")
    with pytest.raises(InputError, match=r"image_url: image is 320x200, over the 1,000 pixel"):
        decode_image(png_bytes(make_picture()), "image_url", max_pixels=1000)


def test_fit_covers_and_crops_the_centre():
    img = Image.new("RGB", (300, 100), (0, 0, 0))
    img.paste((255, 255, 255), (100, 0, 200, 100))  # a white middle third
    out = fit_image(img, 128, 128)
    assert out.size == (128, 128)
    arr = np.asarray(out).mean(axis=2)
    assert arr[:, 10:-10].min() > 200  # only the middle survives the crop
    tall = fit_image(make_picture(100, 300), 256, 128)
    assert tall.size == (256, 128)


def test_mp4_round_trip(tmp_path):
    t = np.linspace(0, 1, 5)[:, None, None, None]
    frames = np.broadcast_to(t, (5, 64, 96, 3)).astype(np.float32)
    path = write_video(frames, 7, tmp_path / "v.mp4", "mp4")
    assert path.exists() and not (tmp_path / "v.mp4.part").exists()
    video, fps = read_video(path)
    assert video.shape == (5, 64, 96, 3) and fps == 7
    assert np.abs(video.astype(float) - frames * 255).mean() < 3


def test_mp4_plays_in_browsers(tmp_path):
    path = write_video(np.zeros((3, 32, 48, 3), np.uint8), 7, tmp_path / "v.mp4", "mp4")
    head = path.read_bytes()
    assert head[4:8] == b"ftyp"
    assert head.find(b"moov") < head.find(b"mdat")  # faststart: playable while loading
    assert b"avc1" in head  # H.264
    import subprocess

    import imageio_ffmpeg

    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
    )
    assert "h264" in probe.stderr and "yuv420p" in probe.stderr


def test_mp4_odd_sizes_are_trimmed(tmp_path):
    path = write_video(np.zeros((2, 33, 47, 3), np.uint8), 7, tmp_path / "v.mp4", "mp4")
    video, _ = read_video(path)
    assert video.shape == (2, 32, 46, 3)


def test_frames_from_pil_and_bad_shapes():
    pil = [make_picture(16, 8), make_picture(16, 8)]
    assert as_uint8_frames(pil).shape == (2, 8, 16, 3)
    with pytest.raises(ValueError, match="expected frames"):
        as_uint8_frames(np.zeros((2, 8, 8), np.uint8))


def test_requests_go_to_the_checked_address(http_server):
    import httpx

    from svd.fetch import pinned

    base, picture = http_server
    port = base.rsplit(":", 1)[1]
    target, headers, extensions = pinned(f"http://example.com:{port}/a.png", "127.0.0.1")
    assert target == f"http://127.0.0.1:{port}/a.png" and headers == {"Host": f"example.com:{port}"}
    assert httpx.get(target, headers=headers).content == picture
    target, headers, extensions = pinned("https://example.com/x?y=1", "2001:db8::1")
    assert target == "https://[2001:db8::1]/x?y=1" and extensions == {"sni_hostname": "example.com"}


@pytest.mark.parametrize("url", ["http://[::1/a.png", "http://example.com:99999/a.png"])
def test_malformed_urls(use_settings, url):
    use_settings(allow_private_urls="")
    with pytest.raises(InputError, match="image_url: malformed URL"):
        read_url(url, "image_url")
