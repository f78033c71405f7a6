"""The chapter's toy experiments: fits behave as the text says, estimators are (un)biased as claimed."""

from __future__ import annotations

import torch

from kdlib.chapters import reverse_kl


def test_forward_kl_covers_and_reverse_kl_seeks() -> None:
    grid = torch.linspace(-6.0, 6.0, 121)
    teacher = reverse_kl.two_mode_teacher(grid)
    fwd = reverse_kl.fit_gaussian(grid, teacher, "forward KL", init=(0.5, 1.0))
    rev = reverse_kl.fit_gaussian(grid, teacher, "reverse KL", init=(2.0, 1.0))
    assert fwd.sigma > 2 * rev.sigma
    assert min(abs(rev.mu - 2.5), abs(rev.mu + 2.5)) < 0.2
    assert reverse_kl.mass_between(grid, fwd.probs, -1, 1) > 10 * reverse_kl.mass_between(grid, rev.probs, -1, 1)


def test_student_sampled_estimators_are_unbiased_and_single_step_reduces_variance() -> None:
    toy = reverse_kl.make_toy(vocab=4, length=3, seed=1)
    stats = {(s.sampling, s.decomposition): s for s in reverse_kl.estimator_study(toy, samples=5_000)}
    for decompose in (False, True):
        s = stats["student", decompose]
        assert s.bias2 < 5 * s.noise_floor  # mean estimate within sampling noise of the exact gradient
    assert stats["student", True].variance < stats["student", False].variance


def test_exact_gradient_matches_finite_differences() -> None:
    toy = reverse_kl.make_toy(vocab=3, length=2, seed=2)
    g = reverse_kl.exact_gradient(toy)
    theta, eps = toy.theta.double(), 1e-5

    def kl(th: torch.Tensor) -> float:
        seqs = torch.tensor([[a, b] for a in range(3) for b in range(3)])
        lq = reverse_kl._sequence_logprob(th, seqs)
        lp = reverse_kl._sequence_logprob(toy.teacher.double(), seqs)
        return float((lq.exp() * (lq - lp)).sum())

    bump = torch.zeros_like(theta)
    bump[0, 1] = eps
    numeric = (kl(theta + bump) - kl(theta - bump)) / (2 * eps)
    assert abs(numeric - float(g[0, 1])) < 1e-4
