"""Tables for the evaluation chapters (kdlib.evaluate.report)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kdlib.evaluate.paper import paper_value
from kdlib.evaluate.report import (SCENE_COLUMNS, VQA_COLUMNS, balanced_tasks, binomial_interval, class_counts,
                                   comparison_table, interval_table, is_balanced, kd_verdict, most_confused,
                                   no_class_share, one_column_if_balanced, row_normalised)
from kdlib.evaluate.scene import OTHER


def confusion() -> pd.DataFrame:
    classes = ["beach", "forest", "river"]
    counts = [[8, 2, 0, 0], [0, 5, 1, 4], [0, 0, 0, 0]]
    return pd.DataFrame(counts, index=classes, columns=[*classes, OTHER])


def test_row_normalised_rows_sum_to_one_or_zero() -> None:
    rates = row_normalised(confusion())
    assert rates.sum(axis=1).tolist() == [1.0, 1.0, 0.0]
    assert rates.at["forest", "river"] == 0.1


def test_most_confused_pairs_leave_other_apart() -> None:
    assert most_confused(confusion(), k=5) == [("beach", "forest", 0.2, 2), ("forest", "river", 0.1, 1)]
    assert no_class_share(confusion()) == 20.0


def test_comparison_table_puts_the_paper_beside_ours() -> None:
    results = {"student_kd": {"scene_ucmerced": {"OA": 50.0, "AA": 40.0}}, "custom": {"scene_aid": {"OA": 1.0}}}
    table = comparison_table(results, SCENE_COLUMNS)
    row = table.loc["student, distilled"]
    assert row["UCMerced OA"] == 50.0
    assert row["UCMerced OA (paper)"] == paper_value(3, "OA", "UCMerced", "Ours (GeoChat-7B distilled)")
    assert math.isnan(row["AID OA"])
    assert math.isnan(table.loc["custom", "AID OA (paper)"]) and table.loc["custom", "AID OA"] == 1.0


def test_vqa_columns_have_paper_numbers_only_for_printed_types() -> None:
    printed = {c.label for c in VQA_COLUMNS if c.paper is not None}
    assert "LR rural/urban" in printed and "LR mOA (question-weighted)" in printed
    assert not {"LR count", "HR area", "HR count", "LR mean of type accuracies"} & printed


def test_kd_verdict_places_the_distilled_student() -> None:
    results = {m: {"vqa_lr": {"mOA": v}} for m, v in (("student_kd", 60.0), ("student_sft", 50.0),
                                                      ("teacher", 60.0))}
    assert kd_verdict(results, "vqa_lr", "mOA") == ("the distilled student's mOA (60.00 %) is above the SFT "
                                                    "student's (50.00 %) and level with the teacher's (60.00 %)")


def _write_scene_answers(path, truths_and_answers) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question_id": f"{t}/{i}.jpg", "image_id": f"{t}/{i}.jpg", "answer": a,
                                        "ground_truth": t}) + "\n"
                            for i, (t, a) in enumerate(truths_and_answers)))


def test_a_class_balanced_set_shows_oa_and_aa_as_one_column(tmp_path) -> None:
    """Balanced (3 images per class): the scorer's OA and AA agree and the table merges them; unbalanced
    (4 beach, 2 forest): they differ and both columns stay."""
    import torch

    from kdlib.evaluate.runner import answers_path
    from kdlib.evaluate.score import score_file
    from kdlib.profiles import get_profile
    from kdlib.run import RunContext

    ctx = RunContext(get_profile("tiny"), tmp_path / "data", tmp_path / "out", 0, torch.device("cpu"), False)
    balanced = [("Beach", "beach"), ("Beach", "forest"), ("Beach", "beach"),
                ("Forest", "forest"), ("Forest", "forest"), ("Forest", "beach")]
    skewed = [("Beach", "beach")] * 4 + [("Forest", "beach")] * 2
    results = {}
    for model in ("teacher", "student_sft"):
        _write_scene_answers(answers_path(ctx, model, "scene_ucmerced"), balanced)
        _write_scene_answers(answers_path(ctx, model, "scene_aid"), skewed if model == "teacher" else balanced)
        results[model] = {t: score_file("classification", answers_path(ctx, model, t))
                          for t in ("scene_ucmerced", "scene_aid")}
    assert class_counts(answers_path(ctx, "teacher", "scene_ucmerced")) == {"beach": 3, "forest": 3}
    assert is_balanced({"beach": 3, "forest": 3}) and not is_balanced({"beach": 4, "forest": 2})
    assert results["teacher"]["scene_ucmerced"]["OA"] == pytest.approx(results["teacher"]["scene_ucmerced"]["AA"])
    assert results["teacher"]["scene_aid"]["OA"] != results["teacher"]["scene_aid"]["AA"]
    found = balanced_tasks(ctx, results, ("scene_ucmerced", "scene_aid"))
    assert found == ["scene_ucmerced"]
    assert balanced_tasks(ctx, {"student_sft": results["student_sft"]}, ("scene_ucmerced", "scene_aid")) == \
        ["scene_ucmerced", "scene_aid"]
    table = one_column_if_balanced(comparison_table(results, SCENE_COLUMNS), found)
    assert "UCMerced OA = AA" in table and "UCMerced AA" not in table and "UCMerced AA (paper)" in table
    assert "AID OA" in table and "AID AA" in table
    with pytest.raises(ValueError, match="scene_aid: OA and AA differ"):
        one_column_if_balanced(comparison_table(results, SCENE_COLUMNS), ["scene_aid"])


def test_binomial_interval_is_clipped_and_contains_the_estimate() -> None:
    assert binomial_interval(0, 10)[0] == 0.0 and binomial_interval(10, 10)[1] == 100.0
    lo, hi = binomial_interval(30, 100)
    assert lo < 30 < hi and hi - lo < 20
    assert binomial_interval(30, 1000)[1] - binomial_interval(30, 1000)[0] < hi - lo
    with pytest.raises(ValueError):
        binomial_interval(3, 2)


def test_interval_table_gives_each_proportion_its_wilson_interval() -> None:
    oa = [c for c in SCENE_COLUMNS if c.key == "OA"]
    results = {"teacher": {"scene_ucmerced": {"OA": 30.0, "n": 100}, "scene_aid": {"OA": 50.0, "n": 300}},
               "a probe": {"scene_ucmerced": {"OA": 75.0, "n": 200}, "scene_aid": {"OA": 60.0, "n": 300}}}
    table = interval_table(results, oa)
    assert list(table.index) == ["teacher, SFT", "a probe"]
    assert table.at["teacher, SFT", "UCMerced OA"] == 30.0
    lo, hi = binomial_interval(30, 100)
    assert table.at["teacher, SFT", "UCMerced OA 95 % interval"] == f"{lo:.1f}-{hi:.1f}"
    lo, hi = binomial_interval(180, 300)
    assert table.at["a probe", "AID OA 95 % interval"] == f"{lo:.1f}-{hi:.1f}"
