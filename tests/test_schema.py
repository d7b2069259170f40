import math

import pytest

from svd.errors import InputError
from svd.schema import FAL_FIELDS, File, SVDInput, SVDOutput, parse_input

IMG = {"image_url": "https://example.com/a.png"}


def test_defaults_are_fals():
    from svd.models import DEFAULT

    inp = parse_input(IMG)
    assert inp.motion_bucket_id == 127
    assert inp.cond_aug == 0.02
    assert inp.steps is None and inp.with_defaults(DEFAULT).steps == 20  # the model's own
    assert inp.seed is None
    assert inp.mask_image_url is None and inp.control_maps_data_url is None
    assert inp.fps is None and inp.with_defaults(DEFAULT).fps == 7
    assert inp.num_frames is None and inp.width is None and inp.height is None
    assert inp.model is None and inp.num_videos == 1


def test_each_model_has_its_defaults_and_step_range():
    from svd.models import MODELS

    lcm = parse_input({**IMG, "model": "animatelcm-svd-xt"}).with_defaults(
        MODELS["animatelcm-svd-xt"]
    )
    assert (lcm.steps, lcm.fps, lcm.min_guidance_scale, lcm.max_guidance_scale) == (4, 8, 1.0, 1.2)
    assert "fps" not in lcm.model_fields_set  # filled, not asked
    v11 = parse_input({**IMG, "model": "svd-xt-1-1", "steps": 9}).with_defaults(
        MODELS["svd-xt-1-1"]
    )
    assert (v11.steps, v11.fps) == (9, 6)  # a value given stays
    with pytest.raises(InputError, match="^steps: animatelcm-svd-xt takes 1 to 20 steps; got 21"):
        parse_input({**IMG, "model": "animatelcm-svd-xt", "steps": 21})
    with pytest.raises(InputError, match="^steps: animatelcm-svd-xt takes 1 to 20"):
        parse_input({**IMG, "steps": 30}).with_defaults(MODELS["animatelcm-svd-xt"])
    with pytest.raises(InputError, match="^model: Input should be 'svd', 'svd-xt'"):
        parse_input({**IMG, "model": "svd-3"})
    with pytest.raises(InputError, match="^num_videos: Input should be less than or equal to 4"):
        parse_input({**IMG, "num_videos": 5})
    with pytest.raises(InputError, match="^control_maps_data_url: animatelcm-svd-xt does not"):
        parse_input({**IMG, "model": "animatelcm-svd-xt", "control_maps_data_url": "m.zip"})


def test_image_url_is_required():
    with pytest.raises(InputError) as e:
        parse_input({})
    assert e.value.field == "image_url"
    assert "required" in e.value.message.lower()
    with pytest.raises(InputError, match="image_url"):
        parse_input({"image_url": ""})


@pytest.mark.parametrize(
    "field, lo, hi",
    [
        ("motion_bucket_id", 1, 255),
        ("steps", 1, 100),
        ("fps", 1, 60),
        ("num_frames", 2, 64),  # one frame breaks diffusers' guidance schedule
        ("decode_chunk_size", 1, 64),
    ],
)
def test_integer_bounds(field, lo, hi):
    assert getattr(parse_input({**IMG, field: lo}), field) == lo
    assert getattr(parse_input({**IMG, field: hi}), field) == hi
    with pytest.raises(InputError) as e:
        parse_input({**IMG, field: lo - 1})
    assert e.value.field == field and str(lo) in e.value.message
    with pytest.raises(InputError) as e:
        parse_input({**IMG, field: hi + 1})
    assert e.value.field == field and str(hi) in e.value.message


def test_cond_aug_bounds():
    assert parse_input({**IMG, "cond_aug": 0}).cond_aug == 0
    assert parse_input({**IMG, "cond_aug": 10}).cond_aug == 10
    for bad in (-0.001, 10.001):
        with pytest.raises(InputError, match=r"cond_aug: .*(0|10)"):
            parse_input({**IMG, "cond_aug": bad})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, True, "0.5", None])
