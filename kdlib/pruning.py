"""Visual-token reduction of GeoLLaVA-8K (arXiv 2505.21375; code MiliLab/GeoLLaVA-8K, ``docs/methods.md`` §6).

Remote-sensing images are mostly background (sea, forest, fields). GeoLLaVA-8K shrinks each
tile's ``24 x 24 = 576`` CLIP tokens to 24 in two steps:

1. **Background token pruning** = merging homogeneous regions (``longva/model/regproxy.py``):
   every patch scores its ``3 x 3`` neighbourhood (``RegProxyAffinityHead``: softmax over 9
   slots), its *parent* is the best-scoring slot (``cluster_tokens_by_parent``), pointer
   jumping ``root <- root[root]`` (12 rounds at the call site) turns parent links into cluster
   roots, and every cluster is replaced by the mean of its tokens
   (``compute_cluster_centers_batched``). A uniform area collapses into one token.
2. **Anchored token selection** (``RegProxyAffinityHead.clustering``): score each cluster
   centre with the CLS token as the anchor, ``s_c = <W_q cls, W_k c> / sqrt(D)``, keep the top
   ``k`` (24) and restore spatial order.

Without a trained affinity head, :func:`similarity_affinity` stands in for it (our choice): a
neighbour is *homogeneous* when its cosine similarity is at least ``threshold``, and a patch's
parent is its first homogeneous neighbour among those that precede it in row-major order, else
itself. Raw similarities would not do: an argmax over noisy similarities links each patch to its
nearest neighbour and fragments a flat region into many small trees (one per mutually nearest
pair); preceding-only links make the parent graph acyclic and keep a homogeneous region whole.
Parent choice is an ``argmax``, so no gradient reaches the affinity scores through this path
(as in the code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
#: the 3 x 3 neighbourhood in row-major order; slot 4 is the patch itself
OFFSETS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
SELF_SLOT = 4


@dataclass(frozen=True)
class TokenClusters:
    """Result of :func:`background_prune`; cluster slots are indexed by their root patch."""

    centers: Tensor  # [B, N, D] mean token of the cluster rooted at each patch (0 for non-roots)
    counts: Tensor  # [B, N] tokens per cluster (0: the patch is not a root, an empty slot)
    labels: Tensor  # [B, N] root patch of every patch

    @property
    def num_clusters(self) -> Tensor:
        """Non-empty clusters per sample, ``[B]``."""
        return (self.counts > 0).sum(1)


def neighbour_index(grid: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """``[N, 9]`` flat indices of each patch's 3 x 3 neighbours (row-major), clamped at the borders."""
    h, w = grid
    r = torch.arange(h, device=device)[:, None, None]
    c = torch.arange(w, device=device)[None, :, None]
    dr = torch.tensor([o[0] for o in OFFSETS], device=device)
    dc = torch.tensor([o[1] for o in OFFSETS], device=device)
    return ((r + dr).clamp(0, h - 1) * w + (c + dc).clamp(0, w - 1)).view(h * w, 9)


def similarity_affinity(tokens: Tensor, grid: tuple[int, int], threshold: float = 0.9) -> Tensor:
    """Affinity ``[B, N, 9]`` whose argmax is the first homogeneous preceding neighbour, else the patch itself.

    Slot scores: ``2 - slot / 8`` for a neighbour with a smaller flat index and cosine similarity
    ``>= threshold`` (earlier slots win), 1 for the patch itself, 0 otherwise.
    """
    nbr = neighbour_index(grid, tokens.device)
    unit = F.normalize(tokens.float(), dim=-1)
    sim = torch.einsum("bnd,bnkd->bnk", unit, unit[:, nbr])
    earlier = nbr < torch.arange(nbr.shape[0], device=nbr.device)[:, None]
    rank = 2.0 - torch.arange(9, device=nbr.device) / 8.0
    score = torch.where((sim >= threshold) & earlier, rank, torch.zeros((), device=nbr.device))
    score[..., SELF_SLOT] = 1.0
    return score


def _as_batch(tokens: Tensor) -> Tensor:
    if tokens.dim() == 2:
        return tokens.unsqueeze(0)
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be [N, D] or [B, N, D], got {tuple(tokens.shape)}")
    return tokens


