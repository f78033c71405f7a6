"""Toy experiments of the chapter "Reverse KL step by step" (notebooks/reverse_kl.ipynb).

1. **Mode covering vs mode seeking.** A single discretised Gaussian student is fitted to a
   two-mode teacher over a 1-D grid, once with forward KL ``KL(p || q)`` and once with reverse
   KL ``KL(q || p)`` (core paper Sec. 2.2.1, Eq. 6).
2. **Variance of the policy gradient.** A tabular bigram student ``q_theta(y_t | y_{t-1})`` is
   distilled from a random bigram teacher over sequences of ``T`` tokens. For each sampled
   sequence the gradient of the sequence-level reverse KL is estimated with the pieces of
   :mod:`kdlib.losses.minillm` (Eq. 8, before PPO clipping and normalisation):

   * without decomposition: ``-sum_t w_t G_t grad log q(y_t)``, ``G_t = sum_{t' >= t} r_t'``;
   * with the single-step decomposition: ``sum_t grad KL(q_t || p_t) - sum_t w_t G_{t+1} grad log q(y_t)``;

   with ``r_t = log p(y_t) - log q(y_t)``, sampling from the student (``w_t = 1``) or from the
   teacher mix ``(1 - a) q + a p`` with the code's single-token weights ``w_t``. The exact
   gradient comes from enumerating all ``V^T`` sequences, so bias and variance are both measured.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch.func import grad, vmap

from kdlib.losses.divergences import forward_kl, kl_tokens, reverse_kl
from kdlib.losses.minillm import MiniLLMConfig, importance_weights, returns, single_step_loss, token_rewards
from kdlib.plots import PAGE_WIDTH
from kdlib.sampling import mixture_logprobs

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# 1. forward vs reverse KL on a two-mode teacher


@dataclass(frozen=True)
class GaussianFit:
    """A discretised Gaussian student fitted under one divergence."""

    divergence: str  # "forward KL" or "reverse KL"
    mu: float
    sigma: float
    loss: float  # final value of the divergence
    probs: Tensor  # [V] student distribution on the grid


def two_mode_teacher(grid: Tensor, means: tuple[float, float] = (-2.5, 2.5), width: float = 0.6,
                     weights: tuple[float, float] = (0.55, 0.45)) -> Tensor:
    """Teacher logits ``[V]`` on ``grid``: log of a two-component Gaussian mixture (unnormalised)."""
    dens = sum(w * torch.exp(-0.5 * ((grid - m) / width) ** 2) for m, w in zip(means, weights))
    return torch.log(dens + 1e-30)


def gaussian_logits(grid: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    """Student logits ``[V]``: ``-(x - mu)^2 / (2 sigma^2)``."""
    return -0.5 * ((grid - mu) / log_sigma.exp()) ** 2


def fit_gaussian(grid: Tensor, teacher_logits: Tensor, divergence: str, steps: int = 250, lr: float = 0.1,
                 init: tuple[float, float] = (0.5, 1.5)) -> GaussianFit:
    """Fit ``(mu, sigma)`` by Adam on :func:`~kdlib.losses.divergences.forward_kl` or ``reverse_kl``."""
    losses = {"forward KL": forward_kl, "reverse KL": reverse_kl}
    if divergence not in losses:
        raise ValueError(f"divergence must be one of {sorted(losses)}, got {divergence!r}")
    mu = torch.tensor(init[0], requires_grad=True)
    log_sigma = torch.tensor(math.log(init[1]), requires_grad=True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr)
    objective = lambda: losses[divergence](gaussian_logits(grid, mu, log_sigma)[None, None],  # noqa: E731
                                           teacher_logits[None, None])
    for _ in range(steps):
        opt.zero_grad()
        objective().backward()
        opt.step()
    with torch.no_grad():
        return GaussianFit(divergence, mu.item(), log_sigma.exp().item(), objective().item(),
                           gaussian_logits(grid, mu, log_sigma).softmax(-1))


def best_fit(grid: Tensor, teacher_logits: Tensor, divergence: str,
             starts: tuple[float, ...] = (-2.0, 0.0, 2.0)) -> GaussianFit:
    """The lowest-loss :func:`fit_gaussian` over several starting means (``sigma`` starts at 1).

    Reverse KL is not convex in ``(mu, sigma)``: besides one optimum per mode it has a broad
    local optimum straddling both modes, which a start between the modes falls into.
    """
    return min((fit_gaussian(grid, teacher_logits, divergence, init=(m, 1.0)) for m in starts), key=lambda f: f.loss)


def mass_between(grid: Tensor, probs: Tensor, low: float, high: float) -> float:
    """Probability mass of ``probs`` on ``low < x < high``."""
    return float(probs[(grid > low) & (grid < high)].sum())


def kl_fit_figure(grid: Tensor, teacher_logits: Tensor, fits: list[GaussianFit]) -> Figure:
    """Teacher distribution and the Gaussian fits, one panel per divergence."""
    fig = Figure(figsize=(PAGE_WIDTH, 3.2), layout="constrained")
    axes = fig.subplots(1, len(fits), sharey=True)
    teacher = teacher_logits.softmax(-1)
    for ax, fit in zip(axes, fits):
        ax.fill_between(grid.numpy(), teacher.numpy(), color="0.8", label="teacher p")
        ax.plot(grid.numpy(), fit.probs.numpy(), color="tab:red", lw=2, label=f"student q ({fit.divergence})")
        ax.set_title(f"min {fit.divergence}\n$\\mu$ = {fit.mu:.2f}, $\\sigma$ = {fit.sigma:.2f}", fontsize=10)
        ax.set_xlabel("x")
        ax.legend(loc="upper left", fontsize=9)
    axes[0].set_ylabel("probability")
    return fig


# --------------------------------------------------------------------------------------------
# 2. variance of the policy-gradient estimators on a bigram toy


@dataclass(frozen=True)
class BigramToy:
    """Student parameters ``theta [V, V]`` (logits of ``y_t`` given ``y_{t-1}``), teacher logits, length."""

    theta: Tensor
    teacher: Tensor
    length: int

    @property
    def vocab(self) -> int:
        return self.theta.shape[0]


def make_toy(vocab: int = 6, length: int = 5, seed: int = 0) -> BigramToy:
    """Random student and teacher bigram tables (teacher sharper: scale 2 vs 1)."""
    g = torch.Generator().manual_seed(seed)
    return BigramToy(torch.randn(vocab, vocab, generator=g), 2.0 * torch.randn(vocab, vocab, generator=g), length)


def _previous(tokens: Tensor) -> Tensor:
    """Conditioning token of each step; the first step conditions on token 0 (start state)."""
    return torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], 1)


def sample_sequences(toy: BigramToy, n: int, mix_alpha: float, generator: torch.Generator) -> Tensor:
    """``[n, T]`` tokens, each step drawn from ``(1 - a) q + a p`` (``a = 0``: the student)."""
    q, p = toy.theta.softmax(-1), toy.teacher.softmax(-1)
    mix = (1.0 - mix_alpha) * q + mix_alpha * p
    tokens = torch.zeros(n, toy.length, dtype=torch.long)
    prev = torch.zeros(n, dtype=torch.long)
    for t in range(toy.length):
        prev = tokens[:, t] = torch.multinomial(mix[prev], 1, generator=generator).squeeze(1)
    return tokens


def _sequence_logprob(table: Tensor, tokens: Tensor) -> Tensor:
    return table.log_softmax(-1)[_previous(tokens), tokens].sum(-1)


def exact_gradient(toy: BigramToy) -> Tensor:
    """``grad_theta KL(q(y_1..T) || p(y_1..T))`` by enumerating all ``V^T`` sequences, ``[V, V]``."""
    seqs = torch.tensor(list(itertools.product(range(toy.vocab), repeat=toy.length)))
    theta = toy.theta.clone().requires_grad_()
    kl = kl_tokens(_sequence_logprob(theta, seqs), _sequence_logprob(toy.teacher, seqs))
    (g,) = torch.autograd.grad(kl, theta)
    return g


def _surrogate(theta: Tensor, teacher: Tensor, tokens: Tensor, adv: Tensor, weights: Tensor, decompose: bool) -> Tensor:
    """One sequence's surrogate whose gradient is the estimate (``tokens``, ``adv``, ``weights``: ``[T]``)."""
    prev = _previous(tokens[None])[0]
    logits = theta[prev]
    logq = logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    long = -(weights * adv * logq).sum()
    if not decompose:
        return long
    ones = torch.ones(1, tokens.shape[0], dtype=torch.bool)
    return single_step_loss(logits[None], teacher[prev][None], ones, denom=1) + long


