"""The cache of projector inputs of the frozen, pooled vision tower."""

import numpy as np
import pytest
import torch
from PIL import Image

from kdlib.data.collate import Collator
from kdlib.data.records import Record
from kdlib.models import build_pair, mllm_forward, num_image_tokens
from kdlib.models.feature_cache import FeatureCache
from kdlib.models.pooling import projector_inputs
from kdlib.profiles import get_profile


@pytest.fixture
def pooled_pair(tokenizer):
    return build_pair(get_profile("tiny", {"vision.pool_grid": "2"}), tokenizer, seed=0)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (80, 72, 3), dtype=np.uint8)) for _ in range(n)]


def test_cached_features_are_the_towers_and_are_computed_once(pooled_pair, tmp_path):
    pair = pooled_pair
    images = _images(3)
    cache = FeatureCache(pair.student, pair.image_processor, tmp_path)
    first = cache(images=images, return_tensors="pt")["pixel_values"]
    pixels = pair.image_processor(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(first, projector_inputs(pair.student, torch.as_tensor(pixels)), rtol=0, atol=0)
    again = cache(images=images[::-1], return_tensors="pt")["pixel_values"]
    assert cache.computed == 3 and torch.equal(again, first.flip(0))
    # a new cache on the same folder reads the features back instead of running the tower
    reread = FeatureCache(pair.teacher, pair.image_processor, tmp_path)
    assert torch.equal(reread(images=images)["pixel_values"], first) and reread.computed == 0


def test_another_tower_or_crop_is_a_miss(pooled_pair, tokenizer, tmp_path):
    images = _images(1)
    FeatureCache(pooled_pair.student, pooled_pair.image_processor, tmp_path)(images=images)
    other = build_pair(get_profile("tiny", {"vision.pool_grid": "2"}), tokenizer, seed=5).student
    other_cache = FeatureCache(other, pooled_pair.image_processor, tmp_path)
    other_cache(images=images)
    assert other_cache.computed == 1
    same = FeatureCache(pooled_pair.student, pooled_pair.image_processor, tmp_path)
    same(images=[images[0].crop((0, 0, 40, 40))])
    assert same.computed == 1


def test_a_collator_fed_by_the_cache_gives_the_same_logits(pooled_pair, tmp_path):
    pair = pooled_pair
    paths = []
    for i, image in enumerate(_images(2)):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    records = [Record(id=str(i), task="scene", image=p, question="what is here?", answer="a plane")
               for i, p in enumerate(paths)]
    model = pair.student.eval()
    n = num_image_tokens(model)
    plain = Collator(pair.tokenizer, pair.image_processor, n, 160)(records)
    cached = Collator(pair.tokenizer, FeatureCache(model, pair.image_processor), n, 160)(records)
    assert torch.equal(plain["input_ids"], cached["input_ids"])
    with torch.no_grad():
        expected = mllm_forward(model, plain["input_ids"], plain["pixel_values"], plain["attention_mask"]).logits
        got = mllm_forward(model, cached["input_ids"], cached["pixel_values"], cached["attention_mask"]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_an_unpooled_tower_cannot_be_cached(tiny, tokenizer):
    pair = build_pair(tiny, tokenizer)
    with pytest.raises(ValueError, match="pool_grid > 0"):
        FeatureCache(pair.student, pair.image_processor)
