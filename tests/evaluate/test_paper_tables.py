"""The core paper's printed numbers (kdlib.evaluate.paper)."""

from __future__ import annotations

import pytest

from kdlib.evaluate.paper import paper_table, paper_value


def test_tables_3_to_8_are_present() -> None:
    for table in range(3, 9):
        rows = paper_table(table)
        assert not rows.empty and list(rows.columns) == ["metric", "dataset", "model", "value"]


def test_values_and_table_8() -> None:
    assert paper_value(3, "OA", "UCMerced", "GeoChat-7B") < paper_value(3, "OA", "UCMerced", "GeoChat-13B")
    seven, thirteen = (paper_value(8, "params_M", "model size", m) for m in ("GeoChat-7B", "GeoChat-13B"))
    assert 0.45 < 1 - seven / thirteen < 0.5  # "about 48 %" fewer parameters (core paper)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(KeyError, match="table 6 has no 'acc@0.7'"):
        paper_value(6, "acc@0.7", "grounding", "GeoChat-7B")
    with pytest.raises(ValueError, match="no table 2"):
        paper_table(2)
