"""The training chapter's words, written from the profile and the runs' numbers: which runs the profile
trains, what stage 1 did, where distillation starts, which step each SFT kept, which term of the
distillation objective steers the update, and what a run could do at its kept steps.

Each function returns plain text (the run list: MyST Markdown) for a myst-nb ``glue``; none reads files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from kdlib.chapters.words import join_words, trainable_clause, trend_clause
from kdlib.evaluate.report import HEADLINE
from kdlib.profiles import Profile
from kdlib.train.config import kd_start, run_name
from kdlib.train.figures import TERM_TITLES, TermGradients

GUIDED = run_name("guided_sft")
REVERSE_KL_TERMS = ("single", "long")
"""The reverse-KL terms of the paper's objective (Eq. 8): the single-step and the long-term term."""
DROWNS = 10.0
"""A term drowns the others when its median gradient norm is at least this many times every other term's."""
STEERS = 0.1
"""Cosine to the total gradient above which a term is said to steer the update. Two unrelated directions
among d parameters have a cosine of about 1 / sqrt(d), near 0 for any model here (d >= 10^5); at 0.1 a
term's own direction is visibly part of the update."""


def run_plan(profile: Profile) -> str:
    """The runs ``profile`` trains, in order, as a numbered MyST list: stage 1 when
    ``train.projector_steps > 0``, the two SFTs, the teacher-guided SFT when ``train.kd_init`` is
    ``guided``, then distillation from :func:`~kdlib.train.config.kd_start`; each with its run name,
    command, steps, and a closing sentence on model selection (``train.val_every``)."""
    t = profile.train
    items = []
    if t.projector_steps:
        items.append(f"**Stage 1** (`teacher_projector`, `student_projector`; `kdlib train --method projector "
                     f"--role teacher`, then `--role student`; {t.projector_steps} steps at learning rate "
                     f"{t.projector_lr:g}). LLaVA's feature alignment: each model's projector trains alone, the "
                     "LLM and the vision tower frozen, on image descriptions of the training split; each SFT "
                     "below starts from its model's result.")
    items.append(f"**Teacher SFT** (`teacher`; `kdlib train --method sft --role teacher`; "
                 f"{t.teacher_steps or t.sft_steps} steps; trained once and shared by every seed). The larger "
                 "model is fine-tuned on the training split of the study's instruction data (scene "
                 "classification, VQA, captions and DOTA region tasks in GeoChat's chat format); only answer "
                 f"tokens are scored. GeoChat trains LoRA (rank 64) on the LLM; {trainable_clause(profile)}. "
                 "The projector trains, the vision tower stays frozen.")
    items.append(f"**Student SFT** (`student_sft`; `--method sft --role student`; {t.sft_steps} steps). The "
                 "smaller model gets the same fine-tuning: this is the *baseline* student, GeoChat-7B in the paper.")
    guided = kd_start(profile) == GUIDED
    if guided:
        items.append(f"**Teacher-guided SFT** (`{GUIDED}`; `--method guided_sft`; {t.sft_steps} steps). The "
                     "core paper's Table 1 initialisation: the smaller model fine-tuned on the same data with the "
                     "ground truth and the teacher's next-token distributions both as guidance.")
    start = "the teacher-guided student" if guided else "the baseline student"
    items.append(f"**Distillation** (`student_kd`; `--method paper`; {t.kd_steps} steps) with the core paper's "
                 f"recipe (its Table 1), starting from {start}, with the teacher frozen.")
    listing = "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))
    return f"{listing}\n\n{selection_rule(profile)}"


def selection_rule(profile: Profile) -> str:
    """Which weights an SFT run keeps at ``profile``: the best-validation step, or the last one (plain text)."""
    t = profile.train
    if not t.val_every:
        return ("No SFT computes a validation loss at this profile (train.val_every = 0): each keeps the "
                "weights of its last step.")
    records = f"the first {t.val_size} validation records" if t.val_size else "the validation split"
    return (f"Every SFT (stage 1 aside) computes its loss on {records} every {t.val_every} steps and after its "
            "last, and keeps the weights of the step where that loss was lowest.")


def stage1_sentence(ce: Mapping[str, Sequence[float]], lr: float, first: int = 5) -> str:
    """What stage 1 did: ``ce`` maps a model (``teacher``, ``student``) to its per-step description
    cross-entropy; each is compared mean of the first ``first`` steps against mean of the last."""
    steps = len(next(iter(ce.values())))
    parts = [f"the {model}'s {trend_clause(values, first)}" for model, values in ce.items()]
    return (f"Stage 1 trains the projectors alone for {steps} steps at learning rate {lr:g}; the "
            f"cross-entropy of the description tokens, in nats per token: {join_words(parts)}.")


