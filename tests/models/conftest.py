"""Fixtures of the model tests: a tokenizer trained on a few sentences and the tiny pair."""

from __future__ import annotations

import pytest
import torch

from kdlib.models import IMAGE_TOKEN, build_pair, build_tokenizer, image_token_id, num_image_tokens
from kdlib.profiles import get_profile

SENTENCES = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "USER: <image>\nClassify the image. ASSISTANT: airport",
    "USER: <image>\nIs there a road in the image? ASSISTANT: yes",
    "many planes are parked next to the terminal buildings",
    "a baseball field surrounded by green trees and a parking lot",
    "[refer] Give me the location of <p> the white ship </p>",
]


@pytest.fixture(scope="session")
def sentences():
    return list(SENTENCES)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(SENTENCES, vocab_size=400)


@pytest.fixture(scope="session")
def tiny():
    return get_profile("tiny")


@pytest.fixture
def pair(tiny, tokenizer):
    return build_pair(tiny, tokenizer, seed=0)


def _batch(tokenizer, model, texts=("what is here? ASSISTANT: a plane", "road? ASSISTANT: no")):
    n = num_image_tokens(model)
    enc = tokenizer([IMAGE_TOKEN * n + "\n" + t for t in texts], padding=True, return_tensors="pt")
    assert int((enc.input_ids == image_token_id(tokenizer)).sum()) == n * len(texts)
    size = model.config.vision_config.image_size
    pixels = torch.randn(len(texts), 3, size, size, generator=torch.Generator().manual_seed(0))
    return enc.input_ids, enc.attention_mask, pixels


@pytest.fixture
def make_batch(tokenizer):
    """``make_batch(model) -> (input_ids [B, T], attention_mask, pixel_values [B, 3, S, S])``,
    right-padded, the N image tokens right after BOS."""
    return lambda model, *texts: _batch(tokenizer, model, *([texts] if texts else []))
