"""Atomic, resumable training checkpoints (``<run>/checkpoints/step-NNNNNNNN/``).

A checkpoint holds what ``accelerate`` saves for a prepared run (the trainable module, the
AdamW state, every process's RNG states; sharded correctly under FSDP / DeepSpeed) plus the
objects registered with :func:`register`: the learning-rate scheduler and the
:class:`Progress` (steps done = the data position, since the batches and the sampling noise
of step ``s`` are functions of ``(seed, s)`` alone). It is written into ``step-N.tmp`` and
renamed when complete, so a run killed while saving leaves the previous checkpoint intact;
:func:`latest` never returns a partial one. Only the newest ``keep`` checkpoints are kept. A full
disk while saving removes the partial folder and raises one line naming it; :func:`load_newest`
falls back to the checkpoint before when the newest one cannot be read.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

from kdlib.errors import UserError
from kdlib.files import remove, writing

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
    with writing(tmp, partial=[tmp]):
        accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def remove_partial(root: Path) -> list[Path]:
    """Delete the ``step-N.tmp`` folders a killed save left under ``root``; return them."""
    partial = sorted(root.glob(f"{PREFIX}*.tmp")) if root.is_dir() else []
    remove(partial)
    return partial


UNREADABLE = (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError)
"""What loading a truncated or damaged checkpoint file raises (torch, pickle, accelerate)."""


def load_newest(accelerator: Accelerator, root: Path) -> Path | None:
    """Load the newest readable checkpoint under ``root`` (all processes call this); return it, or None
    when there is none. A damaged one is skipped with a warning naming it and the error; when every
    checkpoint is damaged, :class:`UserError` names the folder."""
    found = complete_checkpoints(root)
    for path in reversed(found):
        try:
            load(accelerator, path)
            return path
        except UNREADABLE as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            warnings.warn(f"checkpoint {path} cannot be read ({first}); falling back to the one before",
                          stacklevel=2)
    if found:
        raise UserError(f"{root}: no checkpoint can be read ({len(found)} damaged); start over with --restart")
    return None


def load(accelerator: Accelerator, path: Path) -> None:
    """Restore the state written by :func:`save` into the prepared objects (all processes call this)."""
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    accelerator.load_state(str(path))
