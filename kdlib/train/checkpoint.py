"""Atomic, resumable training checkpoints (``<run>/checkpoints/step-NNNNNNNN/``).

A checkpoint holds what ``accelerate`` saves for a prepared run (the trainable module, the
AdamW state, every process's RNG states; sharded correctly under FSDP / DeepSpeed) plus the
objects registered with :func:`register`: the learning-rate scheduler and the
:class:`Progress` (steps done = the data position, since the batches and the sampling noise
of step ``s`` are functions of ``(seed, s)`` alone). It is written into ``step-N.tmp`` and
renamed when complete, so a run killed while saving leaves the previous checkpoint intact;
:func:`latest` never returns a partial one. Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

PREFIX = "step-"


@dataclass
class Progress:
    """Optimiser steps completed; saved with every checkpoint."""

    step: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{PREFIX}{step:08d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints under ``root``, oldest first (``.tmp`` folders excluded)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = complete_checkpoints(root)
    return found[-1] if found else None


def save(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """Write the checkpoint of ``step`` atomically (all processes call this), then prune old ones."""
    final = checkpoint_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load(accelerator: Accelerator, path: Path) -> None:
    """Restore the state written by :func:`save` into the prepared objects (all processes call this)."""
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    accelerator.load_state(str(path))
