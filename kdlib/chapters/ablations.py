"""The ablations chapter: each part of the paper's distillation removed in turn, same budget.

The paper trains its student with everything at once (Table 1: projector MSE, the MiniLLM
reverse-KL policy gradient with its single-step and long-term parts, the LM loss, teacher-mixed
sampling, length normalisation) and reports no ablation. Each run here distils ``models/teacher``
into a copy of ``models/student_sft`` with the paper's method minus one part (``kdlib train
--method paper --ablate TERM``, :func:`kdlib.train.study.train_variants`), for the same steps,
batch and learning rate as ``student_kd``; the model is named ``student_kd-no_<term>``. The effect of a part is

    delta(term, task) = metric(student_kd) - metric(student_kd-no_<term>)

on the task's headline metric: positive when the part helps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from kdlib.data.study import Study
from kdlib.evaluate.report import HEADLINE
from kdlib.run import RunContext
from kdlib.train.config import ABLATIONS, run_name
from kdlib.train.study import Variant, train_variants

PARTS = {"align": "projector MSE (Eq. 4-5)", "single": "single-step reverse KL (Eq. 8)",
         "long": "long-term reverse-KL reward (Eq. 9)", "lm": "language-modelling loss (Eq. 7)",
         "teacher_mix": "teacher-mixed sampling (alpha = 0)", "length_norm": "length normalisation (Eq. 10)"}
"""What each ablation removes, in words, keyed by its ``--ablate`` name."""


def ablation_name(term: str) -> str:
    """The run and model name of the paper's method without ``term``: ``student_kd-no_<term>``."""
    if term not in ABLATIONS:
        raise ValueError(f"unknown ablation {term!r}; choose from {', '.join(ABLATIONS)}")
    return run_name("paper", (term,))


def ablation_label(name: str) -> str:
    """``student_kd-no_align-no_lm`` -> ``"student, distilled without projector MSE (Eq. 4-5) and ..."``;
    other names unchanged."""
    terms = name.removeprefix("student_kd").split("-no_")[1:] if name.startswith("student_kd-no_") else []
    if not terms or any(t not in PARTS for t in terms):
        return name
    return "student, distilled without " + " and ".join(PARTS[t] for t in terms)


def train_ablations(ctx: RunContext, terms: Sequence[str] = ABLATIONS, study: Study | None = None) -> dict[str, Path]:
    """Distil once per ``term``, without it; ``{run name: model folder}``
    (:func:`kdlib.train.study.train_variants`)."""
    for term in terms:
        ablation_name(term)  # an unknown term fails before anything trains
    return train_variants(ctx, [Variant("paper", (term,)) for term in terms], study)


def ablation_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]], tasks: Sequence[str],
                   terms: Sequence[str]) -> pd.DataFrame:
    """Rows: the full recipe, then each ablation (what it removes); columns: each task's headline
    metric and ``delta`` (full minus ablated, :mod:`module docstring <kdlib.chapters.ablations>`)."""
    def row(model: str) -> dict[str, float]:
        return {f"{task} {HEADLINE[task]}": float(results[model][task][HEADLINE[task]]) for task in tasks}

    full = row("student_kd")
    rows = {"full recipe (student_kd)": {**full, **{f"delta {k}": 0.0 for k in full}}}
    for term in terms:
        ablated = row(ablation_name(term))
        rows[f"without {PARTS[term]}"] = {**ablated, **{f"delta {k}": full[k] - v for k, v in ablated.items()}}
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def effect_sentence(table: pd.DataFrame) -> str:
    """Per ablation, on how many tasks removing the part lowered, raised or left the metric."""
    deltas = table.drop(index=table.index[0])[[c for c in table.columns if c.startswith("delta ")]]
    parts = []
    for name, values in deltas.iterrows():
        helps, hurts = int((values > 0).sum()), int((values < 0).sum())
        parts.append(f"{name}: worse on {helps}, better on {hurts}, equal on {len(values) - helps - hurts} "
                     f"of {len(values)} tasks")
    return "; ".join(parts)
