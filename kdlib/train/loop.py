"""The optimisation loop shared by SFT and every distillation method.

A :class:`Task` supplies a trainable ``module`` whose ``forward(micro)`` returns the loss terms
of one micro-batch (``{"loss": total, term: value, ...}``, each already divided by the global
normaliser of the step, so that summing over micro-batches and averaging over data-parallel
ranks gives the step's loss), and ``micro_batches(step)``, this process's share of global step
``step``. The loop does the rest: AdamW + cosine schedule with warmup, gradient accumulation
(no gradient sync before the last micro-batch), clipping, metrics, checkpoints and resume.
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from kdlib.errors import UserError
from kdlib.train import checkpoint, snapshots
from kdlib.train.config import SFT_METHODS, TrainConfig
from kdlib.train.metrics_log import MetricsLog
from kdlib.train.term_gradients import term_gradient_stats, term_gradients
from kdlib.train.validation import BestWeights, validation_loss


class Task(Protocol):
    """What a run gives the loop: the trainable objective and its batches."""

    module: nn.Module

    def micro_batches(self, step: int) -> list[dict[str, Any]]:
        """This process's micro-batches of global step ``step`` (0-based).

        Each carries an int ``num_tokens`` (non-pad inputs, for throughput) and, when it holds
        sampled responses, ``num_generated`` (response tokens sampled); both are removed before the forward.
        """
        ...

    def validation_batches(self) -> list[dict[str, Any]]:
        """Micro-batches of the validation split (needed when ``cfg.val_every > 0``): each with ``denom``
        1 (summed loss) and ``num_scored``, the items its loss sums over
        (:func:`~kdlib.train.validation.validation_loss`)."""
        ...


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio``: the multiplier of step ``step``.

    ``f(s) = (s + 1) / (warmup + 1)`` for ``s < warmup``, else
    ``min + (1 - min) (1 + cos(pi (s - warmup) / (total - warmup))) / 2``.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or peak resident memory of the process (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{cfg.run_name}: the model has no trainable parameters")
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps,
                             weight_decay=cfg.weight_decay)


def _start(accelerator: Accelerator, run_dir: Path, resume: bool, log: MetricsLog,
           progress: checkpoint.Progress, best: BestWeights) -> None:
    """Resume from the newest readable checkpoint, or start afresh (old checkpoints, metrics and
    best-validation weights removed)."""
    ckpts = run_dir / "checkpoints"
    if accelerator.is_main_process:
        checkpoint.remove_partial(ckpts)
    accelerator.wait_for_everyone()
    if resume and checkpoint.load_newest(accelerator, ckpts) is not None:
        log.truncate(progress.step)
        best.restore(progress.step)
        return
    best.reset()
    if accelerator.is_main_process:
        for old in checkpoint.complete_checkpoints(ckpts):
            shutil.rmtree(old)
        snapshots.clear_snapshots(run_dir)
        log.truncate(0)
    accelerator.wait_for_everyone()


class TrainingDiverged(UserError):
    """A loss term or the gradient norm of a step is NaN or infinite: the run stops, nothing is saved."""


def require_finite(cfg: TrainConfig, step: int, values: dict[str, float], lr: float) -> None:
    """Raise :class:`TrainingDiverged` naming the step (1-based), the first non-finite term and its value.

    ``values`` are the step's loss terms averaged over ranks and the global gradient norm (the same
    on every rank), so every process stops at the same step, before the optimiser applies it.
    """
    for name, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"{cfg.run_name}: step {step + 1}/{cfg.steps}: {name} is {value} (lr {lr:g}); "
                                   "training stopped and no model saved: lower the learning rate "
                                   "(train.lr for sft, train.kd_lr for distillation)")


def _step(task: Task, module: nn.Module, optimizer, scheduler, accelerator: Accelerator,
          cfg: TrainConfig, step: int) -> dict[str, Any]:
    """One optimiser update; returns its metrics (terms averaged over ranks, tokens summed)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    micros = task.micro_batches(step)
    totals: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=accelerator.device))
    tokens, generated = 0, 0
    for i, micro in enumerate(micros):
        tokens += micro.pop("num_tokens")
        generated += micro.pop("num_generated", 0)
        sync = nullcontext() if i == len(micros) - 1 else accelerator.no_sync(module)
        with sync:
            terms = module(micro)
            accelerator.backward(terms["loss"])
        for key, value in terms.items():
            totals[key] += value.detach().float()
    params = [p for p in module.parameters() if p.requires_grad]
    diagnostics: dict[str, float] = {}
    if cfg.grad_norm_every and (step + 1) % cfg.grad_norm_every == 0:
        weights = accelerator.unwrap_model(module).weights
        grads = term_gradients(module, micros, cfg.terms, weights, params, accelerator)
        total = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        diagnostics = term_gradient_stats(grads, total)
    grad_norm = accelerator.clip_grad_norm_(params, cfg.grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    names = sorted(totals)
    means = accelerator.reduce(torch.stack([totals[k] for k in names]), reduction="mean").tolist()
    require_finite(cfg, step, {**dict(zip(names, means)), "grad_norm": float(grad_norm)}, lr)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    tokens, generated = accelerator.reduce(torch.tensor([tokens, generated], device=accelerator.device),
                                           reduction="sum").tolist()
    seconds = time.perf_counter() - start
    return {"step": step + 1, **dict(zip(names, means)), "lr": lr, "grad_norm": float(grad_norm),
            "tokens": tokens, "tokens_per_s": tokens / seconds, "generated_tokens": generated, "step_s": seconds,
            "cpu_s": time.process_time() - cpu_start, "peak_mem_mb": peak_memory_mb(accelerator.device),
            **diagnostics}


def run(task: Task, cfg: TrainConfig, run_dir: Path, accelerator: Accelerator, resume: bool = False) -> Path:
    """Train ``task.module`` for ``cfg.steps`` updates; return the metrics file (``run_dir/metrics.jsonl``).

    With ``cfg.checkpoint_every`` the last step is checkpointed too, so the trained weights survive a
    failed final save (``--resume`` then only saves the model). A non-finite loss term or gradient
    norm stops the run (:class:`TrainingDiverged`). With ``cfg.val_every`` the validation loss is
    logged (``val_loss``) every ``val_every`` steps and after the last, and the module ends with the
    weights of the step where it was lowest (:class:`~kdlib.train.validation.BestWeights`). With
    ``cfg.grad_norm_every`` every n-th step also logs each term's gradient norm and its cosine to the
    total gradient (:mod:`kdlib.train.term_gradients`). With ``cfg.snapshot_every`` the trainable weights of
    every n-th step are kept for learning curves (:mod:`kdlib.train.snapshots`).
    """
    optimizer = _optimizer(task.module, cfg)
    warmup = round(cfg.warmup_ratio * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, warmup, cfg.min_lr_ratio))
    module, optimizer = accelerator.prepare(task.module, optimizer)
    progress = checkpoint.Progress()
    accelerator.register_for_checkpointing(scheduler, progress)
    log = MetricsLog(run_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
    best = BestWeights(run_dir, accelerator)
    _start(accelerator, run_dir, resume, log, progress, best)
    module.train(cfg.method in SFT_METHODS)  # distillation runs without dropout, as MiniLLM does
    bar = tqdm(total=cfg.steps, initial=progress.step, desc=cfg.run_name,
               disable=not (cfg.progress and accelerator.is_main_process))
    clock = time.perf_counter()
    while progress.step < cfg.steps:
        record = _step(task, module, optimizer, scheduler, accelerator, cfg, progress.step)
        progress.step += 1
        if cfg.val_every and (progress.step % cfg.val_every == 0 or progress.step == cfg.steps):
            record["val_loss"] = validation_loss(module, task.validation_batches(), accelerator)
            best.update(module, progress.step, record["val_loss"])
        if cfg.snapshot_every and progress.step % cfg.snapshot_every == 0:
            snapshots.save_trainable(module, accelerator, snapshots.snapshot_file(run_dir, progress.step))
        record["elapsed_s"] = time.perf_counter() - clock
        log.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        if cfg.checkpoint_every and (progress.step % cfg.checkpoint_every == 0 or progress.step == cfg.steps):
            checkpoint.save(accelerator, run_dir / "checkpoints", progress.step, cfg.keep_checkpoints)
    bar.close()
    best.load_into(module)
    accelerator.wait_for_everyone()
    return log.path
