"""Teacher and student of each profile, all as ``transformers.LlavaForConditionalGeneration``.

The design is GeoChat's (``docs/methods.md`` §3.1): a CLIP vision tower whose hidden layer
``vision_feature_layer = -2`` minus the CLS token (``vision_feature_select_strategy="default"``)
gives ``N = (image_size / patch_size)^2`` patch features ``[B, N, D_v]``; the 2-layer MLP
projector ``z(x) = W_2 GELU(W_1 f + b_1) + b_2`` maps them to the LLM width ``[B, N, D]``
(``projector_hidden_act="gelu"``, exact erf GELU like GeoChat's ``nn.GELU()``); the ``N``
copies of the ``<image>`` token in ``input_ids`` are replaced by ``z(x)`` before the LLaMA LLM.

- ``tiny``: random configs from the profile, the teacher wider and deeper, one vocabulary (the
  tokenizer of :func:`kdlib.models.build_tokenizer`) and one vision tower state shared by both.
- ``small``: :func:`build_from_pretrained` (pretrained LLM + vision ids, ``keep_layers`` for the
  student); with ``vision.pool_grid = g > 0`` the tower is wrapped by
  :class:`kdlib.models.pooling.PooledVisionTower`, which average-pools the patch grid of every
  hidden state to ``g x g`` tokens (DINOv2-S/14 at 224 px: 16 x 16 -> 8 x 8 = 64 tokens).
- ``paper``: converted GeoChat folders (``kdlib convert-geochat``) loaded by :func:`load_mllm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForCausalLM, AutoTokenizer,
                          CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          PretrainedConfig)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from kdlib.models.io import LoadedMLLM, freeze_vision_tower, load_mllm, locate_model, read_config
from kdlib.models.pooling import PooledVisionConfig, inner_tower
from kdlib.models.tokenizer import IMAGE_TOKEN
from kdlib.models.vocab import check_same_vocab, image_token_id
from kdlib.profiles import LLMSpec, Profile, VisionSpec

LLAMA2_VOCAB = 32000  # Vicuna-v1.5 / LLaMA-2 tokenizer size (GeoChat adds no token)
# Published config of openai/clip-vit-large-patch14(-336): the tower of GeoChat (``docs/methods.md`` §3.1).
CLIP_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5)
PUBLISHED_VISION = {"openai/clip-vit-large-patch14-336": CLIP_L14, "openai/clip-vit-large-patch14": CLIP_L14}
# Towers that interpolate their position table to any input size: their config keeps the checkpoint's
# image_size (the table's), and the profile's image_size reaches them through the pooling wrapper.
INTERPOLATING_TOWERS = ("dinov2", "dinov2_with_registers")


@dataclass(frozen=True)
class ModelPair:
    """Teacher and student sharing one tokenizer (one vocabulary) and one image processor."""

    teacher: LlavaForConditionalGeneration
    student: LlavaForConditionalGeneration
    tokenizer: Any
    image_processor: Any


def tower_config(spec: VisionSpec) -> PretrainedConfig:
    """The ViT config: random CLIP (``name_or_path`` None), a published CLIP, or the model's own;
    ``image_size`` is the profile's (504 px -> 1,296 patches for GeoChat) except for
    :data:`INTERPOLATING_TOWERS`, which keep the checkpoint's."""
    if spec.name_or_path is None:
        return CLIPVisionConfig(hidden_size=spec.hidden_size, intermediate_size=4 * spec.hidden_size,
                                num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                                image_size=spec.image_size, patch_size=spec.patch_size)
    if spec.name_or_path in PUBLISHED_VISION:
        return CLIPVisionConfig(**PUBLISHED_VISION[spec.name_or_path], image_size=spec.image_size)
    config = AutoConfig.from_pretrained(locate_model(spec.name_or_path))
    config = getattr(config, "vision_config", config)
    if config.model_type not in INTERPOLATING_TOWERS:
        config.image_size = spec.image_size
    return config


