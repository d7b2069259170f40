"""The page's model picker and several videos, through the real app on `tiny`."""

import httpx
import numpy as np
from gradio_client import Client, handle_file

from svd.media import read_video

from .conftest import picture_data_uri
from .test_ui import newest_record, video_frames

SMALL = {"num_frames": 4, "width": 192, "height": 128}


def test_the_sliders_start_at_the_models_own(app_url, picture_path):
    """A script that leaves steps, fps and guidance at the page's values gets the video the
    API makes with them left out: the sliders start at the model's own, sent as left out."""
    url, out = app_url
    client = Client(url, verbose=False)
    page = client.predict(image=handle_file(picture_path), seed="5", **SMALL, api_name="/generate")
    sent = newest_record(out)["input"]
    api = httpx.post(f"{url}/fal-ai/svd", json={"image_url": picture_data_uri(), "seed": 5,
                                                 **SMALL}, timeout=120)  # fmt: skip
    assert api.status_code == 200, api.text
    made = read_video(out / api.json()["image"]["file_name"])[0]
    assert (sent["steps"], sent["fps"], sent["max_guidance_scale"]) == (20, 7, 3.0)
    assert np.array_equal(video_frames(page[0]), made)
