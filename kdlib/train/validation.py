"""Validation loss during training, and the best-validation weights a run keeps as its model.

Every ``cfg.val_every`` steps (and after the last one) the loop computes the loss of the task's
validation micro-batches with the module in eval mode and without gradient,

``L_val = sum_b loss_b / sum_b n_b``

where ``loss_b`` is the summed (not averaged) loss of validation micro-batch ``b`` and ``n_b`` its
count of scored items (``num_scored``: response tokens for SFT). The lowest ``L_val`` seen so far
fixes which weights the run returns (MiniLLM and the core paper's Table 1 keep the SFT checkpoint
with the lowest validation loss): the trainable parameters of that step are written to
``<run>/checkpoints/best.pt`` (:func:`~kdlib.train.snapshots.save_trainable`) and its step and loss
to ``<run>/best.json``, both atomically, so a resumed run keeps them; after the last step they are
loaded back into the module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch
from accelerate import Accelerator
from torch import nn

from kdlib.files import write_json
from kdlib.train.snapshots import save_trainable, trainable_names


def validation_loss(module: nn.Module, batches: Iterable[dict[str, Any]], accelerator: Accelerator) -> float:
    """``sum loss / sum num_scored`` over ``batches`` (each with ``denom`` 1), module in eval mode, no gradient."""
    was_training = module.training
    module.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for micro in batches:
            count += int(micro.pop("num_scored"))
            micro.pop("num_tokens", None)
            with accelerator.autocast():
                total += float(module(micro)["loss"].float())
    module.train(was_training)
    if count == 0:
        raise ValueError("validation: the validation split has no scored tokens")
    return total / count


def best_file(run_dir: Path) -> Path:
    """``run_dir/best.json``: the step with the lowest validation loss of a run and that loss."""
    return run_dir / "best.json"


def read_best(run_dir: Path) -> tuple[int, float] | None:
    """``(step, val_loss)`` of the weights a finished run kept (:func:`best_file`); None for a run without validation."""
    path = best_file(run_dir)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    try:
        return int(saved["step"]), float(saved["val_loss"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: needs an integer step and a float val_loss ({err})") from None


class BestWeights:
    """The step with the lowest validation loss of a run and its trainable parameters (on disk)."""

    def __init__(self, run_dir: Path, accelerator: Accelerator) -> None:
        self.record = best_file(run_dir)
        self.weights = run_dir / "checkpoints" / "best.pt"
        self.accelerator = accelerator
        self.step, self.loss = 0, float("inf")

    def reset(self) -> None:
        """Forget an earlier run's best (a fresh start)."""
        if self.accelerator.is_main_process:
            self.record.unlink(missing_ok=True)
            self.weights.unlink(missing_ok=True)
        self.step, self.loss = 0, float("inf")

    def restore(self, resumed_step: int) -> None:
        """Take up the best of a resumed run, unless it was recorded after the checkpoint resumed from."""
        saved = read_best(self.record.parent) if self.weights.is_file() else None
        if saved is not None and saved[0] <= resumed_step:
            self.step, self.loss = saved
            return
        self.reset()

    def update(self, module: nn.Module, step: int, loss: float) -> bool:
        """Keep the weights of ``step`` when ``loss`` is the lowest so far; True when they were kept."""
        if not loss < self.loss:
            return False
        save_trainable(module, self.accelerator, self.weights)
        if self.accelerator.is_main_process:
            write_json(self.record, {"step": step, "val_loss": loss})
        self.accelerator.wait_for_everyone()
        self.step, self.loss = step, loss
        return True

    def load_into(self, module: nn.Module) -> None:
        """Put the kept weights back into ``module`` (every process)."""
        if self.step == 0:
            return
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        missing = set(state) - set(trainable_names(self.accelerator.unwrap_model(module)))
        if missing:
            raise ValueError(f"{self.weights}: parameters not in the model: {sorted(missing)[:3]}")
        self.accelerator.unwrap_model(module).load_state_dict(state, strict=False)
