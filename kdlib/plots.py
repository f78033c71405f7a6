"""Figures of the book. Each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.patches import Polygon as MplPolygon
from PIL import Image


def subplots(*args, figsize=None, layout=None, **kwargs):
    """``plt.subplots`` without pyplot: the inline backend does not also show the figure at the end
    of a cell (the book shows it once, through glue), and no GUI backend is needed."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


PAGE_WIDTH = 7.0
"""Inches: a figure drawn this wide (700 px at 100 dpi) is shown at full size in the book's ~700 px
column, so a 9-pt label stays 9 pt. Multi-panel figures wrap into rows instead of growing wider."""
LABEL_PT = 9
"""The smallest font of any label (ticks, titles, legends) in the book's figures."""


def panel_grid(n: int, cols: int, panel_height: float, **kwargs) -> tuple[Figure, list[Axes]]:
    """``n`` panels, ``cols`` per row, in a figure :data:`PAGE_WIDTH` wide; unused cells hidden.

    Returns the figure and the ``n`` axes in reading order.
    """
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=(PAGE_WIDTH, rows * panel_height), squeeze=False,
                         layout="constrained", **kwargs)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def image_grid(images: Sequence[Path], titles: Sequence[str], cols: int = 4, size: float = 1.6) -> Figure:
    """Images in a grid, each with its title (e.g. its class); at most four per row at page width
    (``size`` is kept for callers and ignored: the page width sets the panel size)."""
    cols = min(cols, 4)
    fig, axes = panel_grid(len(images), cols, PAGE_WIDTH / min(cols, len(images)) * 1.15)
    for ax, path, title in zip(axes, images, titles):
        ax.set_axis_off()
        with Image.open(path) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_title(title, fontsize=LABEL_PT)
    return fig


def count_bars(counts: Mapping[str, Mapping[str, int]], xlabel: str = "images") -> Figure:
    """One horizontal bar chart per dataset: ``{dataset: {class: count}}``."""
    fig, axes = panel_grid(len(counts), 1, 0.17 * max(map(len, counts.values())) + 1)
    for ax, (name, per_class) in zip(axes, counts.items()):
        labels = list(per_class)
        values = [per_class[k] for k in labels]
        ax.barh(labels, values, color="tab:blue")
        ax.invert_yaxis()
        ax.tick_params(labelsize=LABEL_PT)
        balance = f"every class {values[0]}" if len(set(values)) == 1 else f"{min(values)} to {max(values)} per class"
        ax.set_title(f"{name}: {sum(values)} {xlabel}, {balance}", fontsize=LABEL_PT + 1)
        ax.set_xlabel(xlabel)
    return fig



TRUTH_COLOUR = "#ffd600"
"""Ground-truth boxes (yellow)."""
PREDICTION_COLOUR = "#d500f9"
"""Predicted boxes (magenta)."""


@dataclass(frozen=True)
class BoxPanel:
    """One image with its ground-truth and predicted boxes (pixel corners) and each prediction's IoU."""

    image: Path
    truth: Sequence[Sequence[tuple[float, float]]]
    predicted: Sequence[Sequence[tuple[float, float]]]
    ious: Sequence[float]
    title: str = ""


