"""Learning curves: what a run's model could do at its kept steps, against the CPU time spent to get there.

A run with ``train.snapshot_every = n`` keeps its trainable weights after every n-th step
(:mod:`kdlib.train.snapshots`). For each such step ``s`` this module rebuilds the model of step ``s``
(the model the run started from, or its saved model when it started from a built one, with the
snapshot's weights put in); the start model is step 0 and the saved model a point at the step it
kept (:func:`curve_points`). Each model answers the test records of each evaluation task greedily, as
``kdlib evaluate`` does, and scores the answers. One row per step:

- ``cpu_hours``: ``sum_{t <= s} cpu_s_t / 3600``, the process CPU time of the steps so far
  (``metrics.jsonl``; steps a killed run repeated after resuming are counted once);
- ``val_loss``: the validation loss logged at ``s``, when the run validated there;
- per task: its headline metric (:data:`~kdlib.evaluate.report.HEADLINE`), the 95 % Wilson interval
  where the metric is one proportion (``<task> lo`` / ``<task> hi``), and the most frequent answer with
  its share of the answers (``<task> top`` / ``<task> top share``), which names a collapsed model.

Answers are written under ``RunContext.curve_dir(run)`` (``step-NNNNNNNN/<task>.jsonl``, with the
sha256 of the records they answer in ``<task>.json``) and kept: an answer file newer than its snapshot,
for the same test records, is scored again, not regenerated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from kdlib.data.records import records_digest
from kdlib.data.study import Study, load_study
from kdlib.evaluate.report import HEADLINE, binomial_interval, dominant_answer
from kdlib.evaluate.runner import evaluate_model, score_answers
from kdlib.evaluate.tasks import CURVE_TASKS, eval_task
from kdlib.files import write_json
from kdlib.run import RunContext
from kdlib.models.io import LoadedMLLM
from kdlib.train.snapshots import load_weights, snapshots
from kdlib.train.validation import read_best

def metrics_by_step(run_dir: Path) -> pd.DataFrame:
    """``metrics.jsonl`` of a run indexed by step: ``cpu_hours`` (cumulative) and ``val_loss`` (NaN where not logged)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run has logged no step")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            rows.append({"step": int(row["step"]), "cpu_s": float(row["cpu_s"]),
                         "val_loss": float(row.get("val_loss", "nan"))})
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a metrics line with step and cpu_s ({err})") from None
    table = pd.DataFrame(rows).drop_duplicates("step", keep="last").set_index("step").sort_index()
    table["cpu_hours"] = table["cpu_s"].cumsum() / 3600
    return table[["cpu_hours", "val_loss"]]


def curve_points(ctx: RunContext, run: str) -> list[tuple[int, Path]]:
    """``(step, weights)`` of every model of ``run`` a curve can score, in step order: the model it started
    from as step 0 (a folder, when ``data.json`` names one), each snapshot (a file whose weights go into the
    start model, or into the saved one for a run that started from a built model: the frozen weights are the
    same), and the saved model (a folder) at the step it kept, unless a snapshot has that step."""
    run_dir = ctx.train_dir(run)
    data = run_dir / "data.json"
    starts = json.loads(data.read_text()).get("starts", []) if data.is_file() else []
    points = [(0, (run_dir / starts[-1]).resolve())] if starts else []
    points += snapshots(run_dir)
    saved = ctx.model_dir(run)
    if saved.is_dir() and (run_dir / "metrics.jsonl").is_file():
        best = read_best(run_dir)
        step = best[0] if best else int(metrics_by_step(run_dir).index[-1])
        if step not in {s for s, _ in points}:
            points.append((step, saved))
    if not points or (not starts and not saved.is_dir()):
        raise FileNotFoundError(f"{run_dir}: no model of {run} to score: train it (its snapshots need the model it "
                                "started from or its saved model)")
    return sorted(points)


def _newest(path: Path) -> float:
    """Modification time of a file, or of the newest file in a folder."""
    return max((f.stat().st_mtime for f in path.iterdir()), default=0.0) if path.is_dir() else path.stat().st_mtime


def _fresh(answers: Path, weights: Path, digest: str) -> bool:
    """An answer file written after the weights it answers with (a snapshot file or a model folder) for the
    records of sha256 ``digest``."""
    stamp = answers.with_suffix(".json")
    if not (answers.is_file() and stamp.is_file()) or answers.stat().st_mtime < _newest(weights):
        return False
    try:
        return json.loads(stamp.read_text()).get("records") == digest
    except ValueError:
        return False


