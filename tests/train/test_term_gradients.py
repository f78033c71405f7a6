"""Per-term gradient norms of the objective: equal to autograd's, and they leave the update unchanged."""

from __future__ import annotations

import dataclasses
import math
import shutil

import pytest
import torch
from torch import nn

from kdlib.profiles import get_profile
from kdlib.run import RunContext
from kdlib.train import loop
from kdlib.train.config import TrainConfig
from kdlib.train.harness import make_accelerator
from kdlib.train.metrics_log import TIMING_KEYS, read_metrics
from kdlib.train.study import train_run


class TwoTerms(nn.Module):
    """A linear map with two loss terms: ``a`` (weight 2) an MSE, ``b`` an L1 distance."""

    weights = {"a": 2.0}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)

    def forward(self, micro: dict) -> dict[str, torch.Tensor]:
        out = self.lin(micro["x"])
        a = ((out - micro["y"]) ** 2).sum() / 4
        b = (out - 1.0).abs().sum() / 4
        return {"loss": 2.0 * a + b, "a": a, "b": b}


class Batches:
    def __init__(self) -> None:
        self.module = TwoTerms()
        self.before: list[list[torch.Tensor]] = []  # parameters at the start of each step
        gen = torch.Generator().manual_seed(1)
        self.data = [{"x": torch.randn(2, 3, generator=gen), "y": torch.randn(2, 2, generator=gen)} for _ in range(2)]

    def micro_batches(self, step: int) -> list[dict]:
        self.before.append([p.detach().clone() for p in self.module.parameters()])
        return [{**d, "num_tokens": 2} for d in self.data]  # two micro-batches of 2 rows


def _config(**changes) -> TrainConfig:
    base = TrainConfig(method="paper", steps=3, batch_size=4, lr=0.1, warmup_ratio=0.0, grad_clip=0.05,
                       progress=False, ablate=frozenset({"align", "lm"}))
    return dataclasses.replace(base, **changes)


def _autograd_norms(task: Batches, params: list[torch.Tensor]) -> dict[str, float]:
    model = TwoTerms()
    with torch.no_grad():
        for p, value in zip(model.parameters(), params):
            p.copy_(value)
    out = {}
    for name, coef in (("a", 2.0), ("b", 1.0)):
        total = sum(model({k: v for k, v in d.items()})[name] for d in task.data) * coef
        grads = torch.autograd.grad(total, list(model.parameters()))
        out[name] = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    return out


def test_term_gradient_norms_equal_autograds_and_sum_to_the_total(tmp_path, monkeypatch):
    monkeypatch.setattr(TrainConfig, "terms", property(lambda self: ("a", "b")))
    cfg = _config(grad_norm_every=2)
    task = Batches()
    records = read_metrics(loop.run(task, cfg, tmp_path, make_accelerator(cfg, "cpu")))
    assert [r["step"] for r in records if "grad_norm_a" in r] == [2]
    logged = records[1]
    want = _autograd_norms(task, task.before[1])
    assert logged["grad_norm_a"] == pytest.approx(want["a"], rel=1e-5)
    assert logged["grad_norm_b"] == pytest.approx(want["b"], rel=1e-5)
    # projections on the total direction add up to the total (pre-clip) gradient norm
    projected = sum(logged[f"grad_norm_{t}"] * logged[f"grad_cos_{t}"] for t in "ab")
    assert projected == pytest.approx(logged["grad_norm"], rel=1e-5)
    assert logged["grad_norm"] > cfg.grad_clip  # the cosine is taken before clipping, which scales all alike


def test_logging_term_gradients_leaves_the_update_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(TrainConfig, "terms", property(lambda self: ("a", "b")))
    finals = []
    for every in (0, 1):
        task = Batches()
        cfg = _config(grad_norm_every=every)
        loop.run(task, cfg, tmp_path / str(every), make_accelerator(cfg, "cpu"))
        finals.append([p.detach() for p in task.module.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*finals))


def test_every_paper_term_is_measured_on_the_tiny_models(start_models, data_root, study, overrides, tmp_path):
    profile = get_profile("tiny", {**overrides, "train.kd_steps": 2, "train.grad_norm_every": 1})
    out = tmp_path / "out"
    shutil.copytree(start_models / "models", out / "models")
    ctx = RunContext(profile, data_root, out, 0, torch.device("cpu"), False)
    records = read_metrics(train_run(ctx, "paper", study=study).metrics)
    for r in records:
        for term in ("align", "single", "long", "lm"):
            assert r[f"grad_norm_{term}"] > 0 and -1.0 <= r[f"grad_cos_{term}"] <= 1.0, term
        projected = sum(r[f"grad_norm_{t}"] * r[f"grad_cos_{t}"] for t in ("align", "single", "long", "lm"))
        assert projected == pytest.approx(r["grad_norm"], rel=1e-4)
    plain = get_profile("tiny", {**overrides, "train.kd_steps": 2})
    shutil.copytree(start_models / "models", tmp_path / "plain" / "models")
    again = read_metrics(train_run(dataclasses.replace(ctx, profile=plain, out_dir=tmp_path / "plain"), "paper",
                                   study=study).metrics)
    keep = lambda r: {k: v for k, v in r.items() if k not in TIMING_KEYS and not k.startswith(("grad_norm_", "grad_cos_"))}
    assert [keep(r) for r in records] == [keep(r) for r in again]


@pytest.mark.parametrize("method", ["forward_kl", "reverse_kl", "align_kd", "switch_kd"])
def test_every_distillation_method_of_the_book_measures_its_terms(method, start_models, data_root, study, overrides,
                                                                  tmp_path):
    """tiny logs per-term gradients (``train.grad_norm_every``), so every distillation of its book does."""
    profile = get_profile("tiny", {**overrides, "train.kd_steps": 1, "train.grad_norm_every": 1})
    out = tmp_path / "out"
    shutil.copytree(start_models / "models", out / "models")
    ctx = RunContext(profile, data_root, out, 0, torch.device("cpu"), False)
    (record,) = read_metrics(train_run(ctx, method, study=study).metrics)
    terms = TrainConfig.from_profile(profile, method).terms
    for term in terms:
        assert record[f"grad_norm_{term}"] >= 0 and abs(record[f"grad_cos_{term}"]) <= 1 + 1e-6, term
    projected = sum(record[f"grad_norm_{t}"] * record[f"grad_cos_{t}"] for t in terms)
    assert projected == pytest.approx(record["grad_norm"], rel=1e-4)
