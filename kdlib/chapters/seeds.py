"""Several seeds of the study's three main models: mean, 95% confidence interval, the paper's ordering.

The code of the seeds chapter. The training chapter trains teacher, SFT student and distilled
student for the book's seed (``ctx.seed``); :func:`run_seeds` trains the two students again for
the next ``profile.seeds - 1`` seeds, each in its own folder (:meth:`kdlib.run.RunContext.for_seed`:
same layout; finished runs and results that still hold are reused), and evaluates all three models
of every seed. The teacher is the book's for every seed, as the paper distils from one GeoChat-13B.
A seed changes the students' random initialisation (projectors, ``tiny`` models), the order of the
training batches and the samples drawn during distillation; the data split is the study's one
(``ctx.split_seed``), so every seed is scored on the same test records and no seed's test image
was seen by the teacher.

Per model and task, over ``n`` seeds with values ``x_1..x_n``:

    mean = (1/n) sum_i x_i,   CI_95 = mean +- t_{0.975, n-1} * s / sqrt(n),   s^2 = sum_i (x_i - mean)^2 / (n - 1)

(Student's t; no interval for one seed). Every headline metric is a percentage, so its mean lies in
``[0, 100]``; the model table shows the interval cut to that range, ``[max(0, mean - h), min(100,
mean + h)]``, which covers the true mean whenever the uncut interval does (so at least 95 % of the
time) and never names an impossible value; :func:`cut_sentence` says which rows were cut and where the
uncut bounds lay. The paper's claim is an ordering (Tables 3-7: distilled
student above the SFT student, below the teacher); it is tested on paired differences
``d_i = x_i(student_kd) - x_i(student_sft)`` with the same interval: the ordering *holds* when the
interval of ``d`` lies above 0, is *reversed* when it lies below 0, and is *undecided* otherwise;
when both models score 0 on every seed it is *at floor, untestable here* (no difference can show).

:func:`item_table` gives the other half of the uncertainty: per seed, the same difference paired over
the test items (:mod:`kdlib.evaluate.paired`), for the tasks scored as a mean of per-item 0/1 scores.
It holds that seed's two models fixed, so it says whether *those two models* differ on this test
split; only the seeds' interval speaks for the recipe.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from scipy import stats

from kdlib.evaluate.paired import PAIRED_TASKS, compare_files
from kdlib.evaluate.report import HEADLINE, HEADLINE_COLUMNS, MODEL_LABELS, paper_number
from kdlib.evaluate.runner import MODELS, evaluate_study
from kdlib.evaluate.tasks import eval_task
from kdlib.run import RunContext

Results = dict[str, dict[str, dict[str, Any]]]  # {model: {task: result}}
def study_seeds(ctx: RunContext) -> list[int]:
    """``profile.seeds`` consecutive seeds starting at the book's: ``[ctx.seed, ..., ctx.seed + n - 1]``."""
    return list(range(ctx.seed, ctx.seed + ctx.profile.seeds))


def run_seeds(ctx: RunContext, tasks: Sequence[str], seeds: Sequence[int] | None = None) -> dict[int, Results]:
    """Train the students of every seed (:func:`~kdlib.train.study.run_study_training`, with the book's
    teacher) and evaluate the three models; ``{seed: results}``.

    The book's seed must already be trained and evaluated (training and scene chapters); other seeds'
    students are trained here on the study's data split.
    """
    from kdlib.data.study import load_study
    from kdlib.train.study import run_study_training

    seeds = study_seeds(ctx) if seeds is None else list(seeds)
    study = load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    out: dict[int, Results] = {}
    for seed in seeds:
        here = ctx.for_seed(seed)
        if seed != ctx.seed:
            run_study_training(here, study=study)
        out[seed] = evaluate_study(here, MODELS, tasks, study=study)
    return out


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of the Student-t interval of ``values``; half-width NaN for one value."""
    if not values:
        raise ValueError("mean_ci needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


#: The range of every headline metric (points of a percentage): the bounds a model's interval is cut to
METRIC_RANGE = (0.0, 100.0)


def cut_interval(mean: float, half: float, bounds: tuple[float, float] = METRIC_RANGE) -> tuple[float, float]:
    """``(low, high)`` of ``mean +- half`` cut to ``bounds``; NaN bounds for a NaN half-width (one seed)."""
    if math.isnan(half):
        return math.nan, math.nan
    return max(bounds[0], mean - half), min(bounds[1], mean + half)


def _values(by_seed: Mapping[int, Results], model: str, task: str) -> list[float]:
    return [float(results[model][task][HEADLINE[task]]) for results in by_seed.values()]


CI_LOW, CI_HIGH, HALF = "95% CI low", "95% CI high", "± 95% CI"
"""Columns of :func:`seed_table`: the interval's bounds as shown (cut to :data:`METRIC_RANGE`) and its
uncut half-width."""


def seed_table(by_seed: Mapping[int, Results], tasks: Sequence[str]) -> pd.DataFrame:
    """One row per model and task: headline metric's mean, the 95% interval's bounds cut to
    :data:`METRIC_RANGE` (:func:`cut_interval`) and its uncut half-width, min, max, seeds, the paper's value."""
    rows = []
    for task in tasks:
        for model in MODELS:
            values = _values(by_seed, model, task)
            mean, half = mean_ci(values)
            low, high = cut_interval(mean, half)
            rows.append({"task": task, "metric": HEADLINE[task], "model": MODEL_LABELS[model], "mean": mean,
                         CI_LOW: low, CI_HIGH: high, HALF: half, "min": min(values), "max": max(values),
                         "seeds": len(values), "paper": paper_number(model, HEADLINE_COLUMNS[task].paper)})
    return pd.DataFrame(rows).set_index(["task", "model"]).round(2)


