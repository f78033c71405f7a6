"""The related-methods chapter: Align-KD, Switch-KD (DBiLD), forward KL and two other MiniLLM estimators
of the paper's recipe, trained like it.

Each method distils the same SFT teacher into a copy of the same SFT student (``teacher``,
``student_sft``) on the same training split, for the same number of steps (``train.kd_steps``),
global batch and learning rate (``train.kd_lr``) as the paper's method (``student_kd``), through
:func:`kdlib.train.study.train_variants`; the models are named ``student_<method>`` and
``student_kd_<estimator>`` (:data:`ESTIMATORS`). :func:`budget_table` reads back what each run actually did (its
``config.json`` and ``metrics.jsonl``), so the chapter can show the budgets are equal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from kdlib.chapters.ablations import ablation_label
from kdlib.data.study import Study
from kdlib.evaluate.report import HEADLINE, MODEL_LABELS, comparison_table, headline_columns
from kdlib.run import RunContext
from kdlib.train.config import TrainConfig, run_name as config_run_name
from kdlib.train.metrics_log import read_metrics
from kdlib.train.study import Variant, train_variants

RELATED_METHODS = ("forward_kl", "align_kd", "switch_kd")
"""The methods of the chapter, by their ``kdlib train --method`` name."""
ESTIMATORS = (Variant("paper", form="unbiased"), Variant("paper", ppo_epochs=4))
"""The paper's recipe with another MiniLLM estimator: the unbiased form (``--minillm-form unbiased``)
and MiniLLM's four PPO epochs per batch of rollouts (``--ppo-epochs 4``)."""
RELATED_LABELS = {"student_forward_kl": "student, forward KL", "student_align_kd": "student, Align-KD",
                  "student_switch_kd": "student, Switch-KD (DBiLD)",
                  "student_kd_unbiased": "student, distilled (unbiased estimator)",
                  "student_kd_ppo4": "student, distilled (4 PPO epochs)"}
"""Row labels of the related students (the study's own models keep :data:`kdlib.evaluate.report.MODEL_LABELS`)."""


def run_name(method: str) -> str:
    """``student_<method>``, the model folder and result name of a related method."""
    if method not in RELATED_METHODS:
        raise ValueError(f"unknown related method {method!r}; choose from {', '.join(RELATED_METHODS)}")
    return config_run_name(method)


def _label(model: str) -> str:
    return MODEL_LABELS.get(model, RELATED_LABELS.get(model, ablation_label(model)))


def train_related(ctx: RunContext, methods: Sequence[str] = RELATED_METHODS, study: Study | None = None,
                  estimators: Sequence[Variant] = ESTIMATORS) -> dict[str, Path]:
    """Distil the run's ``teacher`` into its distillation start with each method, then with the paper's
    recipe under each of ``estimators``; ``{run name: model folder}`` (:func:`kdlib.train.study.train_variants`)."""
    for method in methods:
        run_name(method)  # an unknown method fails before anything trains
    return train_variants(ctx, [*(Variant(method) for method in methods), *estimators], study)


def budget_table(ctx: RunContext, names: Sequence[str]) -> pd.DataFrame:
    """One row per training run (``ctx.train_dir(name)``): method, steps done, global batch, peak lr, loss terms,
    first and last loss, wall-clock and process CPU seconds summed over the steps."""
    rows = {}
    for name in names:
        folder = ctx.require(ctx.train_dir(name), producer="training" if name == "student_kd" else "related_methods")
        train = json.loads((folder / "config.json").read_text())["train"]
        metrics = read_metrics(folder / "metrics.jsonl")
        if not metrics:
            raise ValueError(f"{folder / 'metrics.jsonl'} holds no step: the run did not train")
        terms = TrainConfig.from_profile(ctx.profile, train["method"], train["ablate"]).terms
        rows[_label(name)] = {
            "method": train["method"], "steps": metrics[-1]["step"], "global batch": train["batch_size"],
            "lr": train["lr"], "loss terms": " + ".join(terms), "first loss": metrics[0]["loss"],
            "last loss": metrics[-1]["loss"], "wall s": sum(m["step_s"] for m in metrics),
            "CPU s": sum(m["cpu_s"] for m in metrics)}
    return pd.DataFrame.from_dict(rows, orient="index")


def method_table(results: dict[str, dict[str, dict[str, Any]]], tasks: Sequence[str]) -> pd.DataFrame:
    """Models x headline metrics, the paper's number beside each where it prints one (NaN for the
    related methods: the core paper does not train them)."""
    table = comparison_table(results, headline_columns(tasks))
    return table.rename(index=RELATED_LABELS)

def _headline(results: dict[str, dict[str, dict[str, Any]]], model: str, task: str) -> float:
    return float(results[model][task][HEADLINE[task]])


def best_students(results: dict[str, dict[str, dict[str, Any]]], tasks: Sequence[str], students: Sequence[str]) -> str:
    """``"scene_ucmerced OA: student, Align-KD (14.29); ..."``: the best student(s) of each task
    (ties joined by "and"; "all students tie" when no student differs)."""
    parts = []
    for task in tasks:
        scores = {m: _headline(results, m, task) for m in students}
        top = max(scores.values())
        winners = [m for m, v in scores.items() if v == top]
        names = "all students tie" if len(winners) == len(scores) else " and ".join(_label(m) for m in winners)
        parts.append(f"{task} {HEADLINE[task]}: {names} ({top:.2f})")
    return "; ".join(parts)


def rank_sentence(results: dict[str, dict[str, dict[str, Any]]], tasks: Sequence[str], students: Sequence[str],
                  model: str, baseline: str = "student_sft", baseline_name: str = "the SFT student") -> str:
    """``"is the best student alone on 1 of 4 tasks, tied for best on 2 and above the SFT student on 2"``."""
    alone = tied = 0
    for task in tasks:
        mine, others = _headline(results, model, task), [_headline(results, m, task) for m in students if m != model]
        alone += mine > max(others)
        tied += mine == max(others)
    above = sum(_headline(results, model, t) > _headline(results, baseline, t) for t in tasks)
    return (f"is the best student alone on {alone} of {len(tasks)} tasks, tied for best on {tied} "
            f"and above {baseline_name} on {above}")
