"""Command-line mistakes end in one line and exit status 2, before any model or data is loaded."""

from __future__ import annotations

import json

import pytest
import torch

from kdlib.chapters import reproduce
from kdlib.commands import reproduce as reproduce_command
from kdlib.errors import UserError

TRAIN = ("train", "--profile", "tiny", "--method", "sft", "--no-progress")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_not_run_on_the_cpu(kdlib_cli, tmp_path):
    got = kdlib_cli(*TRAIN, "--out", str(tmp_path), "--device", "cuda")
    assert got.code == 2 and "CUDA is not available" in got.line
    assert not any(tmp_path.iterdir()), "nothing may be written"


def test_an_unknown_device_is_named(kdlib_cli, tmp_path):
    got = kdlib_cli(*TRAIN, "--out", str(tmp_path), "--device", "foo")
    assert got.code == 2 and "--device 'foo' is not a device" in got.line


def test_a_set_on_a_group_of_fields_names_the_group(kdlib_cli, tmp_path):
    got = kdlib_cli(*TRAIN, "--out", str(tmp_path), "--set", "train=3")
    assert got.code == 2 and "'train' has sub-fields" in got.line


def test_a_bad_list_names_the_key(kdlib_cli, tmp_path):
    got = kdlib_cli(*TRAIN, "--out", str(tmp_path), "--set", "student.keep_layers=a,b")
    assert got.code == 2 and "student.keep_layers" in got.line and "'a,b'" in got.line


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_learning_rate_must_be_finite(kdlib_cli, tmp_path, value):
    got = kdlib_cli(*TRAIN, "--out", str(tmp_path), "--set", f"train.lr={value}")
    assert got.code == 2 and "train.lr" in got.line and "finite" in got.line


def test_spaces_in_a_set_reach_the_notebooks_stripped(kdlib_cli, monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(reproduce_command, "reproduce", lambda name, overrides, *a, **k: seen.update(overrides))
    got = kdlib_cli("reproduce", "--profile", "tiny", "--out", str(tmp_path), "--set", "train.kd_steps = 6")
    assert got.code == 0
    assert seen == {"train.kd_steps": "6"}


def test_a_kernel_of_a_deleted_environment_is_named_with_the_fix(tmp_path, monkeypatch):
    spec = tmp_path / "kernels" / "kdlib"
    spec.mkdir(parents=True)
    gone = tmp_path / "deleted-env" / "bin" / "python"
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": [str(gone), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "kdlib",
         "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(UserError, match="python -m ipykernel install --user --name kdlib") as err:
        reproduce.check_kernel("kdlib")
    assert str(gone) in str(err.value) and "\n" not in str(err.value)


def test_ctrl_c_says_how_to_resume(kdlib_cli, monkeypatch, tmp_path):
    from kdlib.train import study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "train_run", interrupted)
    got = kdlib_cli(*TRAIN, "--out", str(tmp_path))
    assert got.code == 130 and "interrupted" in got.line and "--resume" in got.line
