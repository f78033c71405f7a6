"""The book's one rule for table cells (kdlib.book.cell_text / table_html)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kdlib.book import cell_text, table_html


def test_cell_text_one_rule_for_numbers_missing_values_and_text():
    assert cell_text(84.4812) == "84.5"
    assert cell_text(2428.7708) == "2428.8"
    assert cell_text(0.031249) == "0.0312"
    assert cell_text(-0.0001) == "-0.0001"
    assert cell_text(-0.04) == "-0.04"
    assert cell_text(-0.0) == "0.0"
    assert cell_text(-0.04999) == "-0.05"
    assert cell_text(-1.04) == "-1.0"
    assert cell_text(-0.96) == "-0.96"
    assert cell_text(float("nan")) == "—" and cell_text(None) == "—" and cell_text(np.float32(math.nan)) == "—"
    assert cell_text("How many\nplanes?  ") == "How many planes?"
    assert cell_text(7) == "7"


def test_table_html_writes_every_cell_with_the_rule():
    df = pd.DataFrame({"OA": [11.904762, float("nan")], "q": ["a\nb", "c"]}, index=["student", "teacher"])
    html = table_html(df)
    assert "11.9" in html and "11.904762" not in html
    assert "—" in html and "NaN" not in html and "nan" not in html
    assert "a b" in html and "\\n" not in html


def test_no_control_characters_in_chapter_text():
    """A ``\\t`` written unescaped into a notebook's JSON turns ``\\tilde`` into TAB + "ilde"."""
    import json
    import re

    from kdlib.paths import REPO_ROOT

    bad = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
    found = []
    for nb in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "markdown" and bad.search("".join(cell["source"])):
                found.append(f"{nb.name} cell {i}")
    assert not found, f"control characters in the text of: {found}"


def test_every_code_cell_folds_or_removes_its_code():
    """A chapter reads as text and results: each code cell hides its input (``hide-input``), removes it
    (``remove-input``, e.g. glue-only cells) or is removed (``remove-cell``); none shows code by default."""
    import json

    from kdlib.paths import REPO_ROOT

    folding = {"hide-input", "remove-input", "remove-cell", "hide-cell"}
    shown = [f"{nb.name} cell {i}" for nb in sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
             for i, cell in enumerate(json.loads(nb.read_text())["cells"])
             if cell["cell_type"] == "code" and not folding & set(cell["metadata"].get("tags", []))]
    assert not shown, f"code cells shown unfolded: {shown}"
