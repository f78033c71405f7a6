"""Teacher-guided SFT (the student's Table 1 initialisation) and the distillation that starts from it."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from kdlib.models import load_mllm
from kdlib.profiles import get_profile
from kdlib.run import RunContext
from kdlib.train.config import TrainConfig, kd_start
from kdlib.train.metrics_log import read_metrics
from kdlib.train.sft import train_sft
from kdlib.train.study import train_run


def test_guided_sft_trains_on_both_signals_and_moves_the_student(profile, study, start_models, tmp_path):
    start = load_mllm(start_models / "models" / "student_sft")
    teacher = load_mllm(start_models / "models" / "teacher").model
    before = {n: p.detach().clone() for n, p in start.model.named_parameters()}
    cfg = TrainConfig.from_profile(profile, "guided_sft", progress=False, steps=3, grad_norm_every=1,
                                   guided_kd_ratio=0.3)
    assert cfg.run_name == "student_guided" and cfg.val_every == profile.train.val_every
    result = train_sft(start.model, start.tokenizer, start.image_processor, study, cfg, profile, tmp_path,
                       teacher=teacher)
    for r in read_metrics(result.metrics):
        assert r["loss"] == pytest.approx(0.7 * r["ce"] + 0.3 * r["forward_kl"], rel=1e-5)
        assert r["grad_norm_ce"] > 0 and r["grad_norm_forward_kl"] > 0  # both signals reach the parameters
    moved = [n for n, p in result.model.named_parameters() if not torch.equal(p, before[n])]
    assert moved, "no parameter moved"


def test_guided_sft_needs_a_teacher(profile, study, start_models, tmp_path):
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "guided_sft", progress=False)
    with pytest.raises(ValueError, match="needs a teacher"):
        train_sft(start.model, start.tokenizer, start.image_processor, study, cfg, profile, tmp_path)


def test_paper_starts_from_the_guided_student_when_kd_init_is_guided(overrides, start_models, data_root, study,
                                                                      tmp_path):
    profile = get_profile("tiny", {**overrides, "train.kd_init": "guided", "train.sft_steps": 2,
                                   "train.kd_steps": 1, "train.val_every": 1})
    assert kd_start(profile) == "student_guided" and kd_start(get_profile("tiny")) == "student_sft"
    out = tmp_path / "out"
    shutil.copytree(start_models / "models", out / "models")
    ctx = RunContext(profile, data_root, out, 0, torch.device("cpu"), False)
    with pytest.raises(FileNotFoundError, match="student_guided.*--method guided_sft"):
        train_run(ctx, "paper", study=study)
    guided = train_run(ctx, "guided_sft", study=study)
    assert [r["step"] for r in read_metrics(guided.metrics) if "val_loss" in r] == [1, 2]
    kd = train_run(ctx, "paper", study=study, steps=0)  # no update: the saved student is the one it started from
    got, want = load_file(kd.model / "model.safetensors"), load_file(guided.model / "model.safetensors")
    plain = load_file(out / "models" / "student_sft" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert not all(torch.equal(got[k], plain[k]) for k in got)
