"""The reproduced-tables chapter: the paper's Tables 3-8 rebuilt from a run's results, the paper's numbers beside ours.

Every number comes from the run's result files (:class:`kdlib.run.RunContext`): the three models of the study (scene
classification chapter), the related students (related-methods chapter), the real GeoChat-7B
answer files scored by kdlib, and the efficiency counts (efficiency chapter). The paper's
numbers sit in the columns ending in ``(paper)`` (:mod:`kdlib.evaluate.paper`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import pandas as pd

from kdlib.evaluate.report import (CAPTION_COLUMNS, GROUNDING_COLUMNS, MODEL_LABELS, SCENE_COLUMNS, VQA_COLUMNS,
                                   comparison_table, one_column_if_balanced)
from kdlib.evaluate.runner import GEOCHAT_7B_FILES, MODELS, REAL_GEOCHAT, read_result
from kdlib.evaluate.tasks import TASK_NAMES
from kdlib.run import RunContext

TABLES = {
    "Tables 3-4: scene classification (OA, AA)": SCENE_COLUMNS,
    "Table 5: VQA (accuracy per type, mOA)": VQA_COLUMNS,
    "Table 6: visual grounding (acc@0.5, acc@0.25)": GROUNDING_COLUMNS,
    "Table 7: region captioning (ROUGE-1, ROUGE-L, METEOR)": CAPTION_COLUMNS,
}
"""Title -> the metric columns of each rebuilt table."""


def study_results(ctx: RunContext, related: tuple[str, ...] = ()) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {task: result}}`` for the study's models, the ``related`` students and the real
    GeoChat-7B (only the tasks it has answer files for); a missing file names its chapter."""
    results = {m: {t: read_result(ctx, m, t, "scene_classification") for t in TASK_NAMES} for m in MODELS}
    results.update({m: {t: read_result(ctx, m, t, "related_methods") for t in _related_tasks(ctx, m)}
                    for m in related})
    results[REAL_GEOCHAT] = {t: read_result(ctx, REAL_GEOCHAT, t, "scene_classification") for t in GEOCHAT_7B_FILES}
    return results


def _related_tasks(ctx: RunContext, model: str) -> list[str]:
    ctx.require(ctx.results_dir(model), producer="related_methods")
    return [t for t in TASK_NAMES if ctx.result_file(model, t).exists()]


def rebuilt_tables(results: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str],
                   balanced: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """Title -> table (rows: models, labelled by ``labels`` then ``MODEL_LABELS``); the scene tasks in
    ``balanced`` (class-balanced for every model, :func:`~kdlib.evaluate.report.balanced_tasks`) show
    OA and AA as one column (:func:`~kdlib.evaluate.report.one_column_if_balanced`)."""
    names = {**MODEL_LABELS, **labels}
    out = {}
    for title, columns in TABLES.items():
        frame = comparison_table(results, columns)
        if columns is SCENE_COLUMNS:
            frame = one_column_if_balanced(frame, balanced)
        frame.index = [names.get(m, m) for m in results]
        out[title] = frame.dropna(axis=1, how="all")
    return out


def table8(ctx: RunContext) -> pd.DataFrame:
    """Table 8 (params, FLOPs) at this profile and at the paper's sizes, beside the paper's."""
    from kdlib.analysis.efficiency import table8_frame

    eff = json.loads(ctx.require(ctx.chapter_file("efficiency.json"), producer="efficiency").read_text())
    return table8_frame(eff["counted"][ctx.profile.name], eff["counted"]["paper"]).round(2)


def provenance_table(results: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """Which run produced each number: model x task -> profile, device, date."""
    rows = [{"model": m, "task": t, **{k: r.get("provenance", {}).get(k, "") for k in ("profile", "device", "date")}}
            for m, per_task in results.items() for t, r in per_task.items()]
    return pd.DataFrame(rows)
