import pytest

from kdlib.profiles import PROFILE_NAMES, get_profile, parse_overrides, profiles_table


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profiles_build_and_validate(name):
    p = get_profile(name)
    assert p.name == name
    assert p.vision.num_image_tokens > 0


def test_tiny_teacher_is_larger_than_student():
    p = get_profile("tiny")
    assert p.teacher.hidden_size > p.student.hidden_size
    assert p.teacher.num_layers > p.student.num_layers


def test_paper_matches_geochat_setup():
    p = get_profile("paper")
    assert p.vision.num_image_tokens == 1296  # 504 / 14 = 36; 36^2
    assert (p.lora.r, p.lora.alpha, p.lora.dropout) == (64, 16, 0.05)
    assert p.train.batch_size == 144 and p.train.grounding_steps == 1600


def test_override_converts_strings_to_field_types():
    p = get_profile("tiny", parse_overrides(["train.kd_steps=5", "train.lr=0.01", "student.keep_layers=0,1",
                                             "vision.name_or_path=none"]))
    assert p.train.kd_steps == 5 and p.train.lr == 0.01
    assert p.student.keep_layers == (0, 1)
    assert p.vision.name_or_path is None


def test_override_returns_a_copy():
    base = get_profile("tiny")
    changed = base.override({"train.kd_steps": base.train.kd_steps + 1})
    assert changed.train.kd_steps == base.train.kd_steps + 1
    assert get_profile("tiny").train.kd_steps == base.train.kd_steps


@pytest.mark.parametrize("bad, message", [
    ({"train.nope": "1"}, "no field 'train.nope'"),
    ({"train.lr": "fast"}, "cannot read 'fast' as float"),
    ({"train.mix_alpha": "1.5"}, "mix_alpha"),
    ({"vision.image_size": "65"}, "not a multiple of patch_size"),
    ({"teacher.hidden_size": "32"}, "teacher must be larger"),
])
def test_bad_overrides_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        get_profile("tiny", bad)


def test_unknown_profile_and_malformed_override():
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        parse_overrides(["train.kd_steps"])


def test_profiles_table_lists_every_profile():
    lines = profiles_table().splitlines()
    assert all(name in lines[0] for name in PROFILE_NAMES)
    assert any("MBZUAI/geochat-7B" in line for line in lines)
