"""Align-KD: the text-query x vision-key block, head maps, top-k visual tokens."""

from __future__ import annotations

import pytest
import torch

from kdlib.losses.align_kd import (
    HeadMap,
    attention_mse,
    enhanced_projector_mse,
    teacher_attended_tokens,
    text_vision_block,
)
from kdlib.losses.projector import projector_mse

N_VIS, N_TXT = 4, 3
L = 1 + N_VIS + N_TXT  # BOS, image tokens, text tokens


def _masks(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    vision = torch.zeros(b, L, dtype=torch.bool)
    vision[:, 1 : 1 + N_VIS] = True
    text = torch.zeros(b, L, dtype=torch.bool)
    text[:, 1 + N_VIS :] = True
    return vision, text


def _causal_attention(b: int, h: int, seed: int = 0) -> torch.Tensor:
    scores = torch.randn(b, h, L, L, generator=torch.Generator().manual_seed(seed))
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


def test_block_rows_are_text_queries_and_columns_vision_keys() -> None:
    vision, text = _masks()
    block = text_vision_block(vision, text)
    for q in range(L):
        for k in range(L):
            assert block[0, q, k] == (bool(text[0, q]) and bool(vision[0, k]))
    attn = _causal_attention(2, 3)
    assert (attn[:, :, block[0]] > 0).all()  # the paper's A_{t-v} is visible under a causal mask
    transposed = block.transpose(1, 2)  # what the public code selects: vision queries x text keys
    assert (attn[:, :, transposed[0]] == 0).all()


def test_attention_mse_by_hand_and_head_handling() -> None:
    vision, text = _masks()
    s, t = _causal_attention(2, 2), _causal_attention(2, 2, seed=1)
    block = text_vision_block(vision, text)
    hand = ((t - s) ** 2)[:, :, block[0]].mean()
    assert torch.allclose(attention_mse(s, t, vision, text), hand, atol=1e-7)
    # 4 teacher heads vs 2 student heads: averaging both sides, or the head map (init = group means)
    t4 = _causal_attention(2, 4, seed=2)
    avg = ((t4.mean(1) - s.mean(1)) ** 2)[:, block[0]].mean()
    assert torch.allclose(attention_mse(s, t4, vision, text), avg, atol=1e-7)
    grouped = torch.stack([t4[:, :2].mean(1), t4[:, 2:].mean(1)], 1)
    assert torch.allclose(HeadMap(4, 2)(t4), grouped, atol=1e-7)
    assert attention_mse(grouped, t4, vision, text, HeadMap(4, 2)).item() == pytest.approx(0.0, abs=1e-12)


def test_head_map_is_trained_and_length_mismatch_fails() -> None:
    vision, text = _masks()
    hm = HeadMap(4, 2)
    attention_mse(_causal_attention(2, 2), _causal_attention(2, 4), vision, text, hm).backward()
    assert hm.weight.grad is not None and hm.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sequence lengths"):
        attention_mse(_causal_attention(2, 2), _causal_attention(2, 2)[..., :-1, :-1], vision, text)


def test_teacher_attended_tokens_and_enhanced_mse() -> None:
    vision, text = _masks(1)
    attn = torch.zeros(1, 2, L, L)
    attn[0, :, 1 + N_VIS :, 0] = 0.5  # BOS sink: ignored, it is no vision token
    attn[0, :, 1 + N_VIS :, 1 + 2] = 0.3  # visual token 2 gets the most
    attn[0, :, 1 + N_VIS :, 1 + 0] = 0.2  # then visual token 0
    assert teacher_attended_tokens(attn, vision, text, k=2).tolist() == [[2, 0]]
    s, t = torch.randn(1, N_VIS, 5), torch.randn(1, N_VIS, 5)
    top = [2, 0]
    expected = ((s - t) ** 2).mean() + ((s[:, top] - t[:, top]) ** 2).mean()  # Align-KD: element means
    assert torch.allclose(enhanced_projector_mse(s, t, attn, vision, text, k=2), expected, atol=1e-6)
    # a sample without text counts the all-token term only
    no_text = torch.zeros_like(text)
    assert torch.allclose(enhanced_projector_mse(s, t, attn, vision, no_text, k=2), ((s - t) ** 2).mean(), atol=1e-6)
    assert torch.allclose(((s - t) ** 2).mean(), projector_mse(s, t) * 2 / 5, atol=1e-6)  # Eq. 4 is D/2 times it


def test_frozen_head_map_gets_no_gradient() -> None:
    vision, text = _masks()
    hm = HeadMap(4, 2, trainable=False)
    s = _causal_attention(2, 2).requires_grad_()
    attention_mse(s, _causal_attention(2, 4), vision, text, hm).backward()
    assert hm.weight.grad is None and s.grad is not None and s.grad.abs().sum() > 0


WIDTH = 64


def _tiny_model(seed: int) -> dict[str, torch.nn.Parameter]:
    """A projector and one two-head causal attention layer over ``[BOS, visual tokens, text tokens]``."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"proj": (16, WIDTH), "q": (WIDTH, WIDTH), "k": (WIDTH, WIDTH)}
    return {n: torch.nn.Parameter(torch.randn(*sh, generator=g) / sh[0] ** 0.5) for n, sh in shapes.items()}


def _tiny_forward(params: dict[str, torch.nn.Parameter], pixels: torch.Tensor,
                  text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    visual = pixels @ params["proj"]
    h = torch.cat([torch.zeros(pixels.shape[0], 1, WIDTH), visual, text], 1)
    b, n, _ = h.shape
    q, k = ((h @ params[w]).view(b, n, 2, -1).transpose(1, 2) for w in ("q", "k"))
    scores = q @ k.transpose(-1, -2) / (WIDTH // 2) ** 0.5
    return visual, scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf")).softmax(-1)


def test_attention_term_gradient_is_not_negligible_beside_the_visual_term() -> None:
    g = torch.Generator().manual_seed(0)
    pixels, text_emb = torch.randn(2, N_VIS, 16, generator=g), torch.randn(2, N_TXT, WIDTH, generator=g)
    student, teacher = _tiny_model(1), _tiny_model(2)
    vs, a_s = _tiny_forward(student, pixels, text_emb)
    vt, a_t = _tiny_forward(teacher, pixels, text_emb)
    vision, text = _masks()

    def grad_norm(loss: torch.Tensor) -> float:
        grads = torch.autograd.grad(loss, list(student.values()), retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum((gr ** 2).sum() for gr in grads if gr is not None)))

    attention = grad_norm(attention_mse(a_s, a_t.detach(), vision, text))
    visual = enhanced_projector_mse(vs, vt.detach(), a_t.detach(), vision, text, k=3)
    assert 0 < attention and visual.item() > 0
    assert grad_norm(visual) < 100 * attention  # element means: both terms act
    assert grad_norm(visual * WIDTH / 2) > 100 * attention  # the old sum over features drowned it
