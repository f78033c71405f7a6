"""Learning curves: each kept step of a run scored as its model, against the CPU time spent."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from kdlib.analysis.learning_curve import curve_points, learning_curve, metrics_by_step, read_curve
from kdlib.data.study import load_study
from kdlib.evaluate.runner import evaluate_study
from kdlib.profiles import get_profile
from kdlib.run import RunContext
from kdlib.train.study import train_run

TASK = "scene_ucmerced"


def test_cpu_hours_add_up_and_a_repeated_step_counts_once(tmp_path):
    lines = [{"step": 1, "cpu_s": 1800.0}, {"step": 2, "cpu_s": 3600.0, "val_loss": 0.5},
             {"step": 2, "cpu_s": 1800.0, "val_loss": 0.25}, {"step": 3, "cpu_s": 3600.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    table = metrics_by_step(tmp_path)
    assert table["cpu_hours"].tolist() == [0.5, 1.0, 2.0]
    assert table.loc[2, "val_loss"] == 0.25 and table["val_loss"].isna().tolist() == [True, False, True]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "cpu_s": 1}\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a metrics line"):
        metrics_by_step(tmp_path)


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """A tiny student SFT of 4 steps with a snapshot every 2 and no validation (so the saved model is step 4's)."""
    profile = get_profile("tiny", {"vision.image_size": 32, "data.max_length": 128, "train.batch_size": 4,
                                   "train.sft_steps": 4, "train.snapshot_every": 2, "train.lr": 0.02,
                                   "train.warmup_ratio": 0.0})
    study = load_study(profile, data_root, seed=0)
    ctx = RunContext(profile, data_root, tmp_path_factory.mktemp("curve"), 0, torch.device("cpu"), False)
    train_run(ctx, "sft", study=study)
    return ctx, study


def test_the_last_snapshot_answers_as_the_saved_model(trained):
    ctx, study = trained
    table = learning_curve(ctx, "student_sft", [TASK], limit=6, study=study)
    assert table.index.tolist() == [2, 4]
    assert table["cpu_hours"].is_monotonic_increasing and table["cpu_hours"].iloc[0] > 0
    assert {f"{TASK} lo", f"{TASK} hi", f"{TASK} top", f"{TASK} top share"} <= set(table.columns)
    saved = evaluate_study(ctx, ["student_sft"], [TASK], limit=6, study=study)["student_sft"][TASK]
    assert table.loc[4, TASK] == pytest.approx(saved["OA"])
    last = ctx.curve_dir("student_sft") / "step-00000004" / f"{TASK}.jsonl"
    mine = [json.loads(line)["answer"] for line in last.read_text().splitlines()]
    theirs = [json.loads(line)["answer"] for line in ctx.answers_file("student_sft", TASK).read_text().splitlines()]
    assert mine == theirs
    pd.testing.assert_frame_equal(read_curve(ctx, "student_sft"), table)


def test_a_second_curve_rescores_the_kept_answers_and_new_records_are_answered_again(trained):
    ctx, study = trained
    answers = ctx.curve_dir("student_sft") / "step-00000002" / f"{TASK}.jsonl"
    learning_curve(ctx, "student_sft", [TASK], limit=6, study=study)
    written = answers.stat().st_mtime_ns
    learning_curve(ctx, "student_sft", [TASK], limit=6, study=study)
    assert answers.stat().st_mtime_ns == written
    learning_curve(ctx, "student_sft", [TASK], limit=3, study=study)
    assert answers.stat().st_mtime_ns != written and len(answers.read_text().splitlines()) == 3


def test_the_saved_model_is_the_last_point_when_no_snapshot_has_its_step(trained):
    """Runs last in this module: it removes the step-4 snapshot and its answers."""
    ctx, study = trained
    run_dir = ctx.train_dir("student_sft")
    (run_dir / "snapshots" / "step-00000004.pt").unlink()
    shutil.rmtree(ctx.curve_dir("student_sft") / "step-00000004")
    assert curve_points(ctx, "student_sft") == [(2, run_dir / "snapshots" / "step-00000002.pt"),
                                                (4, ctx.model_dir("student_sft"))]
    table = learning_curve(ctx, "student_sft", [TASK], limit=6, study=study)
    assert table.index.tolist() == [2, 4]
    mine = (ctx.curve_dir("student_sft") / "step-00000004" / f"{TASK}.jsonl").read_text().splitlines()
    theirs = ctx.answers_file("student_sft", TASK).read_text().splitlines()
    assert [json.loads(x)["answer"] for x in mine] == [json.loads(x)["answer"] for x in theirs]


def test_a_run_never_trained_has_no_curve(trained):
    ctx, _ = trained
    with pytest.raises(FileNotFoundError, match="no model of teacher to score"):
        learning_curve(ctx, "teacher", [TASK])
