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
