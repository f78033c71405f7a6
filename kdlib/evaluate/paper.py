"""The core paper's printed numbers (Tables 3-8), for side-by-side comparison with kdlib's scores.

Source: ``kdlib/resources/paper_tables.csv`` (provenance in ``PAPER_TABLES.md`` beside it):
one row per printed number, columns ``table, metric, dataset, model, value``; Tables 3-7 in
percent, Table 8 in millions of parameters (``params_M``) and ``GFLOPs``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import pandas as pd

COLUMNS = ("table", "metric", "dataset", "model", "value")


@lru_cache(maxsize=1)
def _paper_rows() -> pd.DataFrame:
    with (files("kdlib") / "resources" / "paper_tables.csv").open(encoding="utf-8") as handle:
        frame = pd.read_csv(handle)
    if tuple(frame.columns) != COLUMNS:
        raise ValueError(f"paper_tables.csv: expected columns {COLUMNS}, got {tuple(frame.columns)}")
    return frame


def paper_table(table: int) -> pd.DataFrame:
    """All rows of one table (3-8) with columns ``metric, dataset, model, value``."""
    rows = _paper_rows()
    selected = rows[rows["table"] == table]
    if selected.empty:
        raise ValueError(f"no table {table} in paper_tables.csv (tables: {sorted(rows['table'].unique())})")
    return selected.drop(columns="table").reset_index(drop=True)


def paper_value(table: int, metric: str, dataset: str, model: str) -> float:
    """The number the paper prints for ``(table, metric, dataset, model)``.

    Raises ``KeyError`` naming the key and what the table holds when it is absent.
    """
    rows = paper_table(table)
    hit = rows[(rows["metric"] == metric) & (rows["dataset"] == dataset) & (rows["model"] == model)]
    if hit.empty:
        keys = rows[["metric", "dataset", "model"]].itertuples(index=False)
        choices = sorted({f"{m} / {d} / {o}" for m, d, o in keys})
        raise KeyError(f"table {table} has no {metric!r} / {dataset!r} / {model!r}; it has: {'; '.join(choices)}")
    return float(hit["value"].iloc[0])
