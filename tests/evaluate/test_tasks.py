"""Evaluation tasks: prompt unwrapping, size groups and crop ids (kdlib.evaluate.tasks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlib.data.prompts import grounding_query, identify_query, refer_query
from kdlib.evaluate.tasks import EVAL_TASKS, SIZE_LIMITS, eval_task, size_group, unwrap_query


@pytest.mark.parametrize("template", [refer_query, grounding_query, identify_query])
def test_unwrap_query_inverts_the_prompt_templates(template) -> None:
    for text in ("2 ships at the right", "{<1><2><30><40>|<90>}", ""):
        assert unwrap_query(template(text), template) == text
    with pytest.raises(ValueError, match="does not have the form"):
        unwrap_query("What is this?", template)


def square(side: float) -> list[list[float]]:
    return [[0, 0], [side, 0], [side, side], [0, side]]


def test_size_group_thresholds_on_the_median_area() -> None:
    (small_limit, _), (medium_limit, _) = SIZE_LIMITS
    assert size_group([square(small_limit**0.5 - 1)]) == "small"
    assert size_group([square(small_limit**0.5)]) == "medium"
    assert size_group([square(medium_limit**0.5)]) == "large"
    assert size_group([square(10), square(10), square(200)]) == "small"  # median, not mean


def test_size_group_rule_reproduces_geochat_bench_labels(data_root: Path) -> None:
    """The module docstring's claim: the rule gives the file's label for >= 98 % of the questions."""
    lines = (data_root / "geochat_bench" / "referring_geochat_7b.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    agree = sum(size_group(r["ground_truth"]) == r["size_group"] for r in rows)
    assert agree / len(rows) >= 0.98


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="choose from " + ", ".join(EVAL_TASKS)):
        eval_task("scene")
