"""Memory-lean divergences that start from last hidden states and the two output heads.

The plain path ``hidden -> head -> [N, V] logits -> log_softmax -> loss`` keeps several float32
``[N, V]`` tensors alive for backward (logits, log-probs, probabilities of both models); at
``V = 151,936`` that is 0.6 GB per 1,000 tokens and per tensor. :func:`chunked_divergence`
instead walks over row chunks of ``chunk_size`` tokens: per chunk it forms both models' logits,
the divergence and **its gradient with respect to the student logits in closed form**, and
folds that gradient into ``grad_hidden`` (``[N, Ds]``) and ``grad_weight`` (``[V, Ds]``) at once
(the Liger-Kernel ``fused_linear_distillation`` pattern, ``docs/methods.md`` §2). Only a few
``[chunk, V]`` float32 buffers exist at a time; backward just scales the stored gradients.

Why not recompute the logits in backward: that costs a second pass over both heads (the teacher
logits would be needed again), about 1.5x the plain time, for the same peak memory.

Closed-form gradients with respect to the student logits ``z`` (``q = softmax(z)``,
``p`` the teacher, ``g`` the derivative of the loss with respect to ``q``):
``dL/dz = q * (g - <q, g>)`` with

* reverse KL ``KL(q || p)``: ``g = log q - log p`` (+1, which cancels), so ``dL/dz = q (log q - log p - KL)``;
* forward KL ``KL(p || q)``: ``dL/dz = q - p``;
* generalized JSD (``0 < beta < 1``, ``M = beta p + (1 - beta) q``): ``g = (1 - beta) log(q / M)``.

Values and gradients equal :mod:`kdlib.losses.divergences` (tests to 1e-5). Logits must be
finite (linear heads); the ``-inf`` handling of the plain functions is not needed here.
Precision follows the plain path of a low-precision model: the head products run in the head's
dtype (bf16 logits for a bf16 head), each chunk of logits is upcast to float32 for the softmax
and the divergence, and the weight gradient is accumulated in float32 (returned in the weight's
dtype). No float32 copy of a ``[V, D]`` head is ever made.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import nn

Tensor = torch.Tensor
Kind = Literal["reverse_kl", "forward_kl", "jsd"]

#: rows per chunk: small enough for ~1/8 of the plain peak at 512 tokens, large enough for efficient
#: matrix products (benchmarks/losses.py); independent of V because the plain path also scales with V
DEFAULT_CHUNK_SIZE = 128


def _log_softmax_(z: Tensor) -> Tensor:
    """In-place ``log_softmax`` over the last axis (no extra ``[chunk, V]`` buffer)."""
    return z.sub_(torch.logsumexp(z, dim=-1, keepdim=True))


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_v a[i, v] b[i, v]`` without a ``[chunk, V]`` temporary."""
    return (a.unsqueeze(1) @ b.unsqueeze(2)).view(-1)


