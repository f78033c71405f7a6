"""Figures of training runs draw what the runs logged: stage 1, validation with the kept step, per-term gradients."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kdlib.files import write_json
from kdlib.plots import PAGE_WIDTH
from kdlib.train.figures import (gradient_panels, logged_series, loss_curves, loss_terms, stage1_curves,
                                 term_gradient_series, validation_curves)
from kdlib.train.metrics_log import MetricsLog
from kdlib.train.validation import best_file, read_best


def _log(path, records):
    log = MetricsLog(path)
    for record in records:
        log.append(record)
    return path


def _sft(run_dir, losses, val_every, kept=None):
    """An SFT run's metrics (``val_loss`` every ``val_every`` steps) and, with ``kept``, its best.json."""
    records = [{"step": s, "ce": v, "loss": v, "lr": 1e-3} for s, v in enumerate(losses, start=1)]
    for r in records:
        if r["step"] % val_every == 0:
            r["val_loss"] = 3.0 + (r["step"] - 4) ** 2 / 10  # lowest at step 4
    run_dir.mkdir(parents=True)
    if kept is not None:
        write_json(best_file(run_dir), {"step": kept, "val_loss": 3.0})
    return _log(run_dir / "metrics.jsonl", records)


def test_logged_series_keeps_the_steps_a_key_was_logged_on(tmp_path):
    metrics = _sft(tmp_path / "teacher", [5.0, 4.0, 3.5, 3.0, 2.8, 2.6], val_every=2)
    steps, values = logged_series(metrics, "val_loss")
    assert steps.tolist() == [2, 4, 6] and values.tolist() == [3.4, 3.0, 3.4]


def test_read_best_reads_the_kept_step_and_names_a_malformed_file(tmp_path):
    assert read_best(tmp_path) is None
    write_json(best_file(tmp_path), {"step": 7, "val_loss": 1.5})
    assert read_best(tmp_path) == (7, 1.5)
    best_file(tmp_path).write_text(json.dumps({"step": 7}))
    with pytest.raises(ValueError, match="best.json"):
        read_best(tmp_path)


def test_validation_curves_mark_the_step_the_run_kept(tmp_path):
    runs = {name: _sft(tmp_path / name, list(np.linspace(5, 2, 8)), val_every=2, kept=kept)
            for name, kept in (("teacher", 4), ("student_sft", 6))}
    fig = validation_curves(runs)
    assert len(fig.axes) == 2 and fig.get_size_inches()[0] == PAGE_WIDTH
    for ax, kept in zip(fig.axes, (4, 6)):
        assert ax.get_title() in runs
        vertical = [line for line in ax.lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
        assert [line.get_xdata()[0] for line in vertical] == [kept]
        val = next(line for line in ax.lines if line.get_label() == "validation")
        assert list(val.get_xdata()) == [2, 4, 6, 8]
    missing = {"student_guided": _sft(tmp_path / "student_guided", [3.0, 2.0], val_every=1)}
    with pytest.raises(ValueError, match="best.json"):
        validation_curves(missing)


def test_stage1_curves_draw_one_model_per_colour(tmp_path):
    runs = {role: _sft(tmp_path / f"{role}_projector", [6.0 - 0.1 * s for s in range(10)], val_every=100)
            for role in ("teacher", "student")}
    fig = stage1_curves(runs)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["teacher", "student"]
    assert len(ax.lines) == 4 and list(ax.lines[0].get_ydata()[:2]) == [6.0, 5.9]


def _kd(path, terms, every=5, steps=20):
    """A distillation run's metrics with ``grad_norm_<term>`` / ``grad_cos_<term>`` every ``every`` steps."""
    records = []
    for s in range(1, steps + 1):
        record = {"step": s, "loss": 1.0, **{t: 0.5 for t in terms}, "grad_norm": 2.0}
        if s % every == 0:
            for t, (norm, cos) in terms.items():
                record[f"grad_norm_{t}"], record[f"grad_cos_{t}"] = norm * s, cos
        records.append(record)
    return _log(path, records)


def test_term_gradient_series_and_panels_show_every_logged_term(tmp_path):
    metrics = _kd(tmp_path / "metrics.jsonl", {"lm": (3.0, 0.9), "single": (0.01, 0.02), "align": (0.0, 0.0)})
    series = term_gradient_series(metrics)
    assert list(series) == ["align", "single", "lm"]  # TERM_TITLES order
    assert series["lm"].steps.tolist() == [5, 10, 15, 20] and series["lm"].norms.tolist() == [15, 30, 45, 60]
    assert series["single"].cosines.tolist() == [0.02] * 4
    fig = gradient_panels(series)
    norm_ax, cos_ax = fig.axes[:2]
    assert norm_ax.get_yscale() == "log"
    assert [len(line.get_xdata()) for line in norm_ax.lines] == [0, 4, 4]  # a zero norm is not drawn on a log scale
    assert [line.get_ydata()[0] for line in cos_ax.lines if len(line.get_xdata()) == 4] == [0.0, 0.02, 0.9]
    assert term_gradient_series(_kd(tmp_path / "none.jsonl", {"lm": (1.0, 1.0)}, every=math.inf)) == {}


def test_an_sft_run_is_drawn_as_its_one_term_not_its_counters(tmp_path):
    records = [{"step": s, "ce": 3.0 / s, "loss": 3.0 / s, "lr": 1e-3, "grad_norm": 1.0, "tokens": 90,
                "generated_tokens": 0, "tokens_per_s": 10.0} for s in range(1, 5)]
    metrics = _log(tmp_path / "metrics.jsonl", records)
    assert list(loss_terms(metrics)) == ["loss", "ce"]
    fig = loss_curves(metrics, "SFT")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["cross-entropy (SFT)"]
