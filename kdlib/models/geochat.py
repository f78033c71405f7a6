"""Convert a GeoChat checkpoint (original LLaVA layout) into a ``LlavaForConditionalGeneration`` folder.

What GeoChat does (mbzuai-oryx/GeoChat read at commit 3e61ee39; line numbers of that commit):

- ``GeoChatLlamaForCausalLM`` is ``LlamaForCausalLM`` plus ``model.vision_tower`` and
  ``model.mm_projector`` (``language_model/geochat_llama.py``; ``geochat_arch.py``
  ``GeoChatMetaModel.__init__``): the LLM keeps plain LLaMA names (``model.layers.*``,
  ``model.embed_tokens``, ``model.norm``, ``lm_head``).
- Projector ``mlp2x_gelu`` = ``Sequential(Linear, GELU, Linear)`` -> ``model.mm_projector.{0,2}``
  (``multimodal_projector/builder.py`` ``build_vision_projector`` L35-48).
- CLIP tower ``CLIPVisionTower.vision_tower`` = ``CLIPVisionModel`` -> keys
  ``model.vision_tower.vision_tower.vision_model.*``. At load time (``model/builder.py``
  ``load_pretrained_model``: the tower is built with ``delay_load`` and ``load_model()`` reloads
  it from ``mm_vision_tower``) the 577-row position table is re-interpolated to 1,297 rows for
  504 px: bicubic, ``align_corners=True``, CLS row kept (``multimodal_encoder/clip_encoder.py``
  ``clip_interpolate_embeddings`` L10-73, called by ``load_model`` L89-93). Features = hidden
  layer ``mm_vision_select_layer`` (-2) with CLS dropped (``feature_select`` L98-106); CLIP's
  ``quick_gelu`` inside the tower.
- ``<image>`` is ``IMAGE_TOKEN_INDEX = -200`` in ``input_ids``, replaced by the 1,296 projected
  features (``geochat_arch.py`` ``encode_images`` and ``prepare_inputs_labels_for_multimodal``).

The converted folder holds the same weights under transformers' Llava names, the
pre-interpolated 1,297-row table with ``vision_config.image_size = 504``, a tokenizer with an
``<image>`` token (``config.image_token_id``; its embedding and ``lm_head`` rows are the mean of
the others: the input row is never used, the output row only adds one extra logit) and a CLIP
image processor at 504 px. ``rotary_emb.inv_freq`` buffers are dropped (recomputed). The tower
weights come from the checkpoint when it holds them (the frozen CLIP weights), else (or with
``--vision-tower``) from the tower model named by ``mm_vision_tower``, where GeoChat's own loader
always takes them. Memory: the whole state dict once (7B fp16: ~14 GB).
Never writes bfloat16: ``dtype="auto"`` keeps float16/float32 and widens bfloat16 to float32.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlavaForConditionalGeneration

from kdlib.models.build import PUBLISHED_VISION, clip_image_processor, llava_config
from kdlib.models.checkpoint import load_state_dict_files
from kdlib.models.io import MissingModelError, locate_model, missing_model_message, read_config, save_mllm
from kdlib.models.tokenizer import IMAGE_TOKEN
from kdlib.profiles import VisionSpec

SRC_TOWER, SRC_PROJECTOR = "model.vision_tower.vision_tower.vision_model.", "model.mm_projector."
DROPPED_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
LLAMA_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
              "rope_scaling", "attention_bias", "bos_token_id", "eos_token_id", "pad_token_id")
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def interpolate_positions(table: torch.Tensor, grid: int) -> torch.Tensor:
    """GeoChat's position-table resize: ``[1 + g^2, D] -> [1 + grid^2, D]``, CLS row kept, the
    ``g x g`` patch grid resized bicubically with ``align_corners=True``."""
    side = math.isqrt(table.shape[0] - 1)
    if side * side != table.shape[0] - 1:
        raise ValueError(f"position table with {table.shape[0]} rows is not 1 + a square grid")
    if side == grid:
        return table
    patches = table[1:].T.reshape(1, table.shape[1], side, side).float()
    resized = torch.nn.functional.interpolate(patches, size=grid, mode="bicubic", align_corners=True)
    return torch.cat([table[:1].float(), resized.reshape(table.shape[1], grid * grid).T]).to(table.dtype)


def geochat_config(src: Path) -> dict[str, Any]:
    config = read_config(str(src))
    if "mm_vision_tower" not in config:
        raise ValueError(f"{src}/config.json has no mm_vision_tower: not a GeoChat/LLaVA-layout checkpoint")
    problems = {k: config.get(k, d) for k, d in (("mm_projector_type", "linear"), ("mm_use_im_start_end", False),
                                                 ("mm_vision_select_feature", "patch"))}
    if problems != {"mm_projector_type": "mlp2x_gelu", "mm_use_im_start_end": False,
                    "mm_vision_select_feature": "patch"}:
        raise ValueError(f"{src}/config.json: only mm_projector_type mlp2x_gelu, mm_use_im_start_end false and "
                         f"mm_vision_select_feature patch (GeoChat's settings) are supported, found {problems}")
    return config


def vision_source(config: dict[str, Any], src: Path, override: str | None) -> str:
    """The tower's folder or hub id: ``override`` > ``mm_vision_tower`` (a folder relative to the
    checkpoint, an absolute folder, ``$KDLIB_MODEL_ROOT/<id>`` or a hub id)."""
    name = override or str(config["mm_vision_tower"])
    relative = src / name
    return str(relative) if relative.is_dir() else name


def tower_config(source: str, have_weights: bool) -> CLIPVisionConfig:
    """CLIP config of the tower; the published one serves when the checkpoint holds the weights."""
    try:
        return CLIPVisionConfig.from_pretrained(locate_model(source))
    except MissingModelError:
        if have_weights and source in PUBLISHED_VISION:
            return CLIPVisionConfig(**PUBLISHED_VISION[source], image_size=336)
        raise


def map_key(key: str, tower_prefix: str) -> str | None:
    """GeoChat key -> Llava key (None: dropped buffer)."""
    if key.endswith(DROPPED_SUFFIXES):
        return None
    if key.startswith(SRC_TOWER):
        return tower_prefix + key[len(SRC_TOWER):]
    if key.startswith(SRC_PROJECTOR):
        index, _, rest = key[len(SRC_PROJECTOR):].partition(".")
        return {"0": "model.multi_modal_projector.linear_1.", "2": "model.multi_modal_projector.linear_2."}.get(
            index, f"<unknown projector layer {index}>.") + rest
    if key.startswith("model."):
        return "model.language_model." + key[len("model."):]
    return key


def add_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """Extend an embedding / output matrix to ``rows`` rows with the mean row."""
    extra = rows - weight.shape[0]
    if extra <= 0:
        return weight
    return torch.cat([weight, weight.float().mean(0, keepdim=True).to(weight.dtype).expand(extra, -1)])


def out_dtype(name: str, found: torch.dtype) -> torch.dtype:
    if name == "auto":
        return torch.float32 if found == torch.bfloat16 else found
    if name not in DTYPES:
        raise ValueError(f"--dtype {name!r}: choose auto, float32 or float16 (never bfloat16)")
    return DTYPES[name]


def local_checkpoint(src: str) -> Path:
    where = locate_model(src)
    if Path(where).is_dir():
        return Path(where)
    try:
        return Path(snapshot_download(src, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model"]))
    except Exception as err:
        raise MissingModelError(missing_model_message(src, type(err).__name__)) from err


def geochat_tokenizer(src: Path) -> Any:
    """GeoChat's tokenizer plus ``<image>``; pad = ``<unk>`` as in LLaVA/GeoChat v1 training."""
    tokenizer = AutoTokenizer.from_pretrained(src)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def meta_llava(config: dict[str, Any], vision: CLIPVisionConfig, tokenizer: Any,
               source: str) -> LlavaForConditionalGeneration:
    """The target model on the meta device (shapes and names only, no memory)."""
    text = LlamaConfig(**{k: config[k] for k in LLAMA_KEYS if config.get(k) is not None}, tie_word_embeddings=False)
    text.vocab_size = max(int(config["vocab_size"]), len(tokenizer))
    text.pad_token_id = tokenizer.pad_token_id
    spec = VisionSpec(source, vision.image_size, vision.patch_size,
                      feature_layer=int(config.get("mm_vision_select_layer", -2)))
    config = llava_config(vision, text, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), spec)
    with torch.device("meta"):
        return LlavaForConditionalGeneration(config)


