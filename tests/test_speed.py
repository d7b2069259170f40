import numpy as np
import pytest
import torch

from svd.backends.tiny import build_tiny_pipeline
from svd.pipeline import SVDPipeline

from .conftest import make_picture


@pytest.fixture(scope="module")
def plain():
    return build_tiny_pipeline()


def frames(pipe, picture, seed=0, **kw):
    kw = {"num_frames": 4, "num_inference_steps": 2, **kw}
    out = pipe(
        picture,
        height=128,
        width=192,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kw,
    )
    return out.frames[0]


def test_conditioning_cache_keeps_outputs_identical(plain):
    cached = SVDPipeline.of(plain)
    picture = make_picture(192, 128)
    runs = [
        ({"seed": 1}, {"embedding": 0, "latent": 0}),
        ({"seed": 1, "motion_bucket_id": 30}, {"embedding": 1, "latent": 1}),
        ({"seed": 1, "num_inference_steps": 3}, {"embedding": 2, "latent": 2}),
        ({"seed": 2}, {"embedding": 3, "latent": 2}),  # new noise on the picture
        ({"seed": 3, "noise_aug_strength": 0.0}, {"embedding": 4, "latent": 2}),
        ({"seed": 4, "noise_aug_strength": 0.0}, {"embedding": 5, "latent": 3}),  # no noise
    ]
    for kw, hits in runs:
        assert np.array_equal(frames(cached, picture, **kw), frames(plain, picture, **kw)), kw
        assert cached.hits == hits, kw


def test_conditioning_cache_tells_pictures_apart(plain):
    cached = SVDPipeline.of(plain)
    one, other = make_picture(192, 128), make_picture(192, 128)
    other.putpixel((100, 100), (255, 0, 0))  # one pixel apart
    frames(cached, one, seed=1)
    assert np.array_equal(frames(cached, other, seed=1), frames(plain, other, seed=1))
    assert cached.hits == {"embedding": 0, "latent": 0}


def test_conditioning_cache_is_bounded(plain):
    cached = SVDPipeline.of(plain)
    for n in range(6):
        frames(cached, make_picture(192 + n, 128), seed=n, num_inference_steps=1)
    assert len(cached.embeddings) == 4 and len(cached.latents) == 4