def _reverse_kl(zs: Tensor, zt: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    s, t = _log_softmax_(zs), _log_softmax_(zt)
    q = s.exp()
    diff = t.neg_().add_(s)  # log q - log p
    kl = _rowdot(q, diff)
    return kl, diff.sub_(kl.unsqueeze(1)).mul_(q)


def _forward_kl(zs: Tensor, zt: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    s, t = _log_softmax_(zs), _log_softmax_(zt)
    q = s.exp()
    diff = s.neg_().add_(t)  # log p - log q
    p = t.exp_()
    return _rowdot(p, diff), q.sub_(p)


def _jsd(zs: Tensor, zt: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    s, t = _log_softmax_(zs), _log_softmax_(zt)
    log_m = torch.logaddexp(t + math.log(beta), s + math.log1p(-beta))
    p = t.exp()
    v_teacher = _rowdot(p, t.sub_(log_m))
    del p
    q = s.exp()
    g = s.sub_(log_m)  # log q - log M
    v_student = _rowdot(q, g)
    grad = g.sub_(v_student.unsqueeze(1)).mul_(q).mul_(1.0 - beta)
    return beta * v_teacher + (1.0 - beta) * v_student, grad


def _value_and_grad(kind: Kind, beta: float) -> Callable[[Tensor, Tensor, float], tuple[Tensor, Tensor]]:
    """The per-chunk function; ``jsd`` at beta 0 / 1 is forward / reverse KL (GKD convention)."""
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
        return _reverse_kl
    if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
        return _forward_kl
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        return _jsd
    raise ValueError(f"unknown divergence kind {kind!r}; choose reverse_kl, forward_kl or jsd")


def _affine(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    z = h @ weight.T
    return z if bias is None else z.add_(bias)


class _ChunkedDivergence(torch.autograd.Function):
    """Sum over rows of the divergence, divided by ``denom``; gradients computed in forward."""

    @staticmethod
    def forward(ctx, s_hidden: Tensor, s_weight: Tensor, s_bias: Tensor | None, t_hidden: Tensor,
                t_weight: Tensor, t_bias: Tensor | None, denom: Tensor, kind: Kind, beta: float,
                chunk_size: int) -> Tensor:
        fn = _value_and_grad(kind, beta)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(s_hidden, dtype=torch.float32) if need_h else None
        grad_w = torch.zeros_like(s_weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(s_bias, dtype=torch.float32) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=s_hidden.device)
        for start in range(0, s_hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            hs = s_hidden[rows].to(s_weight.dtype)
            zs = _affine(hs, s_weight, s_bias).float()
            zt = _affine(t_hidden[rows].to(t_weight.dtype), t_weight, t_bias).float()
            value, gz = fn(zs, zt, beta)
            del zs, zt
            total += value.sum()
            if grad_h is not None:
                grad_h[rows] = gz.to(s_weight.dtype) @ s_weight
            if grad_w is not None:
                grad_w.addmm_(gz.T, hs.float())
            if grad_b is not None:
                grad_b += gz.sum(0)
            del gz
        scale = 1.0 / denom.float().clamp_min(1.0)
        ctx.grads = [None if g is None else g.mul_(scale) for g in (grad_h, grad_w, grad_b)]
        ctx.dtypes = (s_hidden.dtype, s_weight.dtype, None if s_bias is None else s_bias.dtype)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        out = [None if g is None else (g * grad_out).to(dt) for g, dt in zip(ctx.grads, ctx.dtypes)]
        ctx.grads = None
        return (*out[:2], out[2], None, None, None, None, None, None, None)


def _weight_and_bias(head: nn.Linear | Tensor) -> tuple[Tensor, Tensor | None]:
    if isinstance(head, nn.Linear):
        return head.weight, head.bias
    if isinstance(head, Tensor) and head.dim() == 2:
        return head, None
    raise TypeError(f"a head is an nn.Linear or a weight tensor [V, D], got {type(head).__name__}")


def chunked_divergence(student_hidden: Tensor, student_head: nn.Linear | Tensor, teacher_hidden: Tensor,
                       teacher_head: nn.Linear | Tensor, mask: Tensor | None = None, kind: Kind = "reverse_kl",
                       beta: float = 0.5, chunk_size: int | None = None,
                       denom: float | Tensor | None = None) -> Tensor:
    """Token-mean divergence between ``head_S(h_S)`` and ``head_T(h_T)`` without ``[N, V]`` logits.

    ``student_hidden [N, Ds]``, ``teacher_hidden [N, Dt]`` (flatten ``[B, T, D]`` first), heads
    ``[V, D]`` weights or ``nn.Linear``; ``mask [N]`` selects counted tokens (only those rows
    are ever multiplied with the heads); ``kind``: ``reverse_kl`` ``KL(q || p)``, ``forward_kl``
    ``KL(p || q)``, ``jsd`` (generalized, ``beta`` as :func:`~kdlib.losses.divergences.generalized_jsd`).
    Gradients flow to the student hidden states, weight and bias; the teacher gets none.
    ``denom`` as :func:`~kdlib.losses.divergences.reduce_tokens` (global token count), divided
    once at the end; ``chunk_size`` rows per chunk (``None``: :data:`DEFAULT_CHUNK_SIZE`).
    """
    s_weight, s_bias = _weight_and_bias(student_head)
    t_weight, t_bias = _weight_and_bias(teacher_head)
    if s_weight.shape[0] != t_weight.shape[0]:
        raise ValueError(f"student vocabulary {s_weight.shape[0]} != teacher vocabulary {t_weight.shape[0]}")
    if student_hidden.dim() != 2 or teacher_hidden.shape[0] != student_hidden.shape[0]:
        raise ValueError(f"hidden states must be [N, D] with the same N, got {tuple(student_hidden.shape)} "
                         f"and {tuple(teacher_hidden.shape)}")
    if s_weight.shape[1] != student_hidden.shape[1] or t_weight.shape[1] != teacher_hidden.shape[1]:
        raise ValueError("a head's input width does not match its hidden states")
    _value_and_grad(kind, beta)  # validates kind and beta before any work
    chunk = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if chunk <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if mask is not None:
        if mask.shape != student_hidden.shape[:1]:
            raise ValueError(f"mask must be [N] = [{student_hidden.shape[0]}], got {tuple(mask.shape)}")
        keep = mask.bool().nonzero().squeeze(1)
        student_hidden, teacher_hidden = student_hidden[keep], teacher_hidden[keep]
    count = torch.tensor(float(student_hidden.shape[0])) if denom is None else torch.as_tensor(denom)
    t_bias = None if t_bias is None else t_bias.detach()
    return _ChunkedDivergence.apply(student_hidden, s_weight, s_bias, teacher_hidden.detach(), t_weight.detach(),
                                    t_bias, count.to(student_hidden.device), kind, beta, chunk)


def chunked_reverse_kl(student_hidden: Tensor, student_head: nn.Linear | Tensor, teacher_hidden: Tensor,
                       teacher_head: nn.Linear | Tensor, mask: Tensor | None = None, chunk_size: int | None = None,
                       denom: float | Tensor | None = None) -> Tensor:
    """MiniLLM's single-step term (:func:`~kdlib.losses.minillm.single_step_loss`) from hidden states."""
    return chunked_divergence(student_hidden, student_head, teacher_hidden, teacher_head, mask, "reverse_kl",
                              chunk_size=chunk_size, denom=denom)
