"""The training chapter's words follow the profile and the numbers they are written from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdlib.chapters.training import (curve_sentence, kd_start_sentence, no_stage1_sentence, run_plan, selection_sentence,
                                     stage1_sentence, steering_sentence, weights_clause)
from kdlib.profiles import get_profile
from kdlib.train.figures import TermGradients


def test_run_plan_lists_the_runs_the_profile_trains():
    tiny, small = run_plan(get_profile("tiny")), run_plan(get_profile("small"))
    assert "Stage 1" not in tiny and "student_guided" not in tiny and "from the baseline student" in tiny
    assert "(train.val_every = 0)" in tiny
    assert "1. **Stage 1**" in small and "150 steps at learning rate 0.001" in small
    assert "4. **Teacher-guided SFT** (`student_guided`" in small and "from the teacher-guided student" in small
    assert "750 steps" in small and "first 200 validation records every 100 steps" in small
    guided = run_plan(get_profile("tiny", {"train.kd_init": "guided", "train.projector_steps": 2}))
    assert "**Stage 1**" in guided and "2 steps at learning rate" in guided and "`student_guided`" in guided


def test_no_stage1_sentence_says_why_the_profile_may_skip_it():
    assert "LLMs are random too" in no_stage1_sentence(get_profile("tiny"))
    pretrained = no_stage1_sentence(get_profile("small", {"train.projector_steps": 0}))
    assert "small profile has no stage 1" in pretrained and "random" in pretrained and "at once" in pretrained


def test_stage1_sentence_reports_each_models_start_and_end():
    ce = {"teacher": [6.0, 5.8, 4.0, 3.0], "student": [7.0, 7.1, 6.9, 7.0]}
    text = stage1_sentence(ce, 1e-3, first=2)
    assert "for 4 steps at learning rate 0.001" in text
    assert "teacher's fell: from 5.900" in text and "to 3.500" in text and "student's stayed about level" in text
    assert text != stage1_sentence({"teacher": [6.0, 5.8, 5.0, 4.0], "student": ce["student"]}, 1e-3, first=2)


def test_kd_start_sentence_follows_kd_init_and_the_ratio():
    assert "starts from the plain SFT student (student_sft)" in kd_start_sentence(get_profile("tiny"))
    terms = {"ce": [3.0, 2.0, 1.0, 0.5], "forward_kl": [0.8, 0.6, 0.5, 0.4]}
    small = kd_start_sentence(get_profile("small"), terms, first=2)
    assert "k = train.guided_kd_ratio = 0.50" in small and "cross-entropy fell: from 2.500" in small
    assert "Distillation starts from it" in small
    other = kd_start_sentence(get_profile("small", {"train.guided_kd_ratio": 0.3}), terms, first=2)
    assert "k = train.guided_kd_ratio = 0.30: a share 0.70" in other
    with pytest.raises(ValueError, match="student_guided"):
        kd_start_sentence(get_profile("small"))


def test_selection_sentence_names_the_kept_step_and_what_came_after():
    early = selection_sentence("teacher", 300, [100, 200, 300], [2.0, 1.5, 1.7], (200, 1.5))
    assert early.startswith("teacher kept step 200 of 300 (val loss 1.500;")
    assert "at step 300, read 1.700" in early and "100 steps" in early
    last = selection_sentence("student_sft", 300, [100, 200, 300], [2.0, 1.5, 1.4], (300, 1.4))
    assert last == "student_sft kept step 300 of 300 (val loss 1.400, its last check and its lowest)"


def _series(**terms):
    steps = np.array([5, 10, 15, 20])
    return {name: TermGradients(steps, np.full(4, norm), np.full(4, cos)) for name, (norm, cos) in terms.items()}


def test_steering_sentence_says_from_the_numbers_whether_one_term_drowns_the_others():
    drowned = steering_sentence(_series(align=(0.5, 0.3), single=(0.02, 0.01), long=(0.01, 0.0), lm=(5.0, 0.95)))
    assert "median gradient norm of the LM loss on D_PT (Eq. 7) is the largest, 5" in drowned
    assert "projector MSE (Eq. 4) 0.5 (10 times smaller)" in drowned and "(500 times smaller)" in drowned
    assert "it drowns the others" in drowned and "all below 0.1: they hardly steer the update" in drowned
    balanced = steering_sentence(_series(align=(0.5, 0.5), single=(0.8, 0.4), long=(0.6, 0.3), lm=(1.0, 0.6)))
    assert "no term drowns the others (the largest is 1.2x the next" in balanced
    assert "all above 0.1: they steer the update" in balanced
    mixed = steering_sentence(_series(single=(1.0, 0.5), long=(0.9, 0.05)))
    assert "on both sides of 0.1" in mixed
    assert "above 0.3: it steers" in steering_sentence(_series(single=(1.0, 0.5), lm=(2.0, 0.9)), steers=0.3)
    with pytest.raises(ValueError):
        steering_sentence(_series(lm=(1.0, 1.0)))
    assert "train.grad_norm_every = 0" in steering_sentence({})


def test_weights_clause_follows_the_profile():
    assert "projector MSE 1, single-step 1, long-term 1 and LM 1 (the paper's Eq. 10 weights" in weights_clause(
        get_profile("tiny"))
    assert "LM 0.1 (Eq. 10 gives each weight 1" in weights_clause(get_profile("tiny", {"train.lm_coef": 0.1}))


CURVE = pd.DataFrame({"step": [0, 100, 300], "cpu_hours": [0.0, 0.5, 1.5], "val_loss": [float("nan"), 1.3, 1.0],
                      "scene_ucmerced": [0.0, 7.0, 20.0], "scene_ucmerced lo": [0.0, 4.0, 15.0],
                      "scene_ucmerced hi": [2.0, 11.0, 26.0], "scene_ucmerced top": ["1. beach", "park", "freeway"],
                      "scene_ucmerced top share": [100.0, 68.0, 33.0]}).set_index("step")


def test_curve_sentence_reads_the_first_and_last_kept_steps_and_the_last_rate():
    text = curve_sentence("the teacher", CURVE, {"scene_ucmerced": "UCMerced"}, {"scene_ucmerced": 100 / 21})
    assert "from step 0 to step 300 (1.50 CPU-hours" in text
    assert "UCMerced OA from 0.0 % to 20.0 % (95 % interval 15.0-26.0; chance 4.8 %)" in text
    assert "+13.0 points per CPU-hour on UCMerced OA" in text  # (20 - 7) / (1.5 - 0.5)
    assert '"freeway" for 33 % of the UCMerced answers' in text
    one = curve_sentence("the teacher", CURVE.iloc[[-1]], {"scene_ucmerced": "UCMerced"}, {})
    assert "points per CPU-hour" not in one and "chance" not in one
