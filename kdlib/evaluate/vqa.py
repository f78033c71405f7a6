"""RSVQA (LRBEN / HRBEN) accuracy per question type and the two "mOA" forms.

An answer is correct iff it equals the ground truth after GeoChat's normalisation (drop spaces
and dots, lower-case; :func:`kdlib.evaluate.scene.normalize_label`). Per type ``t``:

    acc_t = (1/N_t) sum_{i in t} [norm(answer_i) == norm(truth_i)]

Two summaries over the *core* types present in the file (presence, comparison, rural/urban;
count and area are reported apart, the core paper leaves them out):

    mOA              = sum_t N_t acc_t / sum_t N_t      (question-weighted = overall accuracy)
    mOA_mean_of_types = (1/T) sum_t acc_t                (plain mean of the type accuracies)

The core paper's LRBEN "mOA" matches the question-weighted form: GeoChat-7B
(0.9086 * 2955 + 0.9025 * 4002 + 0.94 * 100) / 7057 = 90.56 vs 90.59 printed
(``docs/methods.md`` §3.3).
"""

from __future__ import annotations

from collections.abc import Sequence

from kdlib.data.geochat_bench import VQAAnswer
from kdlib.evaluate.scene import normalize_label

CORE_TYPES = ("presence", "comparison", "rural_urban")
"""Question types that enter mOA."""
APART_TYPES = ("count", "area")
"""Question types reported on their own, outside mOA."""


def vqa_type_counts(records: Sequence[VQAAnswer]) -> dict[str, tuple[int, int]]:
    """``{type: (correct, total)}`` for every question type in ``records``."""
    counts: dict[str, tuple[int, int]] = {}
    for record in records:
        correct, total = counts.get(record.qtype, (0, 0))
        hit = normalize_label(record.answer) == normalize_label(record.ground_truth)
        counts[record.qtype] = (correct + int(hit), total + 1)
    return counts


def summarize_vqa(counts: dict[str, tuple[int, int]]) -> dict[str, object]:
    """Per-type accuracy, ``mOA`` and ``mOA_mean_of_types`` in percent from :func:`vqa_type_counts`.

    Types absent from the file are ``None`` and left out of both means. Raises ``ValueError``
    when no core-type question is present.
    """
    core = [t for t in CORE_TYPES if t in counts]
    if not core:
        raise ValueError(f"no {', '.join(CORE_TYPES)} question: mOA is undefined")
    accuracy = {t: (100.0 * counts[t][0] / counts[t][1] if t in counts else None)
                for t in (*CORE_TYPES, *APART_TYPES)}
    weighted = 100.0 * sum(counts[t][0] for t in core) / sum(counts[t][1] for t in core)
    mean_of_types = sum(accuracy[t] for t in core) / len(core)  # type: ignore[misc]
    return {**accuracy, "mOA": weighted, "mOA_mean_of_types": mean_of_types,
            "n": {t: total for t, (_, total) in counts.items()}}


def vqa_metrics(records: Sequence[VQAAnswer]) -> dict[str, object]:
    """``{"presence", "comparison", "rural_urban", "count", "area", "mOA", "mOA_mean_of_types",
    "n"}`` (percent; ``n`` per type) for VQA answers."""
    return summarize_vqa(vqa_type_counts(records))
