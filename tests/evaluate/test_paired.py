"""Paired item-level comparison of two answer files (kdlib.evaluate.paired, ``kdlib score --against``)."""

from __future__ import annotations

import json
import math
import random

import pytest
from scipy import stats

from kdlib.cli import main
from kdlib.evaluate.paired import compare_files, item_scores, paired_difference
from kdlib.evaluate.score import score_file

CLASSES = ("forest", "beach", "harbor", "river")


def scene_rows(seed: int, p_right: float, n: int = 120) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        truth = CLASSES[i % len(CLASSES)]
        answer = truth.title() + "." if rng.random() < p_right else rng.choice([*CLASSES, "lake"])
        rows.append({"question_id": f"{truth}/{i}.tif", "answer": answer, "ground_truth": truth})
    return rows


def test_scene_difference_is_the_oa_difference_and_the_interval_the_discordant_count_formula(write_jsonl):
    a, b = write_jsonl("a.jsonl", scene_rows(0, 0.4)), write_jsonl("b.jsonl", scene_rows(1, 0.6))
    paired = compare_files("classification", a, b)
    assert paired.diff == pytest.approx(score_file("classification", b)["OA"] - score_file("classification", a)["OA"])
    # Second formulation, from the discordant counts only: var(d) = ((b + c) - (c - b)^2 / n) / (n - 1)
    n, only_a, only_b = paired.n, paired.only_a, paired.only_b
    var = ((only_a + only_b) - (only_b - only_a) ** 2 / n) / (n - 1)
    assert paired.diff == pytest.approx(100 * (only_b - only_a) / n)
    assert paired.half_width == pytest.approx(100 * stats.t.ppf(0.975, n - 1) * math.sqrt(var / n))
    assert n == 120 and paired.half_width > 0


def test_vqa_compares_the_core_questions_only(write_jsonl):
    def rows(answers):
        types = ["presence", "comp", "count", "presence", "comp", "rural_urban"]
        return [{"question_id": i, "type": t, "ground_truth": "yes", "answer": ans}
                for i, (t, ans) in enumerate(zip(types, answers))]
    a = write_jsonl("a.jsonl", rows(["yes", "no", "yes", "no", "no", "no"]))
    b = write_jsonl("b.jsonl", rows(["yes", "yes", "no", "yes", "no", "no"]))
    paired = compare_files("vqa", a, b)
    assert paired.n == 5 and (paired.only_a, paired.only_b) == (0, 2)
    assert paired.diff == pytest.approx(score_file("vqa", b)["mOA"] - score_file("vqa", a)["mOA"])


def test_verdicts_follow_the_interval():
    same = {i: 1 for i in range(50)}
    better = {i: int(i < 45) for i in range(50)}
    assert paired_difference(better, same).verdict == "B above A"
    assert paired_difference(same, better).verdict == "B below A"
    assert paired_difference(same, {**same, 0: 0}).verdict == "undecided"
    assert paired_difference(same, dict(same)).verdict == "same on every item"
    assert paired_difference({i: 0 for i in range(9)}, {i: 0 for i in range(9)}).half_width == 0


def test_files_that_cannot_be_paired_are_refused_in_one_line(write_jsonl):
    a = write_jsonl("a.jsonl", scene_rows(0, 0.5, n=8))
    b = write_jsonl("b.jsonl", scene_rows(0, 0.5, n=9))
    with pytest.raises(ValueError, match=r"different items \(1 in one only, e.g. 'forest/8.tif'\)"):
        compare_files("classification", a, b)
    twice = write_jsonl("twice.jsonl", scene_rows(0, 0.5, n=4) + scene_rows(0, 0.5, n=1))
    with pytest.raises(ValueError, match="twice.jsonl: 1 repeated question_id"):
        item_scores("classification", twice)
    with pytest.raises(ValueError, match="a.jsonl: paired item scores exist for classification and vqa, not referring"):
        item_scores("referring", a)


def test_score_against_prints_the_paired_difference(write_jsonl, capsys):
    a, b = write_jsonl("a.jsonl", scene_rows(0, 0.2)), write_jsonl("b.jsonl", scene_rows(1, 0.9))
    assert main(["score", "classification", str(b), "--against", str(a)]) == 0
    out = capsys.readouterr().out
    paired = compare_files("classification", a, b)
    assert f"{paired.diff:+.2f} +- {paired.half_width:.2f} points (paired 95% interval over 120 items" in out
    assert out.rstrip().endswith("b.jsonl above")
    assert main(["score", "classification", str(b), "--against", str(a), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paired"]["verdict"] == "B above A" and result["paired"]["n"] == 120


def test_geochat_7b_against_llava_on_the_real_ucmerced_answers(data_root):
    """The two published answer files of the same 2,100 UCMerced images (skips without the data)."""
    bench = data_root / "geochat_bench"
    geochat, llava = bench / "UCmerced_geochat_7b.jsonl", bench / "UCmerced_llava-v1.5-7b.jsonl"
    paired = compare_files("classification", llava, geochat)
    assert paired.n == 2100
    assert paired.diff == pytest.approx(score_file("classification", geochat)["OA"]
                                        - score_file("classification", llava)["OA"])
    assert paired.verdict == "B above A"  # GeoChat's remote-sensing tuning shows at this test size


def test_score_against_names_two_files_of_one_name_by_their_paths(write_jsonl, capsys):
    a = write_jsonl("a/scene.jsonl", scene_rows(0, 0.2))
    b = write_jsonl("b/scene.jsonl", scene_rows(1, 0.9))
    assert main(["score", "classification", str(b), "--against", str(a)]) == 0
    out = capsys.readouterr().out
    assert f"right only in {b}: " in out and f"only in {a}: " in out and out.rstrip().endswith(f"{b} above")

