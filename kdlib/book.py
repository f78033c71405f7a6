"""What every notebook of the book starts with: the run context and its provenance.

A notebook's first cell (tagged ``parameters``) holds ``profile``, ``data_root``, ``out_dir``,
``seed``, ``device``, ``progress`` and ``overrides``; its second cell calls :func:`setup`, which
resolves them into a :class:`RunContext`, seeds everything and glues the provenance (profile,
device, date) so that each page says what produced its numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kdlib.paths import resolve_data_root
from kdlib.profiles import Profile, get_profile


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@dataclass(frozen=True)
class RunContext:
    profile: Profile
    data_root: Path
    out_dir: Path  # results of this profile's run: models/, results/, figures/
    seed: int
    device: torch.device
    progress: bool
    cache_root: Path | None = None  # features that no seed or run changes; None: ``out_dir/cache``

    @property
    def vision_cache(self) -> Path:
        """Folder of the frozen vision tower's cached features (:mod:`kdlib.models.feature_cache`)."""
        return (self.cache_root or self.out_dir / "cache") / "vision"

    def path(self, *parts: str) -> Path:
        """A path under ``out_dir`` (parent folders created)."""
        p = self.out_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def require(self, *parts: str, producer: str) -> Path:
        """A result an earlier notebook wrote; a clear error naming that notebook when it is missing."""
        p = self.out_dir.joinpath(*parts)
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing: run the notebook {producer!r} first "
                                    f"(or `kdlib reproduce --profile {self.profile.name}`)")
        return p

    def provenance(self) -> dict[str, str]:
        return {
            "profile": self.profile.name,
            "device": device_name(self.device),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__,
        }


def setup(profile: str = "tiny", data_root: str = "", out_dir: str = "", seed: int = 0,
          device: str = "auto", progress: bool = True, overrides: Mapping[str, Any] | None = None,
          glue: bool = True) -> RunContext:
    """Resolve a notebook's parameters into a :class:`RunContext` and glue its provenance."""
    import pandas as pd

    from kdlib.models.io import loading_bars

    pd.set_option("display.max_colwidth", 200)  # book tables show whole prompts and names
    prof = get_profile(profile, overrides)
    out = Path(out_dir or f"runs/{prof.name}").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    loading_bars(progress)
    ctx = RunContext(prof, resolve_data_root(data_root or None), out, seed, pick_device(device), progress)
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


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    tmp.replace(path)
