"""Which term of the objective steers the update: per-term gradient norms and their cosine to the total.

For an objective ``L = sum_i c_i L_i`` (e.g. the core paper's Eq. 10: projector MSE, single-step and
long-term reverse KL, LM loss) and trainable parameters ``theta``, the loop logs, on the steps it
is asked to (``cfg.grad_norm_every``), before clipping,

``grad_norm_<i> = || d (c_i L_i) / d theta ||_2``  and
``grad_cos_<i> = <g_i, g> / (||g_i|| ||g||)``, with ``g = sum_i g_i`` the step's total gradient,

so ``grad_norm_<i> * grad_cos_<i>`` is term ``i``'s share of the projection of the update direction
(they sum to ``||g||``). ``g_i`` needs one more forward per micro-batch and one backward per term
(:func:`torch.autograd.grad`, so the accumulated ``.grad`` of the step is untouched).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from accelerate import Accelerator
from torch import Tensor, nn


def term_gradients(module: nn.Module, micros: Sequence[dict[str, Any]], names: Sequence[str],
                   weights: dict[str, float], params: Sequence[nn.Parameter],
                   accelerator: Accelerator) -> dict[str, list[Tensor]]:
    """``{term: [d (c_term L_term) / d p for p in params]}`` summed over ``micros``, averaged over processes."""
    grads = {name: [torch.zeros_like(p) for p in params] for name in names}
    for micro in micros:
        with accelerator.no_sync(module):
            terms = module(micro)
        for i, name in enumerate(names):
            value = weights.get(name, 1.0) * terms[name]
            if not value.requires_grad:  # a term with no path to the trainable parameters
                continue
            parts = torch.autograd.grad(value, params, retain_graph=i < len(names) - 1, allow_unused=True)
            for acc, part in zip(grads[name], parts):
                if part is not None:
                    acc += part.detach()
    if accelerator.num_processes > 1:
        grads = {name: [accelerator.reduce(g, reduction="mean") for g in gs] for name, gs in grads.items()}
    return grads


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def term_gradient_stats(grads: dict[str, list[Tensor]], total: Sequence[Tensor]) -> dict[str, float]:
    """``grad_norm_<term>`` and ``grad_cos_<term>`` (cosine to ``total``; 0 for a zero gradient)."""
    total_norm = _dot(total, total) ** 0.5
    out: dict[str, float] = {}
    for name, g in grads.items():
        norm = _dot(g, g) ** 0.5
        out[f"grad_norm_{name}"] = norm
        out[f"grad_cos_{name}"] = _dot(g, total) / (norm * total_norm) if norm > 0 and total_norm > 0 else 0.0
    return out
