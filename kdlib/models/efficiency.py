"""Parameters and FLOPs of teacher and student (the paper's Table 8).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a forward pass of the
model itself: one image of ``image_size`` px (``N`` image tokens) and ``text_len`` text tokens,
so the LLM sees ``N + text_len`` positions. Only matrix products and convolutions are counted,
at 2 FLOPs per multiply-add (FLOPs = 2 x MACs); norms, activations and softmax are not.
Attention runs ``eager`` so its two ``T x T`` products are counted (the CPU SDPA kernel is
invisible to the counter); they are counted in full, causal mask or not. ``tiny`` runs on real
(random) weights; ``paper`` runs on the meta device (shapes only, no weights) with the published
sizes: Vicuna-7B/13B v1.5 (``profile.student``/``profile.teacher``, 32,000 tokens), CLIP
ViT-L/14 at 504 px (1,296 + 1 positions) and the 2-layer projector. ``small`` also runs on the
meta device, with the configs of its pretrained models (read from the model root or hub: the
student keeps ``keep_layers`` of the teacher's decoder, the vocabulary has the ``<image>`` row).
A parameter shared by two modules (SmolLM2 ties ``lm_head`` to the embeddings) counts once.

The paper's numbers (Table 8: GeoChat-7B 6,760.72 M / 6,904.53 G; GeoChat-13B 13,048.66 M /
13,377.05 G) follow another convention, found by trying the candidates:

- parameters = LLM (embeddings and ``lm_head`` included) + projector + the tower's 1,297 x 1,024
  position table, i.e. exactly the parameters that require grad in GeoChat's model: the CLIP
  tower is frozen by ``requires_grad_(False)`` *before* ``clip_interpolate_embeddings`` installs
  a fresh (trainable) ``nn.Embedding`` for the interpolated table (GeoChat commit 3e61ee39,
  ``clip_encoder.py`` ``load_model`` L92-93, the new embedding L69). Both paper values are
  reproduced to the last digit.
- FLOPs = the LLM alone on 512 text tokens (no image, no vision tower, no projector), 2 x MACs:
  6,903.09 G / 13,374.80 G by this counter, 0.02 % below the paper; the rest fits the
  element-wise operations (norms, SiLU, softmax, RoPE) that profilers such as calflops or
  DeepSpeed's add: the residual (1.44 G / 2.25 G) is 0.66 x the element count of the
  element-wise ops (2.18 G / 3.41 G) in both models; two numbers cannot say which ops. With the image (1,296
  more positions, the tower and the projector) the FLOPs are 3.85 (7B) / 3.75 (13B) times larger.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, LlavaForConditionalGeneration, PretrainedConfig

from kdlib.models.build import LLAMA2_VOCAB, llava_config, llm_config, vision_config
from kdlib.models.features import num_image_tokens, projector_features
from kdlib.models.io import locate_model
from kdlib.profiles import LLMSpec, Profile

DEFAULT_TEXT_LEN = 512  # the text length that reproduces Table 8's FLOPs (see the module docstring)
PAPER_TABLE8 = {"teacher": {"model": "GeoChat-13B", "params_M": 13048.66, "flops_G": 13377.05},
                "student": {"model": "GeoChat-7B (distilled)", "params_M": 6760.72, "flops_G": 6904.53}}
PAPER_CONVENTION = ("params: LLM + projector + vision position table (the parameters requiring grad in "
                    "GeoChat); FLOPs: LLM alone on text_len text tokens, no image, 2 x MACs")


def _flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the FLOPs it took."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


def _lm(model: Any, embeds: torch.Tensor) -> Any:
    """LLM + lm_head on given input embeddings (an explicit mask keeps meta tensors off ``.item()``)."""
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    return model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)


def _numel(*modules: torch.nn.Module) -> int:
    """Parameters of ``modules``, each tensor once (tied weights are one parameter)."""
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


def _text_config(spec: LLMSpec, vocab_size: int) -> PretrainedConfig:
    """The LLM config: from the spec's sizes, else the pretrained model's own, cut to ``keep_layers``."""
    if spec.hidden_size > 0:
        return llm_config(spec, vocab_size)
    config = AutoConfig.from_pretrained(locate_model(str(spec.name_or_path)))
    config.vocab_size = vocab_size
    if spec.keep_layers:
        config.num_hidden_layers = len(spec.keep_layers)
        if getattr(config, "layer_types", None):
            config.layer_types = [config.layer_types[i] for i in spec.keep_layers]
    return config


def _vocab_size(profile: Profile) -> int:
    """Random profiles: theirs; published sizes: LLaMA-2's; pretrained LLMs: theirs + the ``<image>`` row."""
    if profile.vocab_size:
        return profile.vocab_size
    if profile.teacher.hidden_size > 0:
        return LLAMA2_VOCAB
    return AutoConfig.from_pretrained(locate_model(str(profile.teacher.name_or_path))).vocab_size + 1


def _part(params: int, flops: int) -> dict[str, float]:
    return {"params_M": round(params / 1e6, 2), "flops_G": round(flops / 1e9, 2)}


