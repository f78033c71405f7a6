"""Weights a run keeps of chosen steps: its best-validation step and, for learning curves, every n-th step.

A weights file holds the parameters the run trains, named as in the training module
(``student.model.multi_modal_projector.linear_1.weight``, ...), written atomically by the main
process. The frozen parameters are not in it: they are those of the model the run started from
(the same in its saved model), so :func:`load_weights` on either gives the model of that step.

``<run>/snapshots/step-NNNNNNNN.pt`` are the snapshots of ``train.snapshot_every``
(:func:`snapshot_file`); ``<run>/checkpoints/best.pt`` is the best-validation file of
:mod:`kdlib.train.validation`. Snapshots survive the run (checkpoints do not) and are replaced when
a run starts afresh.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from kdlib.files import atomic_path

PREFIX = "step-"
MODULE_PREFIX = "student."
"""What the training module puts before the trained model's own parameter names."""


def trainable_names(module: nn.Module) -> list[str]:
    return [name for name, p in module.named_parameters() if p.requires_grad]


def save_trainable(module: nn.Module, accelerator: Accelerator, path: Path) -> None:
    """Write the trainable parameters of the prepared ``module`` to ``path`` (every process calls this)."""
    state = accelerator.get_state_dict(module)
    names = set(trainable_names(accelerator.unwrap_model(module)))
    if accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({k: v.detach().cpu().clone() for k, v in state.items() if k in names}, tmp)
    accelerator.wait_for_everyone()


def snapshot_dir(run_dir: Path) -> Path:
    return run_dir / "snapshots"


def snapshot_file(run_dir: Path, step: int) -> Path:
    """``<run>/snapshots/step-NNNNNNNN.pt``: the trainable weights after optimiser step ``step``."""
    return snapshot_dir(run_dir) / f"{PREFIX}{step:08d}.pt"


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, file)`` of the run's snapshots, in step order (partial ``.tmp`` files excluded)."""
    folder = snapshot_dir(run_dir)
    found = [(int(p.stem[len(PREFIX):]), p) for p in folder.glob(f"{PREFIX}*.pt")
             if p.stem[len(PREFIX):].isdigit()] if folder.is_dir() else []
    return sorted(found)


def clear_snapshots(run_dir: Path) -> None:
    """Remove a run's snapshots (a fresh start must not keep another run's steps)."""
    shutil.rmtree(snapshot_dir(run_dir), ignore_errors=True)


def load_weights(model: nn.Module, path: Path) -> None:
    """Put the weights of ``path`` (training-module names) into the trained ``model`` itself.

    Raises one line naming the file and a parameter it holds that ``model`` has not (another
    architecture, or LoRA adapters, which are merged only when a model is saved)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k: v for k, v in state.items()}
    unknown = sorted(set(state) - set(model.state_dict()))
    if unknown:
        raise ValueError(f"{path}: holds {unknown[0]}, which the model has not ({len(unknown)} such parameters)")
    model.load_state_dict(state, strict=False)
