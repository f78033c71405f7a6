"""Tables and figure inputs for the evaluation chapters, built from the results on disk.

The three models stand in for the paper's rows (:data:`PAPER_ROWS`): the SFT teacher for
GeoChat-13B, the SFT student for GeoChat-7B and the distilled student for "Ours (GeoChat-7B
distilled)"; the real GeoChat-7B answers (``geochat_7b_real``) for GeoChat-7B as well. Every
comparison table puts the paper's number in a column ending in ``(paper)`` beside kdlib's.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdlib.evaluate.paper import paper_value
from kdlib.evaluate.runner import REAL_GEOCHAT, answers_path, read_result
from kdlib.plots import BoxPanel
from kdlib.run import RunContext

PAPER_ROWS = {"teacher": "GeoChat-13B", "student_sft": "GeoChat-7B", "student_kd": "Ours (GeoChat-7B distilled)",
              REAL_GEOCHAT: "GeoChat-7B"}
"""kdlib model -> the paper's row it is compared with."""
MODEL_LABELS = {"student_sft": "student, SFT", "teacher": "teacher, SFT", "student_kd": "student, distilled",
                REAL_GEOCHAT: "GeoChat-7B (real answers)"}
HEADLINE = {"scene_ucmerced": "OA", "scene_aid": "OA", "vqa_lr": "mOA", "vqa_hr": "mOA",
            "referring": "acc@0.5", "region_caption": "ROUGE-L"}
"""The one number per task of :func:`headline_table`."""


@dataclass(frozen=True)
class Column:
    """A metric of one task (``key`` into its result) and, when the paper prints it, where."""

    label: str
    task: str
    key: str
    paper: tuple[int, str, str] | None = None  # (table, metric, dataset) of kdlib.evaluate.paper


SCENE_COLUMNS = (
    Column("UCMerced OA", "scene_ucmerced", "OA", (3, "OA", "UCMerced")),
    Column("UCMerced AA", "scene_ucmerced", "AA", (4, "AA", "UCMerced")),
    Column("AID OA", "scene_aid", "OA", (3, "OA", "AID")),
    Column("AID AA", "scene_aid", "AA", (4, "AA", "AID")),
)


def _vqa_columns(task: str, short: str, dataset: str, types: tuple[str, ...]) -> tuple[Column, ...]:
    core = ("presence", "comparison", "rural_urban")
    per_type = (Column(f"{short} {t.replace('_', '/')}", task, t,
                       (5, t.replace("_", "/"), dataset) if t in core else None) for t in types)
    return (*per_type, Column(f"{short} mOA (question-weighted)", task, "mOA", (5, "mOA", dataset)),
            Column(f"{short} mean of type accuracies", task, "mOA_mean_of_types"))


VQA_COLUMNS = (*_vqa_columns("vqa_lr", "LR", "RSVQA-LRBEN", ("presence", "comparison", "rural_urban", "count")),
               *_vqa_columns("vqa_hr", "HR", "RSVQA-HRBEN", ("presence", "comparison", "count", "area")))
"""Per-type accuracy (count and area outside mOA, no paper number) and both mOA forms."""
GROUNDING_COLUMNS = (
    Column("acc@0.5", "referring", "acc@0.5", (6, "acc@0.5", "grounding")),
    Column("acc@0.25", "referring", "acc@0.25", (6, "acc@0.25", "grounding")),
)
CAPTION_COLUMNS = tuple(Column(m, "region_caption", m, (7, m, "region captioning"))
                        for m in ("ROUGE-1", "ROUGE-L", "METEOR"))

HEADLINE_COLUMNS = {column.task: column for column in (*SCENE_COLUMNS, *VQA_COLUMNS, *GROUNDING_COLUMNS, *CAPTION_COLUMNS)
                    if column.key == HEADLINE.get(column.task)}
"""The one table of where the paper prints each task's headline metric: task -> its :class:`Column`
(``paper`` = ``(table, metric, dataset)``)."""


