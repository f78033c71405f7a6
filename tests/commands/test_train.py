"""``kdlib train``: arguments and errors (runs themselves are tested in test_training.py)."""

from __future__ import annotations

import pytest

from kdlib.cli import main


def test_distillation_without_sft_models_names_the_missing_step(tmp_path, capsys):
    assert main(["train", "--method", "paper", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "models/teacher is missing" in err and "kdlib train --method sft --role teacher" in err


def test_ablations_are_checked_before_anything_runs(tmp_path, capsys):
    assert main(["train", "--method", "reverse_kl", "--ablate", "lm", "--out", str(tmp_path)]) == 2
    assert "paper method only" in capsys.readouterr().err


def test_unknown_terms_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "paper", "--ablate", "everything"])
    assert "invalid choice" in capsys.readouterr().err


def test_help_names_every_estimator_and_reading_switch(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--minillm-form {code,paper,unbiased}", "--ppo-epochs N", "--kneedle-reading {knee,dbild_code}",
                 "--switch-direction {switched_to_teacher,student_to_switched}"):
        assert flag in out
    assert "(default: knee)" in out and "switched_to_teacher)" in out


@pytest.mark.parametrize("argv,changes", [
    ([], {}),
    (["--kneedle-reading", "dbild_code"], {"kneedle_reading": "dbild_code"}),
    (["--switch-direction", "student_to_switched"], {"switch_direction": "student_to_switched"}),
])
def test_switch_kd_flags_reach_the_training_run(argv, changes, tmp_path, monkeypatch):
    """The flags arrive as :class:`TrainConfig` changes of ``train_run`` (which builds the configuration)."""
    import kdlib.train.study
    from kdlib.train.config import TrainConfig

    seen = {}

    def fake_train_run(ctx, method, role, ablate, resume, restart, reuse, **kwargs):
        seen["changes"] = kwargs
        seen["cfg"] = TrainConfig.from_profile(ctx.profile, method, ablate, role=role, **kwargs)
        return kdlib.train.study.RunPaths(tmp_path / "model", tmp_path / "metrics.jsonl")

    monkeypatch.setattr(kdlib.train.study, "train_run", fake_train_run)
    assert main(["train", "--method", "switch_kd", "--out", str(tmp_path), "--no-progress", *argv]) == 0
    assert seen["changes"] == changes
    cfg = seen["cfg"]
    assert (cfg.kneedle_reading, cfg.switch_direction) == (changes.get("kneedle_reading", "knee"),
                                                           changes.get("switch_direction", "switched_to_teacher"))


def test_switch_kd_readings_are_refused_for_other_methods(tmp_path, capsys):
    assert main(["train", "--method", "paper", "--kneedle-reading", "dbild_code", "--out", str(tmp_path)]) == 2
    assert "switch_kd only" in capsys.readouterr().err
