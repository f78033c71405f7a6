"""What each change buys a ``small`` training step on this machine: tokens per CPU-second, side by side.

Cases, all optimiser steps of the ``small`` teacher's SFT (SmolLM2-135M-Instruct + DINOv2-S from
``KDLIB_MODEL_ROOT``) on the same batches of real ``small`` training records, unless said otherwise:

* ``float32``: the baseline, full fine-tuning of LLM + projector, every batch padded to its longest row;
* ``grouped``: the same with ``TrainConfig.group_by_length`` (micro-batches of ``--micro`` rows,
  longest first, each padded to its own longest row): same loss, less padding;
* ``projector``: the LLM frozen, only the projector trains (LLaVA's first, alignment stage);
* ``lora64``: LoRA r 64 on every linear layer of the LLM, projector trained (GeoChat's recipe,
  :func:`kdlib.models.apply_lora`);
* ``bf16``: the baseline under CPU bf16 autocast, run only where :func:`kdlib.train.harness.cpu_has_bf16`
  (elsewhere oneDNN emulates bf16 and is slower: the row says so);
* ``paper``: a distillation step of the student (teacher-mixed rollouts, teacher forwards, four terms);
* ``paper_bf16``: the same under CPU bf16 autocast (same rule as ``bf16``).

The vision tower is frozen, so its features are computed once before any case (the feature cache
of the real runs). Every case starts from the same weights in this one process; the first step
of each case is a warm-up and is not timed. Tokens are the non-padding input tokens a step reads
(image tokens included; for ``paper`` prompts, sampled responses and ``D_PT`` text). Per case:
median tokens per CPU-second (process CPU time, which another load on the machine disturbs less)
and per wall-second, the step's median wall time, and the process's peak resident memory during
the case (``VmHWM`` after resetting it, Linux). Ratios are to the ``float32`` row's tokens per
CPU-second.

A ``small`` SFT step takes about 20 CPU-seconds and a distillation step about 40, so the defaults
(2 timed SFT steps, 1 distillation step) keep the whole run near 5 minutes on an idle 2-core CPU.

Usage: ``python benchmarks/small_step.py [--steps 2] [--paper-steps 1] [--micro 4]
[--cases float32,grouped,...] [--data-root DIR]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate.utils import set_seed

from kdlib.data.pretrain import pretrain_texts
from kdlib.data.study import load_study
from kdlib.models import apply_lora
from kdlib.models.feature_cache import data_processor
from kdlib.models.lora import unwrap
from kdlib.profiles import LoRASpec, get_profile
from kdlib.train.config import TrainConfig
from kdlib.train.distill import distill
from kdlib.train.harness import GroundTruthTask, cpu_has_bf16, make_accelerator, run_task, train_collator
from kdlib.train.methods import build_objective
from kdlib.train.metrics_log import read_metrics
from kdlib.train.study import build_models

CASES = ("float32", "grouped", "projector", "lora64", "bf16", "paper", "paper_bf16")
BATCH = 8


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def full(model: Any) -> Any:
    """LLM and projector trainable, vision tower frozen (``lora.r = 0``)."""
    return apply_lora(model, LoRASpec(r=0))


def projector_only(model: Any) -> Any:
    """Only the projector trainable (LLaVA's alignment stage)."""
    model.requires_grad_(False)
    unwrap(model).model.multi_modal_projector.requires_grad_(True)
    return model


def lora64(model: Any) -> Any:
    """GeoChat's LoRA: r 64, alpha 16, dropout 0.05 on the LLM's linear layers; projector trainable."""
    return apply_lora(model, LoRASpec(r=64, alpha=16, dropout=0.05))


class Bench:
    """The data, models and vision features every case shares."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = get_profile("small")
        study = load_study(self.profile, args.data_root or None, check_images=False)
        self.study = dataclasses.replace(study, train=study.train[:(max(args.steps, args.paper_steps) + 1) * BATCH])
        self.pair = build_models(self.profile, self.study)
        self.processor = data_processor(self.pair.teacher, self.pair.image_processor)
        cfg = TrainConfig.from_profile(self.profile, "sft", role="teacher")
        collate = train_collator(self.pair.teacher, self.pair.tokenizer, self.processor, cfg)
        for start in range(0, len(self.study.train), BATCH):  # the frozen tower runs once per image, here
            collate(self.study.train[start:start + BATCH])

    def config(self, method: str, steps: int, **changes: Any) -> TrainConfig:
        role = "teacher" if method == "sft" else "student"
        return TrainConfig.from_profile(self.profile, method, role=role, progress=False, steps=steps + 1,
                                        batch_size=BATCH, checkpoint_every=0, val_every=0, grad_norm_every=0,
                                        **changes)

    def sft(self, trainable: Callable[[Any], Any], **changes: Any) -> list[dict[str, Any]]:
        """Steps of the teacher's SFT with ``trainable`` deciding what trains; the metrics of each step."""
        cfg = self.config("sft", self.args.steps, **changes)
        accelerator = make_accelerator(cfg, "cpu")
        set_seed(cfg.seed)
        model = trainable(copy.deepcopy(self.pair.teacher))
        task = GroundTruthTask(build_objective(model, None, cfg), self.study.train,
                               train_collator(model, self.pair.tokenizer, self.processor, cfg), cfg, accelerator)
        with tempfile.TemporaryDirectory() as tmp:
            return read_metrics(run_task(task, cfg, self.profile, Path(tmp), accelerator, resume=False))

    def paper(self, **changes: Any) -> list[dict[str, Any]]:
        """Steps of the paper method's distillation of the student (full fine-tuning, as ``small``)."""
        cfg = self.config("paper", self.args.paper_steps, **changes)
        pt = pretrain_texts(self.profile, self.args.data_root or None, max_texts=len(self.study.train))
        with tempfile.TemporaryDirectory() as tmp:
            result = distill(copy.deepcopy(self.pair.student), copy.deepcopy(self.pair.teacher), self.pair.tokenizer,
                             self.processor, self.study, cfg, self.profile, Path(tmp), pt_texts=pt, device="cpu")
            return read_metrics(result.metrics)

    def case(self, name: str) -> dict[str, Any]:
        """One case: its timed steps summarised, or why it was skipped."""
        if name in ("bf16", "paper_bf16") and not cpu_has_bf16():
            return {"skipped": "this CPU has no bf16 instructions (AVX512-BF16 / AMX): oneDNN would emulate them"}
        runs = {"float32": lambda: self.sft(full), "grouped": lambda: self.sft(full, group_by_length=True,
                                                                                micro_batch_size=self.args.micro),
                "projector": lambda: self.sft(projector_only), "lora64": lambda: self.sft(lora64),
                "bf16": lambda: self.sft(full, dtype="bfloat16"), "paper": self.paper,
                "paper_bf16": lambda: self.paper(dtype="bfloat16")}
        Path("/proc/self/clear_refs").write_text("5")  # restart the resident-memory high-water mark
        timed = runs[name]()[1:]
        return {"tokens_per_cpu_s": statistics.median(r["tokens"] / r["cpu_s"] for r in timed),
                "tokens_per_s": statistics.median(r["tokens"] / r["step_s"] for r in timed),
                "step_s": statistics.median(r["step_s"] for r in timed),
                "tokens": statistics.mean(r["tokens"] for r in timed), "peak_rss_mib": _status_kib("VmHWM") / 1024}


LABELS = {"float32": "SFT float32, full, padded batches (baseline)", "grouped": "+ length grouping (micro {micro})",
          "projector": "+ frozen LLM, projector only", "lora64": "+ LoRA r 64 (projector trained)",
          "bf16": "+ bf16 autocast", "paper": "distillation step (paper), student",
          "paper_bf16": "distillation step (paper), bf16 autocast"}


def table(results: dict[str, dict[str, Any]], micro: int) -> str:
    base = results.get("float32", {}).get("tokens_per_cpu_s")
    rows = [("case", "tokens/CPU-s", "tokens/s (wall)", "step s (wall)", "tokens/step", "peak RSS MiB", "ratio")]
    for name, r in results.items():
        label = LABELS[name].format(micro=micro)
        if "skipped" in r:
            rows.append((label, "skipped: " + r["skipped"], "", "", "", "", ""))
            continue
        ratio = f"{r['tokens_per_cpu_s'] / base:.2f} x" if base else ""
        rows.append((label, f"{r['tokens_per_cpu_s']:.0f}", f"{r['tokens_per_s']:.0f}", f"{r['step_s']:.2f}",
                     f"{r['tokens']:.0f}", f"{r['peak_rss_mib']:.0f}", ratio))
    widths = [max(len(r[i]) for r in rows if not r[1].startswith("skipped")) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="timed SFT steps per case (after one warm-up)")
    parser.add_argument("--paper-steps", type=int, default=1, help="timed distillation steps (after one warm-up)")
    parser.add_argument("--micro", type=int, default=4, help="rows per micro-batch of the length-grouped case")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--data-root", default="")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown or min(args.steps, args.paper_steps) < 1 or not 0 < args.micro < BATCH:
        parser.error(f"cases from {', '.join(CASES)} (got {sorted(unknown)}), --steps and --paper-steps >= 1, "
                     f"0 < --micro < {BATCH}")
    clock = time.perf_counter()
    bench = Bench(args)
    setup = time.perf_counter() - clock
    results = {name: bench.case(name) for name in cases}
    print(f"small profile, batch {BATCH}, {args.steps} timed SFT steps per case ({args.paper_steps} distillation) "
          f"after 1 warm-up, "
          f"{torch.get_num_threads()} threads, bf16 instructions: {cpu_has_bf16()}; "
          f"set-up {setup:.0f} s, total {time.perf_counter() - clock:.0f} s\n")
    print(table(results, args.micro))


if __name__ == "__main__":
    main()