def tower_from_source(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` with its tower replaced by the weights of the tower model ``source``."""
    state = {k: v for k, v in state.items() if not k.startswith(SRC_TOWER)}
    tower = CLIPVisionModel.from_pretrained(locate_model(source), dtype=torch.float32).state_dict()
    return {**state, **{SRC_TOWER + k.removeprefix("vision_model."): v for k, v in tower.items()}}


def llava_state(state: dict[str, torch.Tensor], model: LlavaForConditionalGeneration,
                src: Any) -> dict[str, torch.Tensor]:
    """GeoChat tensors under the Llava names of ``model``, table interpolated, vocabulary rows added."""
    expected = set(model.state_dict())
    suffix = "embeddings.class_embedding"
    tower_prefix = next(k for k in expected if k.endswith(suffix))[: -len(suffix)]
    mapped = {new: v for k, v in state.items() if (new := map_key(k, tower_prefix)) is not None}
    missing, unexpected = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
    if missing or unexpected:
        raise ValueError(f"{src}: cannot map the checkpoint onto LlavaForConditionalGeneration: missing "
                         f"{missing[:8]} ({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)})")
    vision = model.config.vision_config
    table = tower_prefix + "embeddings.position_embedding.weight"
    mapped[table] = interpolate_positions(mapped[table], vision.image_size // vision.patch_size)
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        mapped[key] = add_rows(mapped[key], model.config.text_config.vocab_size)
    return mapped


def convert_geochat(src: str | os.PathLike, dst: str | os.PathLike, vision_tower: str | None = None,
                    image_size: int = 504, dtype: str = "auto") -> Path:
    """Write ``dst``, a folder ``load_mllm`` / ``LlavaForConditionalGeneration.from_pretrained``
    loads with no missing or unexpected keys, from the GeoChat checkpoint ``src``."""
    src_path = local_checkpoint(str(src))
    config = geochat_config(src_path)
    state = load_state_dict_files(src_path)
    have_tower = vision_tower is None and any(k.startswith(SRC_TOWER) for k in state)
    source = vision_source(config, src_path, vision_tower)
    vision = tower_config(source, have_tower)
    if image_size % vision.patch_size:
        raise ValueError(f"--image-size {image_size} is not a multiple of the patch size {vision.patch_size}")
    vision.image_size = image_size
    tokenizer = geochat_tokenizer(src_path)
    model = meta_llava(config, vision, tokenizer, source)
    mapped = llava_state(state if have_tower else tower_from_source(state, source), model, src)
    target = out_dtype(dtype, mapped["lm_head.weight"].dtype)
    model.load_state_dict({k: v.to(target) for k, v in mapped.items()}, strict=True, assign=True)
    model.config.dtype = str(target).removeprefix("torch.")
    return save_mllm(dst, model, tokenizer, clip_image_processor(image_size))
