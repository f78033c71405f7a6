"""Two answer files of the same test items compared item by item: the difference with its 95 % interval.

For a task scored as a mean of per-item 0/1 scores (scene OA; VQA mOA, the accuracy over the core
question types, :mod:`kdlib.evaluate.vqa`), models A and B answering the same ``n`` items give

    d_i = s_i(B) - s_i(A),   diff = 100 * mean_i d_i,
    CI_95 = diff +- 100 * t_{0.975, n-1} * sd(d) / sqrt(n)

(a paired t interval over items). It holds the two trained models fixed and treats the test items
as a sample: the uncertainty a bigger test split would shrink. The seeds chapter's interval is the
other half (seeds random, items fixed). Only the items where the two models disagree carry
information: with ``b`` items only A gets right and ``c`` only B gets right, ``diff = 100 (c - b) / n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from scipy import stats

from kdlib.data.geochat_bench import read_answers
from kdlib.evaluate.scene import normalize_label, scene_labels
from kdlib.evaluate.vqa import CORE_TYPES

PAIRED_TASKS = ("classification", "vqa")
"""The :data:`kdlib.data.geochat_bench.TASKS` whose headline metric is a mean of per-item 0/1 scores."""


@dataclass(frozen=True)
class PairedDifference:
    """``diff`` (B - A, points) with its 95 % half-width over ``n`` items; ``only_a`` / ``only_b``: items
    only A / only B scores."""

    diff: float
    half_width: float
    n: int
    only_a: int
    only_b: int

    @property
    def verdict(self) -> str:
        """``"B above A"``, ``"B below A"``, ``"undecided"`` (the interval contains 0) or ``"same on every
        item"`` (no item separates them: nothing to decide)."""
        if self.only_a == self.only_b == 0:
            return "same on every item"
        if self.diff - self.half_width > 0:
            return "B above A"
        if self.diff + self.half_width < 0:
            return "B below A"
        return "undecided"


def item_scores(task: str, path: str | Path) -> dict[str, int]:
    """``{question_id: 1 if correct else 0}`` of an answer file, scored as ``kdlib score`` does
    (classification: every item, out-of-class answers wrong; vqa: the core-type questions only)."""
    if task not in PAIRED_TASKS:
        raise ValueError(f"{path}: paired item scores exist for {' and '.join(PAIRED_TASKS)}, not {task}")
    records = read_answers(path, task).records
    if task == "classification":
        _, y_true, y_pred = scene_labels(records)
        hits = [int(t == p) for t, p in zip(y_true, y_pred)]
        ids = [r.question_id for r in records]
    else:
        core = [r for r in records if r.qtype in CORE_TYPES]
        hits = [int(normalize_label(r.answer) == normalize_label(r.ground_truth)) for r in core]
        ids = [r.question_id for r in core]
    scores = dict(zip(ids, hits))
    if len(scores) != len(ids):
        raise ValueError(f"{path}: {len(ids) - len(scores)} repeated question_id(s): items cannot be paired")
    if not scores:
        raise ValueError(f"{path}: no item to compare")
    return scores


def paired_difference(a: Mapping[str, int], b: Mapping[str, int], names: tuple[str, str] = ("A", "B")
                      ) -> PairedDifference:
    """B minus A on their common items (module docstring); both must score exactly the same items."""
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b), key=str)
        raise ValueError(f"{names[0]} and {names[1]} score different items ({len(only)} in one only, "
                         f"e.g. {only[0]!r}): they cannot be paired")
    d = [b[k] - a[k] for k in a]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else math.inf
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else math.inf
    return PairedDifference(100.0 * mean, 100.0 * half, n, d.count(-1), d.count(1))


def compare_files(task: str, path_a: str | Path, path_b: str | Path) -> PairedDifference:
    """:func:`paired_difference` of two answer files (B = ``path_b`` minus A = ``path_a``)."""
    return paired_difference(item_scores(task, path_a), item_scores(task, path_b), (str(path_a), str(path_b)))
