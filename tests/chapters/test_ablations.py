"""Ablations: names, the delta table against the full recipe, the sentence."""

from __future__ import annotations

import pytest

from kdlib.chapters.ablations import PARTS, ablation_label, ablation_name, ablation_table, effect_sentence
from kdlib.train.config import ABLATIONS, TrainConfig
from kdlib.profiles import get_profile


def test_names_are_the_training_run_names():
    for term in ABLATIONS:
        assert ablation_name(term) == TrainConfig.from_profile(get_profile("tiny"), "paper", (term,)).run_name
    assert set(PARTS) == set(ABLATIONS)
    with pytest.raises(ValueError, match="unknown ablation 'kl'"):
        ablation_name("kl")


def test_delta_is_full_minus_ablated():
    results = {"student_kd": {"scene_aid": {"OA": 20.0}, "vqa_lr": {"mOA": 50.0}},
               "student_kd-no_align": {"scene_aid": {"OA": 15.0}, "vqa_lr": {"mOA": 50.0}},
               "student_kd-no_lm": {"scene_aid": {"OA": 25.0}, "vqa_lr": {"mOA": 40.0}}}
    table = ablation_table(results, ["scene_aid", "vqa_lr"], ["align", "lm"])
    assert list(table.index) == ["full recipe (student_kd)", f"without {PARTS['align']}", f"without {PARTS['lm']}"]
    assert table.loc[f"without {PARTS['align']}", "delta scene_aid OA"] == 5.0
    assert table.loc[f"without {PARTS['lm']}", "delta scene_aid OA"] == -5.0
    assert table.loc[f"without {PARTS['lm']}", "delta vqa_lr mOA"] == 10.0
    assert table.loc["full recipe (student_kd)", "vqa_lr mOA"] == 50.0
    said = effect_sentence(table)
    assert f"without {PARTS['align']}: worse on 1, better on 0, equal on 1 of 2 tasks" in said
    assert f"without {PARTS['lm']}: worse on 1, better on 1, equal on 0 of 2 tasks" in said


def test_labels_say_what_was_removed():
    assert ablation_label("student_kd-no_align") == f"student, distilled without {PARTS['align']}"
    assert ablation_label("student_kd-no_align-no_lm") == \
        f"student, distilled without {PARTS['align']} and {PARTS['lm']}"
    assert ablation_label("student_kd") == "student_kd" and ablation_label("student_kd-no_x") == "student_kd-no_x"