def vision_config(spec: VisionSpec) -> PretrainedConfig:
    """The config of the LLaVA vision tower: the ViT's (:func:`tower_config`), wrapped by the pooling
    tower when ``spec.pool_grid > 0`` (``pool_grid^2`` image tokens, :mod:`kdlib.models.pooling`)."""
    tower = tower_config(spec)
    if tower.patch_size != spec.patch_size:
        raise ValueError(f"vision.patch_size {spec.patch_size} differs from the patch size {tower.patch_size} "
                         f"of the tower {spec.name_or_path}")
    if spec.pool_grid:
        return PooledVisionConfig(tower_config=tower, image_size=spec.image_size, pool_grid=spec.pool_grid)
    if tower.image_size != spec.image_size:
        raise ValueError(f"the {tower.model_type} tower {spec.name_or_path} takes vision.image_size "
                         f"{spec.image_size} only through pooling: set vision.pool_grid (e.g. "
                         f"{spec.image_size // spec.patch_size} to keep all its patch tokens)")
    return tower


def llm_config(spec: LLMSpec, vocab_size: int, bos: int | None = None, eos: int | None = None,
               pad: int | None = None) -> LlamaConfig:
    """A LLaMA config from the spec's sizes (random ``tiny`` LLMs; Vicuna sizes for ``paper``)."""
    if spec.hidden_size <= 0:
        raise ValueError(f"LLM {spec.name_or_path!r} has no sizes in the profile; load its own config")
    return LlamaConfig(vocab_size=vocab_size, hidden_size=spec.hidden_size,
                       intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
                       num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
                       max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)


def llava_config(vision: PretrainedConfig, text: PretrainedConfig, image_token: int, spec: VisionSpec,
                 attn_implementation: str | None = None) -> LlavaConfig:
    """GeoChat's wiring: feature layer, CLS dropped, GELU MLP projector, ``N`` image tokens."""
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                         image_seq_length=spec.num_image_tokens, projector_hidden_act="gelu",
                         vision_feature_layer=spec.feature_layer, vision_feature_select_strategy="default",
                         tie_word_embeddings=bool(getattr(text, "tie_word_embeddings", False)))
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def clip_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """CLIP preprocessing at ``image_size``: resize the short side, centre-crop, CLIP mean/std
    (GeoChat's eval scripts: ``shortest_edge=504``, crop 504)."""
    return CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                 crop_size={"height": image_size, "width": image_size},
                                 image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)


def spec_configs(profile: Profile, vocab_size: int, image_token: int, bos: int | None = None,
                 eos: int | None = None, pad: int | None = None,
                 attn_implementation: str | None = None) -> tuple[LlavaConfig, LlavaConfig]:
    """Teacher and student configs from the profile's sizes (random ``tiny``, Vicuna for ``paper``)."""
    vision = vision_config(profile.vision)
    return tuple(llava_config(vision, llm_config(spec, vocab_size, bos, eos, pad), image_token,
                              profile.vision, attn_implementation)
                 for spec in (profile.teacher, profile.student))