def confusion_panels(matrices: Mapping[str, pd.DataFrame], max_annotated: int = 21, size: float = 5.0) -> Figure:
    """Row-normalised confusion matrices side by side on one fixed 0-1 colour scale.

    ``matrices``: ``{title: counts}`` with true classes as rows and predicted classes as columns
    (:func:`kdlib.evaluate.report.confusion_from_answers`). Each row is divided by its sum, so
    the diagonal holds per-class recall. Cell values are written when a matrix has at most
    ``max_annotated`` classes; one colour bar serves every panel.
    """
    fig, axes = panel_grid(len(matrices), 1, PAGE_WIDTH * 0.92)  # one model per row, square panels
    image = None
    for ax, (title, counts) in zip(axes, matrices.items()):
        totals = counts.sum(axis=1)
        rates = counts.div(totals.where(totals > 0, 1), axis=0).to_numpy(dtype=float)
        image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
        ax.set_xticks(range(rates.shape[1]), [str(c) for c in counts.columns], rotation=90, fontsize=LABEL_PT)
        ax.set_yticks(range(rates.shape[0]), [str(c) for c in counts.index], fontsize=LABEL_PT)
        ax.set_xlabel("predicted", fontsize=LABEL_PT + 1)
        ax.set_ylabel("true", fontsize=LABEL_PT + 1)
        ax.set_title(title, fontsize=LABEL_PT + 2)
        if len(counts.index) <= max_annotated:
            for (r, c), value in np.ndenumerate(rates):
                if value > 0:
                    ax.text(c, r, f"{value:.2f}".lstrip("0"), ha="center", va="center", fontsize=7,
                            color="white" if value > 0.6 else "black")
    for ax in axes:
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def box_grid(panels: Sequence[Sequence[BoxPanel]], column_titles: Sequence[str] = ()) -> Figure:
    """Rows of images with ground-truth (yellow) and predicted (magenta) rotated boxes.

    Each predicted box is labelled with its IoU against the best-matching ground-truth box; a
    panel without a parsable prediction says so.
    """
    rows, cols = len(panels), max(len(row) for row in panels)
    size = PAGE_WIDTH / cols  # square panels filling the page width
    fig, axes = subplots(rows, cols, figsize=(PAGE_WIDTH, rows * size * 1.08), squeeze=False,
                         layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            _draw_boxes(axes[r, c], panel)
    for ax, title in zip(axes[0], column_titles):
        ax.set_title(f"{title}\n{ax.get_title()}", fontsize=8)
    return fig


def _draw_boxes(ax: Axes, panel: BoxPanel) -> None:
    with Image.open(panel.image) as im:
        ax.imshow(im.convert("RGB"))
    for quad in panel.truth:
        ax.add_patch(MplPolygon(quad, closed=True, fill=False, edgecolor=TRUTH_COLOUR, linewidth=1.5))
    for quad, iou in zip(panel.predicted, panel.ious):
        ax.add_patch(MplPolygon(quad, closed=True, fill=False, edgecolor=PREDICTION_COLOUR, linewidth=1.5))
        x, y = min(p[0] for p in quad), min(p[1] for p in quad)
        ax.text(x, y, f"IoU {iou:.2f}", fontsize=6, color="white", va="bottom",
                bbox={"facecolor": PREDICTION_COLOUR, "edgecolor": "none", "pad": 1})
    note = "" if panel.predicted else " (no box)"
    ax.set_title(f"{panel.title}{note}", fontsize=7)


LAYER_PANELS = (("adjacent_cosine", "(a) adjacent layers: cosine", "layer"),
                ("vision_text_cosine", "(b) vision vs text: cosine", "hidden state (0 = embeddings)"),
                ("vision_text_distance", "(c) vision vs text: normalised distance", "hidden state (0 = embeddings)"))
"""Align-KD Fig. 2 panels: measure, title, x label."""


def layer_similarity_panels(frame: pd.DataFrame, labels: Mapping[str, str] | None = None) -> Figure:
    """Align-KD Fig. 2 (a-c): one panel per measure, one line per model.

    ``frame``: :func:`kdlib.analysis.layers.profile_frame` (``model, measure, index, depth, value``).
    Panel (a) puts layer ``l`` (1-based) at ``x = l``; (b) and (c) put hidden state ``l`` at ``x = l``
    (0 = the input embeddings), so models of different depth share one axis.
    """
    labels = labels or {}
    fig, axes = panel_grid(len(LAYER_PANELS), 1, 2.8)
    for ax, (measure, title, xlabel) in zip(axes, LAYER_PANELS):
        part = frame[frame["measure"] == measure]
        for model, rows in part.groupby("model", sort=False):
            x = rows["index"] + (1 if measure == "adjacent_cosine" else 0)
            ax.plot(x, rows["value"], marker="o", label=labels.get(model, model))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=LABEL_PT)
    return fig


