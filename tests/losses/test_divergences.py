"""Divergences: directions, GKD limits, masking, dtypes, Eq. 3."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.losses.divergences import (
    forward_kl,
    generalized_jsd,
    kd_objective,
    kl_tokens,
    reduce_tokens,
    reverse_kl,
    skew_kl,
    token_logprobs,
)


def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def _manual_kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(A||B) per token by torch's own kl_div (input = log B, target = log A)."""
    return F.kl_div(log_b, log_a, log_target=True, reduction="none").sum(-1)


def test_directions_match_torch_kl_div() -> None:
    s, t = _logits(2, 3, 7), _logits(2, 3, 7, seed=1)
    ls, lt = s.log_softmax(-1), t.log_softmax(-1)
    assert torch.allclose(forward_kl(s, t), _manual_kl(lt, ls).mean(), atol=1e-6)
    assert torch.allclose(reverse_kl(s, t), _manual_kl(ls, lt).mean(), atol=1e-6)
    assert not torch.allclose(forward_kl(s, t), reverse_kl(s, t))


def test_generalized_jsd_limits_are_the_two_kls() -> None:
    s, t = _logits(2, 4, 9), _logits(2, 4, 9, seed=1)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]])
    assert torch.allclose(generalized_jsd(s, t, 0.0, mask), forward_kl(s, t, mask), atol=1e-6)
    assert torch.allclose(generalized_jsd(s, t, 1.0, mask), reverse_kl(s, t, mask), atol=1e-6)
    # the end points are a convention: the mixture form itself tends to 0 there (M -> q or M -> p)
    for beta in (1e-4, 1 - 1e-4):
        assert generalized_jsd(s, t, beta, mask) < 1e-2 * generalized_jsd(s, t, 0.5, mask)


def test_jsd_half_is_symmetric_and_bounded() -> None:
    s, t = _logits(3, 5, 11), _logits(3, 5, 11, seed=2)
    a, b = generalized_jsd(s, t, 0.5), generalized_jsd(t, s, 0.5)
    assert torch.allclose(a, b, atol=1e-6)
    assert 0 < a.item() <= math.log(2)


def test_jsd_mixture_formula_by_hand() -> None:
    s, t = _logits(1, 2, 5), _logits(1, 2, 5, seed=3)
    q, p = s.softmax(-1), t.softmax(-1)
    beta = 0.3
    m = beta * p + (1 - beta) * q
    hand = beta * (p * (p / m).log()).sum(-1) + (1 - beta) * (q * (q / m).log()).sum(-1)
    assert torch.allclose(generalized_jsd(s, t, beta), hand.mean(), atol=1e-6)


def test_skew_kl_by_hand_and_limit() -> None:
    s, t = _logits(2, 3, 6), _logits(2, 3, 6, seed=4)
    q, p = s.softmax(-1), t.softmax(-1)
    lam = 0.1
    skl = (p * (p / (lam * p + (1 - lam) * q)).log()).sum(-1).mean()
    srkl = (q * (q / ((1 - lam) * p + lam * q)).log()).sum(-1).mean()
    assert torch.allclose(skew_kl(s, t, lam), skl, atol=1e-6)
    assert torch.allclose(skew_kl(s, t, lam, reverse=True), srkl, atol=1e-6)
    assert torch.allclose(skew_kl(s, t, 0.0), forward_kl(s, t), atol=1e-6)
    assert torch.allclose(skew_kl(s, t, 0.0, reverse=True), reverse_kl(s, t), atol=1e-6)


def test_temperature_scaling_of_forward_kl() -> None:
    s, t = _logits(2, 3, 8), _logits(2, 3, 8, seed=5)
    tau = 2.0
    inner = _manual_kl((t / tau).log_softmax(-1), (s / tau).log_softmax(-1)).mean()
    assert torch.allclose(forward_kl(s, t, temperature=tau), tau**2 * inner, atol=1e-6)


