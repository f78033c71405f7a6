"""Scene classification: overall accuracy (OA), average accuracy (AA) and the confusion matrix.

Scoring follows GeoChat's ``batch_geochat_scene.py`` / ``evaluation_metrics`` so that published
numbers stay comparable: an answer is correct iff

    answer.replace(" ", "").lower().replace(".", "") == class

GeoChat takes the class from the folder in ``question_id`` (``"denseresidential/..."``); kdlib
takes it from ``ground_truth`` normalised the same way, which is identical on the GeoChat-Bench
files (checked in tests/evaluate/test_scene.py) and also works for files without folders.

    OA = (1/N) sum_i [pred_i == true_i]
    AA = (1/K) sum_k recall_k,   recall_k = C[k, k] / sum_j C[k, j]

over the K classes that occur in the ground truth (the core paper's Table 4 "AA"). Answers that
are no class of the file fall in an extra confusion column ``OTHER``. An optional synonym map
(off by default, reported apart) maps out-of-class answers to a class, e.g. "harbor" -> "port".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from kdlib.data.geochat_bench import SceneAnswer

OTHER = "<other>"
"""Confusion-matrix column for answers that name no class of the file."""

SCENE_SYNONYMS: dict[str, str] = {
    "harbor": "port",
    "harbour": "port",
    "overpass": "viaduct",
    "building": "buildings",
    "storagetank": "storagetanks",
    "parkinglot": "parking",
    "tenniscourts": "tenniscourt",
    "farmlands": "farmland",
    "forests": "forest",
    "rivers": "river",
    "beaches": "beach",
    "mountains": "mountain",
    "deserts": "desert",
}
"""Normalised answer -> normalised class; applied only when the answer is no class of the file
and the target is one (so "parkinglot" stays itself on UCMerced, where it is a class)."""


def normalize_label(text: str) -> str:
    """GeoChat's normalisation: drop spaces and dots, lower-case (``"Dense Residential."`` ->
    ``"denseresidential"``)."""
    return text.replace(" ", "").lower().replace(".", "")


def scene_labels(records: Sequence[SceneAnswer], synonyms: Mapping[str, str] | None = None
                 ) -> tuple[list[str], list[str], list[str]]:
    """``(classes, y_true, y_pred)`` as normalised labels; out-of-class predictions -> ``OTHER``.

    ``classes`` is the sorted set of normalised ground truths. With ``synonyms``, an
    out-of-class answer whose mapped label is a class counts as that class.
    """
    y_true = [normalize_label(r.ground_truth) for r in records]
    classes = sorted(set(y_true))
    known = set(classes)
    y_pred = []
    for record in records:
        label = normalize_label(record.answer)
        if label not in known and synonyms and synonyms.get(label) in known:
            label = synonyms[label]
        y_pred.append(label if label in known else OTHER)
    return classes, y_true, y_pred


def scene_confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Confusion counts ``C[true, pred]``: rows ``classes``, columns ``classes + [OTHER]``.

    ``shape (K, K + 1)``; an empty input gives a matrix of zeros.
    """
    columns = [*classes, OTHER]
    if len(y_true) == 0:
        counts = np.zeros((len(classes), len(columns)), dtype=np.int64)
    else:
        counts = confusion_matrix(y_true, y_pred, labels=columns)[: len(classes)]
    return pd.DataFrame(counts, index=list(classes), columns=columns)


def accuracies(confusion: pd.DataFrame) -> dict[str, object]:
    """OA, AA and per-class recall in percent from a confusion matrix (:func:`scene_confusion`).

    Classes without ground-truth samples (all-zero rows) are left out of AA and ``per_class``.
    Raises ``ValueError`` for a matrix without any sample.
    """
    support = confusion.sum(axis=1)
    total = int(support.sum())
    if total == 0:
        raise ValueError("no samples: OA and AA are undefined for an empty confusion matrix")
    correct = np.array([confusion.at[label, label] for label in confusion.index])
    present = support.to_numpy() > 0
    recall = correct[present] / support.to_numpy()[present]
    per_class = {str(label): 100.0 * float(r) for label, r in zip(confusion.index[present], recall)}
    return {"OA": 100.0 * correct.sum() / total, "AA": 100.0 * float(recall.mean()),
            "per_class": per_class, "n": total}


def scene_metrics(records: Sequence[SceneAnswer], synonyms: Mapping[str, str] | None = None) -> dict[str, object]:
    """``{"OA", "AA", "per_class", "n"}`` (percent) for scene-classification answers."""
    classes, y_true, y_pred = scene_labels(records, synonyms)
    return accuracies(scene_confusion(y_true, y_pred, classes))
