"""Figures and summaries of training runs, read from their ``metrics.jsonl``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from kdlib.plots import LABEL_PT, panel_grid
from kdlib.train.metrics_log import TIMING_KEYS, read_metrics
from kdlib.train.validation import read_best

#: logged keys that are not loss terms
NOT_LOSSES = ("step", "lr", "grad_norm", "tokens", "generated_tokens", *TIMING_KEYS)
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


def logged_series(metrics: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of a key logged on some steps only (``val_loss``, ``grad_norm_<term>``, ...)."""
    rows = [(r["step"], r[key]) for r in read_metrics(metrics) if key in r]
    return np.array([s for s, _ in rows], dtype=int), np.array([v for _, v in rows], dtype=float)


@dataclass(frozen=True)
class TermGradients:
    """One term's logged gradient diagnostics (:mod:`kdlib.train.term_gradients`): at ``steps``, the norm
    of its weighted gradient and its cosine to the step's total gradient."""

    steps: np.ndarray
    norms: np.ndarray
    cosines: np.ndarray


def term_gradient_series(metrics: Path) -> dict[str, TermGradients]:
    """``{term: TermGradients}`` of every term with ``grad_norm_<term>`` logged, in :data:`TERM_TITLES`
    order; empty for a run that logged none (``train.grad_norm_every = 0``)."""
    records = read_metrics(metrics)
    names = {k.removeprefix("grad_norm_") for r in records for k in r if k.startswith("grad_norm_")}
    order = list(TERM_TITLES)
    out = {}
    for name in sorted(names, key=lambda k: (order.index(k) if k in order else len(order), k)):
        steps, norms = logged_series(metrics, f"grad_norm_{name}")
        out[name] = TermGradients(steps, norms, logged_series(metrics, f"grad_cos_{name}")[1])
    return out


def stage1_curves(metrics: Mapping[str, Path], window: int = 5) -> Figure:
    """LLaVA's stage 1 of each model (``{label: metrics}``) in one panel: the cross-entropy of the
    description tokens per step (thin) and its running mean over ``window`` steps (thick)."""
    fig, (ax,) = panel_grid(1, 1, 3.0)
    for i, (label, path) in enumerate(metrics.items()):
        colour = f"C{i}"
        ce = loss_terms(path)["ce"]
        steps = np.arange(1, len(ce) + 1)
        ax.plot(steps, ce, lw=0.8, alpha=0.4, color=colour)
        ax.plot(steps, running_mean(ce, window), lw=2.0, color=colour, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("Stage 1: the projector alone, on image descriptions", fontsize=LABEL_PT + 1)
    ax.legend(fontsize=LABEL_PT)
    ax.grid(alpha=0.3)
    return fig


def validation_curves(metrics: Mapping[str, Path], window: int = 5) -> Figure:
    """One panel per run (``{label: metrics}``, each with ``val_loss`` logged): its training loss
    (per step, thin, and running mean over ``window`` steps) beside its validation loss, and the step
    whose weights the run kept (:func:`~kdlib.train.validation.read_best`) marked."""
    fig, axes = panel_grid(len(metrics), 2, 2.8)
    for ax, (label, path) in zip(axes, metrics.items()):
        train = loss_terms(path)["loss"]
        steps = np.arange(1, len(train) + 1)
        ax.plot(steps, train, lw=0.8, alpha=0.3, color="C0")
        ax.plot(steps, running_mean(train, window), lw=2.0, color="C0", label="train")
        val_steps, val = logged_series(path, "val_loss")
        ax.plot(val_steps, val, "o-", ms=4, lw=1.5, color="C1", label="validation")
        best = read_best(path.parent)
        if best is None:
            raise ValueError(f"{path.parent}: val_loss is logged but no best.json says which step was kept")
        ax.axvline(best[0], ls="--", lw=1.0, color="0.3")
        ax.plot([best[0]], [best[1]], "*", ms=12, color="C1", label=f"kept: step {best[0]}")
        ax.set_title(label, fontsize=LABEL_PT + 1)
        ax.set_xlabel("step")
        ax.legend(fontsize=LABEL_PT)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss (nats / token)")
    return fig


def gradient_panels(series: Mapping[str, TermGradients]) -> Figure:
    """Which term steers the update: each term's gradient norm (log scale) and its cosine to the total
    gradient against the distillation step, one line per term (:func:`term_gradient_series`)."""
    fig, (norm_ax, cos_ax) = panel_grid(2, 2, 3.0)
    for i, (name, s) in enumerate(series.items()):
        colour = f"C{i}"
        label = TERM_TITLES.get(name, name)
        shown = s.norms > 0  # a zero gradient (no path to the parameters) has no place on a log scale
        norm_ax.plot(s.steps[shown], s.norms[shown], "o-", ms=3, lw=1.2, color=colour, label=label)
        cos_ax.plot(s.steps, s.cosines, "o-", ms=3, lw=1.2, color=colour, label=label)
    norm_ax.set_yscale("log")
    norm_ax.set_title("gradient norm of each term", fontsize=LABEL_PT + 1)
    cos_ax.set_title("cosine to the total gradient", fontsize=LABEL_PT + 1)
    cos_ax.axhline(0.0, lw=0.8, color="0.5")
    cos_ax.set_ylim(-1.05, 1.05)
    for ax in (norm_ax, cos_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.legend(*norm_ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=LABEL_PT)
    return fig
