"""What every notebook of the book starts with: the run context and its provenance.

A notebook's first cell (tagged ``parameters``) holds ``profile``, ``data_root``, ``out_dir``,
``seed``, ``device``, ``progress`` and ``overrides``; its second cell calls :func:`setup`, which
resolves them into a :class:`kdlib.run.RunContext`, seeds everything and glues the provenance
(profile, device, date) so that each page says what produced its numbers.
"""

from __future__ import annotations

from typing import Any, Mapping

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

        for key, value in ctx.provenance().items():
            _glue(f"run_{key}", value, display=False)
        print(" | ".join(f"{k}: {v}" for k, v in ctx.provenance().items()))
    return ctx
