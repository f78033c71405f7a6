"""The machinery every training run shares: the accelerator, the recorded configuration, the loop.

:func:`run_task` records a run's configuration (``config.json``, atomic) and runs
:func:`kdlib.train.loop.run` on a task, the object that builds each step's micro-batches
(:class:`GroundTruthTask` for SFT and the token-level distillation methods,
:class:`kdlib.train.distill.RolloutTask` for ``paper``). :func:`kdlib.train.sft.train_sft` and
:func:`kdlib.train.distill.distill` are the two kinds of run built on it.

Devices: one :class:`accelerate.Accelerator` per run (CPU, one GPU with bf16 autocast when
``profile.dtype == "bfloat16"``, or the processes of ``accelerate launch``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch import nn

from kdlib.data.collate import Collator
from kdlib.data.records import Record
from kdlib.files import write_json
from kdlib.models import num_image_tokens
from kdlib.models.lora import unwrap
from kdlib.profiles import Profile
from kdlib.train import checkpoint, loop
from kdlib.train.batches import BatchOrder, ground_truth_micro_batches, local_block
from kdlib.train.config import TrainConfig, changed_fields, run_record
from kdlib.train.methods import Objective


@dataclass(frozen=True)
class TrainResult:
    """A finished run: the trained model (LoRA-wrapped when the profile uses LoRA) and its metrics file."""

    model: nn.Module
    metrics: Path
    config: TrainConfig


def make_accelerator(cfg: TrainConfig, device: str | torch.device | None = None) -> Accelerator:
    """CPU when asked (or without CUDA), else the GPU(s); bf16 autocast for ``dtype="bfloat16"`` on GPU.

    ``find_unused_parameters`` is on for ``paper`` (an ablation can leave the projector or the LLM
    without gradient); under ``accelerate launch`` the process group comes from the launcher.
    """
    cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
    precision = "bf16" if cfg.dtype == "bfloat16" and not cpu else "no"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.method == "paper")
    return Accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=[ddp])


def write_config(run_dir: Path, cfg: TrainConfig, profile: Profile, accelerator: Accelerator) -> None:
    """``run_dir/config.json``: the run's configuration and profile (main process, atomic)."""
    if not accelerator.is_main_process:
        return
    write_json(run_dir / "config.json", {**run_record(cfg, profile), "processes": accelerator.num_processes})


class GroundTruthTask:
    """Batches of ground-truth conversations (SFT and the token-level distillation methods)."""

    def __init__(self, objective: Objective, records: Sequence[Record], collate: Collator, cfg: TrainConfig,
                 accelerator: Accelerator) -> None:
        self.module, self.records, self.collate = objective, list(records), collate
        self.cfg, self.accelerator = cfg, accelerator
        self.order = BatchOrder(len(self.records), cfg.batch_size, cfg.seed)

    def micro_batches(self, step: int) -> list[dict[str, Any]]:
        chosen = local_block([self.records[i] for i in self.order.indices(step)], self.accelerator)
        return ground_truth_micro_batches(chosen, self.collate, self.cfg.batch_size, self.cfg.micro_batch_size,
                                          self.accelerator)


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