def task_point(task: str, answers: Path, image_dir: Path) -> dict[str, Any]:
    """The curve's columns for one task at one step, from its answer file (module docstring)."""
    result = score_answers(task, answers, image_dir)
    key = HEADLINE[task]
    value = result[key]
    point: dict[str, Any] = {task: value}
    if isinstance(result.get("n"), int) and value is not None:
        point[f"{task} lo"], point[f"{task} hi"] = binomial_interval(round(value * result["n"] / 100), result["n"])
    given = [json.loads(line)["answer"] for line in answers.read_text().splitlines() if line.strip()]
    point[f"{task} top"], point[f"{task} top share"] = dominant_answer(given)
    return point


def _model_of(ctx: RunContext, weights: Path, base: Path,
              current: tuple[Path, LoadedMLLM] | None) -> tuple[Path, LoadedMLLM]:
    """The model of one curve point and the folder it was loaded from: a model folder is loaded; a snapshot is
    put into ``base``, reusing the ``current`` model when it came from ``base`` (each snapshot holds every
    trained weight, so an earlier snapshot in it is overwritten)."""
    from kdlib.models.feature_cache import data_processor
    from kdlib.models.io import load_for_inference

    folder = weights if weights.is_dir() else base
    if current is None or current[0] != folder or weights.is_dir():
        mllm = load_for_inference(folder, ctx.device, ctx.profile.dtype)
        current = folder, replace(mllm, image_processor=data_processor(mllm.model, mllm.image_processor,
                                                                       ctx.vision_cache))
    if not weights.is_dir():
        load_weights(current[1].model, weights)
    return current


def learning_curve(ctx: RunContext, run: str, tasks: Sequence[str] = CURVE_TASKS, *, limit: int | None = None,
                   batch_size: int = 16, study: Study | None = None) -> pd.DataFrame:
    """Score every model of :func:`curve_points` of ``run`` on the test records of ``tasks`` (``limit`` per task, first in split
    order); write the table to ``ctx.curve_file(run)`` and return it (one row per step, module docstring)."""
    from kdlib.evaluate.generate import answer_budget

    points = curve_points(ctx, run)
    specs = [eval_task(t) for t in tasks]
    metrics = metrics_by_step(ctx.train_dir(run))
    study = study or load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    base = points[0][1] if points[0][1].is_dir() else ctx.model_dir(run)
    rows, current = [], None
    for step, weights in points:
        row: dict[str, Any] = {"step": step, "cpu_hours": 0.0 if step == 0 else math.nan, "val_loss": math.nan}
        if step in metrics.index:
            row.update(metrics.loc[step].to_dict())
        loaded = False
        for spec in specs:
            records = spec.select(study.test)[:limit]
            answers, digest = ctx.curve_dir(run) / f"step-{step:08d}" / f"{spec.name}.jsonl", records_digest(records)
            if not _fresh(answers, weights, digest):
                if not loaded:
                    current = _model_of(ctx, weights, base, current)
                    loaded = True
                mllm = current[1]
                budget = answer_budget([r.answer for r in spec.select(study.train)], mllm.tokenizer)
                evaluate_model(mllm, records, spec.name, answers, image_dir=ctx.crops_dir, max_new_tokens=budget,
                               batch_size=batch_size, progress=ctx.progress)
                write_json(answers.with_suffix(".json"), {"records": digest, "max_new_tokens": budget})
            row.update(task_point(spec.name, answers, ctx.crops_dir))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("step")
    write_json(ctx.curve_file(run), {"run": run, "tasks": list(tasks), "limit": limit,
                                     "rows": json.loads(table.reset_index().to_json(orient="records")),
                                     "provenance": ctx.provenance()}, sort_keys=False)
    return table


def read_curve(ctx: RunContext, run: str) -> pd.DataFrame:
    """The table :func:`learning_curve` wrote for ``run`` (error naming the command that writes it)."""
    path = ctx.require(ctx.curve_file(run), producer="training")
    saved = json.loads(path.read_text())
    try:
        table = pd.DataFrame(saved["rows"]).set_index("step")
        numeric = [c for c in table.columns if not c.endswith(" top")]  # null (NaN in JSON) reads back as NaN
        table[numeric] = table[numeric].astype(float)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a learning curve ({err})") from None
    return table
