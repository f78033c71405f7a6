"""The shared vocabulary of teacher and student: the image token and the equality check.

Token-level distillation (reverse KL over the vocabulary, Eq. 6-10) compares ``p(v | y_<t, x)``
and ``q(v | y_<t, x)`` entry by entry, so teacher and student must share one vocabulary: same
size, same token for every id, same ``<image>`` id (GeoChat-7B and -13B both use the 32,000
LLaMA-2 tokens; ``tiny`` uses one kdlib tokenizer for both).
"""

from __future__ import annotations

from typing import Any

from kdlib.models.lora import unwrap
from kdlib.models.tokenizer import IMAGE_TOKEN


def _is_tokenizer(obj: Any) -> bool:
    return hasattr(obj, "get_vocab") and hasattr(obj, "convert_tokens_to_ids")


def image_token_id(model_or_tokenizer: Any) -> int:
    """Id of ``<image>``: ``config.image_token_id`` of a model, or the tokenizer's ``<image>`` id."""
    if _is_tokenizer(model_or_tokenizer):
        vocab = model_or_tokenizer.get_vocab()
        if IMAGE_TOKEN not in vocab:
            raise ValueError(f"the tokenizer has no {IMAGE_TOKEN} token (add it with "
                             f"tokenizer.add_tokens(['{IMAGE_TOKEN}'], special_tokens=True))")
        return int(vocab[IMAGE_TOKEN])
    return int(unwrap(model_or_tokenizer).config.image_token_id)


def _vocab_size(model: Any) -> int:
    config = unwrap(model).config
    return int(getattr(config, "text_config", config).vocab_size)


def check_same_vocab(teacher: Any, student: Any) -> None:
    """Raise ``ValueError`` unless two tokenizers (or two models) share one vocabulary.

    Tokenizers: same token -> id map. Models: same LLM vocabulary size and ``<image>`` id (None for
    a plain causal LM).
    """
    if _is_tokenizer(teacher) != _is_tokenizer(student):
        raise TypeError("check_same_vocab compares two tokenizers or two models, not one of each")
    if _is_tokenizer(teacher):
        tv, sv = teacher.get_vocab(), student.get_vocab()
        if tv != sv:
            differ = sorted(set(tv.items()) ^ set(sv.items()), key=lambda kv: kv[1])[:5]
            raise ValueError(f"teacher and student vocabularies differ: {len(tv)} vs {len(sv)} tokens; "
                             f"first differing (token, id) pairs: {differ}")
        return
    sizes = (_vocab_size(teacher), _vocab_size(student))
    images = tuple(getattr(unwrap(m).config, "image_token_id", None) for m in (teacher, student))
    if sizes[0] != sizes[1] or images[0] != images[1]:
        raise ValueError(f"teacher and student vocabularies differ: vocab_size {sizes[0]} vs {sizes[1]}, "
                         f"image_token_id {images[0]} vs {images[1]}")