def headline_columns(tasks: Sequence[str]) -> list[Column]:
    """The headline column (:data:`HEADLINE_COLUMNS`) of each of ``tasks``."""
    return [HEADLINE_COLUMNS[task] for task in tasks]


def load_results(ctx: RunContext, models: Sequence[str], tasks: Sequence[str],
                 producer: str = "scene_classification") -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {task: result}}`` read from the run's results (error naming ``producer``)."""
    return {m: {t: read_result(ctx, m, t, producer) for t in tasks} for m in models}


def paper_number(model: str, where: tuple[int, str, str]) -> float:
    """The paper's value for ``model`` (its :data:`PAPER_ROWS` row) at ``(table, metric, dataset)``; NaN if none."""
    if model not in PAPER_ROWS:
        return math.nan
    try:
        return paper_value(*where, PAPER_ROWS[model])
    except KeyError:
        return math.nan


def comparison_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]], columns: Sequence[Column]) -> pd.DataFrame:
    """One row per model (its label), kdlib's metric per column and the paper's in ``"<label> (paper)"``.

    A task a model was not scored on, or a number the paper does not print, is NaN.
    """
    rows = {}
    for model, per_task in results.items():
        row: dict[str, float] = {}
        for column in columns:
            value = per_task.get(column.task, {}).get(column.key)
            row[column.label] = math.nan if value is None else float(value)
            if column.paper is not None:
                row[f"{column.label} (paper)"] = paper_number(model, column.paper)
        rows[MODEL_LABELS.get(model, model)] = row
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def headline_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """Models x tasks, one number each (:data:`HEADLINE`), in percent."""
    columns = [Column(f"{task} {HEADLINE[task]}", task, HEADLINE[task])
               for task in dict.fromkeys(t for per_task in results.values() for t in per_task)]
    return comparison_table(results, columns)


