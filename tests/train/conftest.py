"""Shared fixtures of the training tests: a fast ``tiny`` profile, its study and untrained models on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.data.study import load_study
from kdlib.models import save_mllm
from kdlib.profiles import get_profile
from kdlib.train.study import build_models

#: tiny, made faster still: 16 image tokens, batch 4, a few steps, no warmup
OVERRIDES = {"vision.image_size": 32, "data.max_length": 128, "train.batch_size": 4, "train.sft_steps": 3,
             "train.kd_steps": 3, "train.max_new_tokens": 4, "train.warmup_ratio": 0.0}


@pytest.fixture(scope="session")
def overrides() -> dict:
    return dict(OVERRIDES)


@pytest.fixture(scope="session")
def profile(overrides):
    return get_profile("tiny", overrides)


@pytest.fixture(scope="session")
def study(profile, data_root):
    return load_study(profile, data_root, seed=0)


@pytest.fixture(scope="session")
def start_models(profile, study, tmp_path_factory) -> Path:
    """An output folder holding ``models/teacher`` and ``models/student_sft`` (untrained, seed 0)."""
    out = tmp_path_factory.mktemp("start")
    pair = build_models(profile, study, seed=0)
    for name, model in (("teacher", pair.teacher), ("student_sft", pair.student)):
        save_mllm(out / "models" / name, model, pair.tokenizer, pair.image_processor)
    return out
