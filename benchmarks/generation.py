"""Evaluation speed: whole prompts through ``generate`` against shared-prefix greedy decoding.

The two paths of :func:`kdlib.evaluate.generate.generate_answers` (``shared_prefix=False`` /
``True``) answer the same records side by side in one process, with the ``small`` teacher
(:func:`kdlib.models.build.load_member`: SmolLM2-135M + DINOv2-S pooled to 64 image tokens; the
projector is random unless the profile names a trained model, which changes the answers' lengths,
not what the comparison measures):

* ``rsvqa_lr``: ``--vqa`` questions of the RSVQA-LR test split, all the questions of its first
  pictures (the whole split is evaluated in one call, so each picture brings all its questions);
* ``scene``: ``--scene`` scene test records, half UCMerced, half AID (one record per picture).

Each set is answered with each of ``--budgets`` (new tokens at most): ``runner``, the budget the
runner gives it (:func:`~kdlib.evaluate.generate.answer_budget` of its references), and a number,
3 by default, about what a trained model's short answers take ("yes" + eos): greedy decoding costs
the same in both paths, so a random projector, whose answers run to the budget, hides what the
shared prefixes save on the prompts. Both paths first answer two records (warm-up); then, ``--repeats`` times, old
and new answer the whole set in turn. Reported per set and path: questions per second of wall time
and CPU-seconds per question (process time, less sensitive to other jobs on a shared CPU), best of
the repeats; the speed-up (old time / new time) in both; whether the answers are identical.

Usage: ``python benchmarks/generation.py [--profile small] [--vqa 64] [--scene 32] [--batch-size 16]
[--budgets runner 3] [--repeats 1] [--data-root DIR]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import torch

from kdlib.data.records import Record
from kdlib.data.study import load_study
from kdlib.evaluate.generate import answer_budget, generate_answers
from kdlib.models.build import load_member
from kdlib.models.io import LoadedMLLM
from kdlib.profiles import get_profile

PATHS = (("whole prompts (generate)", False), ("shared prefix", True))


def by_picture(records: Sequence[Record], n: int) -> list[Record]:
    """The first ``n`` records when taken picture by picture (all questions of a picture together)."""
    pictures: dict[tuple, list[Record]] = {}
    for record in records:
        pictures.setdefault((record.image, tuple(record.meta.get("crop") or ())), []).append(record)
    return [record for group in pictures.values() for record in group][:n]


def timed(mllm: LoadedMLLM, records: Sequence[Record], budget: int, batch_size: int,
          shared_prefix: bool) -> tuple[list[str], float, float]:
    """``(answers, wall seconds, process CPU seconds)`` of one :func:`generate_answers` call."""
    wall, cpu = time.perf_counter(), time.process_time()
    answers = generate_answers(mllm, records, budget, batch_size, progress=False, shared_prefix=shared_prefix)
    return answers, time.perf_counter() - wall, time.process_time() - cpu


def compare(mllm: LoadedMLLM, name: str, records: Sequence[Record], budget: int, batch_size: int,
            repeats: int) -> list[str]:
    """Table rows of one record set and budget: both paths, best of ``repeats``, then the speed-up."""
    for _, shared in PATHS:
        timed(mllm, records[:2], budget, batch_size, shared)
    best: dict[bool, tuple[float, float]] = {}
    answers: dict[bool, list[str]] = {}
    for _ in range(repeats):
        for _, shared in PATHS:
            answers[shared], wall, cpu = timed(mllm, records, budget, batch_size, shared)
            old = best.get(shared, (float("inf"), float("inf")))
            best[shared] = (min(old[0], wall), min(old[1], cpu))
    pictures = len({(r.image, tuple(r.meta.get("crop") or ())) for r in records})
    same = sum(a == b for a, b in zip(answers[False], answers[True]))
    rows = []
    for label, shared in PATHS:
        wall, cpu = best[shared]
        rows.append(f"| {name} | {len(records)} / {pictures} | {budget} | {label} | {len(records) / wall:.2f} | "
                    f"{cpu / len(records):.3f} | |")
    (old_wall, old_cpu), (new_wall, new_cpu) = best[False], best[True]
    rows.append(f"| {name} | | {budget} | speed-up (old time / new time) | {old_wall / new_wall:.2f}x | "
                f"{old_cpu / new_cpu:.2f}x | {same}/{len(records)} identical |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small")
    parser.add_argument("--vqa", type=int, default=64, help="RSVQA-LR test questions")
    parser.add_argument("--scene", type=int, default=32, help="scene test records (half UCMerced, half AID)")
    parser.add_argument("--batch-size", type=int, default=16, help="the runner's default")
    parser.add_argument("--budgets", nargs="+", default=["runner", "3"],
                        help="new-token budgets: 'runner' (answer_budget of the references) or a number")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    study = load_study(profile, args.data_root, check_images=False)
    vqa = by_picture([r for r in study.test if r.dataset == "rsvqa_lr"], args.vqa)
    half = args.scene // 2
    scene = ([r for r in study.test if r.dataset == "ucmerced"][:half]
             + [r for r in study.test if r.dataset == "aid"][:args.scene - half])
    mllm = load_member(profile, "teacher")
    rows = []
    for name, records in (("rsvqa_lr", vqa), ("scene", scene)):
        for choice in args.budgets:
            budget = answer_budget([r.answer for r in records], mllm.tokenizer) if choice == "runner" else int(choice)
            rows += compare(mllm, name, records, budget, args.batch_size, args.repeats)
    print(f"profile {profile.name} teacher, batch {args.batch_size}, best of {args.repeats}; torch threads "
          f"{torch.get_num_threads()} of {os.cpu_count()} CPUs; the CPU was shared with other jobs "
          f"(load average {os.getloadavg()[0]:.1f} at the end), so wall times are noisy, CPU-seconds less so")
    print("| set | questions / pictures | budget | path | questions/s (wall) | CPU-s per question | answers |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
