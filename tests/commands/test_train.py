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
