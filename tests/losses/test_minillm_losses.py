"""MiniLLM terms: hand-computed returns and weights in both forms, padding, PPO clip, single step, LM."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.losses.minillm import (
    MiniLLMConfig,
    importance_weights,
    lm_loss,
    pg_loss,
    returns,
    single_step_loss,
    token_rewards,
)

REWARDS = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
FULL = torch.ones(1, 4, dtype=torch.bool)


def test_config_derives_switches_from_form_and_validates() -> None:
    code, paper = MiniLLMConfig(), MiniLLMConfig(form="paper")
    assert (code.gamma, code.whiten, code.include_current_reward, code.reward_scale) == (0.95, True, True, 0.5)
    assert (paper.gamma, paper.whiten, paper.include_current_reward, paper.reward_scale) == (1.0, False, False, 1.0)
    assert MiniLLMConfig(form="paper", gamma=0.9).gamma == 0.9
    with pytest.raises(ValueError, match="clip_ratio"):
        MiniLLMConfig(clip_ratio=1.5)
    with pytest.raises(ValueError, match="form"):
        MiniLLMConfig(form="other")  # type: ignore[arg-type]


def test_code_form_returns_by_hand() -> None:
    # G_4 = 4; G_3 = 3 + .95*4 = 6.8; G_2 = 2 + .95*6.8 = 8.46; G_1 = 1 + .95*8.46 = 9.037
    raw = returns(REWARDS, FULL, MiniLLMConfig(length_norm=False, whiten=False))
    assert torch.allclose(raw, torch.tensor([[9.037, 8.46, 6.8, 4.0]]), atol=1e-5)
    # divided by the remaining tokens 4, 3, 2, 1: 2.25925, 2.82, 3.4, 4.0
    normed = returns(REWARDS, FULL, MiniLLMConfig(whiten=False))
    hand = torch.tensor([[2.25925, 2.82, 3.4, 4.0]])
    assert torch.allclose(normed, hand, atol=1e-5)
    # whitened over the 4 tokens: mean 3.1198125, population std 0.6487854
    white = returns(REWARDS, FULL, MiniLLMConfig())
    assert torch.allclose(white, (hand - 3.1198125) / 0.6487854, atol=1e-4)


def test_paper_form_returns_by_hand() -> None:
    # R_{t+1} excludes the current step, undiscounted: 2+3+4 = 9, 3+4 = 7, 4, 0
    raw = returns(REWARDS, FULL, MiniLLMConfig(form="paper", length_norm=False))
    assert torch.allclose(raw, torch.tensor([[9.0, 7.0, 4.0, 0.0]]))
    # divided by the number of remaining terms 3, 2, 1 (and 1 for the empty last sum)
    normed = returns(REWARDS, FULL, MiniLLMConfig(form="paper"))
    assert torch.allclose(normed, torch.tensor([[3.0, 3.5, 4.0, 0.0]]))


@pytest.mark.parametrize("form", ["code", "paper"])
def test_returns_ignore_padding_on_either_side(form: str) -> None:
    cfg = MiniLLMConfig(form=form)  # type: ignore[arg-type]
    rewards = torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    base = returns(rewards, mask, cfg)
    pad = torch.zeros(3, 4, dtype=torch.bool)
    padded = returns(torch.cat([rewards, torch.randn(3, 4)], 1), torch.cat([mask, pad], 1), cfg)
    assert torch.allclose(padded[:, :5], base, atol=1e-6) and (padded[:, 5:] == 0).all()
    left = returns(torch.cat([torch.randn(3, 4), rewards], 1), torch.cat([pad, mask], 1), cfg)
    assert torch.allclose(left[:, 4:], base, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.95, 1.0])
def test_returns_finite_for_long_responses(gamma: float) -> None:
    rewards = torch.randn(2, 2048) * 50
    out = returns(rewards, torch.ones(2, 2048, dtype=torch.bool), MiniLLMConfig(gamma=gamma))
    assert torch.isfinite(out).all() and not out.requires_grad


def test_rewards_scale_clip_and_mask() -> None:
    teacher = torch.log(torch.tensor([[0.25, 0.5, 1e-30, 0.5]]))
    old = torch.log(torch.tensor([[0.5, 0.25, 0.5, 0.5]]))
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    r = token_rewards(teacher, old, mask, MiniLLMConfig(reward_clip=50.0))
    # (log .25 - log .5) / .5 = -2 log 2; (log .5 - log .25) / .5 = 2 log 2; third clipped at -50; masked 0
    assert torch.allclose(r, torch.tensor([[-2 * math.log(2), 2 * math.log(2), -50.0, 0.0]]), atol=1e-5)


def test_importance_weights_by_hand_in_both_forms() -> None:
    q_old = torch.tensor([[0.5, 0.25, 0.8, 0.1]])
    p = torch.tensor([[0.25, 0.5, 0.4, 0.2]])
    # code: q / (0.8 q + 0.2 p) = .5/.45, .25/.30, .8/.72, .1/.12
    w = importance_weights(q_old.log(), p.log(), FULL, MiniLLMConfig(mix_alpha=0.2))
    assert torch.allclose(w, torch.tensor([[10 / 9, 5 / 6, 10 / 9, 5 / 6]]), atol=1e-6)
    no_mix = importance_weights(q_old.log(), p.log(), FULL, MiniLLMConfig(mix_alpha=0.0))
    assert torch.allclose(no_mix, torch.ones(1, 4))
    # paper: running product of q / p = 2, 0.5, 2, 0.5 -> 2, 1, 2, 1
    wp = importance_weights(q_old.log(), p.log(), FULL, MiniLLMConfig(form="paper"))
    assert torch.allclose(wp, torch.tensor([[2.0, 1.0, 2.0, 1.0]]), atol=1e-6)
    # masked tokens are skipped by the product and get weight 1
    mask = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)
    wm = importance_weights(q_old.log(), p.log(), mask, MiniLLMConfig(form="paper"))
    assert torch.allclose(wm, torch.tensor([[2.0, 1.0, 4.0, 2.0]]), atol=1e-6)


def test_pg_loss_clip_by_hand() -> None:
    cfg = MiniLLMConfig()
    lp = torch.zeros(1, 2, requires_grad=True)
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # rho = w = 1.5, 0.5: max(-1.5, -1.2) = -1.2 and max(0.5, 0.8) = 0.8, both clipped -> mean -0.2, no gradient
    loss = pg_loss(lp, torch.zeros(1, 2), adv, torch.tensor([[1.5, 0.5]]), mask, cfg)
    (g,) = torch.autograd.grad(loss, lp)
    assert loss.item() == pytest.approx(-0.2) and (g == 0).all()
    # inside the clip range the gradient is -A w / n
    loss = pg_loss(lp, torch.zeros(1, 2), adv, torch.tensor([[1.1, 0.9]]), mask, cfg)
    (g,) = torch.autograd.grad(loss, lp)
    assert torch.allclose(g, torch.tensor([[-1.1 / 2, 0.9 / 2]]))


def test_single_step_gradient_is_the_exact_policy_gradient() -> None:
    torch.manual_seed(0)
    z = torch.randn(2, 3, 7, requires_grad=True)
    t = torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    (g_single,) = torch.autograd.grad(single_step_loss(z, t, mask), z)
    # -grad E_{y~q}[r] with the expectation written out: sum_v sg(q_v c_v) grad log q_v, c = log q - log p
    log_q = z.log_softmax(-1)
    c = (log_q - t.log_softmax(-1)).detach()
    surrogate = ((log_q.exp().detach() * c * log_q).sum(-1) * mask).sum() / mask.sum()
    (g_pg,) = torch.autograd.grad(surrogate, z)
    assert torch.allclose(g_single, g_pg, atol=1e-6)
    # and the value is the exact per-step reverse KL
    q = z.softmax(-1)
    rkl = (q * (q / t.softmax(-1)).log()).sum(-1)[mask].mean()
    assert torch.allclose(single_step_loss(z, t, mask), rkl, atol=1e-6)


def test_lm_loss_plain_and_with_kd_mix() -> None:
    torch.manual_seed(1)
    z, t = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    labels = torch.tensor([[1, 2, -100, 0], [-100, 5, 4, -100]])
    ce = F.cross_entropy(z.reshape(-1, 6), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(lm_loss(z, labels), ce, atol=1e-6)
    mask = labels != -100
    soft = -(t.softmax(-1) * z.log_softmax(-1)).sum(-1)[mask].mean()
    assert torch.allclose(lm_loss(z, labels, t, kd_ratio=0.5), 0.5 * ce + 0.5 * soft, atol=1e-6)
    with pytest.raises(ValueError, match="teacher_logits"):
        lm_loss(z, labels, kd_ratio=0.5)