def cut_sentence(table: pd.DataFrame) -> str:
    """The rows of :func:`seed_table` whose t-interval crosses 0 or 100, with the bounds it would have,
    in words; says so when none does."""
    cut = []
    for (task, model), row in table.iterrows():
        low, high = row["mean"] - row[HALF], row["mean"] + row[HALF]
        if low < METRIC_RANGE[0] or high > METRIC_RANGE[1]:
            cut.append(f"{model} on {task} ({low:.1f} to {high:.1f})")
    lo, hi = (f"{b:.0f}" for b in METRIC_RANGE)
    if not cut:
        return f"No interval reaches beyond the metric's range of {lo} to {hi} %."
    return (f"The Student-t interval would reach beyond the metric's range of {lo} to {hi} % for "
            f"{', '.join(cut)}; the table shows those bounds cut at {lo} and {hi} (the mean cannot lie "
            "outside, so the cut interval covers it at least as often as the uncut one). Such a wide "
            "interval says that few seeds and a high spread leave the mean poorly known.")


FLOOR = "at floor, untestable here"


def ordering(by_seed: Mapping[int, Results], task: str, better: str = "student_kd",
             worse: str = "student_sft") -> dict[str, Any]:
    """The paired difference ``better - worse`` on ``task``: mean, CI half-width and the verdict."""
    high, low = _values(by_seed, better, task), _values(by_seed, worse, task)
    diffs = [a - b for a, b in zip(high, low, strict=True)]
    mean, half = mean_ci(diffs)
    if not any(high + low):
        verdict = FLOOR
    elif math.isnan(half):
        verdict = "one seed: no interval"
    elif mean - half > 0:
        verdict = "holds"
    elif mean + half < 0:
        verdict = "reversed"
    else:
        verdict = "undecided"
    return {"task": task, "difference": mean, "± 95% CI": half, "seeds": len(diffs), "verdict": verdict}


def ordering_table(by_seed: Mapping[int, Results], tasks: Sequence[str]) -> pd.DataFrame:
    """The paper's two orderings per task: distilled over SFT student, teacher over distilled student."""
    rows = []
    for task in tasks:
        for better, worse in (("student_kd", "student_sft"), ("teacher", "student_kd")):
            rows.append({"claim": f"{MODEL_LABELS[better]} > {MODEL_LABELS[worse]}", **ordering(by_seed, task, better, worse)})
    return pd.DataFrame(rows).set_index(["task", "claim"]).round(2)


def ordering_sentence(table: pd.DataFrame) -> str:
    """How many tasks each ordering holds, is reversed or undecided on, in words."""
    parts = []
    for claim, group in table.groupby(level="claim", sort=False):
        counts = group["verdict"].value_counts()
        said = ", ".join(f"{verdict} on {counts[verdict]} of {len(group)} tasks" for verdict in counts.index)
        parts.append(f"'{claim}': {said}")
    return "; ".join(parts)


def claim_sentence(table: pd.DataFrame) -> str:
    """Whether the paper's main claim (distilled student above the SFT student) holds here, in plain words:
    the tasks where the paired interval lies above zero, below zero or around it (:func:`ordering_table`)."""
    rows = table.xs(f"{MODEL_LABELS['student_kd']} > {MODEL_LABELS['student_sft']}", level="claim")
    tasks = {v: list(rows.index[rows["verdict"] == v]) for v in ("holds", "reversed", "undecided", FLOOR)}
    if not any(tasks.values()):
        return "With one seed there is no interval, so no verdict on the paper's claim."

    def listed(names: list[str]) -> str:
        return ", ".join(names) if names else "no task"

    said = (f"The paper's claim, the distilled student above the SFT student, holds here on "
            f"{listed(tasks['holds'])}, is reversed on {listed(tasks['reversed'])} and is undecided (its "
            f"interval contains zero) on {listed(tasks['undecided'])}"
            + (f"; every model scores 0 on {listed(tasks[FLOOR])}, at floor, untestable here" if tasks[FLOOR] else ""))
    support, contradict = bool(tasks["holds"]), bool(tasks["reversed"])
    if support and contradict:
        return said + ": these runs support the paper on some tasks and contradict it on others."
    if support or contradict:
        return said + f": these runs {'support' if support else 'contradict'} the paper where it is decided."
    return said + ": these runs neither confirm nor refute the paper; the differences are within seed noise."


