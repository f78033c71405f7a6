"""Saving and loading a multimodal LLM (model + tokenizer + image processor) as one folder.

The folder is what ``LlavaForConditionalGeneration.save_pretrained`` writes, plus the tokenizer
and the image processor, so ``transformers`` alone can read it back. ``load_mllm`` accepts a
folder, a hub id, or a hub id mapped to ``$KDLIB_MODEL_ROOT/<org>/<name>`` (``kdlib.paths``), and
tells GeoChat's original LLaVA layout (convert it with ``kdlib convert-geochat``) apart from
folders that are neither layout.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration
from transformers.utils import logging as hf_logging

from kdlib.models.lora import merged_state_dict, unwrap
from kdlib.paths import resolve_model


class MissingModelError(FileNotFoundError):
    """A model is neither a local folder, under ``$KDLIB_MODEL_ROOT``, nor downloadable."""


@dataclass(frozen=True)
class LoadedMLLM:
    model: LlavaForConditionalGeneration
    tokenizer: Any  # a transformers tokenizer
    image_processor: Any  # a transformers image processor


def loading_bars(enabled: bool) -> None:
    """Show or hide transformers' own progress bars ("Loading weights", "Writing model shards"):
    a run without progress output (``--no-progress``, the book's executed notebooks) hides them."""
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()


def missing_model_message(name: str, reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return (f"model {name!r} is not a local folder and could not be fetched from the hub{why}: "
            f"set KDLIB_MODEL_ROOT to a folder holding {name} or allow hub downloads")


def locate_model(name: str) -> str:
    """A local folder for ``name`` (a path, or ``$KDLIB_MODEL_ROOT/name``), else ``name`` once its
    ``config.json`` is reachable (hub cache or download); :class:`MissingModelError` otherwise."""
    if not name:
        raise MissingModelError("empty model name: give a folder or a hub id <org>/<name>")
    path = resolve_model(name)
    if Path(path).is_dir():
        return path
    try:
        hf_hub_download(name, "config.json")
    except Exception as err:  # offline, unknown repo, gated: all mean "not available here"
        raise MissingModelError(missing_model_message(name, type(err).__name__)) from err
    return name


def model_provenance(profile: Any) -> dict[str, str]:
    """``{model id: where its weights come from}`` for the pretrained models of ``profile``.

    A local folder's ``PROVENANCE.md`` (the offline copies say which release they rebuild and
    how) is returned as it is; a folder without one, or a hub id, gets a one-line note.
    """
    names = dict.fromkeys(str(n) for n in (profile.vision.name_or_path, profile.teacher.name_or_path,
                                           profile.student.name_or_path) if n)
    notes = {}
    for name in names:
        where = Path(resolve_model(name))
        note = where / "PROVENANCE.md"
        if note.is_file():
            notes[name] = note.read_text(encoding="utf-8").strip()
        elif where.is_dir():
            notes[name] = f"local folder {where} (no PROVENANCE.md)"
        else:
            notes[name] = f"the Hugging Face hub release {name} (or its local cache)"
    return notes


def read_config(name_or_path: str) -> dict[str, Any]:
    """``config.json`` of a located model (folder or hub id) as a dict."""
    folder = Path(name_or_path)
    file = folder / "config.json" if folder.is_dir() else Path(hf_hub_download(name_or_path, "config.json"))
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json, so this is not a model folder")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from err


def check_llava_layout(config: dict[str, Any], where: str) -> None:
    """Raise a clear error unless ``config`` is a ``LlavaForConditionalGeneration`` config."""
    if config.get("model_type") == "llava" and "vision_config" in config and "text_config" in config:
        return
    if "mm_vision_tower" in config:
        raise ValueError(f"{where} is in GeoChat's original LLaVA layout (config.json has mm_vision_tower, "
                         f"model_type {config.get('model_type')!r}); convert it first: "
                         f"kdlib convert-geochat {where} DST, then load DST")
    raise ValueError(f"{where} is neither a LlavaForConditionalGeneration folder (config.json needs "
                     f"model_type 'llava' with vision_config and text_config) nor GeoChat's original "
                     f"layout (config.json needs mm_vision_tower); found model_type "
                     f"{config.get('model_type')!r} and keys {sorted(config)[:12]}")


def freeze_vision_tower(model: LlavaForConditionalGeneration) -> None:
    """The vision tower is frozen in every model of the study (GeoChat ``requires_grad_(False)``)."""
    unwrap(model).model.vision_tower.requires_grad_(False)


def load_mllm(path_or_id: str | os.PathLike, dtype: str | torch.dtype | None = None,
              device: str | torch.device | None = None,
              attn_implementation: str | None = None) -> LoadedMLLM:
    """Load a folder written by :func:`save_mllm` (or ``kdlib convert-geochat``) or a hub id.

    ``dtype`` None keeps the saved dtype; ``attn_implementation="eager"`` is needed for attention
    maps (``output_attentions``; SDPA returns none). Missing or unexpected weights are an error.
    """
    where = locate_model(str(path_or_id))
    check_llava_layout(read_config(where), where)
    model, info = LlavaForConditionalGeneration.from_pretrained(
        where, dtype=dtype if dtype is not None else "auto", attn_implementation=attn_implementation,
        output_loading_info=True)
    bad = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise ValueError(f"{where}: weights do not match the config: {bad}")
    freeze_vision_tower(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        image_processor = AutoImageProcessor.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{where}: no usable tokenizer or image processor ({err})") from err
    if device is not None:
        model.to(device)
    return LoadedMLLM(model.eval(), tokenizer, image_processor)


def inference_dtype(train_dtype: str, device: str | torch.device | None) -> str | None:
    """The dtype a saved model is evaluated in: ``bfloat16`` on CUDA when its profile trains in
    ``bfloat16`` (what training computed in, under autocast), else None (the saved dtype)."""
    on_cuda = device is not None and torch.device(device).type == "cuda"
    return "bfloat16" if train_dtype == "bfloat16" and on_cuda else None


def load_for_inference(path: str | os.PathLike, device: str | torch.device | None = None,
                       train_dtype: str = "float32") -> LoadedMLLM:
    """A saved model folder loaded for generation or measurement on ``device``, in
    :func:`inference_dtype`; errors name the folder (missing, or not loadable)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist: train the model first "
                                f"(kdlib train, or the book's training notebook)")
    try:
        return load_mllm(path, dtype=inference_dtype(train_dtype, device), device=device)
    except (OSError, ValueError) as err:
        raise ValueError(f"model folder {path} cannot be loaded: {err}") from err


def save_mllm(path: str | os.PathLike, model: Any, tokenizer: Any, image_processor: Any) -> Path:
    """Write model, tokenizer and image processor to ``path`` atomically (temp folder + rename).

    A LoRA-wrapped model (peft) is saved with its adapters merged (``W + s B A``), without
    changing the model in memory, so the folder loads as a plain ``LlavaForConditionalGeneration``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        unwrap(model).save_pretrained(tmp, state_dict=merged_state_dict(model))
        tokenizer.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path