def test_mask_counts_only_marked_tokens() -> None:
    s, t = _logits(2, 4, 5), _logits(2, 4, 5, seed=6)
    mask = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    per_token = _manual_kl(s.log_softmax(-1), t.log_softmax(-1))
    assert torch.allclose(reverse_kl(s, t, mask), per_token[mask].mean(), atol=1e-6)


def test_all_masked_gives_zero_without_nan_in_value_or_grad() -> None:
    s = _logits(2, 3, 5).requires_grad_()
    t = _logits(2, 3, 5, seed=1)
    mask = torch.zeros(2, 3)
    for loss in (reverse_kl(s, t, mask), forward_kl(s, t, mask), generalized_jsd(s, t, 0.5, mask),
                 skew_kl(s, t, 0.1, True, mask)):
        (g,) = torch.autograd.grad(loss, s)
        assert loss.item() == 0.0 and torch.isfinite(g).all() and (g == 0).all()


def test_global_denominator_for_gradient_accumulation() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # micro-batches of one sample each, divided by the 3 tokens of the whole step, sum to the global mean
    parts = [reduce_tokens(values[i : i + 1], mask[i : i + 1], denom=3) for i in range(2)]
    assert torch.allclose(sum(parts), reduce_tokens(values, mask))
    assert reduce_tokens(values, mask).item() == pytest.approx((1 + 2 + 4) / 3)


def test_bf16_inputs_give_float32_results() -> None:
    s, t = _logits(2, 3, 7).bfloat16(), _logits(2, 3, 7, seed=1).bfloat16()
    for value in (forward_kl(s, t), reverse_kl(s, t), generalized_jsd(s, t, 0.5), skew_kl(s, t),
                  token_logprobs(s, torch.zeros(2, 3, dtype=torch.long))):
        assert value.dtype == torch.float32
    assert torch.allclose(reverse_kl(s, t), reverse_kl(s.float(), t.float()), atol=1e-6)


def test_minus_inf_logits_are_left_out_not_nan() -> None:
    s = _logits(1, 2, 6).requires_grad_()
    t = _logits(1, 2, 6, seed=1)
    banned = torch.zeros(1, 2, 6, dtype=torch.bool)
    banned[..., 0] = True
    loss = reverse_kl(s.masked_fill(banned, float("-inf")), t.masked_fill(banned, float("-inf")))
    (g,) = torch.autograd.grad(loss, s)
    hand = _manual_kl(s[..., 1:].log_softmax(-1), t[..., 1:].log_softmax(-1)).mean()
    assert torch.allclose(loss, hand, atol=1e-6) and torch.isfinite(g).all()


def test_kl_tokens_zero_iff_equal() -> None:
    a = _logits(4, 9).log_softmax(-1)
    assert torch.allclose(kl_tokens(a, a), torch.zeros(4), atol=1e-7)
    assert (kl_tokens(a, _logits(4, 9, seed=1).log_softmax(-1)) > 0).all()


def test_token_logprobs_and_ignored_ids() -> None:
    z = _logits(2, 3, 5)
    tok = torch.tensor([[0, 4, -100], [2, -100, 1]])
    lp = token_logprobs(z, tok)
    ref = z.log_softmax(-1).gather(-1, tok.clamp_min(0)[..., None]).squeeze(-1)
    assert torch.allclose(lp[tok >= 0], ref[tok >= 0], atol=1e-6)
    assert (lp[tok < 0] == 0).all()


def test_kd_objective_is_the_eq3_mix() -> None:
    s, t = _logits(2, 4, 6), _logits(2, 4, 6, seed=1)
    labels = torch.tensor([[1, -100, 3, 5], [0, 2, -100, -100]])
    mask = labels != -100
    ce = F.cross_entropy(s[mask], labels[mask])
    kd = forward_kl(s, t, mask, temperature=2.0)
    assert torch.allclose(kd_objective(s, t, labels, 0.3, 2.0), 0.3 * kd + 0.7 * ce, atol=1e-6)
    assert torch.allclose(kd_objective(s, t, labels, 0.0, 2.0), ce, atol=1e-6)


def test_vocab_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="vocabularies must match"):
        reverse_kl(_logits(1, 2, 5), _logits(1, 2, 6))
