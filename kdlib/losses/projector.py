"""Projector alignment (core paper Eq. 4-5): match the student's visual tokens to the teacher's.

``z_T(x)`` and ``z_S(x; theta)`` are the outputs of the two vision-language projectors for the
same image: ``[B, N, D]`` (GeoChat: ``N = 1,296`` visual tokens, ``D = 5120`` for the 13B
teacher, ``4096`` for the 7B student). Eq. 4 prints ``L_align = -1/2 ||z_T - z_S||^2``; the minus
sign is a typo (Eq. 5's gradient ``-(z_S - z_T) dz_S/dtheta`` is the descent direction of
``+1/2 ||z_T - z_S||^2``), so the squared error is minimised.

Widths differ, so the teacher features go through a :class:`WidthMap` first (the paper does not
say how; Align-KD uses a 1x1 convolution ``4096 -> 2048`` on the teacher side, ``docs/methods.md`` §4).
"""

from __future__ import annotations

import torch
from torch import nn

from kdlib.losses.divergences import reduce_tokens

Tensor = torch.Tensor


class WidthMap(nn.Module):
    """Learned linear map between feature widths, ``[..., in_dim] -> [..., out_dim]``; identity when equal.

    Used teacher -> student for Eq. 4 (``WidthMap(5120, 4096)``) and student -> teacher for
    Switch-KD's visual switch. Initialised semi-orthogonal (norm-preserving) without bias, so
    that at step 0 the map neither shrinks nor inflates the features. Register it with the
    optimiser: Align-KD's adapters live outside the model and, as far as its code shows, are
    never updated (``docs/methods.md`` §4).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"WidthMap: widths must be positive, got {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.linear: nn.Module
        if in_dim == out_dim:
            self.linear = nn.Identity()
        else:
            self.linear = nn.Linear(in_dim, out_dim, bias=False)
            nn.init.orthogonal_(self.linear.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"WidthMap expects width {self.in_dim}, got features of shape {tuple(x.shape)}")
        return self.linear(x)


def projector_mse(student_feats: Tensor, teacher_feats: Tensor, width_map: WidthMap | None = None,
                  mask: Tensor | None = None) -> Tensor:
    """Eq. 4: ``L_align = mean_{b, n} 1/2 || A(z_T[b, n]) - z_S[b, n] ||_2^2`` (float32 scalar).

    Normalisation, exactly: squared differences are **summed over the feature axis**, halved,
    and **averaged over visual tokens** (``B N`` of them, or the tokens with ``mask [B, N]`` true).
    ``torch.nn.functional.mse_loss`` (Align-KD) also averages over the features, i.e. equals this
    loss times ``2 / D``. The teacher features are detached; ``A = width_map`` (required when
    widths differ) receives gradient.
    """
    if student_feats.shape[:-1] != teacher_feats.shape[:-1]:
        raise ValueError(f"student visual tokens {tuple(student_feats.shape)} and teacher visual tokens "
                         f"{tuple(teacher_feats.shape)} differ in number")
    target = teacher_feats.detach()
    if width_map is not None:
        target = width_map(target)
    if target.shape[-1] != student_feats.shape[-1]:
        raise ValueError(f"teacher width {target.shape[-1]} != student width {student_feats.shape[-1]}: "
                         f"pass width_map=WidthMap({teacher_feats.shape[-1]}, {student_feats.shape[-1]})")
    per_token = 0.5 * (target.float() - student_feats.float()).pow(2).sum(-1)
    return reduce_tokens(per_token, mask)
