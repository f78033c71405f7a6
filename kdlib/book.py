"""What every notebook of the book starts with: the run context and its provenance.

A notebook's first cell (tagged ``parameters``) holds ``profile``, ``data_root``, ``out_dir``,
``seed``, ``device``, ``progress`` and ``overrides``; its second cell calls :func:`setup`, which
resolves them into a :class:`kdlib.run.RunContext`, seeds everything and glues the provenance
(profile, device, date) so that each page says what produced its numbers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from kdlib.profiles import get_profile
from kdlib.run import RunContext, make_context, seed_everything


def setup(profile: str = "tiny", data_root: str = "", out_dir: str = "", seed: int = 0,
          device: str = "auto", progress: bool = True, overrides: Mapping[str, Any] | None = None,
          glue: bool = True) -> RunContext:
    """Resolve a notebook's parameters into a :class:`~kdlib.run.RunContext` and glue its provenance."""
    import pandas as pd

    from kdlib.models.io import loading_bars

    pd.set_option("display.max_colwidth", 200)  # book tables show whole prompts and names
    ctx = make_context(get_profile(profile, overrides), data_root, out_dir, seed, device, progress)
    seed_everything(seed)
    loading_bars(progress)
    if glue:
        from IPython import get_ipython
        from myst_nb import glue as _glue

        if get_ipython() is not None:  # figures glued by the notebook must be stored as PNG
            get_ipython().run_line_magic("matplotlib", "inline")
            html = get_ipython().display_formatter.formatters["text/html"]
            html.for_type(pd.DataFrame, table_html)  # every table of the book, shown or glued

        for key, value in ctx.provenance().items():
            _glue(f"run_{key}", value, display=False)
        print(" | ".join(f"{k}: {v}" for k, v in ctx.provenance().items()))
    return ctx


def cell_text(value: Any) -> str:
    """How the book writes one table cell: the one number rule of every table.

    Missing (None/NaN, e.g. a number the paper does not print) -> "—"; a float with
    ``|v| >= 1`` -> one decimal (``84.4``), a smaller one -> three significant digits (``0.0312``),
    never ``-0.0``; text on one line (newlines and runs of spaces -> one space).
    """
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        text = f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
        return text.lstrip("-") if float(text) == 0 else text
    if isinstance(value, str):
        return " ".join(value.split())
    return str(value)


def table_html(df: "pd.DataFrame") -> str:
    """A data frame as the book's HTML table: cells written by :func:`cell_text`."""
    return df.style.format(cell_text).format_index(cell_text, axis=0).to_html()

