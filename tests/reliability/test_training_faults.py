"""Training faults: NaN losses, full disks, foreign or damaged checkpoints, stale temporary folders.

Every case ends in one error naming the step and term, or the path; no model is saved as finished.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from kdlib.errors import UserError
from kdlib.run import make_context
from kdlib.train import checkpoint
from kdlib.train.loop import TrainingDiverged
from kdlib.train.metrics_log import read_metrics
from kdlib.train.study import train_run


def teacher_run(profile, out: Path, data_root, study, **kwargs):
    ctx = make_context(profile, data_root, out, seed=0, device="cpu", progress=False)
    return train_run(ctx, "sft", role="teacher", study=study, **kwargs)


def test_a_nan_loss_stops_the_run_naming_step_and_term(fast_profile, fast_study, data_root, tmp_path):
    profile = fast_profile.override({"train.lr": 1e6})
    with pytest.raises(TrainingDiverged, match=r"teacher: step \d+/4: \w+ is (nan|inf)") as err:
        teacher_run(profile, tmp_path, data_root, fast_study)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "models" / "teacher").exists(), "a diverged run saves no model"
    assert not json.loads((tmp_path / "train" / "teacher" / "data.json").read_text())["finished"]


def test_a_model_with_nan_weights_is_not_evaluated(fast_profile, fast_study, data_root, tmp_path):
    from kdlib.models.io import load_for_inference
    from kdlib.models import save_mllm
    from kdlib.train.study import build_models

    pair = build_models(fast_profile, fast_study)
    with torch.no_grad():
        next(pair.student.parameters()).fill_(float("nan"))
    save_mllm(tmp_path / "student_sft", pair.student, pair.tokenizer, pair.image_processor)
    with pytest.raises(ValueError, match="NaN or infinity") as err:
        load_for_inference(tmp_path / "student_sft")
    assert str(tmp_path / "student_sft") in str(err.value)


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_partial_folder(
        fast_profile, fast_study, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(UserError, match=r"^no space left on device while writing .*step-00000001\.tmp$"):
        teacher_run(fast_profile.override({"train.checkpoint_every": 1}), tmp_path, data_root, fast_study)
    assert not list((tmp_path / "train" / "teacher" / "checkpoints").iterdir())
    assert not (tmp_path / "models" / "teacher").exists()


def test_a_full_disk_at_the_final_save_keeps_the_trained_weights(
        fast_profile, fast_study, data_root, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    profile = fast_profile.override({"train.checkpoint_every": 2})
    real_save = PreTrainedModel.save_pretrained

    def half_then_full(self, folder, *args, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"half a model")
        no_space()

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", half_then_full)
    with pytest.raises(UserError, match=r"no space left on device while writing .*models/teacher; "
                                        r"the trained weights are kept in .*step-00000004"):
        teacher_run(profile, tmp_path, data_root, fast_study)
    assert not list((tmp_path / "models").iterdir()), "no partial model folder"
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)
    paths = teacher_run(profile, tmp_path, data_root, fast_study, resume=True)
    assert len(read_metrics(paths.metrics)) == 4 and (paths.model / "model.safetensors").is_file()


def test_an_unwritable_output_folder_fails_before_the_data_is_read(fast_profile, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match=f"output folder {blocker / 'out'} is not writable"):
        make_context(fast_profile, tmp_path / "no-data-here", blocker / "out")


@pytest.fixture(scope="module")
def stopped_run(fast_profile, fast_study, data_root, tmp_path_factory) -> Path:
    """An output folder whose teacher SFT stopped (Ctrl-C) after the checkpoints of steps 1 and 2."""
    out = tmp_path_factory.mktemp("stopped")
    real_save = checkpoint.save

    def save_then_stop(accelerator, root, step, keep):
        path = real_save(accelerator, root, step, keep)
        if step == 2:
            raise KeyboardInterrupt
        return path

    checkpoint.save = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            teacher_run(fast_profile.override({"train.checkpoint_every": 1}), out, data_root, fast_study)
    finally:
        checkpoint.save = real_save
    return out


def copy_of(stopped_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(stopped_run, out)
    return out


def test_resume_refuses_other_training_records(stopped_run, fast_profile, fast_study, data_root, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    fewer = type(fast_study)(**{**fast_study.__dict__, "train": fast_study.train[5:]})
    with pytest.raises(UserError, match=r"data\.json: --resume: the checkpoints were trained on other records"):
        teacher_run(fast_profile.override({"train.checkpoint_every": 1}), out, data_root, fewer, resume=True)


def test_starting_over_needs_restart_and_keeps_the_checkpoints_until_then(
        stopped_run, fast_profile, fast_study, data_root, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    ckpts = out / "train" / "teacher" / "checkpoints"
    profile = fast_profile.override({"train.checkpoint_every": 1})
    with pytest.raises(UserError, match="--resume, or start over with --restart"):
        teacher_run(profile, out, data_root, fast_study)
    assert [p.name for p in checkpoint.complete_checkpoints(ckpts)] == ["step-00000001", "step-00000002"]
    paths = teacher_run(profile, out, data_root, fast_study, restart=True)
    assert [r["step"] for r in read_metrics(paths.metrics)] == [1, 2, 3, 4]


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
        stopped_run, fast_profile, fast_study, data_root, tmp_path):
    out = copy_of(stopped_run, tmp_path)
    optimizer = out / "train" / "teacher" / "checkpoints" / "step-00000002" / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.warns(UserWarning, match="step-00000002 cannot be read.*falling back"):
        paths = teacher_run(fast_profile.override({"train.checkpoint_every": 1}), out, data_root, fast_study,
                            resume=True)
    assert [r["step"] for r in read_metrics(paths.metrics)] == [1, 2, 3, 4]


KILL_IN_FINAL_SAVE = """
import os, signal, sys
from pathlib import Path
from transformers import PreTrainedModel
from kdlib.cli import main

def killed(self, folder, *args, **kwargs):
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.kill(os.getpid(), signal.SIGKILL)

PreTrainedModel.save_pretrained = killed
main(sys.argv[1:])
"""


def test_a_kill_during_the_final_save_leaves_nothing_behind_once_rerun(
        fast_overrides, fast_profile, fast_study, data_root, tmp_path):
    sets = [arg for key, value in fast_overrides.items() for arg in ("--set", f"{key}={value}")]
    proc = subprocess.run([sys.executable, "-c", KILL_IN_FINAL_SAVE, "train", "--profile", "tiny", "--method", "sft",
                           "--role", "teacher", "--out", str(tmp_path), "--data-root", str(data_root),
                           "--no-progress", *sets], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    [stale] = (tmp_path / "models").glob(".teacher.tmp-*")
    partial_checkpoint = tmp_path / "train" / "teacher" / "checkpoints" / "step-00000003.tmp"
    partial_checkpoint.mkdir(parents=True)
    paths = teacher_run(fast_profile, tmp_path, data_root, fast_study)
    assert not stale.exists() and not partial_checkpoint.exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["teacher"] == [paths.model.name]
