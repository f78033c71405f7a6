import time

import pytest
import torch

from kdlib.models import (build_pair, check_same_vocab, image_token_id, mllm_forward, num_image_tokens,
                          projector_features)


def _numel(model):
    return sum(p.numel() for p in model.parameters())


def test_tiny_pair_is_fast_and_follows_the_profile(tiny, tokenizer):
    start = time.perf_counter()
    pair = build_pair(tiny, tokenizer, seed=0)
    assert time.perf_counter() - start < 5.0  # < 1 s alone; slack for a shared 2-core machine
    t, s = pair.teacher, pair.student
    assert (t.config.text_config.num_hidden_layers, t.config.text_config.hidden_size) == (
        tiny.teacher.num_layers, tiny.teacher.hidden_size)
    assert (s.config.text_config.num_hidden_layers, s.config.text_config.hidden_size) == (
        tiny.student.num_layers, tiny.student.hidden_size)
    assert _numel(t) > _numel(s)
    assert num_image_tokens(t) == num_image_tokens(s) == tiny.vision.num_image_tokens
    assert image_token_id(t) == image_token_id(s) == image_token_id(tokenizer)
    check_same_vocab(t, s)
    assert pair.image_processor.crop_size == {"height": tiny.vision.image_size, "width": tiny.vision.image_size}


def test_vision_tower_is_shared_and_frozen_and_the_seed_reproduces(pair, tiny, tokenizer):
    ts, ss = pair.teacher.model.vision_tower.state_dict(), pair.student.model.vision_tower.state_dict()
    assert all(torch.equal(ts[k], ss[k]) for k in ts)
    for model in (pair.teacher, pair.student):
        assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    again = build_pair(tiny, tokenizer, seed=0).student.state_dict()
    other = build_pair(tiny, tokenizer, seed=1).student.state_dict()
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(again[key], pair.student.state_dict()[key])
    assert not torch.equal(other[key], again[key])


def test_projector_outputs_two_ways(pair, make_batch):
    for model in (pair.teacher, pair.student):
        ids, mask, pixels = make_batch(model)
        z = projector_features(model, pixels)
        assert z.shape == (2, num_image_tokens(model), model.config.text_config.hidden_size)
        out = mllm_forward(model, ids, pixels, mask, hidden_states=True)
        torch.testing.assert_close(out.projector, z)
        assert out.logits.shape == (*ids.shape, len_vocab(model))
        assert len(out.hidden_states) == model.config.text_config.num_hidden_layers + 1
        # the image positions of the input embeddings are z(x), in order
        first = out.hidden_states[0][ids == image_token_id(model)].view(2, -1, z.shape[-1])
        torch.testing.assert_close(first, z)


def len_vocab(model):
    return model.config.text_config.vocab_size


def test_attention_maps_need_eager(tiny, tokenizer, make_batch):
    sdpa = build_pair(tiny, tokenizer).student
    ids, mask, pixels = make_batch(sdpa)
    with pytest.raises(ValueError, match="eager"):
        mllm_forward(sdpa, ids, pixels, mask, attentions=True)
    eager = build_pair(tiny, tokenizer, attn_implementation="eager").student
    out = mllm_forward(eager, ids, pixels, mask, attentions=True)
    heads = eager.config.text_config.num_attention_heads
    assert len(out.attentions) == eager.config.text_config.num_hidden_layers
    assert out.attentions[0].shape == (2, heads, ids.shape[1], ids.shape[1])
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, heads, ids.shape[1]))
    torch.testing.assert_close(out.logits, mllm_forward(sdpa, ids, pixels, mask).logits, atol=1e-5, rtol=1e-5)


def test_kv_cache_steps_match_the_full_forward(pair, make_batch):
    model = pair.student.eval()
    ids, mask, pixels = make_batch(model, "what is here? ASSISTANT:")
    new = torch.tensor([[7, 9]])
    with torch.no_grad():
        full = mllm_forward(model, torch.cat([ids, new], 1), pixels).logits
        step = mllm_forward(model, ids, pixels, use_cache=True)
        logits = [step.logits[:, -1]]
        for token in new[0]:
            step = mllm_forward(model, token.view(1, 1), past_key_values=step.past_key_values, use_cache=True)
            logits.append(step.logits[:, -1])
    torch.testing.assert_close(torch.stack(logits[:-1], 1), full[:, ids.shape[1] - 1:-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[-1], full[:, -1], atol=1e-5, rtol=1e-5)
    generated = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 3)
