"""Whole runs: the loss falls, a seed fixes the run, a killed run resumes exactly, 2-process DDP = 1 process."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdlib.models import load_mllm
from kdlib.profiles import get_profile
from kdlib.train.metrics_log import TIMING_KEYS, read_metrics
from kdlib.train.sft import train_sft
from kdlib.train.config import TrainConfig
from kdlib.run import RunContext
from kdlib.train.study import finished_run, train_run

STEPS = 4  # the run compared across the tests below: 4 steps of the paper method, checkpoints every 2


@pytest.fixture(scope="module")
def run_overrides(overrides) -> dict:
    return {**overrides, "train.kd_steps": STEPS, "train.checkpoint_every": 2}


def fresh_out(start_models: Path, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(start_models / "models", out / "models")
    return out


def context(profile, out: Path, data_root: Path) -> RunContext:
    return RunContext(profile, Path(data_root), out, 0, torch.device("cpu"), False)


def losses(metrics: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(metrics)]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], run_overrides: dict,
                        atol: float, rtol: float) -> None:
    """All but 0.1% of the elements of every tensor within (atol, rtol), none a learning rate apart.

    Another process (or allocation) may round a matrix product differently in the last bit. Adam
    divides by sqrt(v), so an element whose gradient nearly cancels can turn that bit into up to
    one learning rate per step; a wrong gradient, data order or optimiser state moves most elements.
    """
    lr = get_profile("tiny", run_overrides).train.kd_lr
    assert got.keys() == want.keys()
    for key, value in got.items():
        off = ~torch.isclose(value, want[key], atol=atol, rtol=rtol)
        assert off.float().mean() <= 1e-3, f"{key}: {int(off.sum())} of {off.numel()} elements differ"
        assert (value - want[key]).abs().max() < lr, key


def cli(out: Path, data_root: Path, changes: dict) -> list[str]:
    sets = [arg for key, value in changes.items() for arg in ("--set", f"{key}={value}")]
    return ["-m", "kdlib.cli", "train", "--profile", "tiny", "--method", "paper", "--out", str(out),
            "--data-root", str(data_root), "--device", "cpu", "--no-progress", *sets]


@pytest.fixture(scope="module")
def reference(run_overrides, start_models, data_root, study, tmp_path_factory):
    """The uninterrupted single-process run."""
    out = fresh_out(start_models, tmp_path_factory.mktemp("ref"), "out")
    return train_run(context(get_profile("tiny", run_overrides), out, data_root), "paper", study=study)


def test_loss_falls_over_a_few_dozen_steps(profile, study, start_models, tmp_path):
    start = load_mllm(start_models / "models" / "student_sft")
    cfg = TrainConfig.from_profile(profile, "sft", progress=False, steps=30)
    result = train_sft(start.model, start.tokenizer, start.image_processor, study, cfg, profile, tmp_path)
    ce = [r["ce"] for r in read_metrics(result.metrics)]
    early, late = sum(ce[:5]) / 5, sum(ce[-5:]) / 5
    assert late < early - 0.5, f"cross-entropy went from {early:.3f} to {late:.3f} nats per token"


def test_one_seed_gives_identical_runs(reference, run_overrides, start_models, data_root, study, tmp_path):
    out = fresh_out(start_models, tmp_path, "again")
    again = train_run(context(get_profile("tiny", run_overrides), out, data_root), "paper", study=study)
    assert losses(again.metrics) == losses(reference.metrics)
    first, second = weights(reference.model), weights(again.model)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_finished_run_is_reused_not_retrained(reference, run_overrides, data_root, study, tmp_path):
    profile = get_profile("tiny", run_overrides)
    out = reference.model.parent.parent
    saved = (reference.model / "model.safetensors").stat().st_mtime_ns
    assert train_run(context(profile, out, data_root), "paper", study=study) == reference
    assert (reference.model / "model.safetensors").stat().st_mtime_ns == saved
    run_dir = out / "train" / "student_kd"
    cfg = TrainConfig.from_profile(profile, "paper")
    assert finished_run(run_dir, reference.model, cfg, profile, study) == reference
    assert finished_run(run_dir, reference.model, cfg, profile.override({"seeds": 5, "budget": "x"}), study) == reference
    saving = profile.override({"train.checkpoint_every": 3})
    assert finished_run(run_dir, reference.model, TrainConfig.from_profile(saving, "paper"), saving, study) == reference
    assert finished_run(run_dir, reference.model, cfg, profile.override({"data.per_class": 3}), study) is None
    fewer = dataclasses.replace(study, train=study.train[1:])
    assert finished_run(run_dir, reference.model, cfg, profile, fewer) is None
    other = TrainConfig.from_profile(get_profile("tiny", {**run_overrides, "train.kd_lr": 1e-4}), "paper")
    assert finished_run(run_dir, reference.model, other, profile, study) is None
    newer_teacher = tmp_path / "teacher"
    newer_teacher.mkdir()
    (newer_teacher / "model.safetensors").write_bytes(b"")
    os.utime(newer_teacher / "model.safetensors", ns=(saved + 10**9, saved + 10**9))
    assert finished_run(run_dir, reference.model, cfg, profile, study, [newer_teacher]) is None


def test_a_killed_run_resumes_with_the_same_loss_curve(reference, run_overrides, start_models, data_root, study,
                                                       tmp_path):
    out = fresh_out(start_models, tmp_path, "killed")
    first_checkpoint = out / "train" / "student_kd" / "checkpoints" / "step-00000002"
    proc = subprocess.Popen([sys.executable, *cli(out, data_root, run_overrides)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not first_checkpoint.is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert len(read_metrics(out / "train" / "student_kd" / "metrics.jsonl")) < STEPS
    resumed = train_run(context(get_profile("tiny", run_overrides), out, data_root), "paper", resume=True,
                        study=study)
    got, want = losses(resumed.metrics), losses(reference.metrics)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for a, b in zip(got, want):
        assert a == pytest.approx(b, abs=1e-6)
    assert_same_weights(weights(resumed.model), weights(reference.model), run_overrides, atol=1e-6, rtol=0)
    assert not first_checkpoint.parent.exists(), "a finished run keeps no checkpoints"


def test_two_process_data_parallel_equals_one_process(reference, run_overrides, start_models, data_root, tmp_path):
    out = fresh_out(start_models, tmp_path, "ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *cli(out, data_root, run_overrides)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    config = (out / "train" / "student_kd" / "config.json").read_text()
    assert '"processes": 2' in config
    got, want = losses(out / "train" / "student_kd" / "metrics.jsonl"), losses(reference.metrics)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=1e-5, rel=1e-5)
    assert_same_weights(weights(out / "models" / "student_kd"), weights(reference.model), run_overrides,
                        atol=1e-5, rtol=1e-4)