def gradient_estimates(toy: BigramToy, tokens: Tensor, mix_alpha: float, decompose: bool) -> Tensor:
    """Per-sequence gradient estimates ``[n, V * V]`` built from kdlib's MiniLLM pieces."""
    cfg = MiniLLMConfig(gamma=1.0, length_norm=False, whiten=False, include_current_reward=not decompose,
                        reward_scale=1.0, mix_alpha=mix_alpha)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    prev = _previous(tokens)
    old = toy.theta.log_softmax(-1)[prev, tokens]
    teach = toy.teacher.log_softmax(-1)[prev, tokens]
    adv = returns(token_rewards(teach, old, mask, cfg), mask, cfg)
    mix = mixture_logprobs(old, teach, mix_alpha)  # the sampler's log-prob of each token
    weights = importance_weights(old, mix, mask, cfg)
    per_sample = vmap(grad(_surrogate), in_dims=(None, None, 0, 0, 0, None))
    return per_sample(toy.theta, toy.teacher, tokens, adv, weights, decompose).reshape(tokens.shape[0], -1)


@dataclass(frozen=True)
class EstimatorStats:
    sampling: str  # "student" or "teacher-mixed"
    decomposition: bool
    variance: float  # E ||g - E g||^2 / ||grad L||^2 (per sampled sequence)
    bias2: float  # ||E g - grad L||^2 / ||grad L||^2 (estimated mean from the samples)
    noise_floor: float  # variance / samples: the bias2 an unbiased estimator shows from sampling noise alone


