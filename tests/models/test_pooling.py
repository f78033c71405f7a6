"""Patch-grid pooling of the vision tower (``vision.pool_grid``) on the tiny random CLIP."""

import pytest
import torch

from kdlib.models import build_pair, load_mllm, mllm_forward, num_image_tokens, projector_features, save_mllm
from kdlib.models.pooling import inner_tower, pool_hidden_state, pool_patch_grid, projector_inputs
from kdlib.profiles import get_profile

GRID = 4  # tiny: 64 px / patch 8 = 8 x 8 patches -> 4 x 4 tokens


@pytest.fixture
def pooled(tokenizer):
    profile = get_profile("tiny", {"vision.pool_grid": str(GRID)})
    return profile, build_pair(profile, tokenizer, seed=0)


def test_adaptive_pooling_equals_the_mean_over_each_cell():
    side, grid, dim = 6, 3, 5
    patches = torch.randn(2, side * side, dim)
    k = side // grid
    cells = patches.view(2, grid, k, grid, k, dim).mean(dim=(2, 4)).reshape(2, grid * grid, dim)
    torch.testing.assert_close(pool_patch_grid(patches, grid), cells)
    torch.testing.assert_close(pool_patch_grid(patches, side), patches)


def test_cls_is_kept_and_register_tokens_are_dropped():
    patches = torch.randn(1, 16, 3)
    with_registers = torch.cat([torch.full((1, 1, 3), 7.0), torch.randn(1, 4, 3), patches], dim=1)
    out = pool_hidden_state(with_registers, num_patches=16, grid=2)
    assert out.shape == (1, 5, 3)
    assert torch.equal(out[:, 0], torch.full((1, 3), 7.0))
    torch.testing.assert_close(out[:, 1:], pool_patch_grid(patches, 2))
    with pytest.raises(ValueError, match="no CLS"):
        pool_hidden_state(patches, num_patches=16, grid=2)


def test_the_llm_gets_pool_grid_squared_tokens_from_the_pooled_feature_layer(pooled, make_batch):
    profile, pair = pooled
    assert profile.vision.num_image_tokens == GRID**2
    for model in (pair.teacher, pair.student):
        assert num_image_tokens(model) == GRID**2
        ids, mask, pixels = make_batch(model)
        # by hand: CLIP hidden layer -2, CLS dropped, 8 x 8 grid averaged in 2 x 2 cells, projector
        with torch.no_grad():
            hidden = inner_tower(model)(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
            cells = hidden.view(2, GRID, 2, GRID, 2, -1).mean(dim=(2, 4)).reshape(2, GRID**2, -1)
            expected = model.model.multi_modal_projector(cells)
            z = projector_features(model, pixels)
            out = mllm_forward(model, ids, pixels, mask)
        torch.testing.assert_close(z, expected)
        torch.testing.assert_close(out.projector, expected)


def test_cached_features_give_the_same_logits_as_pixels(pooled, make_batch):
    _, pair = pooled
    model = pair.student.eval()
    ids, mask, pixels = make_batch(model)
    features = projector_inputs(model, pixels)
    assert features.shape == (2, GRID**2, model.config.vision_config.hidden_size)
    with torch.no_grad():
        from_pixels = mllm_forward(model, ids, pixels, mask, hidden_states=True)
        from_features = mllm_forward(model, ids, features, mask, hidden_states=True)
    torch.testing.assert_close(from_features.logits, from_pixels.logits, rtol=0, atol=0)
    torch.testing.assert_close(from_features.hidden_states[-1], from_pixels.hidden_states[-1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="cached vision features must be"):
        mllm_forward(model, ids, features[:, :3], mask)


def test_save_load_round_trip_keeps_the_pooling(pooled, make_batch, tmp_path):
    _, pair = pooled
    save_mllm(tmp_path / "student", pair.student, pair.tokenizer, pair.image_processor)
    loaded = load_mllm(tmp_path / "student")
    assert type(loaded.model.model.vision_tower) is type(pair.student.model.vision_tower)
    ids, mask, pixels = make_batch(pair.student)
    with torch.no_grad():
        before = mllm_forward(pair.student.eval(), ids, pixels, mask).logits
        after = mllm_forward(loaded.model, ids, pixels, mask).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_pool_grid_must_divide_the_patch_grid(tokenizer):
    with pytest.raises(ValueError, match=r"vision.pool_grid=3 must divide the 8 x 8 patch grid.*\[1, 2, 4, 8\]"):
        build_pair(get_profile("tiny", {"vision.pool_grid": "3"}), tokenizer)
