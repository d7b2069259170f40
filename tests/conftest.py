import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SMALL = {"width": 192, "height": 128, "num_frames": 6, "steps": 3}


def make_picture(width: int = 320, height: int = 200) -> Image.Image:
    """A smooth, asymmetric test picture: gradients and a dark square in one corner."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, 1 - x / width], axis=-1) * 255
    rgb[: height // 4, : width // 4] = 20
    return Image.fromarray(rgb.astype(np.uint8))


def picture_data_uri(width: int = 320, height: int = 200) -> str:
    """The test picture as a PNG `data:` URI."""
    import base64
    import io

    buffer = io.BytesIO()
    make_picture(width, height).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def picture_path(tmp_path):
    path = tmp_path / "picture.png"
    make_picture().save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_backend():
    from svd.backends.local import LocalBackend

    return LocalBackend(model="tiny")


@pytest.fixture
def store(tmp_path):
    """Where a test's runs keep their videos and records: outputs/ in its folder."""
    from svd.outputs import OutputStore

    return OutputStore(tmp_path / "outputs")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The real app on `tiny`, one per test module: (url, output folder)."""
    from .live import start_app, stop_app

    out = tmp_path_factory.mktemp("app") / "outputs"
    out.mkdir()
    proc, url = start_app(out)
    yield url, out
    stop_app(proc)
