"""Projector inputs of the frozen, pooled vision tower, computed once per image and then reused.

Every model of the study keeps its vision tower frozen, so an image always gives the same
projector inputs ``f(x) = pool_g(h_l(x))_patches`` ``[g^2, D_v]``
(:func:`kdlib.models.pooling.projector_inputs`). On a CPU the ViT costs about 0.1 s per image
(DINOv2-S at 224 px) and a distillation step runs it several times per sample (student and
teacher, rollout and loss forwards); the cache runs it once per image for a whole study.

:class:`FeatureCache` is a drop-in image processor: called like one,
``cache(images=[PIL, ...], return_tensors="pt")``, it returns ``{"pixel_values": [B, g^2, D_v]}``
features instead of ``[B, 3, S, S]`` pixels, and the pooled tower accepts those in place of
pixels. So :class:`kdlib.data.collate.Collator`, the training loop, the sampler and the losses
run unchanged; only the processor handed to the collator changes (save the real one with the
model: the cache is not an image processor on disk).

Keys: ``sha256(tower fingerprint, image mode, size and RGB bytes)``. The image as the collator
delivers it already carries the crop, so one source file with two crops gives two entries and an
edited file a new one. The fingerprint hashes the tower's weights and config and the processor's
settings (image size, normalisation), so features of another tower, seed or image size are never
served. Entries live in memory and, with ``folder``, as ``folder/<fingerprint>/<key>.pt`` (written
to a temporary file and renamed, safe with several processes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor

from kdlib.files import atomic_path
from kdlib.models.lora import unwrap
from kdlib.models.pooling import PooledVisionTower, pooled_tower, projector_inputs


def tower_fingerprint(model: Any, image_processor: Any) -> str:
    """sha256 of the vision tower's weights and config, the feature layer and the processor's settings."""
    base = unwrap(model)
    h = hashlib.sha256()
    h.update(json.dumps(base.config.vision_config.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"layer={base.config.vision_feature_layer}".encode())
    h.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(base.model.vision_tower.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def image_key(fingerprint: str, image: Image.Image) -> str:
    """sha256 of the fingerprint and the image's mode, size and pixel bytes."""
    h = hashlib.sha256(fingerprint.encode())
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class FeatureCache:
    """An image processor that returns cached projector inputs ``[B, g^2, D_v]`` (module docstring)."""

    def __init__(self, model: Any, image_processor: Any, folder: str | os.PathLike | None = None) -> None:
        pooled_tower(model)
        self.model, self.image_processor = model, image_processor
        self.fingerprint = tower_fingerprint(model, image_processor)
        self.folder = Path(folder) / self.fingerprint[:16] if folder is not None else None
        self.memory: dict[str, Tensor] = {}
        self.computed = 0  # images that went through the tower

    def __call__(self, images: Sequence[Image.Image], return_tensors: str = "pt", **kwargs: Any) -> dict[str, Tensor]:
        if return_tensors != "pt":
            raise ValueError(f"FeatureCache returns torch tensors only, not {return_tensors!r}")
        keys = [image_key(self.fingerprint, image) for image in images]
        missing = [i for i, key in enumerate(keys) if self._lookup(key) is None]
        if missing:
            self._compute([images[i] for i in missing], [keys[i] for i in missing])
        return {"pixel_values": torch.stack([self.memory[key] for key in keys])}

    def _lookup(self, key: str) -> Tensor | None:
        if key not in self.memory and self.folder is not None and (self.folder / f"{key}.pt").is_file():
            self.memory[key] = torch.load(self.folder / f"{key}.pt", weights_only=True)
        return self.memory.get(key)

    def _compute(self, images: list[Image.Image], keys: list[str]) -> None:
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        features = projector_inputs(self.model, torch.as_tensor(pixels)).float().cpu()
        self.computed += len(images)
        for key, feature in zip(keys, features):
            self.memory[key] = feature.clone()
            if self.folder is not None:
                self._write(key, self.memory[key])

    def _write(self, key: str, feature: Tensor) -> None:
        with atomic_path(self.folder / f"{key}.pt") as tmp:
            torch.save(feature, tmp)


def data_processor(model: Any, image_processor: Any, folder: str | os.PathLike | None = None) -> Any:
    """What the collator should use for ``model``: a :class:`FeatureCache` (on disk under
    ``folder``) when its vision tower is pooled (``small``), else ``image_processor`` itself."""
    if isinstance(unwrap(model).model.vision_tower, PooledVisionTower):
        return FeatureCache(model, image_processor, folder)
    return image_processor
