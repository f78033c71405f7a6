"""Readers for GeoChat-Bench answer files (JSON Lines, one prediction per line).

GeoChat's eval scripts copy the benchmark fields (ids, question, ground truth, type) into every
output line next to the model's ``answer``, so one answer file holds everything a scorer needs.
Keys per task (``docs/data.md`` §8; ``docs/methods.md`` §3.4):

- ``classification`` (scene classification: UCMerced, AID): ``question_id``, ``answer``, ``ground_truth`` (class name).
- ``vqa`` (RSVQA LRBEN / HRBEN): ``question_id``, ``answer``, ``ground_truth`` and the question
  type in ``category`` (or ``type``): ``presence``, ``comp``/``comparison``, ``rural_urban``,
  ``count``, ``area``; ``comp`` is read as ``comparison``.
- ``referring`` (referring expressions and grounding descriptions): ``question_id``,
  ``image_id``, ``question``, ``answer`` (GeoChat box text), ``ground_truth`` (list of pixel
  quads, 4 ``[x, y]`` corners each), ``type``, ``dataset``, ``size_group``.
- ``region-caption``: ``question_id``, ``image_id``, ``question`` (the box), ``answer``,
  ``ground_truth`` (the reference caption), ``type``, ``dataset``, ``size_group``.

Every line is validated. A malformed line raises ``ValueError("FILE:LINE: problem")``; with
``skip_bad=True`` it is left out and reported in :attr:`AnswerFile.bad_lines` instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("classification", "vqa", "referring", "region-caption")
VQA_TYPES = {"presence": "presence", "comp": "comparison", "comparison": "comparison",
             "rural_urban": "rural_urban", "count": "count", "area": "area"}
"""Question types as written in RSVQA / GeoChat files -> the names kdlib reports."""


@dataclass(frozen=True)
class SceneAnswer:
    """A scene-classification prediction; ``question_id`` is ``"<class folder>/<file>"``."""

    question_id: str
    answer: str
    ground_truth: str


@dataclass(frozen=True)
class VQAAnswer:
    """A VQA prediction; ``qtype`` is one of ``VQA_TYPES``' values."""

    question_id: str
    qtype: str
    answer: str
    ground_truth: str


@dataclass(frozen=True)
class ReferringAnswer:
    """A referring / grounding prediction; ``ground_truth`` holds pixel quads."""

    question_id: str
    image_id: str
    question: str
    answer: str
    ground_truth: list[list[list[float]]]
    type: str
    dataset: str
    size_group: str


@dataclass(frozen=True)
class RegionCaptionAnswer:
    """A region-caption prediction; ``question`` is the region's GeoChat box text."""

    question_id: str
    image_id: str
    question: str
    answer: str
    ground_truth: str
    type: str
    dataset: str
    size_group: str


Answer = SceneAnswer | VQAAnswer | ReferringAnswer | RegionCaptionAnswer


@dataclass
class AnswerFile:
    """The records of one answer file and the lines left out with ``skip_bad=True``."""

    path: Path
    task: str
    records: list[Answer]
    bad_lines: list[str] = field(default_factory=list)


def read_answers(path: str | Path, task: str, skip_bad: bool = False) -> AnswerFile:
    """Read and validate a GeoChat-Bench answer file for ``task`` (one of :data:`TASKS`).

    Blank lines are ignored. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError("FILE:LINE: problem")`` for a malformed line unless ``skip_bad``.
    """
    if task not in _PARSERS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answer file not found: {path}")
    result = AnswerFile(path=path, task=task, records=[])
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                result.records.append(_PARSERS[task](_load_object(line)))
            except ValueError as err:
                message = f"{path}:{number}: {err}"
                if not skip_bad:
                    raise ValueError(message) from None
                result.bad_lines.append(message)
    return result


def _load_object(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _text(obj: dict[str, Any], key: str) -> str:
    if key not in obj:
        raise ValueError(f"missing key {key!r}")
    value = obj[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"key {key!r} must be a string, got {type(value).__name__}")
    return value


def _parse_scene(obj: dict[str, Any]) -> SceneAnswer:
    return SceneAnswer(_text(obj, "question_id"), _text(obj, "answer"), _text(obj, "ground_truth"))


def _parse_vqa(obj: dict[str, Any]) -> VQAAnswer:
    key = "category" if "category" in obj else "type"
    if key not in obj:
        raise ValueError("missing key 'category' (or 'type')")
    raw = _text(obj, key)
    if raw not in VQA_TYPES:
        raise ValueError(f"unknown question {key} {raw!r}: expected one of {', '.join(VQA_TYPES)}")
    return VQAAnswer(_text(obj, "question_id"), VQA_TYPES[raw], _text(obj, "answer"), _text(obj, "ground_truth"))


def _quads(obj: dict[str, Any]) -> list[list[list[float]]]:
    value = obj.get("ground_truth")
    if not isinstance(value, list) or not value:
        raise ValueError("'ground_truth' must be a non-empty list of quads (4 [x, y] corners each)")
    for index, quad in enumerate(value):
        ok = isinstance(quad, list) and len(quad) == 4 and all(
            isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in quad)
        if not ok:
            raise ValueError(f"'ground_truth'[{index}] is not 4 [x, y] corners: {quad!r}")
    return [[[float(v) for v in p] for p in quad] for quad in value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_referring(obj: dict[str, Any]) -> ReferringAnswer:
    return ReferringAnswer(
        question_id=_text(obj, "question_id"), image_id=_text(obj, "image_id"),
        question=_text(obj, "question"), answer=_text(obj, "answer"), ground_truth=_quads(obj),
        type=_text(obj, "type"), dataset=_text(obj, "dataset"), size_group=_text(obj, "size_group"),
    )


def _parse_region_caption(obj: dict[str, Any]) -> RegionCaptionAnswer:
    return RegionCaptionAnswer(
        question_id=_text(obj, "question_id"), image_id=_text(obj, "image_id"),
        question=_text(obj, "question"), answer=_text(obj, "answer"),
        ground_truth=_text(obj, "ground_truth"), type=_text(obj, "type"),
        dataset=_text(obj, "dataset"), size_group=_text(obj, "size_group"),
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Answer]] = {
    "classification": _parse_scene,
    "vqa": _parse_vqa,
    "referring": _parse_referring,
    "region-caption": _parse_region_caption,
}
