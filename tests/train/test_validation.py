"""Validation loss during training and the best-validation weights a run keeps."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdlib.models import load_mllm
from kdlib.train import loop
from kdlib.train.config import TrainConfig
from kdlib.train.harness import GroundTruthTask, make_accelerator, train_collator
from kdlib.train.methods import build_objective
from kdlib.train.metrics_log import read_metrics
from kdlib.train.sft import train_sft
from kdlib.train.validation import validation_loss


class Quadratic(nn.Module):
    """One weight ``w``: training pulls it to 10, the validation loss ``(w - 2)^2`` is lowest at 2."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, micro: dict) -> dict[str, torch.Tensor]:
        target = 2.0 if micro["val"] else 10.0
        return {"loss": (self.w - target) ** 2 * micro["scale"]}


class PlantedTask:
    """Training data that walks ``w`` past the validation optimum: the val loss falls, then rises."""

    def __init__(self) -> None:
        self.module = Quadratic()
        self.seen: list[float] = []  # w before step s = w after s updates

    def micro_batches(self, step: int) -> list[dict]:
        self.seen.append(float(self.module.w.detach()))
        return [{"val": False, "scale": 1.0, "num_tokens": 1}]

    def validation_batches(self):
        # two batches, summed losses over 3 and 1 items: the mean over 4 items is (w - 2)^2
        return iter([{"val": True, "scale": 3.0, "num_scored": 3}, {"val": True, "scale": 1.0, "num_scored": 1}])


def test_a_run_whose_val_loss_rises_after_step_k_keeps_step_k(tmp_path):
    cfg = TrainConfig(method="sft", steps=12, batch_size=1, lr=0.5, warmup_ratio=0.0, min_lr_ratio=1.0,
                      grad_clip=100.0, val_every=1, progress=False)
    task = PlantedTask()
    metrics = read_metrics(loop.run(task, cfg, tmp_path, make_accelerator(cfg, "cpu")))
    after = task.seen[1:]  # w after steps 1 .. 11
    val = [r["val_loss"] for r in metrics]
    assert val[:-1] == pytest.approx([(w - 2.0) ** 2 for w in after])
    k = min(range(len(val)), key=val.__getitem__) + 1  # 1-based step of the lowest validation loss
    assert 1 < k < cfg.steps and val[-1] > val[k - 1], "the planted run must fall, then rise"
    assert float(task.module.w) == after[k - 1]
    assert json.loads((tmp_path / "best.json").read_text()) == {"step": k, "val_loss": val[k - 1]}


def test_val_every_logs_the_loss_on_its_steps_and_the_last(tmp_path):
    cfg = TrainConfig(method="sft", steps=5, batch_size=1, lr=0.1, warmup_ratio=0.0, val_every=2, progress=False)
    metrics = read_metrics(loop.run(PlantedTask(), cfg, tmp_path, make_accelerator(cfg, "cpu")))
    assert [r["step"] for r in metrics if "val_loss" in r] == [2, 4, 5]


def test_sft_returns_the_model_of_its_lowest_validation_loss(profile, study, start_models, tmp_path):
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "sft", progress=False, steps=6, val_every=2, lr=0.05)
    result = train_sft(start.model, start.tokenizer, start.image_processor, study, cfg, profile, tmp_path)
    logged = [r["val_loss"] for r in read_metrics(result.metrics) if "val_loss" in r]
    assert len(logged) == 3
    accelerator = make_accelerator(cfg, "cpu")
    task = GroundTruthTask(build_objective(result.model, None, cfg), study.train,
                           train_collator(result.model, start.tokenizer, start.image_processor, cfg), cfg,
                           accelerator, val_records=study.val)
    assert validation_loss(task.module, task.validation_batches(), accelerator) == pytest.approx(min(logged),
                                                                                                  rel=1e-5)


def test_val_every_without_a_val_split_is_an_error(profile, study):
    cfg = TrainConfig.from_profile(profile, "sft", progress=False, val_every=2)
    with pytest.raises(ValueError, match="val split is empty"):
        GroundTruthTask(nn.Linear(1, 1), study.train, None, cfg, make_accelerator(cfg, "cpu"))


def test_val_size_keeps_the_first_records_of_the_val_split(profile, study, start_models):
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "sft", progress=False, val_every=2, val_size=3)
    task = GroundTruthTask(build_objective(start.model, None, cfg), study.train,
                           train_collator(start.model, start.tokenizer, start.image_processor, cfg), cfg,
                           make_accelerator(cfg, "cpu"), val_records=study.val)
    assert task.val_records == study.val[:3] and len(study.val) > 3
    assert sum(b["input_ids"].shape[0] for b in task.validation_batches()) == 3
