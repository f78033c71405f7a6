"""Batches for LLaVA-style models: token ids with expanded image tokens, labels, pixel values.

Each item (a :class:`Record` or a GeoChat conversation dict) is rendered in the Vicuna-v1 chat
format (:func:`kdlib.data.prompts.render_conversation`) and tokenised turn by turn::

    [special prefix, e.g. <s>] SYSTEM USER: <image> x N \\n query ASSISTANT: | answer </s> | USER: ...

- The single ``<image>`` placeholder (one token id, ``tokenizer.convert_tokens_to_ids("<image>")``)
  is repeated ``num_image_tokens`` times: transformers' ``LlavaForConditionalGeneration``
  scatters the projector outputs into exactly the positions where
  ``input_ids == config.image_token_id`` and checks that their number equals the number of
  image features.
- ``labels`` copy ``input_ids`` on answer tokens and the eos closing each answer; every other
  position (special prefix, system, prompts, image tokens, padding) is ``-100``. A token is an
  answer token when its character offset starts at or after the end of its turn's prompt, so the
  prompt and the answer are tokenised together, as the model sees them.
- ``max_length`` bounds the *text* tokens (image tokens excluded, as ``DataSpec.max_length``):
  sequences keep the image tokens and the whole first prompt and lose the tail (answer tokens,
  then later turns). A first prompt longer than ``max_length`` raises ``ValueError`` naming the
  item: a silently unlabelled row would train on nothing.
- ``mode="train"``: right padding, ``labels`` returned. ``mode="generate"``: the prompt up to the
  last answer, left padding (generation appends on the right), no ``labels``.

Output: ``input_ids``, ``attention_mask`` (``[B, L]`` int64), ``labels`` (``[B, L]``, train only),
``pixel_values`` (``[B, 3, H, W]`` float32, from ``image_processor(images=[PIL, ...],
return_tensors="pt")``).

:func:`text_batch` makes the text-only batches of the pre-training term (Eq. 7's ``D_PT``) and of
the layer measurements: each text followed by eos, right-padded, every real token labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from kdlib.data.instructions import to_conversation
from kdlib.data.prompts import IMAGE_TOKEN, render_conversation
from kdlib.data.records import Record, load_image

IGNORE_INDEX = -100
MODES = ("train", "generate")


def special_prefix(tokenizer: Any) -> list[int]:
    """Ids the tokenizer puts before a text on its own (``<s>`` for Llama, nothing for GPT-2 style)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return list(full[:start])
    return []


