"""What MiniLLM's update computes in expectation: an exact-gradient harness (chapter "Reverse KL step by step").

A toy autoregressive student ``q_theta`` and teacher ``p`` over a vocabulary of ``V`` tokens, one of
them EOS, and responses of at most ``T`` tokens are small enough to list every response ``y``
(``1 + (V-1) + ... + (V-1)^(T-1)`` ending in EOS plus ``(V-1)^T`` cut at ``T``). Both are tables of
next-token logits, one row per prefix (``theta [P, V]``). Over that list the harness computes

* the **true gradient** ``grad_theta KL(q_theta || p)`` of the sequence-level reverse KL
  (core paper Eq. 6) by autograd through ``sum_y q(y) (log q(y) - log p(y))``;
* the **sampler's distribution** ``p~(y) = prod_t p~(y_t | y<t)`` with
  :func:`kdlib.sampling.mixture_logprobs` and :func:`kdlib.sampling.suppress`, the functions the
  rollout uses;
* for each response, the update kdlib's estimator makes from that one response: the rewards,
  returns, importance weights, PPO loss and single-step loss of :mod:`kdlib.losses.minillm` (the
  functions :class:`kdlib.train.methods.PaperObjective` calls), each response's loss summed over
  its tokens (``denom = 1``), differentiated by autograd at ``theta = theta_old``;
* the **expected update** ``E_{y ~ p~}[g(y)]`` and its **variance**
  ``E ||g(y) - E g||^2`` exactly, as sums over the list weighted by ``p~(y)``.

Whitening, a batch statistic, uses the statistics of an infinite batch (``population`` weights of
:func:`~kdlib.losses.minillm.returns`). The loop's token mean divides a batch's summed update by
its token count: in expectation a factor ``1 / E|y|``, the same for every configuration, left out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from kdlib.losses.divergences import kl_tokens
from kdlib.losses.minillm import (MiniLLMConfig, importance_weights, pg_loss, returns, single_step_loss,
                                  single_step_weights, token_rewards)
from kdlib.sampling import mixture_logprobs, suppress

Tensor = torch.Tensor


@dataclass(frozen=True)
class ToyPolicies:
    """A tabular student and teacher over every response (``N`` responses, ``P`` prefixes).

    ``tokens``/``mask``/``prefix`` are ``[N, T]``: the response padded with EOS, 1 on counted
    tokens (up to and including EOS), and the row of ``theta`` each step reads.
    """

    theta: Tensor  # [P, V] student logits per prefix
    teacher: Tensor  # [P, V] teacher logits per prefix
    tokens: Tensor  # [N, T] long
    mask: Tensor  # [N, T] bool
    prefix: Tensor  # [N, T] long
    eos: int


def make_toy(vocab: int = 3, length: int = 3, seed: int = 0, teacher_scale: float = 2.0) -> ToyPolicies:
    """Random student (logits ~ N(0, 1)) and sharper teacher (``teacher_scale`` N(0, 1)); EOS is the last token."""
    if vocab < 2 or length < 1:
        raise ValueError(f"a toy needs vocab >= 2 and length >= 1, got vocab={vocab}, length={length}")
    eos = vocab - 1
    prefixes = [p for n in range(length) for p in itertools.product(range(eos), repeat=n)]
    row = {p: i for i, p in enumerate(prefixes)}
    responses = [p + (eos,) for p in prefixes] + list(itertools.product(range(eos), repeat=length))
    tokens = torch.full((len(responses), length), eos)
    mask = torch.zeros(len(responses), length, dtype=torch.bool)
    prefix = torch.zeros(len(responses), length, dtype=torch.long)
    for i, y in enumerate(responses):
        tokens[i, :len(y)] = torch.tensor(y)
        mask[i, :len(y)] = True
        prefix[i, :len(y)] = torch.tensor([row[y[:t]] for t in range(len(y))])
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(len(prefixes), vocab, generator=g, dtype=torch.float64)
    teacher = teacher_scale * torch.randn(len(prefixes), vocab, generator=g, dtype=torch.float64)
    return ToyPolicies(theta, teacher, tokens, mask, prefix, eos)


def _step_logprobs(table: Tensor, toy: ToyPolicies) -> Tensor:
    """``log softmax`` of the row each step reads: ``[N, T, V]``."""
    return table.log_softmax(-1)[toy.prefix]


def _at_tokens(logp: Tensor, toy: ToyPolicies) -> Tensor:
    """Log-probability of each response's tokens, 0 where not counted: ``[N, T]``."""
    return torch.where(toy.mask, logp.gather(-1, toy.tokens.unsqueeze(-1)).squeeze(-1), 0.0)


def true_gradient(toy: ToyPolicies) -> Tensor:
    """``grad_theta KL(q_theta(y) || p(y))`` over every response (Eq. 6), ``[P * V]``."""
    theta = toy.theta.clone().requires_grad_()
    log_q = _at_tokens(_step_logprobs(theta, toy), toy).sum(-1)
    log_p = _at_tokens(_step_logprobs(toy.teacher, toy), toy).sum(-1)
    (g,) = torch.autograd.grad(kl_tokens(log_q, log_p), theta)
    return g.reshape(-1)


def sampler_logprobs(toy: ToyPolicies, mix_alpha: float, suppressed: Sequence[int] = ()) -> Tensor:
    """``log p~(y_t | y<t)`` of each response token under kdlib's teacher-mixed sampler: ``[N, T]``."""
    logq, logp = _step_logprobs(toy.theta, toy), _step_logprobs(toy.teacher, toy)
    mix = suppress(mixture_logprobs(logq.flatten(0, 1), logp.flatten(0, 1), mix_alpha),
                   torch.tensor(list(suppressed), dtype=torch.long))
    return _at_tokens(mix.view_as(logq), toy)