def group_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """A referring result per ``type`` and ``size_group`` (and all): n, boxes, acc@0.5, acc@0.25."""
    groups = {"all": result, **{f"type {k}": v for k, v in result["per_type"].items()},
              **{f"size {k}": v for k, v in result["per_size_group"].items()}}
    keys = ("n", "n_boxes", "acc@0.5", "acc@0.25")
    rows = {name: {k: g[k] for k in keys} for name, g in groups.items()}
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of an answer file (validated files only: written or scored before)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def answer_examples(paths: Mapping[str, Path], n: int = 5, key: str = "question_id") -> pd.DataFrame:
    """The first ``n`` items of the first file with the reference and every model's answer.

    Files are joined on ``key``; a model without that item shows NaN.
    """
    tables = {label: {row[key]: row for row in read_lines(path)} for label, path in paths.items()}
    first = next(iter(tables.values()))
    rows = []
    for item in list(first)[:n]:
        row = {"question": first[item].get("question", ""), "reference": first[item]["ground_truth"]}
        row.update({label: table[item]["answer"] if item in table else math.nan for label, table in tables.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_from_answers(path: str | Path) -> pd.DataFrame:
    """Confusion counts of a scene answer file, labelled with the class names the file writes.

    Rows are the true classes, columns the classes plus ``<other>`` (answers naming no class);
    see :func:`kdlib.evaluate.scene.scene_confusion`.
    """
    from kdlib.data.geochat_bench import read_answers
    from kdlib.evaluate.scene import normalize_label, scene_confusion, scene_labels

    records = read_answers(path, "classification").records
    classes, y_true, y_pred = scene_labels(records)
    names = {normalize_label(r.ground_truth): r.ground_truth for r in records}
    return scene_confusion(y_true, y_pred, classes).rename(index=names, columns=names)


def class_counts(path: str | Path) -> dict[str, int]:
    """Test images per true class of a scene answer file (classes as GeoChat's scorer normalises them)."""
    from kdlib.data.geochat_bench import read_answers
    from kdlib.evaluate.scene import normalize_label

    return dict(Counter(normalize_label(r.ground_truth) for r in read_answers(path, "classification").records))


def is_balanced(counts: Mapping[str, int]) -> bool:
    """Whether every class has the same number of test images: then ``AA = (1/K) sum_k c_k / m =
    sum_k c_k / (K m) = OA`` exactly (``c_k`` correct of the ``m`` images of class ``k``)."""
    return len(set(counts.values())) == 1


def balanced_tasks(ctx: RunContext, results: Mapping[str, Mapping[str, Any]], tasks: Sequence[str]) -> list[str]:
    """The scene ``tasks`` whose test set is class-balanced (:func:`is_balanced`) in the answer file of
    every model of ``results`` (``{model: {task: result}}``) scored on it, at least one."""
    def balanced(task: str) -> bool:
        models = [m for m, per_task in results.items() if task in per_task]
        return bool(models) and all(is_balanced(class_counts(answers_path(ctx, m, task))) for m in models)

    return [t for t in tasks if balanced(t)]


def one_column_if_balanced(table: pd.DataFrame, balanced: Sequence[str]) -> pd.DataFrame:
    """A table of :data:`SCENE_COLUMNS` where, for each task in ``balanced`` (class-balanced test set in
    every row, :func:`is_balanced`), OA and AA are one column ``"<dataset> OA = AA"``; the paper's OA and
    AA columns stay. Raises if the two columns differ beyond rounding, which a balanced set cannot do."""
    out = table
    for task in balanced:
        oa, aa = (c for c in SCENE_COLUMNS if c.task == task)
        gap = (out[oa.label] - out[aa.label]).abs().max()
        if gap > 0.011:
            raise ValueError(f"{task}: OA and AA differ by up to {gap:.2f} on a test set called class-balanced")
        out = out.drop(columns=aa.label).rename(columns={oa.label: f"{oa.label} = AA"})
    return out


def row_normalised(confusion: pd.DataFrame) -> pd.DataFrame:
    """``C[i, j] / sum_j C[i, j]`` (recall per true class; rows without samples stay 0)."""
    totals = confusion.sum(axis=1)
    return confusion.div(totals.where(totals > 0, 1), axis=0)


def most_confused(confusion: pd.DataFrame, k: int = 3) -> list[tuple[str, str, float, int]]:
    """The ``k`` largest off-diagonal cells between two classes as ``(true, predicted, share of the
    true class, count)``, by share then count (answers naming no class are :func:`no_class_share`)."""
    from kdlib.evaluate.scene import OTHER

    rates = row_normalised(confusion)
    cells = [(true, pred, float(rates.at[true, pred]), int(confusion.at[true, pred]))
             for true in confusion.index for pred in confusion.columns
             if pred not in (true, OTHER) and confusion.at[true, pred] > 0]
    return sorted(cells, key=lambda c: (-c[2], -c[3], c[0], c[1]))[:k]


def no_class_share(confusion: pd.DataFrame) -> float:
    """Percent of all answers that name no class (the ``<other>`` column)."""
    from kdlib.evaluate.scene import OTHER

    total = confusion.to_numpy().sum()
    return 100.0 * float(confusion[OTHER].sum()) / float(total) if total else 0.0


def confused_text(pairs: Sequence[tuple[str, str, float, int]]) -> str:
    """``"dense residential taken for medium residential (40 % of its images, 4); ..."``, or a
    sentence saying that no class was taken for another."""
    if not pairs:
        return "no class was taken for another"
    return "; ".join(f"{true} taken for {pred} ({100 * share:.0f} % of its images, {count})"
                     for true, pred, share, count in pairs)


def box_panels(path: str | Path, image_dir: str | Path, question_ids: Sequence[str]) -> list[BoxPanel]:
    """Ground-truth and predicted boxes (pixel corners) of the given referring answers, with the IoU
    of each prediction against its best ground-truth box; images from ``image_dir/<image_id>.png``."""
    from kdlib.boxes import box_polygon, parse_geochat_boxes, quad_polygon, rotated_iou
    from kdlib.data.geochat_bench import read_answers
    from kdlib.evaluate.grounding import image_sizes_from_dir

    by_id = {r.question_id: r for r in read_answers(path, "referring").records}
    missing = [q for q in question_ids if q not in by_id]
    if missing:
        raise KeyError(f"{path}: no answer for question {missing[0]!r}")
    chosen = [by_id[q] for q in question_ids]
    sizes = image_sizes_from_dir(image_dir, [r.image_id for r in chosen])
    panels = []
    for record in chosen:
        truth = [quad_polygon(q) for q in record.ground_truth]
        predicted = [box_polygon(b, *sizes[record.image_id]) for b in parse_geochat_boxes(record.answer)]
        ious = [max(rotated_iou(p, t) for t in truth) for p in predicted]
        panels.append(BoxPanel(Path(image_dir) / f"{record.image_id}.png", [_corners(t) for t in truth],
                               [_corners(p) for p in predicted], ious, record.question))
    return panels


def _corners(polygon: Any) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in list(polygon.exterior.coords)[:-1]]


def kd_verdict(results: Mapping[str, Mapping[str, Mapping[str, Any]]], task: str, key: str) -> str:
    """A sentence placing the distilled student's ``key`` on ``task`` against the SFT student's and
    the teacher's, e.g. ``"the distilled student's OA (12.50 %) is above the SFT student's
    (8.33 %) and below the teacher's (16.67 %)"``."""
    kd, sft, teacher = (float(results[m][task][key]) for m in ("student_kd", "student_sft", "teacher"))

    def relation(a: float, b: float) -> str:
        return "above" if a > b + 1e-9 else "below" if a < b - 1e-9 else "level with"

    return (f"the distilled student's {key} ({kd:.2f} %) is {relation(kd, sft)} the SFT student's ({sft:.2f} %) "
            f"and {relation(kd, teacher)} the teacher's ({teacher:.2f} %)")


def dominant_answer(answers: Sequence[str]) -> tuple[str, float]:
    """The most frequent answer (case and surrounding space ignored) and its share in percent."""
    if not answers:
        raise ValueError("dominant_answer needs at least one answer")
    answer, count = Counter(a.strip().lower() for a in answers).most_common(1)[0]
    return answer, 100 * count / len(answers)


def binomial_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n`` in percent, clipped to [0, 100]:
    centre (p + z²/2n) / (1 + z²/n), half-width z √(p(1-p)/n + z²/4n²) / (1 + z²/n)."""
    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"binomial_interval needs 0 <= hits <= n and n > 0, got {hits}/{n}")
    p, d = hits / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, 100 * (centre - half)), min(100.0, 100 * (centre + half))


def proportion_interval(result: Mapping[str, Any], key: str) -> tuple[float, float]:
    """The 95 % Wilson interval (percent) of a result's proportion ``key`` (in percent) over its ``n`` items."""
    n = int(result["n"])
    return binomial_interval(round(float(result[key]) * n / 100), n)


def interval_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]], columns: Sequence[Column]) -> pd.DataFrame:
    """One row per model (its label): each column's proportion and its 95 % Wilson interval
    (:func:`proportion_interval`) as ``"lo-hi"`` in ``"<label> 95 % interval"``."""
    rows = {}
    for model, per_task in results.items():
        row: dict[str, Any] = {}
        for column in columns:
            lo, hi = proportion_interval(per_task[column.task], column.key)
            row[column.label] = round(float(per_task[column.task][column.key]), 2)
            row[f"{column.label} 95 % interval"] = f"{lo:.1f}-{hi:.1f}"
        rows[MODEL_LABELS.get(model, model)] = row
    return pd.DataFrame.from_dict(rows, orient="index")