@dataclass
class Collator:
    """Callable turning a list of Records / conversation dicts into model inputs (module docstring)."""

    tokenizer: Any
    image_processor: Any
    num_image_tokens: int
    max_length: int
    mode: str = "train"
    image_root: Path | None = None  # base folder for relative ``image`` names in conversation dicts

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"Collator mode {self.mode!r}: choose one of {MODES}")
        if self.num_image_tokens < 1 or self.max_length < 1:
            raise ValueError("num_image_tokens and max_length must be >= 1")
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("Collator needs a fast tokenizer (it uses character offsets)")
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_TOKEN} token; add it as a special token")
        if self.tokenizer.pad_token_id is None or self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad token and an eos token")
        self.prefix = special_prefix(self.tokenizer)

    def __call__(self, items: Sequence[Record | dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        convs = [to_conversation(it) if isinstance(it, Record) else it for it in items]
        encoded = [self.encode(conv) for conv in convs]
        batch = self.pad(encoded)
        batch["pixel_values"] = self.pixel_values(convs)
        return batch

    def pixel_values(self, convs: Sequence[dict]) -> torch.Tensor:
        """The conversations' pictures through the image processor: ``[B, 3, H, W]`` float32."""
        pixels = self.image_processor(images=[self.image(conv) for conv in convs], return_tensors="pt")["pixel_values"]
        return torch.as_tensor(pixels, dtype=torch.float32)

    def encode(self, conv: dict) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of one conversation, image tokens expanded, truncated."""
        turns = list(conv["conversations"])
        if self.mode == "generate" and turns and turns[-1].get("from") == "gpt":
            turns = turns[:-1]
        ids, labels = list(self.prefix), [IGNORE_INDEX] * len(self.prefix)
        first_prompt: int | None = None
        for prompt, target in render_conversation(turns, eos=""):
            enc = self.tokenizer(prompt + target, add_special_tokens=False, return_offsets_mapping=True)
            answer = [bool(target) and start >= len(prompt) for start, _ in enc["offset_mapping"]]
            ids += enc["input_ids"]
            labels += [tok if a else IGNORE_INDEX for tok, a in zip(enc["input_ids"], answer)]
            if first_prompt is None:
                first_prompt = len(ids) - sum(answer)
            if target:
                ids.append(self.tokenizer.eos_token_id)
                labels.append(self.tokenizer.eos_token_id)
        ids, labels = self.expand_image(ids, labels, conv)
        # the <image> placeholder becomes image tokens, which max_length does not count
        return self.truncate(ids, labels, (first_prompt or 1) - 1, conv)

    def expand_image(self, ids: list[int], labels: list[int], conv: dict) -> tuple[list[int], list[int]]:
        """Replace the one ``<image>`` id by ``num_image_tokens`` copies (labels -100)."""
        where = [i for i, t in enumerate(ids) if t == self.image_token_id]
        if len(where) != 1:
            raise ValueError(f"item {conv.get('id')}: expected one {IMAGE_TOKEN} in the prompt, found {len(where)}")
        i, n = where[0], self.num_image_tokens
        return ids[:i] + [self.image_token_id] * n + ids[i + 1:], labels[:i] + [IGNORE_INDEX] * n + labels[i + 1:]

    def truncate(self, ids: list[int], labels: list[int], prompt_text_len: int,
                 conv: dict) -> tuple[list[int], list[int]]:
        """Cut to ``max_length`` text tokens (+ image tokens); the first prompt must fit whole."""
        if prompt_text_len > self.max_length:
            raise ValueError(f"item {conv.get('id')}: its prompt has {prompt_text_len} text tokens, more than "
                             f"max_length {self.max_length}; raise data.max_length")
        limit = self.max_length + self.num_image_tokens
        return ids[:limit], labels[:limit]

    def pad(self, encoded: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Right-pad (train) or left-pad (generate) to the longest item (:func:`pad_sequences`)."""
        return pad_sequences(encoded, self.tokenizer.pad_token_id, self.mode)

    def image(self, conv: dict) -> Image.Image:
        """The conversation's picture (RGB, cropped to ``crop`` when given)."""
        if not conv.get("image"):
            raise ValueError(f"item {conv.get('id')} has no image; the Collator needs one per item")
        path = Path(conv["image"])
        if not path.is_absolute() and self.image_root is not None:
            path = Path(self.image_root) / path
        crop = conv.get("crop")
        return load_image(Record(id=str(conv.get("id", path)), task="scene", image=path, question="", answer="",
                                 meta={"crop": tuple(crop)} if crop else {}))


def pad_sequences(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int, mode: str) -> dict[str, torch.Tensor]:
    """``(input_ids, labels)`` pairs to ``[B, L]`` tensors, ``L`` the longest item; pads are masked out.

    ``mode="train"``: right padding, ``labels`` (-100 on padding) returned; ``"generate"``: left padding, no labels.
    """
    length = max(len(ids) for ids, _ in encoded)
    rows, masks, labs = [], [], []
    for ids, labels in encoded:
        n = length - len(ids)
        if mode == "train":
            rows.append(ids + [pad_id] * n)
            masks.append([1] * len(ids) + [0] * n)
            labs.append(labels + [IGNORE_INDEX] * n)
        else:
            rows.append([pad_id] * n + ids)
            masks.append([0] * n + [1] * len(ids))
    batch = {"input_ids": torch.tensor(rows, dtype=torch.long), "attention_mask": torch.tensor(masks, dtype=torch.long)}
    if mode == "train":
        batch["labels"] = torch.tensor(labs, dtype=torch.long)
    return batch


def text_batch(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded LM batch of plain texts (each followed by EOS): ``input_ids``, ``attention_mask``,
    ``labels`` (= ids, -100 on padding), ``[B, L]`` with ``L <= max_length``."""
    enc = tokenizer([t + tokenizer.eos_token for t in texts], truncation=True, max_length=max_length,
                    padding="longest", padding_side="right", return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
