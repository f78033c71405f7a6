"""RSVQA per-type accuracy and the two mOA forms (kdlib.evaluate.vqa)."""

from __future__ import annotations

import pytest

from kdlib.data.geochat_bench import VQAAnswer
from kdlib.evaluate.paper import paper_value
from kdlib.evaluate.vqa import summarize_vqa, vqa_metrics, vqa_type_counts

LRBEN_COUNTS = {"presence": 2955, "comparison": 4002, "rural_urban": 100}
"""Questions per type in the RSVQA-LR test set (design/methods.md section 3.3)."""


def test_per_type_accuracy_and_both_moa_forms() -> None:
    records = [VQAAnswer("1", "presence", "Yes.", "yes"), VQAAnswer("2", "presence", "no", "yes"),
               VQAAnswer("3", "comparison", "no", "no"), VQAAnswer("4", "rural_urban", "Urban", "rural"),
               VQAAnswer("5", "count", "1 2", "12")]
    scores = vqa_metrics(records)
    assert (scores["presence"], scores["comparison"], scores["rural_urban"]) == (50.0, 100.0, 0.0)
    assert scores["count"] == 100.0 and scores["area"] is None
    assert scores["mOA"] == pytest.approx(100 * 2 / 4)  # 2 of the 4 core questions
    assert scores["mOA_mean_of_types"] == pytest.approx((50 + 100 + 0) / 3)
    assert scores["n"] == {"presence": 2, "comparison": 1, "rural_urban": 1, "count": 1}


def test_moa_is_overall_accuracy_of_core_questions() -> None:
    records = [VQAAnswer(str(i), t, "yes" if i % 3 else "no", "yes")
               for i, t in enumerate(["presence"] * 7 + ["comparison"] * 5 + ["count"] * 4)]
    core = [r for r in records if r.qtype != "count"]
    overall = 100 * sum(r.answer == r.ground_truth for r in core) / len(core)
    assert vqa_metrics(records)["mOA"] == pytest.approx(overall)


def test_missing_types_are_left_out_and_no_core_type_is_an_error() -> None:
    scores = summarize_vqa({"presence": (1, 2), "comparison": (3, 4)})  # HRBEN: no rural/urban
    assert scores["rural_urban"] is None
    assert scores["mOA_mean_of_types"] == pytest.approx((50 + 75) / 2)
    with pytest.raises(ValueError, match="mOA is undefined"):
        summarize_vqa({"count": (1, 2)})


@pytest.mark.parametrize("model", ["GeoChat-7B", "GeoChat-13B", "Ours (GeoChat-7B distilled)"])
def test_paper_lrben_moa_is_question_weighted(model: str) -> None:
    counts = {}
    for qtype, n in LRBEN_COUNTS.items():
        accuracy = paper_value(5, qtype.replace("_", "/"), "RSVQA-LRBEN", model)
        counts[qtype] = (round(accuracy / 100 * n), n)
    printed = paper_value(5, "mOA", "RSVQA-LRBEN", model)
    scores = summarize_vqa(counts)
    assert scores["mOA"] == pytest.approx(printed, abs=0.05)
    assert abs(scores["mOA_mean_of_types"] - printed) > abs(scores["mOA"] - printed)


def test_counts_match_records() -> None:
    records = [VQAAnswer("1", "area", "0m2", "0 m2"), VQAAnswer("2", "area", "10m2", "0m2")]
    assert vqa_type_counts(records) == {"area": (1, 2)}
