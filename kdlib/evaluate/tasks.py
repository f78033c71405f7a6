"""The study's evaluation tasks and the answer lines GeoChat's eval scripts write for them.

Each task (:data:`EVAL_TASKS`) picks test records by ``Record.task`` and dataset and writes one
JSON object per answer with the keys of the GeoChat-Bench answer files (``docs/data.md`` §8),
so :func:`kdlib.evaluate.score.score_file` and ``kdlib score`` read kdlib's answers and the real
GeoChat-7B ones alike:

=================  ==============  ==================================================================
task               ``kdlib score``  line keys
=================  ==============  ==================================================================
``scene_ucmerced``  classification  ``question_id`` (``"<class folder>/<file>"``), ``image_id``,
``scene_aid``                       ``answer``, ``ground_truth`` (class name)
``vqa_lr``          vqa             ``question_id`` (RSVQA id), ``image``, ``category`` (presence,
``vqa_hr``                          comp, rural_urban, count, area), ``ground_truth``, ``answer``;
                                    plus ``question`` (the RSVQA question, for people)
``referring``       referring       ``question_id``, ``image_id``, ``question`` (the expression),
                                    ``ground_truth`` (pixel quads), ``answer``, ``type`` (``ref`` /
                                    ``grounding``), ``dataset``, ``obj_ids``, ``size_group``
``region_caption``  region-caption  as referring, with ``question`` = the box text and
                                    ``ground_truth`` = the reference caption
=================  ==============  ==================================================================

The referring and region-caption records are DOTA crops (:mod:`kdlib.data.regions`). Their
images are written as ``<image_id>.png`` (:func:`write_crops`) so the scorer reads each crop's
size from the image (``score_file(..., image_dir=...)``), as GeoChat-Bench's sizes are not
in its files. ``size_group`` follows the rule that reproduces GeoChat-Bench's labels on 98.5 % of
``referring_geochat_7b.jsonl`` (with the 600 / 800 / 1,024 px image sizes; an inference, no
source states it): the median object area ``a`` in pixels gives small ``a < 64^2``, medium
``a < 128^2``, large otherwise.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry import Polygon

from kdlib.data.prompts import grounding_query, identify_query, refer_query
from kdlib.data.records import Record, load_image
from kdlib.files import atomic_path


@dataclass(frozen=True)
class EvalTask:
    """One evaluation task: which test records, scored as which ``kdlib score`` task."""

    name: str
    score_task: str  # classification | vqa | referring | region-caption
    record_tasks: tuple[str, ...]  # Record.task values it takes
    dataset: str  # Record.dataset it takes

    def __post_init__(self) -> None:
        if self.score_task not in ("classification", "vqa", "referring", "region-caption"):
            raise ValueError(f"task {self.name}: unknown score task {self.score_task!r}")

    @property
    def crops(self) -> bool:
        """True for the DOTA-crop tasks, whose images are written beside the answers."""
        return self.score_task in ("referring", "region-caption")

    def accepts(self, record: Record) -> bool:
        return record.task in self.record_tasks and record.dataset == self.dataset

    def select(self, records: Sequence[Record]) -> list[Record]:
        """The records of this task, in their order."""
        return [r for r in records if self.accepts(r)]

    def check(self, records: Sequence[Record]) -> None:
        """``ValueError`` naming the first record that is not part of this task."""
        for record in records:
            if not self.accepts(record):
                raise ValueError(f"record {record.id} (task {record.task}, dataset {record.dataset!r}) "
                                 f"is not part of evaluation task {self.name}")


EVAL_TASKS = {task.name: task for task in (
    EvalTask("scene_ucmerced", "classification", ("scene",), "ucmerced"),
    EvalTask("scene_aid", "classification", ("scene",), "aid"),
    EvalTask("vqa_lr", "vqa", ("vqa",), "rsvqa_lr"),
    EvalTask("vqa_hr", "vqa", ("vqa",), "rsvqa_hr"),
    EvalTask("referring", "referring", ("refer", "grounding"), "dota"),
    EvalTask("region_caption", "region-caption", ("region_caption",), "dota"),
)}
TASK_NAMES = tuple(EVAL_TASKS)
CURVE_TASKS = ("scene_ucmerced", "scene_aid")
"""Tasks a learning curve scores by default: the two whose answers are one class name (cheap to generate)."""
BENCH_TYPES = {"refer": "ref", "grounding": "grounding", "region_caption": "ref"}
"""Record.task -> GeoChat-Bench ``type``."""
BENCH_DATASET = "DOTA"
SIZE_LIMITS = ((64**2, "small"), (128**2, "medium"))


def eval_task(name: str) -> EvalTask:
    """The task called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in EVAL_TASKS:
        raise ValueError(f"unknown evaluation task {name!r}; choose from {', '.join(TASK_NAMES)}")
    return EVAL_TASKS[name]


