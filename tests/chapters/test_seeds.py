"""Seeds: the Student-t interval against scipy's, paired-ordering verdicts, the seed table and folders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy import stats

from kdlib.chapters.seeds import (claim_sentence, mean_ci, ordering, ordering_sentence, ordering_table, seed_noise,
                                  seed_noise_sentence, seed_table, study_seeds)
from kdlib.evaluate.paper import paper_value
from kdlib.files import write_json
from kdlib.profiles import get_profile
from kdlib.run import RunContext


def results(kd: float, sft: float, teacher: float) -> dict:
    return {m: {"scene_aid": {"OA": v}} for m, v in (("student_kd", kd), ("student_sft", sft), ("teacher", teacher))}


def test_mean_ci_is_scipys_t_interval():
    values = [61.0, 64.5, 59.25, 70.0]
    mean, half = mean_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert mean == pytest.approx((low + high) / 2) and half == pytest.approx((high - low) / 2)
    assert mean_ci([3.0]) == (3.0, pytest.approx(math.nan, nan_ok=True))
    with pytest.raises(ValueError):
        mean_ci([])


@pytest.mark.parametrize("kd, verdict", [((12, 13, 14), "holds"), ((7, 7.5, 8), "reversed"), ((12, 7, 10), "undecided")])
def test_ordering_is_decided_by_the_paired_interval(kd, verdict):
    by_seed = {s: results(k, 10.0 + s, 20.0) for s, k in enumerate(kd)}  # sft = 10, 11, 12
    got = ordering(by_seed, "scene_aid")
    assert got["verdict"] == verdict and got["seeds"] == 3
    assert got["difference"] == pytest.approx(sum(kd) / 3 - 11)
    assert ordering({0: results(12, 10, 20)}, "scene_aid")["verdict"] == "one seed: no interval"


def test_ordering_at_zero_on_every_seed_is_at_floor_not_undecided():
    floor = {s: results(0.0, 0.0, 5.0) for s in range(3)}
    assert ordering(floor, "scene_aid")["verdict"] == "at floor, untestable here"
    assert ordering(floor, "scene_aid", "teacher", "student_kd")["verdict"] != "at floor, untestable here"
    said = claim_sentence(ordering_table(floor, ["scene_aid"]))
    assert "at floor, untestable here" in said and "undecided (its interval contains zero) on no task" in said


def test_seed_table_and_sentence():
    by_seed = {0: results(12, 10, 20), 1: results(13, 11, 21), 2: results(14, 12, 19)}
    table = seed_table(by_seed, ["scene_aid"])
    row = table.loc[("scene_aid", "student, distilled")]
    assert row["mean"] == 13.0 and row["seeds"] == 3 and row["min"] == 12 and row["max"] == 14
    assert row["paper"] == paper_value(3, "OA", "AID", "Ours (GeoChat-7B distilled)")
    claims = ordering_table(by_seed, ["scene_aid"])
    assert list(claims["verdict"]) == ["holds", "holds"]
    assert ordering_sentence(claims).count("holds on 1 of 1 tasks") == 2


def test_claim_sentence_names_the_tasks_of_each_verdict():
    def seed(kd_aid: float, kd_ucm: float) -> dict:
        return {"student_kd": {"scene_aid": {"OA": kd_aid}, "scene_ucmerced": {"OA": kd_ucm}},
                **{m: {"scene_aid": {"OA": 10.0}, "scene_ucmerced": {"OA": 10.0}} for m in ("student_sft", "teacher")}}

    tasks = ["scene_aid", "scene_ucmerced"]
    mixed = ordering_table({0: seed(12, 8), 1: seed(13, 12), 2: seed(14, 10)}, tasks)  # AID holds, UCM undecided
    said = claim_sentence(mixed)
    assert "holds here on scene_aid, is reversed on no task" in said and "undecided" in said
    assert said.endswith("support the paper where it is decided.")
    lower = ordering_table({0: seed(7, 6), 1: seed(8, 7), 2: seed(6, 5)}, tasks)
    assert "reversed on scene_aid, scene_ucmerced" in claim_sentence(lower)
    assert claim_sentence(lower).endswith("contradict the paper where it is decided.")
    noise = ordering_table({0: seed(8, 12), 1: seed(12, 8), 2: seed(10, 10)}, tasks)
    assert claim_sentence(noise).endswith("neither confirm nor refute the paper; the differences are within seed noise.")
    assert "no verdict" in claim_sentence(ordering_table({0: seed(12, 8)}, tasks))


def test_each_seed_has_its_own_folder(tmp_path: Path):
    ctx = RunContext(get_profile("tiny"), tmp_path / "data", tmp_path / "out", 4, torch.device("cpu"), False)
    assert study_seeds(ctx) == [4, 5, 6]
    assert ctx.for_seed(4) is ctx
    other = ctx.for_seed(6)
    assert other.out_dir == tmp_path / "out" / "seeds" / "seed6" and other.seed == 6 and other.profile is ctx.profile
    assert ctx.vision_cache == tmp_path / "out" / "cache" / "vision"
    assert other.vision_cache == ctx.vision_cache  # the frozen tower's features are the same for every seed


def test_seed_noise_reads_the_paired_interval_of_the_seeds_chapter(tmp_path):
    by_seed = {s: results(k, 10.0 + s, 20.0) for s, k in enumerate((12, 7, 10))}
    claims = ordering_table(by_seed, ["scene_aid"])
    path = tmp_path / "results" / "seeds.json"
    path.parent.mkdir()
    write_json(path, {"seeds": [0, 1, 2], "ordering": claims.reset_index().to_dict(orient="records")})
    want = ordering(by_seed, "scene_aid")["± 95% CI"]
    assert seed_noise(path, ["scene_aid"]) == {"scene_aid": pytest.approx(want, abs=0.005)}
    assert seed_noise(path, ["vqa_lr"]) == {} and seed_noise(tmp_path / "absent.json", ["scene_aid"]) == {}
    ctx = RunContext(get_profile("tiny"), tmp_path, tmp_path, 0, torch.device("cpu"), False)
    assert f"AID OA ±{want:.2f}" in seed_noise_sentence(ctx, ["scene_aid", "vqa_lr"])
    assert "3 seeds" in seed_noise_sentence(ctx, ["scene_aid"])
    one = ordering_table({0: results(12, 10, 20)}, ["scene_aid"])
    write_json(path, {"seeds": [0], "ordering": one.reset_index().to_dict(orient="records")})
    assert seed_noise_sentence(ctx, ["scene_aid"]) == ""
    path.write_text('{"seeds": [0]}')
    with pytest.raises(ValueError, match=r"seeds\.json.*seeds"):
        seed_noise(path, ["scene_aid"])
