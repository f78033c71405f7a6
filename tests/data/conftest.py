"""Fixtures of the data tests: the tiny study and a tokenizer trained on its texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.data import Study, corpus_texts, load_study
from kdlib.models.tokenizer import build_tokenizer
from kdlib.profiles import get_profile


@pytest.fixture(scope="session")
def tiny_study(data_root: Path) -> Study:
    return load_study(get_profile("tiny"), data_root, seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny_study: Study):
    return build_tokenizer(corpus_texts(tiny_study), vocab_size=512)


@pytest.fixture(scope="session")
def image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
