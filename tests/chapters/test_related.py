"""The related-methods chapter's tables and sentences, on hand-made results and runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kdlib.chapters.related import (RELATED_LABELS, best_students, budget_table, method_table, rank_sentence,
                                    run_name)
from kdlib.evaluate.report import headline_columns
from kdlib.profiles import get_profile
from kdlib.run import RunContext
from kdlib.train.metrics_log import MetricsLog


def _results(scores: dict[str, tuple[float, float]]) -> dict:
    return {m: {"scene_ucmerced": {"OA": a, "AA": a}, "vqa_lr": {"mOA": b}} for m, (a, b) in scores.items()}


RESULTS = _results({"teacher": (40.0, 60.0), "student_sft": (20.0, 50.0), "student_kd": (30.0, 50.0),
                    "student_align_kd": (30.0, 40.0), "student_switch_kd": (10.0, 50.0)})
STUDENTS = ["student_sft", "student_kd", "student_align_kd", "student_switch_kd"]


def test_best_students_and_rank():
    assert best_students(RESULTS, ["scene_ucmerced", "vqa_lr"], STUDENTS) == (
        "scene_ucmerced OA: student, distilled and student, Align-KD (30.00); "
        "vqa_lr mOA: student, SFT and student, distilled and student, Switch-KD (DBiLD) (50.00)")
    assert rank_sentence(RESULTS, ["scene_ucmerced", "vqa_lr"], STUDENTS, "student_kd") == (
        "is the best student alone on 0 of 2 tasks, tied for best on 2 and above the SFT student on 1")
    flat = _results({m: (0.0, 0.0) for m in STUDENTS})
    assert best_students(flat, ["vqa_lr"], STUDENTS) == "vqa_lr mOA: all students tie (0.00)"


def test_method_table_puts_paper_numbers_beside_the_study_models_only():
    table = method_table(RESULTS, ["scene_ucmerced", "vqa_lr"])
    assert list(table.columns) == [c for col in headline_columns(["scene_ucmerced", "vqa_lr"])
                                   for c in (col.label, f"{col.label} (paper)")]
    assert table.loc[RELATED_LABELS["student_align_kd"], "UCMerced OA"] == 30.0
    assert math.isnan(table.loc[RELATED_LABELS["student_align_kd"], "UCMerced OA (paper)"])
    assert not math.isnan(table.loc["student, distilled", "UCMerced OA (paper)"])


def test_run_names():
    assert run_name("switch_kd") == "student_switch_kd"
    with pytest.raises(ValueError, match="related method"):
        run_name("sft")


def test_budget_table_reads_config_and_metrics(tmp_path):
    profile = get_profile("tiny")
    ctx = RunContext(profile, tmp_path, tmp_path, 0, torch.device("cpu"), False)
    folder = tmp_path / "train" / "student_align_kd"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"method": "align_kd", "ablate": [], "batch_size": 8,
                                                              "lr": 5e-4}}))
    log = MetricsLog(folder / "metrics.jsonl")
    for step, loss in ((1, 3.0), (2, 2.0)):
        log.append({"step": step, "loss": loss, "ce": loss, "step_s": 0.5, "cpu_s": 0.25})
    row = budget_table(ctx, ["student_align_kd"]).loc[RELATED_LABELS["student_align_kd"]]
    assert (row["steps"], row["first loss"], row["last loss"], row["wall s"], row["CPU s"]) == (2, 3.0, 2.0, 1.0, 0.5)
    assert row["loss terms"] == "ce + logit + visual + attention"
    with pytest.raises(FileNotFoundError, match="related_methods"):
        budget_table(ctx, ["student_switch_kd"])


@pytest.mark.parametrize("train", ["related", "ablations", "study"])
def test_the_book_continues_interrupted_runs(train, tmp_path, monkeypatch):
    """A chapter rerun after a dead kernel resumes each run from its checkpoint instead of step 0."""
    import kdlib.train.study as study_module
    from kdlib.chapters.ablations import train_ablations
    from kdlib.chapters.related import train_related

    calls = []

    def fake_train_run(ctx, method, **kwargs):
        calls.append((method, kwargs["resume"]))
        return study_module.RunPaths(tmp_path / method, tmp_path / "metrics.jsonl")

    monkeypatch.setattr(study_module, "train_run", fake_train_run)
    ctx = RunContext(get_profile("tiny"), tmp_path, tmp_path, 0, torch.device("cpu"), False)
    for model in ("teacher", "student_sft"):
        (tmp_path / "models" / model).mkdir(parents=True)
    run = {"related": train_related, "ablations": train_ablations, "study": study_module.run_study_training}[train]
    run(ctx, study=object())
    assert calls and all(resume for _, resume in calls), calls


def test_related_trains_the_estimators_with_their_settings(tmp_path, monkeypatch):
    """The unbiased and 4-PPO-epoch runs of the paper's recipe reach train_run with their settings, under
    the names ``kdlib train --minillm-form unbiased`` / ``--ppo-epochs 4`` give them."""
    import kdlib.train.study as study_module
    from kdlib.chapters.related import ESTIMATORS, train_related
    from kdlib.train.config import TrainConfig

    calls = {}

    def fake_train_run(ctx, method, **kwargs):
        changes = {k: v for k, v in kwargs.items() if k not in ("ablate", "resume", "study")}
        name = TrainConfig.from_profile(ctx.profile, method, kwargs["ablate"], **changes).run_name
        calls[name] = changes
        return study_module.RunPaths(tmp_path / name, tmp_path / "metrics.jsonl")

    monkeypatch.setattr(study_module, "train_run", fake_train_run)
    ctx = RunContext(get_profile("tiny"), tmp_path, tmp_path, 0, torch.device("cpu"), False)
    for model in ("teacher", "student_sft"):
        (tmp_path / "models" / model).mkdir(parents=True)
    folders = train_related(ctx, methods=("forward_kl",), study=object())
    assert list(folders) == ["student_forward_kl", *(v.name for v in ESTIMATORS)]
    assert calls == {"student_forward_kl": {}, "student_kd_unbiased": {"form": "unbiased"},
                     "student_kd_ppo4": {"ppo_epochs": 4}}
    assert set(folders) - {"student_forward_kl"} <= set(RELATED_LABELS)
