"""Figures and summaries of training runs, read from their ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kdlib.plots import LABEL_PT, panel_grid
from kdlib.train.metrics_log import TIMING_KEYS, read_metrics

#: logged keys that are not loss terms
NOT_LOSSES = ("step", "lr", "grad_norm", "tokens", *TIMING_KEYS)
#: logged on some steps only: validation loss, per-term gradient norms and cosines
NOT_LOSS_PREFIXES = ("val_", "grad_norm_", "grad_cos_")

#: what each term is, for panel titles
TERM_TITLES = {
    "loss": "total loss", "ce": "cross-entropy (SFT)", "align": "projector MSE (Eq. 4)",
    "single": "single-step reverse KL (Eq. 8)", "long": "long-term PPO term (Eq. 8-9)", "lm": "LM loss on D_PT (Eq. 7)",
    "forward_kl": "token forward KL", "reverse_kl": "token reverse KL", "logit": "logit reverse KL",
    "visual": "enhanced projector MSE", "attention": "first-layer attention MSE", "dbild": "DBiLD (teacher)",
    "switch": "DBiLD (visual switch)",
}


def loss_terms(metrics: Path) -> dict[str, np.ndarray]:
    """``{term: values by step}``: the total (``loss``), then every logged term in :data:`TERM_TITLES` order."""
    records = read_metrics(metrics)
    if not records:
        raise ValueError(f"{metrics}: no complete step logged")
    order = list(TERM_TITLES)
    names = sorted((k for k in records[0] if k not in NOT_LOSSES and not k.startswith(NOT_LOSS_PREFIXES)),
                   key=lambda k: (order.index(k) if k in order else len(order), k))
    return {k: np.array([r[k] for r in records], dtype=float) for k in names}


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``min(window, t + 1)`` values at every step ``t``."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    t = np.arange(1, len(values) + 1)
    start = np.maximum(t - window, 0)
    return (csum[t] - csum[start]) / (t - start)


def final_losses(metrics: Path, last: int = 5) -> dict[str, float]:
    """Each term averaged over the last ``last`` steps (one step is noisy at a small batch)."""
    return {k: float(v[-last:].mean()) for k, v in loss_terms(metrics).items()}


def loss_curves(metrics: Path, title: str, window: int = 5) -> Figure:
    """One panel per term: per-step values (thin) and their running mean over ``window`` steps (thick).

    A run with a single term (SFT) gets one panel, that term (the total equals it).
    """
    terms = loss_terms(metrics)
    if len(terms) == 2:
        terms.pop("loss")
    steps = np.arange(1, len(next(iter(terms.values()))) + 1)
    fig, axes = panel_grid(len(terms), 2, 2.6)  # two per row: labels keep their size at page width
    for ax, (name, values) in zip(axes, terms.items()):
        ax.plot(steps, values, lw=0.8, alpha=0.4, color="tab:blue")
        ax.plot(steps, running_mean(values, window), lw=2.0, color="tab:blue")
        ax.set_title(TERM_TITLES.get(name, name), fontsize=LABEL_PT + 1)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=LABEL_PT + 2)
    return fig
