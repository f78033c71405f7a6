"""Seeds: the Student-t interval against scipy's, paired-ordering verdicts, the seed table and folders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy import stats

from kdlib.chapters.seeds import (CI_HIGH, CI_LOW, HALF, claim_sentence, cut_interval, cut_sentence, mean_ci, ordering,
                                  ordering_sentence, ordering_table, seed_noise, seed_noise_sentence, seed_table,
                                  study_seeds)
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


def test_model_intervals_never_leave_0_to_100_and_the_cut_is_named():
    """Teacher OA 2, 20, 1 (t-interval about -16 to 31) and 99, 100, 90: shown as 0-31 and up to 100."""
    by_seed = {s: results(kd, 10.0 + s, t) for s, (kd, t) in enumerate(((99.0, 2.0), (100.0, 20.0), (90.0, 1.0)))}
    table = seed_table(by_seed, ["scene_aid"])
    teacher, kd = table.loc[("scene_aid", "teacher, SFT")], table.loc[("scene_aid", "student, distilled")]
    mean, half = mean_ci([2.0, 20.0, 1.0])
    assert mean - half < 0 and teacher[CI_LOW] == 0.0 and teacher[CI_HIGH] == pytest.approx(mean + half, abs=0.005)
    assert teacher[HALF] == pytest.approx(half, abs=0.005)
    assert kd[CI_HIGH] == 100.0 and 0 <= kd[CI_LOW] < kd["mean"]
    assert ((table[CI_LOW] >= 0) & (table[CI_HIGH] <= 100)).all()
    said = cut_sentence(table)
    assert f"teacher, SFT on scene_aid ({mean - half:.1f} to {mean + half:.1f})" in said
    assert "student, distilled on scene_aid" in said and "student, SFT" not in said
    inside = seed_table({0: results(12, 10, 20), 1: results(13, 11, 21), 2: results(14, 12, 19)}, ["scene_aid"])
    assert cut_sentence(inside).startswith("No interval reaches beyond")
    assert (inside[CI_LOW] == (inside["mean"] - inside[HALF]).round(2)).all()


def test_cut_interval_keeps_one_seed_without_bounds():
    assert cut_interval(5.0, 10.0) == (0.0, 15.0) and cut_interval(95.0, 10.0) == (85.0, 100.0)
    low, high = cut_interval(5.0, math.nan)
    assert math.isnan(low) and math.isnan(high)


def test_seed_figure_draws_the_cut_interval():
    from kdlib.plots import seed_panels

    by_seed = {s: results(50.0, 10.0 + s, t) for s, t in enumerate((2.0, 20.0, 1.0))}
    table = seed_table(by_seed, ["scene_aid"])
    fig = seed_panels(table)
    [segments] = [c.errorbar.lines[2][0].get_segments() for c in fig.axes[0].containers if hasattr(c, "errorbar")]
    ends = sorted((round(float(seg[:, 1].min()), 2), round(float(seg[:, 1].max()), 2)) for seg in segments)
    assert ends == sorted(zip(table[CI_LOW], table[CI_HIGH])) and min(lo for lo, _ in ends) == 0.0


def test_seed_noise_sentence_names_a_task_at_floor(tmp_path):
    by_seed = {s: {m: {"scene_aid": {"OA": 0.0}} for m in ("student_kd", "student_sft", "teacher")} for s in range(3)}
    path = tmp_path / "results" / "seeds.json"
    path.parent.mkdir()
    write_json(path, {"seeds": [0, 1, 2], "ordering": ordering_table(by_seed, ["scene_aid"]).reset_index()
                      .to_dict(orient="records")})
    ctx = RunContext(get_profile("tiny"), tmp_path, tmp_path, 0, torch.device("cpu"), False)
    said = seed_noise_sentence(ctx, ["scene_aid"])
    assert "AID OA not measurable (every model scores 0 on every seed: at floor, untestable here)" in said
    assert "every seed scored the same" not in said


def test_item_table_pairs_each_seeds_answers_over_the_test_items(tmp_path):
    """Per seed, distilled minus SFT over the items equals the OA difference of the two answer files; the
    VQA and scene tasks are paired, the others left out; the sentence counts the verdicts."""
    import json

    from kdlib.chapters.seeds import item_sentence, item_table
    from kdlib.evaluate.score import score_file

    ctx = RunContext(get_profile("tiny"), tmp_path / "data", tmp_path / "out", 0, torch.device("cpu"), False)
    right = {("student_sft", 0): 10, ("student_kd", 0): 40, ("student_sft", 1): 20, ("student_kd", 1): 21}
    for (model, seed), n_right in right.items():
        path = ctx.for_seed(seed).answers_file(model, "scene_aid")
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"question_id": f"c{i % 4}/{i}.jpg", "ground_truth": f"c{i % 4}",
                 "answer": f"c{i % 4}" if i < n_right else "x"} for i in range(60)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = item_table(ctx, [0, 1], ["scene_aid", "referring"])
    assert list(table.index) == [("scene_aid", 0), ("scene_aid", 1)]
    for seed in (0, 1):
        files = [ctx.for_seed(seed).answers_file(m, "scene_aid") for m in ("student_sft", "student_kd")]
        expected = score_file("classification", files[1])["OA"] - score_file("classification", files[0])["OA"]
        assert table.loc[("scene_aid", seed), "difference"] == pytest.approx(expected, abs=0.01)
    assert list(table["verdict"]) == ["above", "undecided"]
    assert list(table["only student_sft right"]) == [0, 0] and list(table["only student_kd right"]) == [30, 1]
    assert item_sentence(table).startswith("Over the test items of each seed, of the 2 (task, seed) pairs the "
                                           "distilled student is above the SFT student on 1, undecided on 1; the "
                                           "item intervals' half-widths run from ")
