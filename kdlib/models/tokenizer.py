"""The tokenizer kdlib trains offline for the ``tiny`` profile.

A byte-level BPE (GPT-2 style: every byte is a base symbol, so no text is ever ``<unk>`` and
``decode(encode(text)) == text``) trained with the Hugging Face ``tokenizers`` library on the
study's own texts. Special tokens come first and have fixed ids:

    <unk> = 0, <s> = 1 (BOS, prepended like LLaMA's tokenizer), </s> = 2 (EOS), <pad> = 3,
    <image> = 4 (the image placeholder, expanded to the image tokens, see ``kdlib.models.build``).

Training is deterministic: the same texts in the same order give the same vocabulary and merges.
The vocabulary can end up smaller than ``vocab_size`` when the texts have fewer distinct merges;
models are then sized to ``len(tokenizer)``.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

UNK, BOS, EOS, PAD, IMAGE_TOKEN = "<unk>", "<s>", "</s>", "<pad>", "<image>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD, IMAGE_TOKEN)
MODEL_MAX_LENGTH = 2048


def build_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of at most ``vocab_size`` tokens on ``texts``.

    Returns a ``PreTrainedTokenizerFast`` with ``bos/eos/unk/pad`` set, ``<image>`` as a special
    token (``tokenizer.image_token``), a BOS added by ``tokenizer(text)`` and right padding.
    """
    base = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size <= base:
        raise ValueError(f"vocab_size {vocab_size} must exceed the {base} special and byte tokens")
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("build_tokenizer needs at least one non-empty text")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
        model_max_length=MODEL_MAX_LENGTH,
    )
