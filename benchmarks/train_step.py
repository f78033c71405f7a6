"""Cost of one distillation step vs one SFT step, and of teacher-mixed sampling vs two ``generate`` calls.

Cases (each in a fresh Python process, so that one case's memory cannot hide another's):

* ``sft``: optimiser steps of the baseline student's SFT (:func:`kdlib.train.sft.train_sft`);
* ``paper``: optimiser steps of the paper's distillation (:func:`kdlib.train.distill.distill`):
  teacher-mixed rollout, teacher forwards, four loss terms, one update;
* ``mixed``: :func:`kdlib.sampling.mixed_sample` on the prompts of one batch (student + teacher,
  two KV caches, ``alpha`` of the profile);
* ``generate``: ``student.generate`` then ``teacher.generate`` on the same prompts (the cost of
  sampling from each model alone).

Both sampling cases produce exactly ``max_new_tokens`` tokens per prompt (no EOS stop). Training
steps: the first step is a warm-up; tokens/s is the median over the timed steps of the tokens
the student reads (prompts, responses, ``D_PT`` text) per second of wall time and per second of
process CPU time (less sensitive to other processes on a shared machine). Peak memory: CUDA
``max_memory_allocated``; on CPU the resident-set high-water mark of the process above its
resident set before training (Linux ``/proc/self/clear_refs`` resets the mark).

Usage: ``python benchmarks/train_step.py [--profile tiny] [--set KEY=VALUE ...] [--steps 5]
[--device cpu|cuda] [--data-root DIR]``. Prints one table with ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from kdlib.data.study import load_study
from kdlib.profiles import get_profile, parse_overrides
from kdlib.train.config import TrainConfig
from kdlib.train.study import build_models

CASES = ("sft", "paper", "mixed", "generate")
SAMPLING_REPEATS = 10


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class PeakMemory:
    """Peak extra MiB of the enclosed block: CUDA allocator, or resident set on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        peak = (torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda"
                else _status_kib("VmHWM") * 1024)
        self.mib = (peak - self.base) / 2**20


def train_case(method: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from kdlib.data.pretrain import pretrain_texts
    from kdlib.train.distill import distill
    from kdlib.train.metrics_log import read_metrics
    from kdlib.train.config import TrainConfig
    from kdlib.train.sft import train_sft

    profile = get_profile(args.profile, parse_overrides(args.overrides))
    study = load_study(profile, args.data_root or None)
    pair = build_models(profile, study)
    with tempfile.TemporaryDirectory() as tmp, PeakMemory(device) as mem:
        if method == "sft":
            cfg = TrainConfig.from_profile(profile, "sft", progress=False, steps=args.steps + 1)
            result = train_sft(pair.student, pair.tokenizer, pair.image_processor, study, cfg, profile, Path(tmp),
                               device=device)
        else:
            cfg = TrainConfig.from_profile(profile, "paper", progress=False, steps=args.steps + 1)
            result = distill(pair.student, pair.teacher, pair.tokenizer, pair.image_processor, study, cfg, profile,
                             Path(tmp), pt_texts=pretrain_texts(profile, args.data_root or None), device=device)
        timed = read_metrics(result.metrics)[1:]
    return {"tokens_per_s": statistics.median(r["tokens"] / r["step_s"] for r in timed),
            "tokens_per_cpu_s": statistics.median(r["tokens"] / r["cpu_s"] for r in timed),
            "step_s": statistics.median(r["step_s"] for r in timed), "peak_mib": mem.mib}


def sampling_case(kind: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from kdlib.sampling import mixed_sample
    from kdlib.train.harness import train_collator

    profile = get_profile(args.profile, parse_overrides(args.overrides))
    study = load_study(profile, args.data_root or None)
    pair = build_models(profile, study)
    student, teacher = pair.student.to(device).eval(), pair.teacher.to(device).eval()
    cfg = TrainConfig.from_profile(profile, "paper")
    prompts = train_collator(student, pair.tokenizer, pair.image_processor, cfg, "generate")(
        study.train[:cfg.batch_size])
    prompts = {k: v.to(device) for k, v in prompts.items()}
    n_new, pad, eos = cfg.max_new_tokens, pair.tokenizer.pad_token_id, pair.tokenizer.eos_token_id

    def run() -> None:
        with torch.no_grad():
            if kind == "mixed":
                mixed_sample(student, teacher, prompts, n_new, -1, pad, alpha=cfg.minillm.mix_alpha,
                             generator=torch.Generator().manual_seed(0))
            else:
                for model in (student, teacher):
                    model.generate(**prompts, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=True,
                                   eos_token_id=eos, pad_token_id=pad)

    run()  # warm-up
    walls, cpus = [], []
    with PeakMemory(device) as mem:
        for _ in range(SAMPLING_REPEATS):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    tokens = prompts["input_ids"].shape[0] * n_new
    return {"s": min(walls), "cpu_s": min(cpus), "new_tokens_per_s": tokens / min(walls), "peak_mib": mem.mib}


def worker(case: str, args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    result = train_case(case, args, device) if case in ("sft", "paper") else sampling_case(case, args, device)
    print(json.dumps(result))


def table(results: dict[str, dict[str, float]]) -> str:
    sft, kd = results["sft"], results["paper"]
    mixed, gen = results["mixed"], results["generate"]
    rows = [("case", "tokens/s (wall)", "tokens/s (CPU)", "step s", "peak MiB", "ratio"),
            ("SFT step", f"{sft['tokens_per_s']:.0f}", f"{sft['tokens_per_cpu_s']:.0f}", f"{sft['step_s']:.3f}",
             f"{sft['peak_mib']:.0f}", "1.00"),
            ("distillation step (paper)", f"{kd['tokens_per_s']:.0f}", f"{kd['tokens_per_cpu_s']:.0f}",
             f"{kd['step_s']:.3f}", f"{kd['peak_mib']:.0f}", f"{kd['step_s'] / sft['step_s']:.2f} x SFT time"),
            ("2 x generate (student, teacher)", f"{gen['new_tokens_per_s']:.0f} new", "", f"{gen['s']:.3f}",
             f"{gen['peak_mib']:.0f}", "1.00"),
            ("teacher-mixed sampling", f"{mixed['new_tokens_per_s']:.0f} new", "", f"{mixed['s']:.3f}",
             f"{mixed['peak_mib']:.0f}",
             f"{mixed['s'] / gen['s']:.2f} x wall, {mixed['cpu_s'] / gen['cpu_s']:.2f} x CPU (target <= 1.3)")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per training case")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: run one case here
    args = parser.parse_args()
    if args.case:
        worker(args.case, args)
        return
    results = {}
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--case", case], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"case {case} failed:\n{out.stderr[-3000:]}")
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"profile {args.profile} {' '.join(args.overrides)} | device {args.device} | "
          f"{torch.get_num_threads()} threads\n")
    print(table(results))


if __name__ == "__main__":
    main()