def no_stage1_sentence(profile: Profile) -> str:
    """Why a profile without stage 1 (``train.projector_steps = 0``) can start its SFT as it does."""
    head = f"The {profile.name} profile has no stage 1 (train.projector_steps = 0)"
    if profile.teacher.name_or_path is None and profile.student.name_or_path is None:
        return (f"{head}: its SFT starts from the randomly initialised projector. That costs nothing here, because "
                "the LLMs are random too: there is no pretrained embedding space the visual tokens would first "
                "have to be brought into, and the SFT trains projector and LLM together from scratch.")
    return (f"{head}: each SFT starts from the projector its model comes with. A converted GeoChat model brings "
            "one that LLaVA's stage 1 already aligned; an LLM joined to a vision tower by kdlib brings a random "
            "one, and its instruction tuning then has to learn the projector and the tasks at once.")


def kd_start_sentence(profile: Profile, guided_terms: Mapping[str, Sequence[float]] | None = None,
                      first: int = 5) -> str:
    """Where distillation starts (:func:`~kdlib.train.config.kd_start`) and, for the teacher-guided SFT,
    how its two signals are combined and how each moved (``guided_terms``: its logged ``ce`` and
    ``forward_kl`` per step)."""
    if kd_start(profile) != GUIDED:
        return (f"The {profile.name} profile sets train.kd_init = {profile.train.kd_init}: it trains no "
                "teacher-guided SFT, and distillation starts from the plain SFT student (student_sft), not "
                "from the core paper's Table 1 initialisation (fine-tuning guided by teacher and ground truth, "
                "train.kd_init = guided).")
    if guided_terms is None:
        raise ValueError(f"kd_start_sentence: profile {profile.name} starts distillation from {GUIDED}; "
                         "pass its logged terms")
    k = profile.train.guided_kd_ratio
    return (f"The teacher-guided SFT ({GUIDED}) minimises (1 - k) CE + k KL(p || q) on the answer tokens, "
            f"with k = train.guided_kd_ratio = {k:.2f}: a share {1 - k:.2f} of the cross-entropy to the "
            f"ground truth and {k:.2f} of the forward KL from the teacher's next-token distribution p to the "
            "student's q, the word-level KD of MiniLLM's baselines (the paper names both signals, not their "
            f"weights). Its cross-entropy {trend_clause(guided_terms['ce'], first)}; its forward KL "
            f"{trend_clause(guided_terms['forward_kl'], first)}. Distillation starts from it "
            f"(train.kd_init = guided), while student_sft stays the baseline it is compared with.")


def selection_sentence(run: str, steps: int, val_steps: Sequence[int], val_loss: Sequence[float],
                       kept: tuple[int, float]) -> str:
    """``"teacher kept step 200 of 300 (val loss 1.234; ...)"``: the step a run kept (``kept``: step
    and its validation loss), against its ``steps`` and the validation losses it logged."""
    step, loss = kept
    text = f"{run} kept step {step} of {steps} (val loss {loss:.3f}"
    last_step, last = int(val_steps[-1]), float(val_loss[-1])
    if step == last_step:
        return f"{text}, its last check and its lowest)"
    return (f"{text}; its last check, at step {last_step}, read {last:.3f}, so the {last_step - step} steps "
            "after the kept one are not in its model)")


