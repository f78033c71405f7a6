"""The machinery every training run shares: the accelerator, the recorded configuration, the loop.

:func:`run_task` records a run's configuration (``config.json``, atomic) and runs
:func:`kdlib.train.loop.run` on a task, the object that builds each step's micro-batches
(:class:`GroundTruthTask` for SFT and the token-level distillation methods,
:class:`kdlib.train.distill.RolloutTask` for ``paper``). :func:`kdlib.train.sft.train_sft` and
:func:`kdlib.train.distill.distill` are the two kinds of run built on it.

Devices: one :class:`accelerate.Accelerator` per run (CPU or one GPU, with bf16 autocast when
``profile.dtype == "bfloat16"``, or the processes of ``accelerate launch``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState
from torch import nn

from kdlib.data.collate import Collator
from kdlib.data.records import Record
from kdlib.files import write_json
from kdlib.models import num_image_tokens
from kdlib.models.lora import unwrap
from kdlib.profiles import Profile
from kdlib.train import checkpoint, loop
from kdlib.train.batches import (BatchOrder, ground_truth_micro_batches, local_block, micro_slices, scored_tokens,
                                 to_device)
from kdlib.train.config import TrainConfig, changed_fields, run_record
from kdlib.train.methods import Objective


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the trained model (LoRA-wrapped when the profile uses LoRA) and its metrics file."""

    model: nn.Module
    metrics: Path
    config: TrainConfig


def cpu_has_bf16() -> bool:
    """True when oneDNN runs bf16 matrix products natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def make_accelerator(cfg: TrainConfig, device: str | torch.device | None = None) -> Accelerator:
    """CPU when asked (or without CUDA), else the GPU(s); bf16 autocast for ``dtype="bfloat16"``.

    On a CPU the autocast is torch's CPU autocast (fp32 weights, bf16 matrix products), used only
    when the CPU has bf16 instructions (:func:`cpu_has_bf16`): elsewhere oneDNN emulates them and a
    SmolLM2-135M forward+backward measured 12x slower than float32, so such a CPU runs float32
    (with a warning). ``float32`` keeps autocast off everywhere.
    ``find_unused_parameters`` is on for ``paper`` (an ablation can leave the projector or the LLM
    without gradient); under ``accelerate launch`` the process group comes from the launcher.
    """
    cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
    precision = "bf16" if cfg.dtype == "bfloat16" else "no"
    if precision == "bf16" and cpu and not cpu_has_bf16():
        warnings.warn("dtype bfloat16 on a CPU without bf16 instructions: training in float32 (emulated bf16 is slower)")
        precision = "no"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.method == "paper")
    _release_other_precision(precision)
    return Accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=[ddp])


def _release_other_precision(precision: str) -> None:
    """Let this process's next run use ``precision`` ("no" or "bf16").

    accelerate keeps one ``AcceleratorState`` per process and refuses an ``Accelerator`` with another
    mixed precision ("restart your runtime"). A notebook, the book's chapters and the tests run
    several runs one after another in one process, and a ``tiny`` (float32) run may precede a ``small``
    (bf16) one, so the finished runs' state is dropped when the precision changes. The process group
    (``PartialState``) stays, so this holds under ``accelerate launch`` too.
    """
    if AcceleratorState._shared_state.get("_mixed_precision", precision) != precision:
        AcceleratorState._reset_state()


def write_config(run_dir: Path, cfg: TrainConfig, profile: Profile, accelerator: Accelerator) -> None:
    """``run_dir/config.json``: the run's configuration and profile (main process, atomic)."""
    if not accelerator.is_main_process:
        return
    write_json(run_dir / "config.json", {**run_record(cfg, profile), "processes": accelerator.num_processes,
                                         "distributed_type": str(accelerator.distributed_type.value)})


class GroundTruthTask:
    """Batches of ground-truth conversations (SFT and the token-level distillation methods); ``val_records``
    are the validation split of a run with ``cfg.val_every`` (its first ``cfg.val_size`` when set)."""

    def __init__(self, objective: Objective, records: Sequence[Record], collate: Collator, cfg: TrainConfig,
                 accelerator: Accelerator, val_records: Sequence[Record] = ()) -> None:
        self.module, self.records, self.collate = objective, list(records), collate
        self.cfg, self.accelerator = cfg, accelerator
        self.order = BatchOrder(len(self.records), cfg.batch_size, cfg.seed)
        self.val_records = list(val_records)[:cfg.val_size or None]
        if cfg.val_every and not self.val_records:
            raise ValueError(f"{cfg.run_name}: val_every {cfg.val_every} needs validation records, and the val split is empty")

    def validation_batches(self) -> Iterator[dict[str, Any]]:
        """Every validation record once, whole on each process, in micro-batches with ``denom`` 1."""
        for rows in micro_slices(len(self.val_records), self.cfg.micro_batch_size or self.cfg.batch_size):
            batch = to_device(self.collate(self.val_records[rows]), self.accelerator.device)
            yield {**batch, "denom": 1.0, "share": 1.0, "num_scored": int(scored_tokens(batch["labels"]))}

    def micro_batches(self, step: int) -> list[dict[str, Any]]:
        chosen = local_block([self.records[i] for i in self.order.indices(step)], self.accelerator)
        return ground_truth_micro_batches(chosen, self.collate, self.cfg.batch_size, self.cfg.micro_batch_size,
                                          self.accelerator, self.cfg.group_by_length)


def train_collator(model: nn.Module, tokenizer: Any, image_processor: Any, cfg: TrainConfig,
                   mode: str = "train") -> Collator:
    return Collator(tokenizer, image_processor, num_image_tokens(unwrap(model)), cfg.max_length, mode)


def run_task(task: Any, cfg: TrainConfig, profile: Profile, run_dir: Path, accelerator: Accelerator,
             resume: bool) -> Path:
    """Record the configuration, run the loop, return the metrics file.

    ``resume`` continues from the newest checkpoint only when ``run_dir/config.json`` describes
    this same run (:func:`~kdlib.train.config.changed_fields`); otherwise it raises, naming the
    fields, rather than mix two configurations in one model.
    """
    config = run_dir / "config.json"
    if resume and config.is_file() and checkpoint.latest(run_dir / "checkpoints") is not None:
        changed = changed_fields(json.loads(config.read_text()), cfg, profile)
        if changed:
            raise ValueError(f"{config}: its checkpoints were trained with other values of {', '.join(changed)}; "
                             f"delete {run_dir / 'checkpoints'} or run without --resume (resume=False) to start this "
                             "configuration afresh")
    write_config(run_dir, cfg, profile, accelerator)
    return loop.run(task, cfg, run_dir, accelerator, resume)
