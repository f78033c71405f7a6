"""Per-step training metrics as JSON lines (``<run>/metrics.jsonl``), safe to resume.

One line per optimiser step: ``step`` (1-based), every loss term, ``loss``, ``lr``,
``grad_norm``, ``tokens``, ``tokens_per_s``, ``step_s`` (wall) and ``cpu_s`` (process CPU time)
of the step, ``peak_mem_mb`` and ``elapsed_s`` (since the run started). Lines are
appended and flushed one at a time; a run killed mid-line leaves a partial last line, which
:func:`read_metrics` skips and :meth:`MetricsLog.truncate` removes when the run resumes from
a checkpoint (the steps after it are run again and logged anew).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdlib.files import write_jsonl

#: keys that measure the machine, not the optimisation (they differ between identical runs)
TIMING_KEYS = ("tokens_per_s", "step_s", "cpu_s", "peak_mem_mb", "elapsed_s")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a metrics file, in order (a partial last line is skipped)."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from err
    return records


class MetricsLog:
    """Append-only JSONL writer (only the main process writes)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def truncate(self, last_step: int) -> None:
        """Keep the lines of steps ``<= last_step`` (resume from the checkpoint of ``last_step``)."""
        if not self.enabled:
            return
        kept = [r for r in read_metrics(self.path) if r["step"] <= last_step]
        write_jsonl(self.path, kept, sort_keys=True)

    def append(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

