"""BiLD / DBiLD against a loop reference, Kneedle, the visual-switch input."""

from __future__ import annotations

import itertools

import pytest
import torch

from kdlib.losses.projector import WidthMap
from kdlib.losses.switch_kd import _logit_difference_kl, bild, dbild, kneedle_k, switch_pair, visual_switch_inputs


def _reference_bild_token(zs: torch.Tensor, zt: torch.Tensor, k: int, tau: float) -> float:
    """One token, one loop per direction: KL(softmax(d_T) || softmax(d_S)) over ordered top-k pairs."""
    total = 0.0
    for selector in (zt, zs):
        idx = selector.argsort(descending=True)[:k].tolist()
        pairs = list(itertools.combinations(range(k), 2))
        dt = torch.tensor([(zt[idx[i]] - zt[idx[j]]) / tau for i, j in pairs])
        ds = torch.tensor([(zs[idx[i]] - zs[idx[j]]) / tau for i, j in pairs])
        p, lq = dt.softmax(0), ds.log_softmax(0)
        total += float((p * (p.log() - lq)).sum())
    return total


def test_bild_matches_loop_reference() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 20, generator=g) * 3, torch.randn(2, 3, 20, generator=g) * 3
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    ref = sum(_reference_bild_token(s[b, i], t[b, i], 5, 3.0) for b, i in mask.nonzero().tolist()) / mask.sum()
    assert bild(s, t, mask, k=5, temperature=3.0).item() == pytest.approx(float(ref), rel=1e-5)


def test_bild_invariances() -> None:
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 4, 12, generator=g), torch.randn(2, 4, 12, generator=g)
    assert bild(t, t, k=6).item() == pytest.approx(0.0, abs=1e-7)
    # only logit differences matter: a per-token shift of either model changes nothing
    shift = torch.randn(2, 4, 1, generator=g) * 10
    assert torch.allclose(bild(s + shift, t, k=6), bild(s, t, k=6), atol=1e-5)
    # k = V with the same ranking in both models (t = 2 s): teacher-led and student-led terms coincide
    t_same = s * 2.0
    led = [_logit_difference_kl(s, t_same, sel, 12, 3.0, False, False, 2) for sel in (t_same, s)]
    assert (led[0] > 0).all() and torch.allclose(led[0], led[1], atol=1e-6)
    assert torch.allclose(bild(s, t_same, k=12), 2 * led[0].mean(), atol=1e-6)
    # ... while with different rankings they differ
    led = [_logit_difference_kl(s, t, sel, 12, 3.0, False, False, 2) for sel in (t, s)]
    assert not torch.allclose(led[0], led[1])


def test_kneedle_finds_the_head_of_a_step() -> None:
    head_tail = torch.tensor([[9.0, 8.8, 8.9, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]]).sort(-1, descending=True).values
    assert kneedle_k(head_tail).tolist() == [4]  # the 3 head values plus the knee point
    assert kneedle_k(torch.ones(1, 10), k_min=3).tolist() == [3]  # flat: no knee
    assert kneedle_k(torch.ones(1, 10), k_min=3, reading="dbild_code").tolist() == [3]
    with pytest.raises(ValueError, match="kneedle reading"):
        kneedle_k(head_tail, reading="kneedle")


def test_kneedle_readings_on_a_gaussian_logit_cloud() -> None:
    """Top 256 of 32,000 Gaussian logits: convex and decreasing, so the knee lies below the chord."""
    logits = torch.randn(64, 32000, generator=torch.Generator().manual_seed(3)).topk(256, -1).values
    v = (logits - logits[:, -1:]) / (logits[:, :1] - logits[:, -1:])
    chord = 1 - torch.linspace(0, 1, 256)
    knee, code = kneedle_k(logits, k_min=1), kneedle_k(logits, k_min=1, reading="dbild_code")
    assert torch.equal(knee, (chord - v).argmax(-1) + 1) and torch.equal(code, (v - chord).argmax(-1) + 1)
    assert (chord - v).gather(1, knee[:, None] - 1).min() > 0  # below the chord
    assert code.float().mean() < knee.float().mean() / 3  # the code's sign keeps a much shorter head


def test_switch_pair_readings() -> None:
    g = torch.Generator().manual_seed(4)
    s, t, w = (torch.randn(3, 10, generator=g, requires_grad=True) for _ in range(3))
    trained, ref = switch_pair(s, t, w)
    assert trained is w and torch.equal(ref, t) and not ref.requires_grad
    trained, ref = switch_pair(s, t, w, "student_to_switched")
    assert trained is s and torch.equal(ref, w) and not ref.requires_grad
    dbild(*switch_pair(s, t, w, "student_to_switched"), k_max=8, k_min=2).backward()
    assert s.grad is not None and w.grad is None  # the switched logits are only a reference
    with pytest.raises(ValueError, match="switch direction"):
        switch_pair(s, t, w, "both")


def test_dbild_with_fixed_k_equals_bild_forward() -> None:
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 3, 16, generator=g), torch.randn(2, 3, 16, generator=g)
    # k_min = k_max forces k, and the forward direction makes DBiLD = BiLD
    assert torch.allclose(dbild(s, t, k_max=6, k_min=6, temperature=3.0, reverse=False), bild(s, t, k=6), atol=1e-6)
    assert not torch.allclose(dbild(s, t, k_max=16, k_min=2), dbild(s, t, k_max=16, k_min=2, kneedle="dbild_code"))
    value = dbild(s.requires_grad_(), t, k_max=8, k_min=2)
    (grad,) = torch.autograd.grad(value, s)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_visual_switch_inputs_places_mapped_tokens_and_passes_gradient() -> None:
    emb = torch.randn(2, 6, 8)
    img = torch.zeros(2, 6, dtype=torch.bool)
    img[0, 1:4] = True
    img[1, 2:5] = True
    vis = torch.randn(2, 3, 5, requires_grad=True)
    wm = WidthMap(5, 8)
    out = visual_switch_inputs(emb, img, vis, wm)
    assert torch.allclose(out[~img], emb[~img])
    assert torch.allclose(out[1, 2:5], wm(vis[1]), atol=1e-6)
    out.sum().backward()
    assert vis.grad is not None and wm.linear.weight.grad is not None
    with pytest.raises(ValueError, match="exactly N"):
        visual_switch_inputs(emb, torch.zeros_like(img), vis, wm)