@dataclass(frozen=True)
class Update:
    """Exact moments of one configuration's per-response update ``g(y)``, ``y ~ p~``."""

    mean: Tensor  # [P * V] E g
    variance: float  # E ||g - E g||^2
    per_response: Tensor  # [N, P * V]
    probability: Tensor  # [N] p~(y)


def per_response_updates(toy: ToyPolicies, cfg: MiniLLMConfig, single: bool = True, long: bool = True,
                         suppressed: Sequence[int] = ()) -> Update:
    """Every response's update from kdlib's MiniLLM terms under ``cfg`` (``single``/``long`` on or off).

    Per response ``y``: ``g(y) = grad [sum_t w^s_t KL(q_t || p_t) + PPO loss summed over tokens]`` at
    ``theta = theta_old``, with the weights, returns and clip of ``cfg``; rewards and old
    log-probs detached, as in a rollout.
    """
    if not (single or long):
        raise ValueError("per_response_updates: single and long are both off")
    with torch.no_grad():
        old = _at_tokens(_step_logprobs(toy.theta, toy), toy)
        teach = _at_tokens(_step_logprobs(toy.teacher, toy), toy)
        mix = sampler_logprobs(toy, cfg.mix_alpha, suppressed)
        prob = torch.where(toy.mask, mix, 0.0).sum(-1).exp()
        adv = returns(token_rewards(teach, old, toy.mask, cfg), toy.mask, cfg, population=prob)
        weights = importance_weights(old, mix, toy.mask, cfg)
    grads = []
    for i in range(toy.tokens.shape[0]):
        theta = toy.theta.clone().requires_grad_()
        rows, m = toy.prefix[i:i + 1], toy.mask[i:i + 1]
        loss = torch.zeros((), dtype=theta.dtype)
        if single:
            loss = loss + single_step_loss(theta[rows], toy.teacher[rows], m, denom=1,
                                           weights=single_step_weights(weights[i:i + 1], cfg))
        if long:
            logq = _at_tokens(_step_logprobs(theta, toy), toy)[i:i + 1]
            loss = loss + pg_loss(logq, old[i:i + 1], adv[i:i + 1], weights[i:i + 1], m, cfg, denom=1)
        (g,) = torch.autograd.grad(loss, theta)
        grads.append(g.reshape(-1))
    per = torch.stack(grads)
    mean = (prob.unsqueeze(-1) * per).sum(0)
    variance = float((prob * (per - mean).pow(2).sum(-1)).sum())
    return Update(mean, variance, per, prob)


def expected_update(toy: ToyPolicies, cfg: MiniLLMConfig, single: bool = True, long: bool = True) -> Tensor:
    """``E_{y ~ p~}[g(y)]`` of :func:`per_response_updates`, ``[P * V]``."""
    return per_response_updates(toy, cfg, single, long).mean


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine of the angle between two flat vectors."""
    return float(a @ b / (a.norm() * b.norm()))


def scale(a: Tensor, b: Tensor) -> float:
    """Length of ``a`` along ``b`` in units of ``|b|``: ``<a, b> / |b|^2`` (1 for an unbiased estimate)."""
    return float(a @ b / (b @ b))


@dataclass(frozen=True)
class Switch:
    """One row of the switch table: a configuration and the terms it optimises."""

    name: str
    cfg: MiniLLMConfig
    single: bool = True
    long: bool = True


def switches(mix_alpha: float = 0.2) -> list[Switch]:
    """The unbiased estimator, each MiniLLM default switched on alone, and the three whole forms.

    Every row but the last three starts from ``form="unbiased"`` and changes one switch to its
    LMOps value (:data:`kdlib.losses.minillm.FORM_DEFAULTS` ``"code"``).
    """
    base = MiniLLMConfig(form="unbiased", mix_alpha=mix_alpha)
    one = {
        "current step counted twice": {"include_current_reward": True},
        "discount gamma = 0.95": {"gamma": 0.95},
        "reward scale 0.5": {"reward_scale": 0.5},
        "whitened returns": {"whiten": True},
        "length-normalised returns": {"length_norm": True},
        "per-token weights (LMOps)": {"importance": "token"},
        "weights inside the PPO clip": {"clip_weights": True},
        "no teacher mixing": {"mix_alpha": 0.0},
    }
    rows = [Switch("unbiased (form='unbiased')", base)]
    rows += [Switch(name, replace(base, **change)) for name, change in one.items()]
    code = MiniLLMConfig(form="code", mix_alpha=mix_alpha)
    return rows + [Switch("MiniLLM code (form='code')", code),
                   Switch("code without the single-step term (--ablate single)", code, single=False),
                   Switch("paper Eq. 8-9 (form='paper')", MiniLLMConfig(form="paper", mix_alpha=mix_alpha))]


@dataclass(frozen=True)
class SwitchEffect:
    """Expected update of one switch against the true gradient, on one toy."""

    name: str
    seed: int
    cosine: float
    scale: float
    variance: float  # E ||g - E g||^2 / |grad L|^2


def switch_effects(seeds: Sequence[int] = (0, 1, 2), vocab: int = 3, length: int = 3,
                   mix_alpha: float = 0.2) -> list[SwitchEffect]:
    """:func:`switches` measured on the toys of ``seeds`` (cosine, scale and variance per toy)."""
    out = []
    for seed in seeds:
        toy = make_toy(vocab, length, seed)
        truth = true_gradient(toy)
        for sw in switches(mix_alpha):
            upd = per_response_updates(toy, sw.cfg, sw.single, sw.long)
            out.append(SwitchEffect(sw.name, seed, cosine(upd.mean, truth), scale(upd.mean, truth),
                                    upd.variance / float(truth @ truth)))
    return out
