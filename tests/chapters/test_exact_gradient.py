"""Exact-gradient harness: kdlib's MiniLLM update in expectation against grad KL(q || p), by enumeration."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kdlib.chapters.exact_gradient import (cosine, expected_update, make_toy, per_response_updates, scale,
                                           switch_effects, true_gradient)
from kdlib.losses.minillm import MiniLLMConfig

TOYS = [(3, 3, 0), (3, 3, 1), (3, 3, 2), (4, 3, 3)]
UNBIASED = MiniLLMConfig(form="unbiased")


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> bool:
    return float((a.double() - b.double()).norm() / b.double().norm()) < tol


@pytest.mark.parametrize("vocab,length,seed", TOYS)
@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5])
def test_unbiased_form_is_the_exact_gradient(vocab: int, length: int, seed: int, alpha: float) -> None:
    toy = make_toy(vocab, length, seed)
    assert close(expected_update(toy, replace(UNBIASED, mix_alpha=alpha)), true_gradient(toy))


def test_enumeration_is_complete_and_the_true_gradient_matches_finite_differences() -> None:
    toy = make_toy(3, 3, 0)
    assert torch.allclose(per_response_updates(toy, UNBIASED).probability.sum(), torch.tensor(1.0, dtype=torch.float64))
    from kdlib.losses.divergences import kl_tokens
    from kdlib.chapters.exact_gradient import _at_tokens, _step_logprobs

    def kl(theta):
        lq = _at_tokens(_step_logprobs(theta, toy), toy).sum(-1)
        return float(kl_tokens(lq, _at_tokens(_step_logprobs(toy.teacher, toy), toy).sum(-1)))
    e = torch.zeros_like(toy.theta)
    e[2, 1] = 1e-6
    fd = (kl(toy.theta + e) - kl(toy.theta - e)) / 2e-6
    assert fd == pytest.approx(float(true_gradient(toy).view_as(toy.theta)[2, 1]), rel=1e-5)


@pytest.mark.parametrize("vocab,length,seed", TOYS)
def test_current_step_twice_adds_the_expected_single_step_gradient(vocab: int, length: int, seed: int) -> None:
    toy = make_toy(vocab, length, seed)
    cfg = replace(UNBIASED, mix_alpha=0.2)
    doubled = expected_update(toy, replace(cfg, include_current_reward=True))
    assert close(doubled, true_gradient(toy) + expected_update(toy, cfg, long=False))
    assert not close(doubled, true_gradient(toy), 1e-2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reward_scale_multiplies_the_long_term_term_only(seed: int) -> None:
    toy = make_toy(3, 3, seed)
    cfg = replace(UNBIASED, mix_alpha=0.2)
    halved = expected_update(toy, replace(cfg, reward_scale=0.5))
    parts = expected_update(toy, cfg, long=False) + 2.0 * expected_update(toy, cfg, single=False)
    assert close(halved, parts) and not close(halved, true_gradient(toy), 1e-2)


@pytest.mark.parametrize("change", [{"importance": "token"}, {"clip_weights": True}])
def test_weight_switches_are_harmless_without_mixing_and_biased_with_it(change: dict) -> None:
    for seed in (0, 1, 2):
        toy = make_toy(3, 3, seed)
        truth = true_gradient(toy)
        assert close(expected_update(toy, replace(UNBIASED, mix_alpha=0.0, **change)), truth)
    biased = [cosine(expected_update(make_toy(3, 3, s), replace(UNBIASED, mix_alpha=0.2, **change)),
                     true_gradient(make_toy(3, 3, s))) for s in (0, 1, 2)]
    assert max(biased) < 1 - 1e-4


def test_documented_signs_and_sizes_of_the_remaining_switches() -> None:
    effects = {(e.name, e.seed): e for e in switch_effects((0, 1, 2))}
    seeds = (0, 1, 2)
    for s in seeds:
        base = effects["unbiased (form='unbiased')", s]
        assert base.cosine == pytest.approx(1.0, abs=1e-9) and base.scale == pytest.approx(1.0, abs=1e-6)
        # teacher mixing with sequence weights: still the gradient, with another variance
        assert effects["no teacher mixing", s].cosine == pytest.approx(1.0, abs=1e-9)
        assert effects["no teacher mixing", s].variance != pytest.approx(base.variance, rel=1e-3)
        # gamma 0.95: a small bias (under 1 % of the direction), not none
        assert 1 - 1e-2 < effects["discount gamma = 0.95", s].cosine < 1 - 1e-7
        # length normalisation divides returns by >= 1: the update shrinks and turns
        ln = effects["length-normalised returns", s]
        assert ln.scale < 1 and ln.cosine < 1 - 1e-3
        # whitening turns the update and lowers the variance
        wh = effects["whitened returns", s]
        assert wh.cosine < 1 - 1e-3 and wh.variance < base.variance
        # the LMOps defaults together: far from the gradient
        assert effects["MiniLLM code (form='code')", s].cosine < 0.9
        assert effects["paper Eq. 8-9 (form='paper')", s].cosine < 0.9