def metrics_vs_tokens(frame: pd.DataFrame, metrics: Mapping[str, str], total: int | None = None,
                      reference: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """One panel per metric against the visual tokens kept (log2 axis), one line per task.

    ``frame``: rows with ``keep``, ``task`` and each metric column
    (:func:`kdlib.analysis.pruning_eval.pruning_sweep`); ``metrics``: ``{column: axis label}``;
    ``total``: the unpruned token count (dotted vertical line); ``reference``: ``{column: {task:
    value}}`` drawn as dashed horizontal lines in the task's colour (e.g. chance accuracy).
    """
    fig, axes = panel_grid(len(metrics), 1, 3.4)
    ticks = sorted(frame["keep"].unique())
    for ax, (column, label) in zip(axes, metrics.items()):
        for task, rows in frame.groupby("task", sort=False):
            rows = rows.sort_values("keep")
            (line,) = ax.plot(rows["keep"], rows[column], marker="o", label=task)
            value = (reference or {}).get(column, {}).get(task)
            if value is not None:
                ax.axhline(value, color=line.get_color(), linestyle="--", linewidth=0.8, label=f"{task}: chance")
        if total:
            ax.axvline(total, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("visual tokens kept per image")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=LABEL_PT)
    return fig


def ratio_bars(ratios: Mapping[str, Mapping[str, float]]) -> Figure:
    """Horizontal bars of student / teacher ratios, one per ``(series, quantity)`` of
    ``{series: {quantity: ratio}}``, coloured by series; a line at 1 marks parity."""
    labels, values, colours = [], [], []
    for i, (series, quantities) in enumerate(ratios.items()):
        for quantity, value in quantities.items():
            labels.append(quantity)
            values.append(value)
            colours.append(f"C{i}")
    fig, ax = subplots(figsize=(7, 0.35 * len(labels) + 1.2), layout="constrained")
    y = np.arange(len(labels))
    ax.barh(y, values, color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("student / teacher")
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=f"C{i}", label=series) for i, series in enumerate(ratios)]
    ax.legend(handles=handles, fontsize=8)
    return fig


def seed_panels(table: pd.DataFrame) -> Figure:
    """One panel per task of :func:`kdlib.chapters.seeds.seed_table`: each model's mean over seeds as a
    bar with its 95% interval as the table shows it (cut to the metric's range; no bar for one seed),
    the paper's value as a red cross."""
    tasks = list(dict.fromkeys(table.index.get_level_values("task")))
    fig, axes = panel_grid(len(tasks), 2, 3.4)
    for ax, task in zip(axes, tasks):
        part = table.loc[task]
        x = np.arange(len(part))
        err = np.stack([part["mean"] - part["95% CI low"], part["95% CI high"] - part["mean"]])
        ax.bar(x, part["mean"], yerr=np.nan_to_num(err), capsize=4, color="#8fb3d9", label="kdlib, mean")
        ax.scatter(x, part["paper"], marker="x", color="#b22222", zorder=3, label="paper")
        ax.set_xticks(x, part.index, rotation=30, ha="right", fontsize=LABEL_PT)
        ax.set_title(f"{task} {part['metric'].iloc[0]}", fontsize=LABEL_PT + 1)
        ax.set_ylabel("%")
    axes[0].legend(fontsize=LABEL_PT)
    return fig


def curve_panels(table: pd.DataFrame, tasks: Mapping[str, str], chance: Mapping[str, float]) -> Figure:
    """A learning curve (:mod:`kdlib.analysis.learning_curve`) against CPU-hours: one panel with each task's
    metric (``{task: label}``), its 95 % interval as a band and its chance level dashed; one panel with
    the validation loss where it was logged."""
    fig, (acc, val) = panel_grid(2, 2, 3.0)
    hours = table["cpu_hours"].to_numpy(float)
    for i, (task, label) in enumerate(tasks.items()):
        color = f"C{i}"
        acc.plot(hours, table[task].to_numpy(float), "o-", ms=4, color=color, label=label)
        if f"{task} lo" in table:
            acc.fill_between(hours, table[f"{task} lo"].to_numpy(float), table[f"{task} hi"].to_numpy(float),
                             color=color, alpha=0.2, lw=0)
        if task in chance:
            acc.axhline(chance[task], ls="--", lw=1.0, color=color)
    acc.set_xlabel("CPU-hours of training steps")
    acc.set_ylabel("test accuracy (%)")
    acc.set_title("Test accuracy (dashed: chance)", fontsize=LABEL_PT + 1)
    acc.legend(fontsize=LABEL_PT)
    logged = table["val_loss"].notna()
    val.plot(hours[logged.to_numpy()], table.loc[logged, "val_loss"].to_numpy(float), "o-", ms=4, color="C3")
    val.set_xlabel("CPU-hours of training steps")
    val.set_ylabel("loss (nats / token)")
    val.set_title("Validation loss", fontsize=LABEL_PT + 1)
    for ax in (acc, val):
        ax.grid(alpha=0.3)
    return fig
