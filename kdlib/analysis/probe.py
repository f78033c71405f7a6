"""Linear-probe ceiling of scene classification on the frozen vision features the models see.

Every model of the study reads an image through the same frozen vision tower: its projector gets
``f(x) [N, D_v]``, hidden layer ``vision_feature_layer`` of the (pooled, ``small``) tower without
the CLS token (:func:`kdlib.models.pooling.projector_inputs`). The probe summarises an image by
the mean of those tokens,

    phi(x) = (1/N) sum_{i=1..N} f_i(x)        [D_v]

and fits a multinomial logistic regression on the TRAIN images of one scene dataset,

    p(y = k | x) = softmax_k(W s(phi(x)) + b),   min_{W,b}  C sum_n -log p(y_n | x_n) + ||W||^2 / 2

with ``s`` the per-feature standardisation fitted on train (scikit-learn, L-BFGS). ``C`` is
chosen on the VAL images from :data:`C_GRID` (highest accuracy; ties go to the smaller ``C``,
the stronger penalty), and the fit on train with that ``C`` classifies the TEST images the
models answer (the same records, same order). Its OA and AA are computed like the models'
(:mod:`kdlib.evaluate.scene`): what a linear read-out of the features reaches with the same
training images, a ceiling for what the LLM makes of them.

Features come from the run's vision feature cache (``RunContext.vision_cache``) when the tower is
pooled, so the images the models were trained and tested on are not run through the ViT again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from kdlib.data.records import Record, load_image, records_digest
from kdlib.data.study import Study, load_study
from kdlib.evaluate.scene import accuracies, normalize_label, scene_confusion
from kdlib.evaluate.tasks import eval_task
from kdlib.files import write_json
from kdlib.models.feature_cache import FeatureCache, data_processor
from kdlib.models.io import LoadedMLLM, load_for_inference
from kdlib.models.pooling import projector_inputs
from kdlib.run import RunContext

SCENE_TASKS = ("scene_ucmerced", "scene_aid")
C_GRID = tuple(10.0 ** k for k in range(-3, 4))
"""Inverse L2 penalties tried on the validation images (1e-3 ... 1e3)."""
PROBE = "linear probe (ceiling)"
"""The probe's row label beside the models' in the chapter's tables."""


@dataclass(frozen=True)
class ProbeFit:
    """The probe fitted on train with the ``C`` that won on validation, and every ``C``'s validation accuracy."""

    classifier: Pipeline
    C: float
    val_accuracy: dict[float, float]  # percent, per C of the grid


def mean_projector_inputs(mllm: LoadedMLLM, records: Sequence[Record], cache: str | Path | None = None,
                          batch_size: int = 32) -> np.ndarray:
    """``phi(x)`` of each record's image, ``[R, D_v]`` float64 (module docstring).

    A pooled tower's inputs are read from (or added to) the feature cache in ``cache``; any other
    tower runs on the image processor's pixels.
    """
    processor = data_processor(mllm.model, mllm.image_processor, cache)
    rows = []
    for start in range(0, len(records), batch_size):
        images = [load_image(r) for r in records[start:start + batch_size]]
        values = torch.as_tensor(processor(images=images, return_tensors="pt")["pixel_values"])
        inputs = values if isinstance(processor, FeatureCache) else projector_inputs(mllm.model, values)
        rows.append(inputs.float().mean(1).cpu().numpy())
    return np.concatenate(rows).astype(np.float64)


def fit_probe(train_x: np.ndarray, train_y: Sequence[Any], val_x: np.ndarray, val_y: Sequence[Any],
              grid: Sequence[float] = C_GRID, max_iter: int = 5000) -> ProbeFit:
    """Standardise + multinomial logistic regression for each ``C`` of ``grid`` on ``train``; the one
    with the highest accuracy on ``val`` (ties: the smaller ``C``). ``x``: ``[R, D]`` features."""
    if not grid:
        raise ValueError("fit_probe needs at least one C")
    if len(set(train_y)) < 2:
        raise ValueError(f"a probe needs at least two classes in train, got {sorted(set(train_y))}")
    fits, scores = {}, {}
    for c in sorted(grid):
        fits[c] = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        fits[c].fit(train_x, list(train_y))
        scores[c] = 100.0 * float(np.mean(fits[c].predict(val_x) == np.asarray(val_y)))
    best = max(sorted(grid), key=lambda c: (scores[c], -c))
    return ProbeFit(fits[best], best, scores)


def probe_scores(fit: ProbeFit, test_x: np.ndarray, test_y: Sequence[str]) -> dict[str, Any]:
    """OA, AA, per-class recall, ``n`` and ``hits`` (correct images) of the probe on the test images, as
    the models' scene results (:func:`kdlib.evaluate.scene.accuracies`; classes are the class names,
    normalised)."""
    predicted = [normalize_label(str(p)) for p in fit.classifier.predict(test_x)]
    truth = [normalize_label(y) for y in test_y]
    hits = sum(p == t for p, t in zip(predicted, truth))
    return {**accuracies(scene_confusion(truth, predicted, sorted(set(truth)))), "hits": hits}


def scene_probe(ctx: RunContext, study: Study | None = None, tasks: Sequence[str] = SCENE_TASKS,
                model: str = "teacher") -> dict[str, dict[str, Any]]:
    """The probe of each scene task on the run's data (``study`` defaults to the study's one split,
    ``ctx.split_seed``), with the vision tower of the saved ``model`` (frozen, so every model's); written
    to ``results/probe.json``.

    Returns ``{task: {OA, AA, per_class, n, hits, C, val_accuracy, n_train, n_val, records}}``;
    ``records`` is the sha256 of the test record ids, as in the models' result provenance: when
    ``model`` has a result on ``task`` scored on other test records, ``ValueError`` names its file.
    """
    study = study or load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    mllm = load_for_inference(ctx.model_dir(model), ctx.device, ctx.profile.dtype)
    out = {}
    for task in tasks:
        spec = eval_task(task)
        split = {name: spec.select(study.split(name)) for name in ("train", "val", "test")}
        empty = [name for name, records in split.items() if not records]
        if empty:
            raise ValueError(f"{task}: no {' / '.join(empty)} records for the probe at profile {ctx.profile.name}")
        _check_same_test(ctx, model, task, records_digest(split["test"]))
        x = {name: mean_projector_inputs(mllm, records, ctx.vision_cache) for name, records in split.items()}
        y = {name: [r.answer for r in records] for name, records in split.items()}
        fit = fit_probe(x["train"], y["train"], x["val"], y["val"])
        scores = probe_scores(fit, x["test"], y["test"])
        out[task] = {**scores, "C": fit.C,
                     "val_accuracy": {f"{c:g}": v for c, v in fit.val_accuracy.items()},
                     "n_train": len(split["train"]), "n_val": len(split["val"]),
                     "records": records_digest(split["test"])}
    write_json(ctx.chapter_file("probe.json"), {**out, "provenance": {**ctx.provenance(), "seed": ctx.seed,
                                                                      "tower_of": model}})
    return out


def _check_same_test(ctx: RunContext, model: str, task: str, digest: str) -> None:
    """``ValueError`` naming ``model``'s result file on ``task`` when it was scored on other test records."""
    path = ctx.result_file(model, task)
    scored = json.loads(path.read_text()).get("provenance", {}).get("records") if path.is_file() else None
    if scored not in (None, digest):
        raise ValueError(f"{path}: {model} was scored on other {task} test records than the probe's "
                         f"(records {scored[:12]}..., probe {digest[:12]}...): evaluate the models again")