def cluster_roots(parent: Tensor, max_iters: int = 12) -> Tensor:
    """Pointer jumping on parent links ``[B, N]`` -> root of every patch ``[B, N]``.

    Mutual parents (``a -> b -> a``, two patches each other's best neighbour) would flip forever;
    the smaller index becomes the root. Chains up to ``2^max_iters`` long are resolved.
    """
    idx = torch.arange(parent.shape[1], device=parent.device).expand_as(parent)
    mutual = (parent.gather(1, parent) == idx) & (parent != idx)
    roots = torch.where(mutual & (idx < parent), idx, parent)
    for _ in range(max_iters):
        nxt = roots.gather(1, roots)
        if torch.equal(nxt, roots):
            break
        roots = nxt
    return roots


def background_prune(tokens: Tensor, grid: tuple[int, int], affinity: Tensor | None = None,
                     threshold: float = 0.9, max_iters: int = 12) -> TokenClusters:
    """Merge homogeneous neighbouring patches into cluster means (GeoLLaVA-8K background pruning).

    ``tokens [N, D]`` or ``[B, N, D]`` in row-major patch order with ``N = h w`` for
    ``grid = (h, w)``; ``affinity [B, N, 9]`` scores of the 3 x 3 slots (:data:`OFFSETS`), e.g. a
    RegProxy head's softmax; ``None`` uses :func:`similarity_affinity` with ``threshold``.
    Parent = best slot (first one on ties, so a uniform image chains to patch 0).
    """
    x = _as_batch(tokens)
    b, n, d = x.shape
    if grid[0] * grid[1] != n:
        raise ValueError(f"grid {grid} has {grid[0] * grid[1]} patches but there are {n} tokens")
    aff = similarity_affinity(x, grid, threshold) if affinity is None else _as_batch(affinity)
    if aff.shape != (b, n, 9):
        raise ValueError(f"affinity must be [B, N, 9] = {(b, n, 9)}, got {tuple(aff.shape)}")
    parent = neighbour_index(grid, x.device)[torch.arange(n, device=x.device), aff.argmax(-1)]
    labels = cluster_roots(parent, max_iters)
    sums = torch.zeros_like(x, dtype=torch.float32).scatter_add_(1, labels[..., None].expand(-1, -1, d), x.float())
    counts = torch.zeros(b, n, device=x.device).scatter_add_(1, labels, torch.ones(b, n, device=x.device))
    centers = (sums / counts.clamp_min(1.0)[..., None]).to(x.dtype)
    return TokenClusters(centers, counts, labels)


def anchored_select(cluster_tokens: Tensor, anchor: Tensor, k: int, counts: Tensor | None = None,
                    query: torch.nn.Module | None = None, key: torch.nn.Module | None = None) -> tuple[Tensor, Tensor]:
    """Keep the ``k`` cluster tokens most relevant to the anchor (CLS), in spatial order.

    ``cluster_tokens [B, N, D]`` (or ``[N, D]``), ``anchor [B, D]`` (or ``[D]``),
    ``s_c = <query(anchor), key(c)> / sqrt(D)`` (GeoLLaVA uses the vision layer's ``q_proj`` and
    ``v_proj``; identity when not given), empty slots (``counts == 0``) scored ``-inf`` and so
    taken only when fewer than ``k`` clusters exist. Returns ``(tokens [B, k, D], index [B, k])``
    with indices increasing (row-major = spatial order).
    """
    c = _as_batch(cluster_tokens)
    a = anchor.reshape(c.shape[0], -1)
    if not 0 < k <= c.shape[1]:
        raise ValueError(f"k = {k} must be in [1, {c.shape[1]}]")
    q = a if query is None else query(a)
    kk = c if key is None else key(c)
    scores = torch.einsum("bd,bnd->bn", q.float(), kk.float()) / kk.shape[-1] ** 0.5
    if counts is not None:
        scores = scores.masked_fill(counts.reshape(scores.shape) <= 0, float("-inf"))
    index = scores.topk(k, dim=1).indices.sort(dim=1).values
    picked = c.gather(1, index[..., None].expand(-1, -1, c.shape[-1]))
    return picked, index
