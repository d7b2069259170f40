import pytest
from gradio_client import Client, handle_file

from svd.media import read_video

from .live import start_app, stop_app


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("app") / "outputs"
    out.mkdir()
    proc, url = start_app(out)
    yield url, out
    stop_app(proc)


def test_page_generates_a_video(app_url, picture_path):
    url, out = app_url
    client = Client(url, verbose=False)
    video, seed, status = client.predict(
        image=handle_file(picture_path),
        motion_bucket_id=90,
        cond_aug=0.1,
        seed=1234,
        steps=2,
        api_name="/generate",
    )
    assert seed == 1234
    frames = read_video(video["video"] if isinstance(video, dict) else video)[0]
    assert frames.shape == (14, 128, 256, 3)
    assert "tiny" in status
    assert len(list(out.glob("*.mp4"))) == 1 and len(list(out.glob("*.json"))) == 1


def test_empty_seed_is_drawn(app_url, picture_path):
    client = Client(app_url[0], verbose=False)
    _, seed, _ = client.predict(
        image=handle_file(picture_path),
        motion_bucket_id=127,
        cond_aug=0.02,
        seed=None,
        steps=1,
        api_name="/generate",
    )
    assert isinstance(seed, int)


def test_errors_name_the_field_and_the_app_keeps_serving(app_url, picture_path):
    client = Client(app_url[0], verbose=False)
    with pytest.raises(Exception, match="image_url: upload an image"):
        client.predict(
            image=None, motion_bucket_id=127, cond_aug=0.02, seed=1, steps=1, api_name="/generate"
        )
    _, seed, _ = client.predict(
        image=handle_file(picture_path), motion_bucket_id=127, cond_aug=0.02, seed=2, steps=1,
        api_name="/generate",
    )  # fmt: skip
    assert seed == 2
