"""The efficiency chapter's tables: Table 8 counted at two profiles, and measured cost of teacher vs student.

:func:`table8_frame` puts side by side the parameter and FLOP counts of
:func:`kdlib.models.efficiency` at the current profile (whole model, image + text), at the
``paper`` sizes (whole model, and the paper's own convention) and the paper's printed Table 8.
:func:`measure_models` loads saved models one at a time (so a large teacher and student never
share the device) and measures each with :func:`kdlib.analysis.latency.measure_latency`.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from kdlib.analysis.latency import measure_latency
from kdlib.data.records import Record

ROLES = ("teacher", "student")


def table8_frame(current: dict[str, Any], paper: dict[str, Any]) -> pd.DataFrame:
    """Rows teacher / student; columns: params (M) and FLOPs (G) of ``current`` (an
    :func:`~kdlib.models.efficiency` result at the book's profile), of ``paper`` (the same at the
    ``paper`` profile) whole and in the paper's convention, and the paper's printed Table 8."""
    name = current["profile"]
    rows = {}
    for role in ROLES:
        ours, big, printed = current[role], paper[role], paper["paper_table8"][role]
        rows[f"{role} ({printed['model']} in the paper)"] = {
            f"params M ({name}, whole)": ours["params_M"], f"FLOPs G ({name}, whole)": ours["flops_G"],
            "params M (paper sizes, whole)": big["params_M"], "FLOPs G (paper sizes, whole)": big["flops_G"],
            "params M (paper sizes, paper's convention)": big["paper_convention"]["params_M"],
            "FLOPs G (paper sizes, paper's convention)": big["paper_convention"]["flops_G"],
            "params M (paper)": printed["params_M"], "FLOPs G (paper)": printed["flops_G"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def count_ratios(result: dict[str, Any], convention: bool = False) -> dict[str, float]:
    """Student / teacher ``{"params", "FLOPs"}`` of an :func:`~kdlib.models.efficiency` result
    (whole model, or the paper's convention)."""
    part = (lambda role: result[role]["paper_convention"]) if convention else (lambda role: result[role])
    s, t = part("student"), part("teacher")
    return {"params": s["params_M"] / t["params_M"], "FLOPs": s["flops_G"] / t["flops_G"]}


def printed_ratios(result: dict[str, Any]) -> dict[str, float]:
    """Student / teacher of the paper's printed Table 8 (carried in every efficiency result)."""
    s, t = result["paper_table8"]["student"], result["paper_table8"]["teacher"]
    return {"params": s["params_M"] / t["params_M"], "FLOPs": s["flops_G"] / t["flops_G"]}


def measure_models(folders: dict[str, Path], records: Sequence[Record], device: torch.device,
                   train_dtype: str = "float32", new_tokens: int = 16, repeats: int = 5) -> dict[str, dict[str, Any]]:
    """``{name: measure_latency(...)}`` of each saved model, loaded on ``device`` one at a time
    (:func:`kdlib.models.io.load_for_inference`; ``train_dtype`` is the profile's)."""
    from kdlib.models.io import load_for_inference

    results = {}
    for name, folder in folders.items():
        mllm = load_for_inference(folder, device, train_dtype)
        results[name] = measure_latency(mllm, records, new_tokens=new_tokens, repeats=repeats)
        del mllm
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def cost_verdict(time_ratio: float, flops_ratio: float, tolerance: float = 0.1) -> str:
    """How the measured time ratio (student / teacher) compares with the counted FLOP ratio."""
    if time_ratio >= 1.0:
        return ("does not fall at all: on this machine the time is dominated by something other than the models' "
                "arithmetic (per-token overhead, or other processes competing for the CPU)")
    if time_ratio > flops_ratio + tolerance:
        return ("falls less than the FLOPs do, a sign that costs which do not shrink with the LLM (Python and "
                "kernel-launch overhead per generated token, the shared vision tower, other work on the machine) "
                "take a large share")
    if time_ratio < flops_ratio - tolerance:
        return ("falls more than the FLOPs do, a sign that the smaller model also uses the caches and the memory "
                "bandwidth better")
    return "falls about as much as the FLOPs do"
