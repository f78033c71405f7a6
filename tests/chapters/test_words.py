"""The book's generated sentences change with the numbers they are written from."""

import math

import pytest

from kdlib.chapters.words import (at_chance, balanced_sentence, binomial_interval, ceiling_sentence, chance_sentence,
                                  collapse_sentence, same_answer_sentence, single_run_verdict,
                                  split_size_clause, start_sentence, trainable_clause, trend_clause,
                                  type_collapse_sentence)
from kdlib.data.geochat_bench import VQAAnswer
from kdlib.evaluate.report import dominant_answer
from kdlib.profiles import get_profile


def test_trainable_clause_follows_the_profile() -> None:
    assert "every weight" in trainable_clause(get_profile("tiny"))
    assert "LoRA adapters of rank 64" in trainable_clause(get_profile("paper"))


def test_split_size_clause_follows_the_profile() -> None:
    assert "every record whose picture no training or validation record shows" in split_size_clause(get_profile("small"))
    assert "every record whose picture" not in split_size_clause(get_profile("tiny"))


def test_start_sentence_states_each_start_and_ln_v_as_reference() -> None:
    text = start_sentence({"teacher": 5.99, "student_sft": 12.25}, 49152, 5)
    assert "teacher's 5.99 (below ln V)" in text and "SFT student's 12.25 (above ln V)" in text
    assert f"{math.log(49152):.2f}" in text
    assert start_sentence({"teacher": 4.0}, 49152, 5) != start_sentence({"teacher": 11.0}, 49152, 5)


def test_trend_clause_compares_first_and_last_means() -> None:
    rising = [0.03, 0.01, 0.05, 0.2, 0.22, 0.21]
    assert trend_clause(rising, 3) == "rose: from 0.030 (mean of the first 3 steps) to 0.210 (mean of the last 3)"
    assert trend_clause(rising[::-1], 3).startswith("fell: from 0.210")
    assert trend_clause([1.0, 1.01, 0.99, 1.0], 2).startswith("stayed about level")
    assert "first 2 steps" in trend_clause([1.0, 2.0, 3.0, 4.0], 5)  # k capped at half the run
    assert trend_clause([1.0, 2.0], 5) == "rose: from 1.000 (the first step) to 2.000 (the last)"
    with pytest.raises(ValueError):
        trend_clause([1.0], 1)


def _results(kd: float, sft: float, teacher: float) -> dict:
    return {"student_kd": {"t": {"OA": kd}}, "student_sft": {"t": {"OA": sft}}, "teacher": {"t": {"OA": teacher}}}


def test_single_run_verdict_carries_uncertainty_and_floor() -> None:
    text = single_run_verdict(_results(60.0, 50.0, 40.0), "t", "OA", 20)
    assert "above the SFT student's" in text and "95 % intervals" in text and "seeds chapter" in text
    assert text != single_run_verdict(_results(60.0, 50.0, 40.0), "t", "OA", 200)
    assert "seeds chapter" in single_run_verdict(_results(0.3, 0.2, 0.1), "t", "OA", None)
    floor = single_run_verdict(_results(0.0, 0.0, 0.0), "t", "OA", 20)
    assert "at floor" in floor and "undecided" not in floor


def _probe(oa: float, n: int) -> dict:
    return {"OA": oa, "n": n, "n_train": 671, "n_val": 85}


def _scored(kd: float, sft: float, teacher: float, n: int = 200) -> dict:
    return {m: {"t": {"OA": v, "n": n}} for m, v in (("student_kd", kd), ("student_sft", sft), ("teacher", teacher))}


def test_ceiling_sentence_gives_each_gap_and_the_overlap() -> None:
    results = _scored(20.0, 30.0, 74.0)
    text = ceiling_sentence(results, _probe(76.0, 200), "t", "UCMerced")
    assert "OA 76.00 %" in text and "over 200 test images" in text and "671 training images" in text
    assert "the distilled student is 56.00 points below it" in text and "the SFT student is 46.00 points below" in text
    assert "the teacher is 2.00 points below it" in text
    assert "the 95 % interval of the teacher reaches the probe's" in text and "SFT student reaches" not in text
    assert "the teacher is 4.00 points above it" in ceiling_sentence(_scored(20.0, 30.0, 80.0), _probe(76.0, 200),
                                                                      "t", "UCMerced")
    assert "lies wholly below" in ceiling_sentence(_scored(20.0, 30.0, 40.0), _probe(76.0, 200), "t", "AID")
    both = ceiling_sentence(_scored(20.0, 72.0, 74.0), _probe(76.0, 200), "t", "AID")
    assert "the 95 % intervals of the teacher and the SFT student reach the probe's" in both


