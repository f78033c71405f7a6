"""Table 8 side by side, count ratios, the cost verdict, and latency of saved models."""

from __future__ import annotations

import torch

from kdlib.analysis.efficiency import (count_ratios, cost_verdict, measure_models, printed_ratios,
                                       table8_frame)
from kdlib.analysis.latency import LATENCY_KEYS
from kdlib.models.io import save_mllm


def _result(name: str, scale: float) -> dict:
    part = lambda p, f: {"params_M": p * scale, "flops_G": f * scale}  # noqa: E731
    printed = {"teacher": {"model": "T", "params_M": 100.0, "flops_G": 300.0},
               "student": {"model": "S", "params_M": 50.0, "flops_G": 120.0}}
    return {"profile": name, "paper_table8": printed,
            "teacher": {**part(10, 40), "paper_convention": part(8, 20)},
            "student": {**part(4, 10), "paper_convention": part(3, 5)}}


def test_table8_frame_and_ratios():
    here, paper = _result("tiny", 1.0), _result("paper", 100.0)
    table = table8_frame(here, paper)
    assert table.loc["teacher (T in the paper)", "params M (tiny, whole)"] == 10
    assert table.loc["student (S in the paper)", "FLOPs G (paper sizes, paper's convention)"] == 500
    assert table.loc["student (S in the paper)", "FLOPs G (paper)"] == 120
    assert count_ratios(here) == {"params": 0.4, "FLOPs": 0.25}
    assert count_ratios(here, convention=True) == {"params": 3 / 8, "FLOPs": 0.25}
    assert printed_ratios(paper) == {"params": 0.5, "FLOPs": 0.4}


def test_cost_verdict():
    assert cost_verdict(0.8, 0.3).startswith("falls less")
    assert cost_verdict(0.1, 0.3).startswith("falls more")
    assert cost_verdict(0.35, 0.3) == "falls about as much as the FLOPs do"
    assert cost_verdict(1.5, 0.3).startswith("does not fall at all")


def test_measure_models_loads_each_saved_model(pair, records, tmp_path):
    folders = {}
    for name in ("teacher", "student"):
        folders[name] = save_mllm(tmp_path / name, getattr(pair, name), pair.tokenizer, pair.image_processor)
    measured = measure_models(folders, records[:1], torch.device("cpu"), new_tokens=2, repeats=1)
    assert list(measured) == ["teacher", "student"]
    assert all(tuple(m) == LATENCY_KEYS and m["answer_ms"] > 0 for m in measured.values())
    assert measured["student"]["weights_mb"] < measured["teacher"]["weights_mb"]
