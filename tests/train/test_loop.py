"""Schedule, metrics file and checkpoint folders of the training loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kdlib.train.checkpoint import checkpoint_dir, complete_checkpoints, latest
from kdlib.train.loop import lr_factor
from kdlib.train.figures import final_losses, loss_terms, running_mean
from kdlib.train.metrics_log import MetricsLog, read_metrics


def test_lr_schedule_matches_a_lambda_lr_and_the_closed_form():
    total, warmup, floor = 20, 4, 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, floor))
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [2.0 * (s + 1) / (warmup + 1) if s < warmup else
                2.0 * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
                for s in range(total)]
    assert seen == pytest.approx(expected)
    assert seen[warmup] == pytest.approx(2.0) and min(seen[warmup:]) > 2.0 * floor


def test_metrics_log_truncates_and_skips_a_partial_last_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.append({"step": step, "loss": 1.0 / step, "tokens_per_s": 5.0})
    with log.path.open("a") as f:
        f.write('{"step": 4, "lo')  # a run killed mid-line
    assert [r["step"] for r in read_metrics(log.path)] == [1, 2, 3]
    log.truncate(2)
    assert [json.loads(line)["step"] for line in log.path.read_text().splitlines()] == [1, 2]
    assert {k: v.tolist() for k, v in loss_terms(log.path).items()} == {"loss": [1.0, 0.5]}
    assert final_losses(log.path, last=5) == {"loss": 0.75}


def test_running_mean_equals_a_direct_window_mean():
    values = np.array([4.0, 2.0, 6.0, 1.0, 3.0])
    direct = [values[max(0, t - 2):t + 1].mean() for t in range(5)]
    np.testing.assert_allclose(running_mean(values, 3), direct)


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics(path)


def test_only_complete_checkpoints_count(tmp_path):
    for step in (2, 10):
        checkpoint_dir(tmp_path, step).mkdir()
    (tmp_path / "step-00000012.tmp").mkdir()  # a save that was interrupted
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step-00000002", "step-00000010"]
    assert latest(tmp_path) == checkpoint_dir(tmp_path, 10)
    assert latest(tmp_path / "absent") is None
