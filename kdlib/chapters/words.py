"""Sentences of the book written from a run's numbers and profile, so that no chapter's words can
disagree with the values beside them.

Each function returns one plain-text sentence (or clause) for a myst-nb ``glue``; none of them
reads files. Percentages are in points (0-100).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdlib.data.geochat_bench import VQAAnswer
from kdlib.evaluate.report import SCENE_COLUMNS, binomial_interval, dominant_answer, kd_verdict, proportion_interval
from kdlib.profiles import Profile

_ROLES = {"teacher": "the teacher", "student_sft": "the SFT student", "student_kd": "the distilled student"}


def trainable_clause(profile: Profile) -> str:
    """What of the LLM trains at ``profile``: every weight (LoRA rank 0) or LoRA adapters of rank r."""
    if profile.lora.r == 0:
        return f"at the {profile.name} profile every weight of the LLM trains (no LoRA)"
    return (f"at the {profile.name} profile LoRA adapters of rank {profile.lora.r} (alpha {profile.lora.alpha}) "
            "on the LLM's linear layers train, the LLM's own weights stay frozen")


def split_size_clause(profile: Profile) -> str:
    """How ``profile`` sizes its test split: every test record (``data.test_all``) or the same subset
    proportions as train and val."""
    if profile.data.test_all:
        return ("its test split holds every record whose picture no training or validation record shows "
                "(data.test_all: each dataset's test split, and the scene images beyond the profile's subsets), "
                "while train and val keep the profile's subsets: answering costs little next to training, and "
                "every interval narrows with the test size")
    return "its test split is subset like train and val, in the proportions of the split"


def start_sentence(starts: Mapping[str, float], vocab_size: int, first: int) -> str:
    """Where each run's answer cross-entropy starts (mean of its ``first`` steps, in nats per token),
    with the uniform guess ln V as a reference: ``starts`` maps a role to that mean."""
    uniform = math.log(vocab_size)
    parts = [f"{_ROLES.get(role, role)}'s {value:.2f} ({_side(value, uniform)} ln V)" for role, value in starts.items()]
    return (f"Over the first {first} steps the answer cross-entropy averages {join_words(parts)} nats per token "
            f"(for reference, a uniform guess over the {vocab_size:,} tokens scores ln V = {uniform:.2f})")


def trend_clause(values: Sequence[float], k: int, rel_tol: float = 0.05) -> str:
    """``"fell from 0.213 (mean of the first 5 steps) to 0.031 (mean of the last 5)"``: like is
    compared with like, and the verb ("fell", "rose", "stayed about level") says what happened;
    changes within ``rel_tol`` of the start are level. ``k`` is capped at half the run."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise ValueError(f"trend_clause needs at least 2 values, got {x.size}")
    k = max(1, min(k, x.size // 2))
    start, end = float(x[:k].mean()), float(x[-k:].mean())
    verb = ("stayed about level" if abs(end - start) <= rel_tol * max(abs(start), 1e-12)
            else "fell" if end < start else "rose")
    first, last = ("the first step", "the last") if k == 1 else (f"mean of the first {k} steps", f"mean of the last {k}")
    return f"{verb}: from {start:.3f} ({first}) to {end:.3f} ({last})"


def single_run_verdict(results: Mapping[str, Mapping[str, Mapping[str, Any]]], task: str, key: str,
                       n: int | None) -> str:
    """:func:`~kdlib.evaluate.report.kd_verdict` with its uncertainty. ``n``: the number of scored
    items when ``key`` is a proportion (adds each model's 95 % Wilson interval), else ``None``.
    All three models at 0 is called at floor, untestable here; every clause points to the seeds chapter."""
    values = {m: float(results[m][task][key]) for m in _ROLES}
    seeds = "the seeds chapter judges the ordering over several seeds"
    if all(v == 0 for v in values.values()):
        return f"all three models score {key} 0: at floor, so the ordering is untestable here"
    verdict = kd_verdict(results, task, key)
    if n is None:
        return f"{verdict} in this single run ({seeds})"
    bounds = []
    for model, value in values.items():
        lo, hi = binomial_interval(round(value * n / 100), n)
        bounds.append(f"{_ROLES[model].removeprefix('the ')} {lo:.1f}-{hi:.1f}")
    return f"{verdict} in this single run of {n} items (95 % intervals: {', '.join(bounds)} %; {seeds})"


def ceiling_sentence(results: Mapping[str, Mapping[str, Mapping[str, Any]]], probe: Mapping[str, Any], task: str,
                     dataset: str) -> str:
    """How far each model's OA on ``task`` lies from the linear probe's (``probe``: its scene result on
    ``task``, :func:`kdlib.analysis.probe.scene_probe`), and whose 95 % interval reaches the probe's."""
    ceiling = float(probe["OA"])
    low, high = proportion_interval(probe, "OA")
    gaps = []
    for model in _ROLES:
        gap = float(results[model][task]["OA"]) - ceiling
        where = "level with it" if abs(gap) < 0.005 else f"{abs(gap):.2f} points {'below' if gap < 0 else 'above'} it"
        gaps.append(f"{_ROLES[model]} is {where}")
    reaching = [_ROLES[m] for m in _ROLES if proportion_interval(results[m][task], "OA")[1] >= low]
    overlap = ("every model's 95 % interval lies wholly below the probe's" if not reaching else
               f"the 95 % interval of {reaching[0]} reaches the probe's" if len(reaching) == 1 else
               f"the 95 % intervals of {join_words(reaching)} reach the probe's")
    return (f"On {dataset} a linear probe on the same frozen features reaches OA {ceiling:.2f} % (95 % interval "
            f"{low:.1f}-{high:.1f} over {int(probe['n'])} test images; fitted on the models' {int(probe['n_train'])} "
            f"training images, its penalty chosen on {int(probe['n_val'])} validation images): {join_words(gaps)}; "
            f"{overlap}.")


def collapse_sentence(answers: Mapping[str, Sequence[str]], unit: str, threshold: float = 80.0,
                      class_share: float | None = None) -> str:
    """Names every model that gives one answer for at least ``threshold`` % of its ``unit``s
    (``"the distilled student answers "forest" for 85 % of images"``), with the share each true class
    has (``class_share``, in percent) when given; empty when no model does."""
    found = []
    for model, given in answers.items():
        answer, share = dominant_answer(given)
        if share >= threshold:
            found.append(f'{_ROLES.get(model, model)} answers "{answer}" for {share:.0f} % of {unit}')
    if not found:
        return ""
    balance = f" (each class is {class_share:.1f} % of them)" if class_share is not None else ""
    return (f"One answer dominates: {join_words(found)}{balance}; much of such a score is what that one answer "
            "is worth, not what the model saw.")


def type_collapse_sentence(answers: Mapping[str, Sequence[VQAAnswer]], dataset: str, threshold: float = 80.0) -> str:
    """Names, per question type, every model that gives one answer to at least ``threshold`` % of that
    type's questions, more often than the references' most frequent answer occurs (so a model that
    mirrors a skewed truth is not named); empty when none does. ``answers``: model -> its VQA answers
    (:class:`~kdlib.data.geochat_bench.VQAAnswer`), all on the same questions."""
    first = next(iter(answers.values()), [])
    clauses = []
    for kind in sorted({a.qtype for a in first}):
        truth, true_share = dominant_answer([a.ground_truth for a in first if a.qtype == kind])
        found = {}
        for model, given in answers.items():
            answer, share = dominant_answer([a.answer for a in given if a.qtype == kind])
            if share >= threshold and share > true_share:
                found[model] = (answer, share)
        if not found:
            continue
        if len(found) == len(answers) > 1 and len({a for a, _ in found.values()}) == 1:
            shares = sorted(s for _, s in found.values())
            spread = f"{shares[0]:.0f} %" if shares[0] == shares[-1] else f"{shares[0]:.0f}-{shares[-1]:.0f} %"
            who = f'every model answers "{next(iter(found.values()))[0]}" to {spread} of them'
        else:
            who = join_words([f'{_ROLES.get(m, m)} answers "{a}" to {s:.0f} %' for m, (a, s) in found.items()])
        clauses.append(f'{kind.replace("_", "/")} questions, where {who} (the most frequent true answer, '
                       f'"{truth}", is {true_share:.0f} % of them)')
    if not clauses:
        return ""
    return (f"On {dataset} one answer dominates {'a question type' if len(clauses) == 1 else 'several question types'}: "
            f"{'; '.join(clauses)}. An accuracy on such a type counts how often that one answer is right, not "
            "what the model saw.")


def same_answer_sentence(answers: Mapping[str, Sequence[str]], what: str) -> str:
    """When every model gives one and the same answer to every ``what`` question, says so (their
    accuracies are then equal by construction); empty otherwise."""
    distinct = {a.strip().lower() for given in answers.values() for a in given}
    if len(distinct) != 1 or not any(answers.values()):
        return ""
    return (f'Every model answers "{distinct.pop()}" to every {what} question, so their {what} accuracies '
            "are equal by construction and compare nothing.")


def balanced_sentence(tasks: Sequence[str]) -> str:
    """Why a scene table shows one ``OA = AA`` column for each of ``tasks`` (test sets found class-balanced,
    :func:`~kdlib.evaluate.report.balanced_tasks`); empty for none."""
    names = [c.paper[2] for c in SCENE_COLUMNS if c.key == "OA" and c.task in tasks and c.paper]
    if not names:
        return ""
    return (f"On {join_words(names)} every class has the same number of test images in every answer file, and on a "
            "class-balanced test set AA (the mean of the per-class recalls) equals OA exactly; the table shows the "
            "two as one \"OA = AA\" column (the paper's OA and AA columns stay as printed).")


def at_chance(accuracy: float, num_classes: int) -> bool:
    """Whether an accuracy in percent is chance, ``100 / num_classes``, within the rounding of the tables (0.005)."""
    return abs(accuracy - 100 / num_classes) < 0.005


def chance_sentence(task: str, metric: str, scores: Mapping[str, float], num_classes: int,
                    answers: Mapping[str, Sequence[str]], unit: str = "images") -> str:
    """Names the settings (``scores``: setting -> accuracy in percent) whose ``metric`` is exactly chance
    (:func:`at_chance`) and the answer each gives most (``answers``: setting -> answers); empty when none is.
    A single answer to every item of a class-balanced test set scores exactly chance, whatever the images."""
    found = [s for s, v in scores.items() if at_chance(v, num_classes)]
    if not found:
        return ""
    parts, shares = [], []
    for setting in found:
        answer, share = dominant_answer(answers[setting])
        shares.append(share)
        given = f"every one of the {unit}" if share == 100 else f"{share:.0f} % of the {unit}"
        parts.append(f'{setting} (answers "{answer}" for {given})')
    why = ("one answer for every item of a class-balanced test set scores exactly chance, so these numbers show a "
           "collapse to one class, not what the model sees" if min(shares) == 100 else
           "an accuracy at chance shows no sign that the model uses what it sees")
    return (f"On {task} the {metric} is exactly chance, 100/{num_classes} = {100 / num_classes:.2f} %, with "
            f"{join_words(parts)}: {why}.")


def _side(value: float, reference: float) -> str:
    return "above" if value > reference else "below" if value < reference else "at"


def join_words(parts: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
