"""Snapshots: the trainable weights of every n-th step, kept for learning curves."""

from __future__ import annotations

import pytest
import torch

from kdlib.train import loop
from kdlib.train.config import TrainConfig
from kdlib.train.harness import make_accelerator
from kdlib.train.snapshots import load_weights, snapshot_file, snapshots

from .test_validation import PlantedTask


def _run(tmp_path, steps: int, every: int, resume: bool = False) -> PlantedTask:
    cfg = TrainConfig(method="sft", steps=steps, batch_size=1, lr=0.5, warmup_ratio=0.0, min_lr_ratio=1.0,
                      grad_clip=100.0, snapshot_every=every, checkpoint_every=1, progress=False)
    task = PlantedTask()
    loop.run(task, cfg, tmp_path, make_accelerator(cfg, "cpu"), resume=resume)
    return task


def test_a_snapshot_holds_the_weights_after_its_step(tmp_path):
    task = _run(tmp_path, steps=6, every=2)
    kept = snapshots(tmp_path)
    assert [step for step, _ in kept] == [2, 4, 6]
    after = [*task.seen[1:], float(task.module.w.detach())]  # w after steps 1 .. 6
    for step, path in kept:
        assert float(torch.load(path, weights_only=True)["w"]) == after[step - 1]
    assert len({float(torch.load(p, weights_only=True)["w"]) for _, p in kept}) == 3  # training moves w


def test_a_fresh_start_drops_another_runs_snapshots_and_a_resume_keeps_them(tmp_path):
    _run(tmp_path, steps=4, every=2)
    _run(tmp_path, steps=6, every=3, resume=True)  # resumed at step 4: 2 and 4 stay, 6 is added
    assert [step for step, _ in snapshots(tmp_path)] == [2, 4, 6]
    _run(tmp_path, steps=3, every=3)
    assert [step for step, _ in snapshots(tmp_path)] == [3]


def test_snapshot_weights_go_into_the_trained_model_by_its_own_names(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = snapshot_file(tmp_path, 5)
    path.parent.mkdir()
    torch.save({"student.weight": torch.ones(1, 2)}, path)
    load_weights(model, path)
    assert torch.equal(model.weight, torch.ones(1, 2))
    torch.save({"student.lora_A.weight": torch.ones(1, 2)}, path)
    with pytest.raises(ValueError, match=r"step-00000005.pt: holds lora_A.weight, which the model has not"):
        load_weights(model, path)


def test_snapshot_every_must_not_be_negative():
    with pytest.raises(ValueError, match="snapshot_every"):
        TrainConfig(method="sft", steps=1, batch_size=1, lr=0.1, snapshot_every=-1)
