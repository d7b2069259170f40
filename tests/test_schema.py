import math

import pytest

from svd.errors import InputError
from svd.schema import FAL_FIELDS, File, SVDInput, SVDOutput, parse_input

IMG = {"image_url": "https://example.com/a.png"}


def test_defaults_are_fals():
    inp = parse_input(IMG)
    assert inp.motion_bucket_id == 127
    assert inp.cond_aug == 0.02
    assert inp.steps == 20
    assert inp.seed is None
    assert inp.mask_image_url is None and inp.control_maps_data_url is None
    assert inp.fps == 7
    assert inp.num_frames is None and inp.width is None and inp.height is None


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


def test_fal_arguments_carry_only_fal_fields():
    inp = parse_input({**IMG, "seed": 3, "fps": 12, "width": 512})
    body = inp.fal_arguments()
    assert set(body) <= FAL_FIELDS
    assert body == {**IMG, "seed": 3, "motion_bucket_id": 127, "cond_aug": 0.02, "steps": 20}


def test_output_shape_matches_fal():
    out = SVDOutput(
        image=File(url="https://x/v.mp4", content_type="video/mp4", file_name="v.mp4", file_size=9),
        seed=7,
    )
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