def steering_sentence(series: Mapping[str, TermGradients], drowns: float = DROWNS, steers: float = STEERS,
                      reverse: Sequence[str] = REVERSE_KL_TERMS) -> str:
    """Which term steers the distillation update, from the logged per-term gradients: the term with the
    largest median gradient norm and its ratio to each other term's, whether it drowns the others (at
    least ``drowns`` times every other median), and whether the ``reverse`` terms' median cosine to
    the total gradient is above or below ``steers``. The norms are those of the weighted terms. Empty
    ``series`` (nothing logged): says so."""
    if not series:
        return ("No per-term gradients were logged (train.grad_norm_every = 0), so this run cannot say which "
                "term steers the update.")
    if len(series) < 2:
        raise ValueError(f"steering_sentence needs at least two terms, got {list(series)}")
    medians = {name: float(np.median(s.norms)) for name, s in series.items()}
    ranked = sorted(medians, key=medians.get, reverse=True)
    top = ranked[0]
    n = len(series[top].steps)
    others = [f"{TERM_TITLES.get(name, name)} {_smaller(medians[top], medians[name])}" for name in ranked[1:]]
    head = (f"Over {n} logged steps the median gradient norm of the {TERM_TITLES.get(top, top)} is the largest, "
            f"{medians[top]:.3g}; the others': {join_words(others)}")
    runner_up = medians[ranked[1]]
    if runner_up == 0 or medians[top] / runner_up >= drowns:
        verdict = f"it drowns the others (at least {drowns:g}x each)"
    else:
        verdict = (f"no term drowns the others (the largest is {medians[top] / runner_up:.1f}x the next, below "
                   f"{drowns:g}x)")
    cosines = {name: float(np.median(series[name].cosines)) for name in reverse if name in series}
    if not cosines:
        return f"{head}; {verdict}."
    parts = [f"{TERM_TITLES.get(name, name)} {value:.2f}" for name, value in cosines.items()]
    above = [value > steers for value in cosines.values()]
    one = len(above) == 1
    reading = (("above {0:g}: it steers the update" if one else "all above {0:g}: they steer the update")
               if all(above) else
               ("below {0:g}: it hardly steers the update" if one else "all below {0:g}: they hardly steer the update")
               if not any(above) else "on both sides of {0:g}: only those above it steer the update").format(steers)
    return (f"{head}; {verdict}. The reverse-KL terms' median cosine to the total gradient: {join_words(parts)}, "
            f"{reading}.")


def _smaller(top: float, other: float) -> str:
    """``"0.27 (12 times smaller)"``; ``"0 (no gradient)"``."""
    if other == 0:
        return "0 (no gradient)"
    r = top / other
    if r < 1.05:
        return f"{other:.3g} (about as large)"
    return f"{other:.3g} ({r:.0f} times smaller)" if r >= 10 else f"{other:.3g} ({r:.1f} times smaller)"


def weights_clause(profile: Profile) -> str:
    """The weights of the paper objective's terms at ``profile`` (``train.<term>_coef``), against Eq. 10's 1."""
    t = profile.train
    weights = {"projector MSE": t.align_coef, "single-step": t.single_coef, "long-term": t.long_coef,
               "LM": t.lm_coef}
    listed = join_words([f"{name} {value:g}" for name, value in weights.items()])
    same = "the paper's Eq. 10 weights" if set(weights.values()) == {1.0} else "Eq. 10 gives each weight 1"
    return f"the total is their weighted sum, with weights {listed} ({same}; train.align_coef, single_coef, long_coef, lm_coef)"


def curve_sentence(run: str, table: pd.DataFrame, datasets: Mapping[str, str], chance: Mapping[str, float]) -> str:
    """What a learning curve (:mod:`kdlib.analysis.learning_curve`) shows: each task's headline metric
    (``datasets``: task -> dataset name) at the first and last kept step with the last one's 95 % interval
    and chance, the rate over the last two kept steps in points per CPU-hour, and the last step's most
    frequent answer."""
    first, last = table.index[0], table.index[-1]
    hours = float(table.loc[last, "cpu_hours"])
    parts, rates, tops = [], [], []
    for task, dataset in datasets.items():
        label = f"{dataset} {HEADLINE[task]}"
        start, end = float(table.loc[first, task]), float(table.loc[last, task])
        notes = ([f"95 % interval {table.loc[last, f'{task} lo']:.1f}-{table.loc[last, f'{task} hi']:.1f}"]
                 if f"{task} lo" in table else []) + ([f"chance {chance[task]:.1f} %"] if task in chance else [])
        parts.append(f"{label} from {start:.1f} % to {end:.1f} %" + (f" ({'; '.join(notes)})" if notes else ""))
        tops.append(f'"{table.loc[last, f"{task} top"]}" for {table.loc[last, f"{task} top share"]:.0f} % of the '
                    f"{dataset} answers")
        if len(table) > 1:
            before = table.index[-2]
            spent = hours - float(table.loc[before, "cpu_hours"])
            if spent > 0:
                rates.append(f"{(end - float(table.loc[before, task])) / spent:+.1f} points per CPU-hour on {label}")
    text = (f"Scored at its kept steps, {run} went from step {first} to step {last} ({hours:.2f} CPU-hours of "
            f"training steps): {join_words(parts)}.")
    if rates:
        text += f" Between its last two kept steps it moved {join_words(rates)}."
    return f"{text} At step {last} its most frequent answers are {join_words(tops)}."