def size_group(quads: Sequence[Sequence[Sequence[float]]]) -> str:
    """``small`` / ``medium`` / ``large`` from the median object area in pixels (module docstring)."""
    area = statistics.median(Polygon(quad).convex_hull.area for quad in quads)
    return next((name for limit, name in SIZE_LIMITS if area < limit), "large")


def unwrap_query(question: str, template: Callable[[str], str]) -> str:
    """The argument a prompt ``template`` (e.g. :func:`refer_query`) was called with to give ``question``."""
    head, _, tail = template("\0").partition("\0")
    if not (question.startswith(head) and question.endswith(tail)):
        raise ValueError(f"prompt {question!r} does not have the form {template('...')!r}")
    return question[len(head):len(question) - len(tail)]


def crop_image_id(record: Record) -> str:
    """``<source image>_<left>_<top>``, e.g. ``P0706_768_896``: the crop's file stem."""
    left, top = record.meta["crop"][:2]
    return f"{Path(record.meta['source_image']).name}_{left}_{top}"


def _scene_line(record: Record, answer: str) -> dict[str, Any]:
    qid = f"{record.meta['class_dir']}/{Path(record.image).name}"
    return {"question_id": qid, "image_id": qid, "answer": answer, "ground_truth": record.answer}


def _vqa_line(record: Record, answer: str) -> dict[str, Any]:
    return {"question_id": record.meta["question_id"], "image": Path(record.image).name,
            "category": record.meta["type"], "question": record.meta["raw_question"], "ground_truth": record.answer,
            "answer": answer}


def _quads(record: Record) -> list[list[list[float]]]:
    """The record's objects as pixel quads of its crop."""
    return [[[float(x), float(y)] for x, y in quad] for quad in record.meta["boxes"]]


def _region_fields(record: Record) -> dict[str, Any]:
    quads = _quads(record)
    return {"question_id": record.id, "image_id": crop_image_id(record), "type": BENCH_TYPES[record.task],
            "dataset": BENCH_DATASET, "obj_ids": list(range(1, len(quads) + 1)), "size_group": size_group(quads)}


def _referring_line(record: Record, answer: str) -> dict[str, Any]:
    template = refer_query if record.task == "refer" else grounding_query
    return {**_region_fields(record), "question": unwrap_query(record.question, template),
            "ground_truth": _quads(record), "answer": answer}


def _region_caption_line(record: Record, answer: str) -> dict[str, Any]:
    return {**_region_fields(record), "question": unwrap_query(record.question, identify_query),
            "ground_truth": record.answer, "answer": answer}


_LINES: dict[str, Callable[[Record, str], dict[str, Any]]] = {
    "classification": _scene_line, "vqa": _vqa_line, "referring": _referring_line,
    "region-caption": _region_caption_line,
}


def answer_line(task: EvalTask, record: Record, answer: str) -> dict[str, Any]:
    """One answer-file line for ``record`` and the model's ``answer`` (keys in the module docstring)."""
    task.check([record])
    return _LINES[task.score_task](record, answer)


def write_crops(records: Sequence[Record], folder: Path) -> Path:
    """Each distinct crop of ``records`` as ``folder/<crop_image_id>.png`` (temp file + rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in {crop_image_id(r): r for r in records}.values():
        target = folder / f"{crop_image_id(record)}.png"
        if target.is_file():
            continue
        with atomic_path(target) as tmp:
            load_image(record).save(tmp, format="PNG")
    return folder