def estimator_study(toy: BigramToy, samples: int, mix_alpha: float = 0.2, seed: int = 0) -> list[EstimatorStats]:
    """Relative variance and squared bias of the four estimators (sampling x decomposition)."""
    exact = exact_gradient(toy).reshape(-1)
    scale = float(exact.pow(2).sum())
    stats = []
    for sampling, alpha in (("student", 0.0), ("teacher-mixed", mix_alpha)):
        tokens = sample_sequences(toy, samples, alpha, torch.Generator().manual_seed(seed))
        for decompose in (False, True):
            g = gradient_estimates(toy, tokens, alpha, decompose)
            mean = g.mean(0)
            variance = float((g - mean).pow(2).sum(1).mean()) / scale
            stats.append(EstimatorStats(sampling, decompose, variance, float((mean - exact).pow(2).sum()) / scale,
                                        variance / samples))
    return stats


def variance_by_length(lengths: list[int], samples: int, mix_alpha: float = 0.2,
                       seed: int = 0) -> dict[str, list[float]]:
    """Absolute per-sequence gradient variance ``E ||g - E g||^2`` of each estimator, per response length."""
    curves: dict[str, list[float]] = {}
    for length in lengths:
        toy = make_toy(length=length, seed=seed)
        for sampling, alpha in (("student", 0.0), ("teacher-mixed", mix_alpha)):
            tokens = sample_sequences(toy, samples, alpha, torch.Generator().manual_seed(seed))
            for decompose in (False, True):
                g = gradient_estimates(toy, tokens, alpha, decompose)
                key = f"{sampling}, {'single-step' if decompose else 'no decomposition'}"
                curves.setdefault(key, []).append(float((g - g.mean(0)).pow(2).sum(1).mean()))
    return curves


def variance_figure(stats: list[EstimatorStats], lengths: list[int], curves: dict[str, list[float]]) -> Figure:
    """Left: relative variance and bias^2 of the four estimators; right: variance against length."""
    fig = Figure(figsize=(PAGE_WIDTH, 3.8), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    labels = [f"{s.sampling}\n{'single-step' if s.decomposition else 'no decomp.'}" for s in stats]
    x = torch.arange(len(stats)).float().numpy()
    ax.bar(x - 0.2, [s.variance for s in stats], 0.4, label="variance / |grad L|^2", color="tab:blue")
    ax.bar(x + 0.2, [max(s.bias2, 1e-6) for s in stats], 0.4, label="bias^2 / |grad L|^2", color="tab:orange")
    ax.scatter(x + 0.2, [s.noise_floor for s in stats], marker="_", s=300, color="k", label="noise floor of bias^2")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 100)
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    ax.set_title("per-sequence gradient estimate")
    for key, values in curves.items():
        color = "tab:red" if key.startswith("teacher-mixed") else "tab:blue"
        bx.plot(lengths, values, "o--" if "single-step" in key else "o-", color=color, label=key)
    bx.set_yscale("log")
    bx.set_xlabel("response length T")
    bx.set_ylabel("E |g - E g|^2")
    bx.legend(fontsize=8)
    bx.set_title("variance grows with length")
    return fig