def count_model(model: Any, text_len: int, batch_size: int = 1) -> dict[str, Any]:
    """Params and FLOPs of one Llava model, whole and by part, plus the paper's convention."""
    inner = model.model
    device = next(model.parameters()).device
    size = model.config.vision_config.image_size
    pixels = torch.zeros(batch_size, 3, size, size, device=device)
    ids = torch.zeros(batch_size, text_len, dtype=torch.long, device=device)
    with torch.no_grad():
        feats, tower_and_projector = _flops(lambda: projector_features(model, pixels))
        width = inner.multi_modal_projector.linear_1.in_features
        _, projector = _flops(lambda: inner.multi_modal_projector(torch.zeros(*feats.shape[:2], width, device=device)))
        text = model.get_input_embeddings()(ids)
        sequence = torch.cat([text[:, :1], feats.to(text.dtype), text[:, 1:]], dim=1)  # image after BOS
        _, llm = _flops(lambda: _lm(model, sequence))
        _, llm_text_only = _flops(lambda: _lm(model, text))
    params = {"vision_tower": _numel(inner.vision_tower), "projector": _numel(inner.multi_modal_projector),
              "llm": _numel(inner.language_model, model.lm_head)}
    positions = next(p for n, p in inner.vision_tower.named_parameters()
                     if n.endswith(("position_embedding.weight", "position_embeddings")))
    flops = {"vision_tower": tower_and_projector - projector, "projector": projector, "llm": llm}
    return {
        **_part(sum(params.values()), sum(flops.values())),
        "parts": {name: _part(params[name], flops[name]) for name in params},
        "paper_convention": _part(params["llm"] + params["projector"] + positions.numel(), llm_text_only),
    }


def efficiency(profile: Profile, text_len: int = DEFAULT_TEXT_LEN, batch_size: int = 1,
               device: str | None = None) -> dict[str, Any]:
    """Params (M) and FLOPs (G) of the profile's teacher and student for one image + ``text_len``
    text tokens. ``device`` defaults to ``cpu`` (real random weights) for random profiles and to
    ``meta`` (no weights) otherwise; pretrained models (``small``) need their configs (model root or hub)."""
    if text_len < 1 or batch_size < 1:
        raise ValueError(f"text_len {text_len} and batch_size {batch_size} must be >= 1")
    random = profile.teacher.name_or_path is None and profile.student.name_or_path is None
    device = device or ("cpu" if random else "meta")
    vocab = _vocab_size(profile)
    vision = vision_config(profile.vision)
    result: dict[str, Any] = {}
    for role in ("teacher", "student"):
        text = _text_config(getattr(profile, role), vocab)
        config = llava_config(vision, text, 0, profile.vision, attn_implementation="eager")
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(0)
            model = LlavaForConditionalGeneration(config).eval()
        result[role] = count_model(model, text_len, batch_size)
    n_image = num_image_tokens(model)
    t, s = result["teacher"], result["student"]
    return {
        "profile": profile.name,
        "input": {"batch_size": batch_size, "image_size": profile.vision.image_size, "image_tokens": n_image,
                  "text_len": text_len, "llm_positions": n_image + text_len, "vocab_size": vocab,
                  "device": device, "attention": "eager",
                  "counter": "torch.utils.flop_counter.FlopCounterMode: matmul/conv only, FLOPs = 2 x MACs"},
        **result,
        "student_over_teacher": {"params": round(s["params_M"] / t["params_M"], 4),
                                 "flops": round(s["flops_G"] / t["flops_G"], 4)},
        "paper_convention": PAPER_CONVENTION,
        "paper_table8": PAPER_TABLE8,
    }


def efficiency_table(result: dict[str, Any]) -> str:
    """Plain-text Table 8: ours (whole model, image + text), ours in the paper's convention, paper."""
    inp = result["input"]
    head = ("model", "params M", "FLOPs G", "params M (paper conv.)", "FLOPs G (paper conv.)",
            "paper params M", "paper FLOPs G")
    rows = [head]
    for role in ("teacher", "student"):
        ours, conv, paper = result[role], result[role]["paper_convention"], result["paper_table8"][role]
        rows.append((f"{role}: {paper['model']}" if result["profile"] == "paper" else role,
                     f"{ours['params_M']:.2f}", f"{ours['flops_G']:.2f}", f"{conv['params_M']:.2f}",
                     f"{conv['flops_G']:.2f}", f"{paper['params_M']:.2f}", f"{paper['flops_G']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["",
              f"input: 1 image of {inp['image_size']} px ({inp['image_tokens']} image tokens) + {inp['text_len']} text "
              f"tokens = {inp['llm_positions']} LLM positions, batch {inp['batch_size']}, on {inp['device']}",
              f"counter: {inp['counter']}; eager attention, T x T products counted in full",
              "params M / FLOPs G: the whole model (vision tower + projector + LLM with lm_head)",
              f"paper conv.: {result['paper_convention']}",
              "the paper columns are GeoChat's Table 8 (paper profile sizes); other profiles list them for reference"]
    return "\n".join(lines)