def build_random_pair(profile: Profile, tokenizer: Any, seed: int = 0,
                      attn_implementation: str | None = None) -> ModelPair:
    """Random teacher and student (``tiny``) sharing one frozen vision tower state."""
    t_cfg, s_cfg = spec_configs(profile, len(tokenizer), image_token_id(tokenizer), tokenizer.bos_token_id,
                                tokenizer.eos_token_id, tokenizer.pad_token_id, attn_implementation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = LlavaForConditionalGeneration(t_cfg)
        torch.manual_seed(seed + 1)
        student = LlavaForConditionalGeneration(s_cfg)
    student.model.vision_tower.load_state_dict(teacher.model.vision_tower.state_dict())
    for model in (teacher, student):
        freeze_vision_tower(model)
    return ModelPair(teacher, student, tokenizer, clip_image_processor(profile.vision.image_size))


def drop_layers(llm: Any, keep_layers: tuple[int, ...]) -> Any:
    """Keep only the decoder layers ``keep_layers`` (in that order) of a causal LM, in place."""
    layers = llm.model.layers
    bad = [i for i in keep_layers if not 0 <= i < len(layers)]
    if bad or not keep_layers:
        raise ValueError(f"keep_layers {keep_layers}: indices must lie in [0, {len(layers)}) and be non-empty")
    llm.model.layers = torch.nn.ModuleList(layers[i] for i in keep_layers)
    for new_index, layer in enumerate(llm.model.layers):
        layer.self_attn.layer_idx = new_index  # KV-cache slot
    llm.config.num_hidden_layers = len(keep_layers)
    if getattr(llm.config, "layer_types", None):
        llm.config.layer_types = [llm.config.layer_types[i] for i in keep_layers]
    return llm


def build_from_pretrained(llm_id: str, vision_spec: VisionSpec, keep_layers: tuple[int, ...] = (),
                          seed: int = 0, attn_implementation: str | None = None) -> LoadedMLLM:
    """An MLLM from a pretrained LLM and a pretrained vision tower, projector random (seeded).

    The ``small`` profile's models. The tokenizer gets an ``<image>`` token and the LLM one more
    embedding row for it; ``keep_layers`` cuts the student's decoder (:func:`drop_layers`); the
    tower is pooled when ``vision_spec.pool_grid > 0`` (:func:`vision_config`).
    """
    llm_path = locate_model(llm_id)
    vision_path = locate_model(str(vision_spec.name_or_path))
    llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=torch.float32)
    if keep_layers:
        drop_layers(llm, keep_layers)
    tokenizer = AutoTokenizer.from_pretrained(llm_path)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tower = AutoModel.from_pretrained(vision_path, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        llm.resize_token_embeddings(len(tokenizer))  # seeded: teacher and student get one <image> row
        config = llava_config(vision_config(vision_spec), llm.config, image_token_id(tokenizer), vision_spec,
                              attn_implementation)
        model = LlavaForConditionalGeneration(config)
    inner_tower(model).load_state_dict(tower.state_dict())
    model.model.language_model.load_state_dict(llm.model.state_dict())
    model.lm_head.load_state_dict(llm.lm_head.state_dict())
    freeze_vision_tower(model)
    processor = AutoImageProcessor.from_pretrained(vision_path)
    processor.size = {"shortest_edge": vision_spec.image_size}
    processor.crop_size = {"height": vision_spec.image_size, "width": vision_spec.image_size}
    return LoadedMLLM(model, tokenizer, processor)


def load_member(profile: Profile, role: str, seed: int = 0, attn_implementation: str | None = None) -> LoadedMLLM:
    """The teacher or student (``role``) of a pretrained profile: a converted MLLM folder or hub id
    is loaded (``paper``, in bfloat16 when ``profile.dtype`` says so: 13B + 7B in float32 would
    fill an 80 GB GPU); a plain LLM is joined to ``profile.vision`` (``small``)."""
    spec: LLMSpec = getattr(profile, role)
    if not spec.name_or_path:
        raise ValueError(f"profile {profile.name}: {role}.name_or_path is empty. No GeoChat-13B is released: "
                         f"train one, convert it with `kdlib convert-geochat SRC DST` and pass "
                         f"--set {role}.name_or_path=DST")
    where = locate_model(spec.name_or_path)
    config = read_config(where)
    if "vision_config" in config or "mm_vision_tower" in config:
        dtype = torch.bfloat16 if profile.dtype == "bfloat16" else None
        return load_mllm(where, dtype=dtype, attn_implementation=attn_implementation)
    return build_from_pretrained(where, profile.vision, spec.keep_layers, seed, attn_implementation)


def build_pair(profile: Profile, tokenizer: Any = None, seed: int = 0,
               attn_implementation: str | None = None) -> ModelPair:
    """Teacher and student of ``profile`` (see the module docstring); ``tokenizer`` is needed for
    random models only. ``attn_implementation="eager"`` gives attention maps (Align-KD)."""
    if profile.teacher.name_or_path is None and profile.student.name_or_path is None:
        if tokenizer is None:
            raise ValueError(f"profile {profile.name}: random models need a tokenizer (kdlib.models.build_tokenizer)")
        return build_random_pair(profile, tokenizer, seed, attn_implementation)
    teacher = load_member(profile, "teacher", seed, attn_implementation)
    student = load_member(profile, "student", seed, attn_implementation)
    check_same_vocab(teacher.tokenizer, student.tokenizer)
    check_same_vocab(teacher.model, student.model)
    return ModelPair(teacher.model, student.model, student.tokenizer, student.image_processor)