def test_cond_aug_must_be_a_finite_number(bad):
    with pytest.raises(InputError) as e:
        parse_input({**IMG, "cond_aug": bad})
    assert e.value.field == "cond_aug"


@pytest.mark.parametrize("field", ["motion_bucket_id", "steps", "seed", "fps", "num_frames"])
@pytest.mark.parametrize("bad", [True, False, 5.0, 5.5, "5", math.nan])
def test_integers_are_strict(field, bad):
    with pytest.raises(InputError) as e:
        parse_input({**IMG, field: bad})
    assert e.value.field == field


def test_seed_range():
    assert parse_input({**IMG, "seed": 0}).seed == 0
    assert parse_input({**IMG, "seed": 2**64 - 1}).seed == 2**64 - 1
    assert parse_input({**IMG, "seed": -(2**63)}).seed == -(2**63)
    with pytest.raises(InputError, match="seed"):
        parse_input({**IMG, "seed": 2**64})


@pytest.mark.parametrize("field", ["width", "height"])
def test_size_is_a_multiple_of_64(field):
    assert getattr(parse_input({**IMG, field: 64}), field) == 64
    assert getattr(parse_input({**IMG, field: 2048}), field) == 2048
    for bad in (0, 100, 2112):
        with pytest.raises(InputError) as e:
            parse_input({**IMG, field: bad})
        assert e.value.field == field


def test_unknown_fields_are_ignored_like_fal():
    inp = parse_input({**IMG, "sync_mode": True, "whatever": 1})
    assert "whatever" not in inp.model_dump()


def test_not_an_object():
    with pytest.raises(InputError, match="input"):
        parse_input(["image_url"])


def test_error_lists_every_problem():
    with pytest.raises(InputError) as e:
        parse_input({**IMG, "steps": 0, "motion_bucket_id": 999})
    assert {d["loc"][0] for d in e.value.details} == {"steps", "motion_bucket_id"}


def test_fal_arguments_carry_only_each_endpoints_fields():
    from svd.backends.fal import fal_arguments
    from svd.models import MODELS

    inp = parse_input({**IMG, "seed": 3, "fps": 12, "width": 512, "model": "svd-xt"})
    body = fal_arguments(inp.with_defaults(MODELS["svd-xt"]), "fal-ai/svd")
    assert set(body) <= FAL_FIELDS
    assert body == {**IMG, "seed": 3, "motion_bucket_id": 127, "cond_aug": 0.02, "steps": 20}
    lcm = parse_input({**IMG, "model": "animatelcm-svd-xt"})
    body = fal_arguments(lcm.with_defaults(MODELS["animatelcm-svd-xt"]), "fal-ai/fast-svd-lcm")
    assert body == {**IMG, "motion_bucket_id": 127, "cond_aug": 0.02, "steps": 4, "fps": 8}
    masked = parse_input({**IMG, "model": "animatelcm-svd-xt", "mask_image_url": "m.png"})
    with pytest.raises(InputError, match="^mask_image_url: fal-ai/fast-svd-lcm on fal does"):
        fal_arguments(masked, "fal-ai/fast-svd-lcm")


def test_output_shape_matches_fal():
    out = SVDOutput(
        image=File(url="https://x/v.mp4", content_type="video/mp4", file_name="v.mp4", file_size=9),
        seed=7,
    )
    assert set(out.model_copy(update={"seeds": [7, 8]}).model_dump()) == {"image", "seed", "seeds"}
    assert out.model_dump() == {
        "image": {
            "url": "https://x/v.mp4",
            "content_type": "video/mp4",
            "file_name": "v.mp4",
            "file_size": 9,
        },
        "seed": 7,
    }
    assert SVDInput.model_json_schema()["required"] == ["image_url"]