ITEM_VERDICTS = {"B above A": "above", "B below A": "below", "undecided": "undecided",
                 "same on every item": "same on every item"}


def item_table(ctx: RunContext, seeds: Sequence[int], tasks: Sequence[str], better: str = "student_kd",
               worse: str = "student_sft") -> pd.DataFrame:
    """Per seed and task scored item by item: ``better - worse`` paired over the test items (points),
    its 95% half-width, the items only one of the two gets right, and the verdict for ``better``
    (above, below, undecided, or the same on every item)."""
    rows = []
    for seed in seeds:
        home = ctx.for_seed(seed)
        for task in (t for t in tasks if eval_task(t).score_task in PAIRED_TASKS):
            paired = compare_files(eval_task(task).score_task, home.answers_file(worse, task),
                                   home.answers_file(better, task))
            rows.append({"seed": seed, "task": task, "difference": paired.diff, "± 95% CI": paired.half_width,
                         "items": paired.n, f"only {worse} right": paired.only_a, f"only {better} right": paired.only_b,
                         "verdict": ITEM_VERDICTS[paired.verdict]})
    return pd.DataFrame(rows).set_index(["task", "seed"]).sort_index().round(2)


def item_sentence(table: pd.DataFrame, better: str = "student_kd", worse: str = "student_sft") -> str:
    """How many (task, seed) pairs of :func:`item_table` go each way, and the range of half-widths."""
    counts = table["verdict"].value_counts()
    words = {"above": f"above {_THE[worse]} on {{}}", "below": "below on {}", "undecided": "undecided on {}",
             "same on every item": "right on exactly the same items on {}"}
    said = ", ".join(words[v].format(counts[v]) for v in words if v in counts)
    return (f"Over the test items of each seed, of the {len(table)} (task, seed) pairs {_THE[better]} is {said}; "
            f"the item intervals' half-widths run from {table['± 95% CI'].min():.2f} to "
            f"{table['± 95% CI'].max():.2f} points")


_THE = {"student_kd": "the distilled student", "student_sft": "the SFT student", "teacher": "the teacher"}


def _paired_rows(path: Path, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The rows of the claim ``student_kd > student_sft`` per task in ``path`` (``results/seeds.json``),
    those with an interval only; empty when the file is absent."""
    if not path.is_file():
        return {}
    claim = f"{MODEL_LABELS['student_kd']} > {MODEL_LABELS['student_sft']}"
    try:
        rows = json.loads(path.read_text())["ordering"]
        return {r["task"]: r for r in rows
                if r["claim"] == claim and r["task"] in tasks and not math.isnan(float(r["± 95% CI"]))}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a seeds-chapter result ({err!r}); rerun the notebook 'seeds'") from err


def seed_noise(path: Path, tasks: Sequence[str]) -> dict[str, float]:
    """Per task, the 95% CI half-width of the paired difference ``student_kd - student_sft`` in the
    seeds chapter's ``results/seeds.json`` at ``path``: how far a change of seed moves a difference
    between two students. Empty when the file is absent or holds one seed (no interval)."""
    return {task: float(row["± 95% CI"]) for task, row in _paired_rows(path, tasks).items()}


def seed_noise_sentence(ctx: RunContext, tasks: Sequence[str]) -> str:
    """A sentence for the one-seed chapters (related methods, ablations) giving :func:`seed_noise` per
    task (a task at floor, every model 0 on every seed, named so); empty before the seeds chapter ran."""
    path = ctx.chapter_file("seeds.json")
    rows = _paired_rows(path, tasks)
    if not rows:
        return ""
    seeds = len(json.loads(path.read_text())["seeds"])

    def width(task: str) -> str:
        name, half = f"{HEADLINE_COLUMNS[task].paper[2]} {HEADLINE[task]}", float(rows[task]["± 95% CI"])
        if rows[task]["verdict"] == FLOOR:
            return f"{name} not measurable (every model scores 0 on every seed: {FLOOR})"
        return f"{name} ±{half:.2f}" + (" (every seed scored the same)" if half == 0 else "")

    widths = ", ".join(width(task) for task in tasks if task in rows)
    return (f"Every student here is one run (seed {ctx.seed}). Over the {seeds} seeds of the seeds chapter, the "
            "difference between the distilled and the SFT student has these 95% interval half-widths: "
            f"{widths} points; a difference between two students smaller than that is within what a change of "
            "seed does.")
