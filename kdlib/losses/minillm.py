"""MiniLLM's reverse-KL policy gradient (core paper Eq. 6-10, Table 1), term by term.

The gradient of the sequence-level reverse KL ``L = KL(q_theta || p)`` (Eq. 6) is split into

* a **single-step** term (Eq. 8, left): the reverse KL of each step taken exactly over the
  vocabulary, ``mean_t KL(q_t || p_t)`` (:func:`single_step_loss`);
* a **long-term** term (Eq. 8, right, normalised): a PPO-clipped policy gradient on the future
  rewards ``r_t = log p(y_t) - log q(y_t)`` (:func:`token_rewards`, :func:`returns`,
  :func:`importance_weights`, :func:`pg_loss`);
* the **language-modelling** term on the pre-training corpus (Eq. 7, :func:`lm_loss`).

Two forms are implemented, chosen by :class:`MiniLLMConfig` ``form``:

``"code"`` (default) -- microsoft/LMOps ``minillm/`` as shipped (``docs/methods.md`` §1.2-1.3):
rewards ``clip((log p - log q_old) / 0.5, -100, 100)``; return ``G_t = sum_{t' >= t} gamma^(t'-t) r_t'``
(current step included, ``gamma = 0.95``) divided by the number of remaining tokens ``T - t + 1``
and whitened; single-token importance weight ``w_t = q_old / ((1 - a) q_old + a p)`` against the
teacher-mixed sampler ``a = 0.2``.

``"paper"`` -- the core paper's Eq. 8-9: ``R_{t+1} = sum_{t' > t} log(p / q)`` (current step
excluded, undiscounted, unscaled) divided by the number of remaining terms ``T - t``, not
whitened; ``w_t = prod_{k <= t} q(y_k) / p(y_k)``.

Departures from LMOps kept on purpose: whitening uses the counted tokens only (LMOps includes
padded zeros, which makes advantages depend on padding, cf. huggingface/trl#7024); discounting
is a reverse recurrence (no absolute ``gamma^t``, which under/overflows for long responses,
trl#6626); every return is detached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from kdlib.losses.divergences import IGNORE_INDEX, log_probs, reduce_tokens, reverse_kl, token_logprobs

Tensor = torch.Tensor
Form = Literal["code", "paper"]

#: values of the switches left at ``None``, per form
FORM_DEFAULTS: dict[str, dict[str, float | bool]] = {
    "code": {"gamma": 0.95, "whiten": True, "include_current_reward": True, "reward_scale": 0.5},
    "paper": {"gamma": 1.0, "whiten": False, "include_current_reward": False, "reward_scale": 1.0},
}


@dataclass(frozen=True)
class MiniLLMConfig:
    """Switches of the MiniLLM objective (defaults = the LMOps scripts, ``docs/methods.md`` §1.6).

    ``gamma``, ``whiten``, ``include_current_reward`` and ``reward_scale`` left at ``None`` take
    the value of ``form`` (:data:`FORM_DEFAULTS`); set them to override one switch.
    ``length_norm`` divides returns by the number of tokens they sum (both forms normalise).
    ``mix_alpha`` is the teacher share of the sampler (0 = pure student, ``w_t = 1``).
    ``pt_kd_ratio`` is the forward-KD share of the LM term (0 = Eq. 7; LMOps scripts: 0.5).
    Which terms a run optimises is :attr:`kdlib.train.config.TrainConfig.ablate`.
    """

    form: Form = "code"
    gamma: float | None = None
    length_norm: bool = True
    whiten: bool | None = None
    include_current_reward: bool | None = None
    reward_scale: float | None = None
    reward_clip: float = 100.0
    clip_ratio: float = 0.2
    mix_alpha: float = 0.2
    pt_kd_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.form not in FORM_DEFAULTS:
            raise ValueError(f"MiniLLMConfig.form must be one of {sorted(FORM_DEFAULTS)}, got {self.form!r}")
        for name, value in FORM_DEFAULTS[self.form].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        checks = {
            "gamma": 0.0 <= self.gamma <= 1.0,
            "reward_scale": self.reward_scale > 0.0,
            "reward_clip": self.reward_clip > 0.0,
            "clip_ratio": 0.0 < self.clip_ratio < 1.0,
            "mix_alpha": 0.0 <= self.mix_alpha < 1.0,
            "pt_kd_ratio": 0.0 <= self.pt_kd_ratio <= 1.0,
        }
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"MiniLLMConfig: out of range: {', '.join(bad)} (see the field docs)")


def token_rewards(teacher_logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, cfg: MiniLLMConfig) -> Tensor:
    """Per-token reward ``r_t = clip((log p(y_t) - log q_old(y_t)) / scale, -c, c)``, 0 where not counted.

    ``[B, T]`` log-probs of the sampled tokens (teacher, student at sampling time) -> ``[B, T]``
    float32, detached (LMOps ``sampler.py`` L122-131; Eq. 9's ``log p / q`` with scale 1).
    """
    r = (teacher_logprobs.float() - old_logprobs.float()) / cfg.reward_scale
    r = r.clamp(-cfg.reward_clip, cfg.reward_clip)
    return torch.where(mask.bool(), r, torch.zeros((), device=r.device)).detach()


def importance_weights(old_logprobs: Tensor, teacher_logprobs: Tensor, mask: Tensor, cfg: MiniLLMConfig) -> Tensor:
    """Importance weight of each sampled token, ``[B, T]`` float32, detached, 1 where not counted.

    * code form (LMOps ``sampler.py`` L108-115): the token was drawn from the mixture
      ``p~ = (1 - a) q + a p``, so ``w_t = q_old(y_t) / p~(y_t)``, computed in log space.
      ``a = 0`` gives 1. The PPO clip of :func:`pg_loss` bounds it.
    * paper form (Eq. 9): ``w_t = prod_{k <= t} q(y_k) / p(y_k)`` over counted tokens. This
      product drifts geometrically with ``t``: one token with ``q/p = 2`` doubles every later
      weight, so for long responses the weights overflow to ``inf`` or vanish to 0 in float32
      (``exp`` of a sum of ``t`` log-ratios). Use it for short responses and teaching only.
    """
    lq, lp = old_logprobs.float(), teacher_logprobs.float()
    m = mask.bool()
    if cfg.form == "code":
        a = torch.tensor(cfg.mix_alpha, device=lq.device)
        log_mix = torch.logaddexp(torch.log1p(-a) + lq, torch.log(a) + lp)
        log_w = lq - log_mix
    else:
        log_w = torch.where(m, lq - lp, torch.zeros((), device=lq.device)).cumsum(-1)
    return torch.where(m, log_w.exp(), torch.ones((), device=lq.device)).detach()


def _discounted_sums(rewards: Tensor, mask: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Reverse recurrence over counted tokens: ``(G_incl, G_excl)`` both ``[B, T]``.

    ``G_incl[t] = r_t + gamma G_excl[t]`` and ``G_excl[t]`` = the discounted sum of the counted
    rewards after ``t``. Uncounted positions pass the running sum through unchanged, so padding
    anywhere (right or left) changes nothing and no absolute power of ``gamma`` is ever formed.
    """
    incl, excl = torch.zeros_like(rewards), torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        excl[:, t] = acc
        acc = torch.where(mask[:, t], rewards[:, t] + gamma * acc, acc)
        incl[:, t] = acc
    return incl, excl


def _whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` with mean and (population) variance over counted tokens."""
    n = mask.sum().clamp_min(1)
    mean = torch.where(mask, x, 0.0).sum() / n
    var = torch.where(mask, (x - mean) ** 2, 0.0).sum() / n
    return (x - mean) * torch.rsqrt(var + eps)


def returns(rewards: Tensor, mask: Tensor, cfg: MiniLLMConfig) -> Tensor:
    """Advantages of the long-term term, ``[B, T]`` float32, detached, 0 where not counted.

    code form: ``A_t = whiten( sum_{t' >= t} gamma^(t'-t) r_t' / (T - t + 1) )`` (LMOps
    ``losses.py`` L27-56); paper form: ``A_t = R_{t+1} / (T - t)`` with
    ``R_{t+1} = sum_{t' > t} r_t'`` (Eq. 8-9, the last token gets 0). In general the divisor is
    the number of counted tokens the sum runs over (``length_norm``; at least 1), ``T`` counts
    only counted tokens, and ``whiten`` standardises over counted tokens.
    """
    m = mask.bool()
    incl, excl = _discounted_sums(rewards.float() * m, m, cfg.gamma)
    total = incl if cfg.include_current_reward else excl
    if cfg.length_norm:
        remaining = m.flip(-1).cumsum(-1).flip(-1)  # counted tokens from t to the end
        terms = remaining if cfg.include_current_reward else remaining - 1
        total = total / terms.clamp_min(1)
    if cfg.whiten:
        total = _whiten(total, m)
    return torch.where(m, total, 0.0).detach()


def pg_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, weights: Tensor, mask: Tensor,
            cfg: MiniLLMConfig, denom: float | Tensor | None = None) -> Tensor:
    """PPO-clipped policy-gradient loss (LMOps ``losses.py`` ``_pg_loss`` L58-96), token mean.

    ``rho_t = exp(log q_theta(y_t) - log q_old(y_t)) w_t`` and
    ``L = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))``, ``eps = cfg.clip_ratio``.
    At ``q_theta = q_old`` its gradient is ``-mean_t A_t w_t grad log q(y_t)``: Eq. 8's
    ``(grad L)_Long`` with normalised returns. All inputs ``[B, T]``; only ``logprobs`` carries
    gradient.
    """
    ratio = torch.exp(logprobs.float() - old_logprobs.float().detach()) * weights.detach()
    adv = advantages.detach()
    clipped = ratio.clamp(1.0 - cfg.clip_ratio, 1.0 + cfg.clip_ratio)
    return reduce_tokens(torch.maximum(-adv * ratio, -adv * clipped), mask, denom)


def single_step_loss(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                     denom: float | Tensor | None = None) -> Tensor:
    """Eq. 8's ``(grad L)_Single`` as a loss: ``mean_t KL(q_theta(.|y<t) || p(.|y<t))``, exact over ``V``.

    Since ``E_{y_t ~ q}[r_t] = -KL(q_t || p_t)``, the gradient of this loss is
    ``-grad sum_t E_{y_t ~ q}[r_t]`` with the expectation taken exactly instead of by sampling.
    As in LMOps (``losses.py`` ``_reg_loss``) it is not multiplied by ``w_t``, although Eq. 8
    writes ``w_t`` inside. The teacher is detached.
    """
    return reverse_kl(student_logits, teacher_logits.detach(), mask, denom)


def lm_loss(logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None, kd_ratio: float = 0.0,
            denom: float | Tensor | None = None) -> Tensor:
    """Language-modelling term on ``D_PT`` (Eq. 7), optionally mixed with forward KD (LMOps ``pt_loss``).

    ``L_pt = mean_t [(1 - k) (-log q(y_t)) + k (-sum_v p(v) log q(v))]`` over ``labels != -100``,
    ``k = kd_ratio``. The KD part is the soft cross-entropy of LMOps, i.e. ``KL(p || q)`` plus
    the teacher entropy (same gradient). ``labels`` are aligned with ``logits``.
    """
    if not 0.0 <= kd_ratio <= 1.0:
        raise ValueError(f"kd_ratio must be in [0, 1], got {kd_ratio}")
    per_token = -token_logprobs(logits, labels)
    if kd_ratio > 0.0:
        if teacher_logits is None:
            raise ValueError("lm_loss: kd_ratio > 0 needs teacher_logits")
        p = log_probs(teacher_logits.detach()).exp()
        soft_ce = -(p * log_probs(logits)).sum(-1)
        per_token = (1.0 - kd_ratio) * per_token + kd_ratio * soft_ce
    return reduce_tokens(per_token, labels != IGNORE_INDEX, denom)