def test_collapse_is_detected_on_synthetic_answers() -> None:
    collapsed = ["forest"] * 17 + ["river", "beach", "harbor"]
    varied = ["forest", "river", "beach", "harbor"] * 5
    assert dominant_answer(collapsed) == ("forest", 85.0)
    text = collapse_sentence({"student_kd": collapsed, "teacher": varied}, "images")
    assert 'the distilled student answers "forest" for 85 % of images' in text and "teacher" not in text
    assert collapse_sentence({"teacher": varied}, "images") == ""
    assert collapse_sentence({"teacher": collapsed}, "images", threshold=90.0) == ""
    assert "(each class is 4.8 % of them)" in collapse_sentence({"teacher": collapsed}, "images", 25.0, 100 / 21)


def _vqa(kind: str, answers: list[str], truths: list[str]) -> list[VQAAnswer]:
    return [VQAAnswer(f"{kind}{i}", kind, a, t) for i, (a, t) in enumerate(zip(answers, truths))]


def test_type_collapse_names_each_model_and_type_against_the_truth() -> None:
    truths = ["0"] * 4 + ["1", "2", "3", "4", "5", "6"]  # "0" is 40 % of the count references
    presence = ["yes"] * 9 + ["no"]  # a skewed truth: 90 % yes
    answers = {"teacher": _vqa("count", ["0"] * 10, truths) + _vqa("presence", ["yes"] * 9 + ["no"], presence),
               "student_kd": _vqa("count", ["1"] * 8 + ["0", "3"], truths) + _vqa("presence", ["yes"] * 10, presence)}
    text = type_collapse_sentence(answers, "RSVQA-LR")
    assert 'On RSVQA-LR one answer dominates several question types' in text
    assert 'count questions, where the teacher answers "0" to 100 % and the distilled student answers "1" to 80 %' in text
    assert '(the most frequent true answer, "0", is 40 % of them)' in text
    assert 'presence questions, where the distilled student answers "yes" to 100 %' in text
    assert "the teacher answers \"yes\"" not in text  # it mirrors the truth's 90 %, not more
    same = {m: _vqa("count", ["0"] * 10, truths) for m in ("teacher", "student_sft", "student_kd")}
    assert 'every model answers "0" to 100 % of them' in type_collapse_sentence(same, "RSVQA-HR")
    assert "every model" not in text
    varied = {"teacher": _vqa("count", truths, truths)}
    assert type_collapse_sentence(varied, "RSVQA-HR") == ""
    assert type_collapse_sentence(answers, "RSVQA-LR", threshold=100.0).count("questions, where") == 2


def test_same_answer_sentence_only_when_every_answer_is_one_value() -> None:
    assert '"0"' in same_answer_sentence({"teacher": ["0", "0"], "student_kd": [" 0"]}, "count")
    assert same_answer_sentence({"teacher": ["0", "1"], "student_kd": ["0"]}, "count") == ""


def test_chance_is_named_with_the_answer_that_makes_it() -> None:
    """21 classes of 4 images: one answer for all 84 scores 4/84 = 100/21 exactly; 5/84 does not."""
    one = ["Port"] * 84
    mixed = ["river"] * 44 + ["port"] * 40
    assert at_chance(100 * 4 / 84, 21) and at_chance(4.76, 21) and not at_chance(100 * 5 / 84, 21)
    said = chance_sentence("scene_ucmerced", "OA", {"8 tokens": 100 * 4 / 84, "64 tokens": 100 * 5 / 84,
                                                    "32 tokens": 100 * 4 / 84}, 21,
                           {"8 tokens": one, "64 tokens": mixed, "32 tokens": mixed})
    assert "exactly chance, 100/21 = 4.76 %" in said and "64 tokens" not in said
    assert '8 tokens (answers "port" for every one of the images)' in said
    assert '32 tokens (answers "river" for 52 % of the images)' in said and "no sign" in said
    collapsed = chance_sentence("scene_aid", "OA", {"8 tokens": 100 / 30}, 30, {"8 tokens": one})
    assert "collapse to one class" in collapsed
    assert chance_sentence("scene_aid", "OA", {"64 tokens": 10.0}, 30, {"64 tokens": one}) == ""


def test_balanced_sentence_names_the_sets_shown_as_one_column() -> None:
    assert balanced_sentence([]) == ""
    said = balanced_sentence(["scene_aid"])
    assert said.startswith("On AID every class") and "AA (the mean of the per-class recalls) equals OA" in said
    assert "On UCMerced and AID" in balanced_sentence(["scene_ucmerced", "scene_aid"])
