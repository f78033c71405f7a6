"""Scoring a GeoChat-Bench answer file: :func:`score_file`, the API behind ``kdlib score``.

    kdlib score {classification,vqa,referring,region-caption} FILE.jsonl
                [--image-size N] [--image-dir DIR] [--json] [--skip-bad] [--synonyms]

prints a table (per class / per question type / per group), or with ``--json`` one JSON object
with the metrics in percent, rounded to 2 decimals as the paper prints them:

- classification: ``{"OA", "AA", "per_class", "n"}`` (+ ``"synonyms": {...}`` with
  ``--synonyms``: the same metrics with ``kdlib.evaluate.scene.SCENE_SYNONYMS``)
- vqa: ``{"presence", "comparison", "rural_urban", "count", "area", "mOA",
  "mOA_mean_of_types", "n"}``
- referring: ``{"acc@0.5", "acc@0.25", "n", "n_boxes", "per_type", "per_size_group",
  "image_size"}``
- region-caption: ``{"ROUGE-1", "ROUGE-L", "METEOR", "n"}``

With ``--skip-bad`` malformed lines are left out, counted in ``"skipped_lines"`` and listed on
standard error; without it the first one stops the command with ``FILE:LINE: problem``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdlib.data.geochat_bench import TASKS, read_answers
from kdlib.evaluate.grounding import DEFAULT_IMAGE_SIZES, grounding_metrics, image_sizes_from_dir


def score_file(task: str, path: str | Path, *, image_size: int | None = None, image_dir: str | Path | None = None,
               skip_bad: bool = False, synonyms: bool = False) -> dict[str, Any]:
    """Metrics (percent, full precision) of one answer file; keys as in the module docstring.

    ``image_size`` / ``image_dir`` only matter for ``referring`` (see
    :mod:`kdlib.evaluate.grounding`), ``synonyms`` only for ``classification``.
    """
    answers = read_answers(path, task, skip_bad=skip_bad)
    records = answers.records
    if not records:
        raise ValueError(f"{answers.path}: no answer to score")
    # scikit-learn and NLTK load only for the task that needs them (keeps ``kdlib --help`` fast)
    if task == "classification":
        from kdlib.evaluate.scene import SCENE_SYNONYMS, scene_metrics

        result = scene_metrics(records)
        if synonyms:
            result["synonyms"] = scene_metrics(records, SCENE_SYNONYMS)
    elif task == "vqa":
        from kdlib.evaluate.vqa import vqa_metrics

        result = vqa_metrics(records)
    elif task == "referring":
        sizes = image_sizes_from_dir(image_dir, [r.image_id for r in records]) if image_dir else None
        result = grounding_metrics(records, image_size=image_size, image_sizes=sizes)
        result["image_size"] = ("from the images" if image_dir else image_size if image_size
                                else dict(DEFAULT_IMAGE_SIZES))
    else:
        from kdlib.evaluate.captioning import captioning_metrics

        result = captioning_metrics(records)
    if skip_bad:
        result["skipped_lines"] = len(answers.bad_lines)
        for message in answers.bad_lines:
            print(f"skipped {message}", file=sys.stderr)
    return result


def rounded(value: Any, digits: int = 2) -> Any:
    """``value`` with every float rounded to ``digits`` decimals (nested dicts included)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, Mapping):
        return {key: rounded(item, digits) for key, item in value.items()}
    return value


def format_table(task: str, result: Mapping[str, Any]) -> str:
    """A plain-text table of ``score_file``'s result for people."""
    if task == "classification":
        lines = _rows("class", {name: {"recall %": acc} for name, acc in result["per_class"].items()})
        lines.append(f"OA {result['OA']:.2f}   AA {result['AA']:.2f}   (n = {result['n']}, exact match)")
        if "synonyms" in result:
            syn = result["synonyms"]
            lines.append(f"OA {syn['OA']:.2f}   AA {syn['AA']:.2f}   (with the synonym map)")
    elif task == "vqa":
        types = {t: {"n": n, "accuracy %": result[t]} for t, n in result["n"].items()}
        lines = _rows("type", types)
        lines.append(f"mOA (question-weighted) {result['mOA']:.2f}   "
                     f"mean of type accuracies {result['mOA_mean_of_types']:.2f}")
    elif task == "referring":
        groups = {"all": result, **{f"type {k}": v for k, v in result["per_type"].items()},
                  **{f"size {k}": v for k, v in result["per_size_group"].items()}}
        lines = _rows("group", {name: {key: g[key] for key in ("n", "n_boxes", "acc@0.5", "acc@0.25")}
                                for name, g in groups.items()})
        lines.append(f"image size (px): {result['image_size']}")
    else:
        lines = _rows("metric", {name: {"value %": result[name]} for name in ("ROUGE-1", "ROUGE-L", "METEOR")})
        lines.append(f"n = {result['n']}")
    if "skipped_lines" in result:
        lines.append(f"skipped malformed lines: {result['skipped_lines']}")
    return "\n".join(lines)


def _rows(label: str, rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    columns = list(next(iter(rows.values())))
    width = max(len(label), *(len(name) for name in rows))
    header = f"{label:<{width}}" + "".join(f"  {c:>10}" for c in columns)
    body = [f"{name:<{width}}" + "".join(f"  {_cell(row[c]):>10}" for c in columns) for name, row in rows.items()]
    return [header, "-" * len(header), *body]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)
