"""Reading the weight files of a checkpoint folder, whatever the format and sharding.

A folder holds one of: ``model.safetensors``, ``model.safetensors.index.json`` (+ shards),
``pytorch_model.bin``, ``pytorch_model.bin.index.json`` (+ shards). The index's ``weight_map``
names the shard of every tensor. ``.bin`` files are read with ``weights_only=True`` (no code runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def weight_files(folder: Path) -> list[Path]:
    """The shard files of ``folder`` in index order (a single file when unsharded)."""
    for name in WEIGHT_FILES:
        file = folder / name
        if not file.is_file():
            continue
        if not name.endswith(".index.json"):
            return [file]
        try:
            weight_map = json.loads(file.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{file}: not a weight index (needs a 'weight_map'): {err}") from err
        shards = [folder / s for s in dict.fromkeys(weight_map.values())]
        absent = [s.name for s in shards if not s.is_file()]
        if absent:
            raise FileNotFoundError(f"{file} names shards that are not in {folder}: {absent}")
        return shards
    raise FileNotFoundError(f"{folder}: no weights (expected one of {', '.join(WEIGHT_FILES)})")


def load_state_dict_files(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in ``folder`` on the CPU, keys as stored."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        part = load_file(file) if file.suffix == ".safetensors" else torch.load(
            file, map_location="cpu", weights_only=True)
        state.update(part)
    return state
