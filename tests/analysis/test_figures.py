"""The chapter figures draw what they are given (kdlib.plots functions of the analysis chapters)."""

from __future__ import annotations

import pandas as pd

from kdlib.analysis.layers import profile_frame
from kdlib.plots import layer_similarity_panels, metrics_vs_tokens, ratio_bars


def test_layer_similarity_panels_one_line_per_model():
    profiles = {m: {"adjacent_cosine": [0.3] * n, "vision_text_cosine": [0.5] * (n + 1),
                    "vision_text_distance": [0.2] * (n + 1)} for m, n in (("teacher", 4), ("student", 2))}
    fig = layer_similarity_panels(profile_frame(profiles), {"teacher": "T"})
    assert len(fig.axes) == 3
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2, 3, 4]  # layers are 1-based in panel (a)
    assert list(fig.axes[1].lines[1].get_xdata()) == [0, 1, 2]  # hidden states from the embeddings
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "T"


def test_metrics_vs_tokens_and_ratio_bars():
    frame = pd.DataFrame({"keep": [64, 8, 64, 8], "task": ["a", "a", "b", "b"], "OA": [50, 40, 20, 10],
                          "answer_nll": [1.0, 1.5, 2.0, 2.5]})
    fig = metrics_vs_tokens(frame, {"OA": "OA", "answer_nll": "NLL"}, total=64, reference={"OA": {"a": 5.0}})
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 2 + 1 + 1  # two tasks, one chance line, the full-count line
    assert list(fig.axes[1].lines[0].get_xdata()) == [8, 64]
    bars = ratio_bars({"counted": {"params": 0.5, "FLOPs": 0.4}, "measured": {"answer time": 0.7}})
    assert len(bars.axes[0].patches) == 3
    assert [t.get_text() for t in bars.axes[0].get_yticklabels()] == ["params", "FLOPs", "answer time"]


def test_multi_panel_figures_fit_the_page_column_with_readable_labels():
    """Every panel grid is PAGE_WIDTH wide (shown unscaled in a ~700 px column) and wraps into rows."""
    import pandas as pd

    from kdlib.plots import LABEL_PT, PAGE_WIDTH, confusion_panels, count_bars, panel_grid

    fig, axes = panel_grid(5, 2, 2.6)
    assert len(axes) == 5 and tuple(fig.get_size_inches()) == (PAGE_WIDTH, 3 * 2.6)
    classes = [f"class {i}" for i in range(21)]
    counts = pd.DataFrame(1, index=classes, columns=classes)
    for fig in (confusion_panels({"teacher": counts, "student": counts}),
                count_bars({"UCMerced": dict.fromkeys(classes, 5), "AID": dict.fromkeys(classes, 3)})):
        assert fig.get_size_inches()[0] == PAGE_WIDTH
        sizes = [t.get_fontsize() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        assert sizes and min(sizes) >= LABEL_PT


def test_curve_panels_draw_each_task_with_its_band_and_the_logged_validation_losses():
    from kdlib.plots import PAGE_WIDTH, curve_panels

    table = pd.DataFrame({"step": [0, 100, 200], "cpu_hours": [0.0, 0.5, 1.0], "val_loss": [float("nan"), 1.3, 1.1],
                          "a": [0.0, 10.0, 30.0], "a lo": [0.0, 5.0, 24.0], "a hi": [3.0, 16.0, 36.0],
                          "b": [1.0, 2.0, 9.0]}).set_index("step")
    fig = curve_panels(table, {"a": "A OA", "b": "B OA"}, {"a": 5.0})
    acc, val = fig.axes
    assert fig.get_size_inches()[0] == PAGE_WIDTH
    assert len(acc.lines) == 2 + 1 and len(acc.collections) == 1  # two tasks, one chance line, one band
    assert list(acc.lines[0].get_ydata()) == [0.0, 10.0, 30.0]
    assert list(val.lines[0].get_xdata()) == [0.5, 1.0] and list(val.lines[0].get_ydata()) == [1.3, 1.1]
