"""Whole runs: the loss falls, a seed fixes the run, a killed run resumes exactly, 2-process DDP = 1 process."""

from __future__ import annotations

import dataclasses
import json
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
    starts = [out / "models" / "teacher", out / "models" / "student_sft"]
    assert finished_run(run_dir, reference.model, cfg, profile, study, starts) == reference
    assert finished_run(run_dir, reference.model, cfg, profile.override({"seeds": 5, "budget": "x"}), study,
                        starts) == reference
    saving = profile.override({"train.checkpoint_every": 3})
    assert finished_run(run_dir, reference.model, TrainConfig.from_profile(saving, "paper"), saving, study,
                        starts) == reference
    assert finished_run(run_dir, reference.model, cfg, profile.override({"data.per_class": 3}), study, starts) is None
    fewer = dataclasses.replace(study, train=study.train[1:])
    assert finished_run(run_dir, reference.model, cfg, profile, fewer, starts) is None
    other = TrainConfig.from_profile(get_profile("tiny", {**run_overrides, "train.kd_lr": 1e-4}), "paper")
    assert finished_run(run_dir, reference.model, other, profile, study, starts) is None
    elsewhere = tmp_path / "teacher"  # another teacher, older than the run: not the one it distilled from
    shutil.copytree(starts[0], elsewhere)
    os.utime(elsewhere / "model.safetensors", ns=(saved - 10**9, saved - 10**9))
    assert finished_run(run_dir, reference.model, cfg, profile, study, [elsewhere, starts[1]]) is None
    teacher_file = starts[0] / "model.safetensors"
    before = teacher_file.stat().st_mtime_ns
    try:  # the same teacher, saved again after the run
        os.utime(teacher_file, ns=(saved + 10**9, saved + 10**9))
        assert finished_run(run_dir, reference.model, cfg, profile, study, starts) is None
    finally:
        os.utime(teacher_file, ns=(before, before))


def test_a_run_saved_before_its_starts_were_recorded_began_from_its_own_folder(reference, run_overrides, study,
                                                                               tmp_path):
    profile = get_profile("tiny", run_overrides)
    out = tmp_path / "old"
    shutil.copytree(reference.model.parent.parent, out)
    run_dir, model = out / "train" / "student_kd", out / "models" / "student_kd"
    data = json.loads((run_dir / "data.json").read_text())
    assert data.pop("starts") == ["../../models/teacher", "../../models/student_sft"]
    (run_dir / "data.json").write_text(json.dumps(data))
    cfg = TrainConfig.from_profile(profile, "paper")
    own = [out / "models" / "teacher", out / "models" / "student_sft"]
    assert finished_run(run_dir, model, cfg, profile, study, own) is not None
    book_teacher = tmp_path / "book" / "models" / "teacher"  # a seed's run that now starts from the book's teacher
    shutil.copytree(own[0], book_teacher)
    assert finished_run(run_dir, model, cfg, profile, study, [book_teacher, own[1]]) is None


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


FSDP_CONFIG = """\
distributed_type: FSDP
num_machines: 1
num_processes: 2
mixed_precision: "no"
use_cpu: {cpu}
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_offload_params: false
  fsdp_activation_checkpointing: false
"""


#: accelerate 1.16 picks FSDP only on accelerators: with ``use_cpu`` the same config silently runs
#: MULTI_CPU (DDP over gloo), so the FSDP claim can be tested on GPUs only
FSDP_ON_CPU = "accelerate runs FSDP configs with use_cpu as MULTI_CPU data parallelism (no sharding on CPU)"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason=f"needs 2 GPUs: {FSDP_ON_CPU}")
def test_two_process_fsdp_equals_one_process(reference, run_overrides, start_models, data_root, tmp_path):
    out = fresh_out(start_models, tmp_path, "fsdp")
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CONFIG.format(cpu=str(not torch.cuda.is_available()).lower()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = cli(out, data_root, run_overrides)
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                           *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((out / "train" / "student_kd" / "config.json").read_text())
    assert saved["processes"] == 2 and saved["distributed_type"] == "FSDP"
    got, want = losses(out / "train" / "student_kd" / "metrics.jsonl"), losses(reference.metrics)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, abs=1e-5, rel=1e-5)
    assert_same_weights(weights(out / "models" / "student_kd"), weights(reference.model), run_overrides,
                        atol=1e-5, rtol=1e-4)
