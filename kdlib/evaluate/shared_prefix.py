"""Greedy decoding that computes every shared prompt prefix once and reuses its KV cache.

A generation prompt (Vicuna-v1, :class:`~kdlib.data.collate.Collator` with the image tokens expanded) is

    [<s>] {SYSTEM} USER: <image> x N \\n{query} ASSISTANT:

The picture comes before the query, so all questions on one picture share the prompt up to (at
least) its last image token. :func:`plan_prompts` cuts each prompt as ``x_i = h + c_g(i) + s_i``:

- the head ``h``: the longest common prefix of all prompts that ends before the first image token
  (special prefix, system line, ``USER:``), text only: one forward per call;
- the picture part ``c_g``: for two or more records on picture ``g`` (same file, crop and tokens up
  to the image) the rest of their longest common prefix, image tokens included, ending at least one
  token before the shortest of their prompts: one forward per picture, with its pixel values, after
  the head's cache. A record alone on its picture has an empty part: nothing to share;
- the suffix ``s_i`` (>= 1 token): one row per record, after its picture part's cache (the head's
  when the part is empty; the suffix then holds the image tokens and the forward the pixel values),
  then greedy decoding.

RSVQA asks ~100 questions per picture, which then share system + image (~100 tokens); a scene
record is alone on its picture, so it shares only the head (its class list follows the image).

Each forward extends cached prefixes (keys and values of real tokens only) by chunks of new tokens
(:func:`extend`). A batch row is laid out as

    [0 ... 0 | cached prefix | pad ... pad | chunk]        attention_mask 0 on both paddings

with zero keys/values and pad tokens in the gaps and positions ``cumsum(mask) - 1``
(:func:`kdlib.sampling.position_ids`), so each real token attends to exactly the real tokens before
it, at the positions of its unpadded prompt: the computation of one forward on the whole prompt.
Greedy decoding (:func:`greedy_continue`) then takes ``argmax`` of the fp32 logits as ``generate``
does; answers equal :func:`kdlib.evaluate.generate.generate_batch`'s up to the floating-point
rounding of differently shaped products.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache, LlavaForConditionalGeneration

from kdlib.data.collate import Collator
from kdlib.data.instructions import to_conversation
from kdlib.data.records import Record
from kdlib.models.lora import unwrap
from kdlib.sampling import next_token_logits, position_ids


def caches_prefixes(model: Any) -> bool:
    """Whether chunked forwards after a cache compute what one forward on the whole prompt does: true
    for a LLaVA model (or a peft wrapper of one), not for a wrapper that edits the prompt inside its
    forward (:class:`kdlib.analysis.pruning_eval.PrunedMLLM` drops image tokens)."""
    return isinstance(unwrap(model), LlavaForConditionalGeneration)


@dataclass(frozen=True)
class CachedPrefix:
    """Keys and values of one sequence's real tokens: per LLM layer ``(keys, values)``, each ``[H_kv, P, D_h]``."""

    layers: tuple[tuple[Tensor, Tensor], ...]

    @property
    def length(self) -> int:
        """``P``, the cached tokens."""
        return self.layers[0][0].shape[1]


@dataclass(frozen=True)
class Extended:
    """A batch after a forward: its cache (``[B, H_kv, L, D_h]`` keys and values per layer), the
    ``attention_mask`` ``[B, L]`` over the cached columns and the next token's logits ``[B, V]`` (fp32)."""

    cache: Any
    mask: Tensor
    logits: Tensor

    def rows(self) -> list[CachedPrefix]:
        """Each row's real tokens (mask 1), padding dropped."""
        keep = self.mask.bool()
        layers = [(layer.keys, layer.values) for layer in self.cache.layers]
        return [CachedPrefix(tuple((k[b][:, keep[b]], v[b][:, keep[b]]) for k, v in layers))
                for b in range(len(keep))]


def stack_prefixes(bases: Sequence[CachedPrefix | None], device: torch.device) -> tuple[Any, Tensor | None]:
    """Cached prefixes left-padded with zero keys/values to the longest ``P``: a ``DynamicCache``
    (``[B, H_kv, P, D_h]`` per layer) and its mask ``[B, P]``; ``(None, None)`` when nothing is cached."""
    lengths = [0 if base is None else base.length for base in bases]
    longest = max(lengths)
    if longest == 0:
        return None, None
    template = next(base for base, n in zip(bases, lengths) if n)

    def column(layer: int, which: int) -> Tensor:
        ref = template.layers[layer][which]
        out = ref.new_zeros(len(bases), ref.shape[0], longest, ref.shape[2])
        for b, (base, n) in enumerate(zip(bases, lengths)):
            if n:
                out[b, :, longest - n:] = base.layers[layer][which]
        return out

    cache = DynamicCache(ddp_cache_data=[(column(j, 0), column(j, 1)) for j in range(len(template.layers))])
    mask = torch.tensor([[0] * (longest - n) + [1] * n for n in lengths], dtype=torch.long, device=device)
    return cache, mask


def extend(model: Any, bases: Sequence[CachedPrefix | None], chunks: Sequence[Sequence[int]], pad_token_id: int,
           pixel_values: Tensor | None = None) -> Extended:
    """One forward feeding row ``b``'s token ids ``chunks[b]`` (non-empty) after its cached ``bases[b]``
    (None: nothing), laid out as in the module docstring; ``pixel_values`` ``[n, 3, S, S]`` fill the
    image tokens of the chunks, in row order."""
    if any(len(chunk) == 0 for chunk in chunks):
        raise ValueError("every chunk needs at least one token")
    device = model.device
    width = max(len(chunk) for chunk in chunks)
    ids = torch.tensor([[pad_token_id] * (width - len(c)) + list(c) for c in chunks], dtype=torch.long, device=device)
    chunk_mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunks], dtype=torch.long, device=device)
    cache, base_mask = stack_prefixes(bases, device)
    mask = chunk_mask if base_mask is None else torch.cat([base_mask, chunk_mask], dim=1)
    pixels = None if pixel_values is None else pixel_values.to(device, model.dtype)
    logits, cache = next_token_logits(model, ids, mask, position_ids(mask)[:, -width:], cache, pixels)
    return Extended(cache, mask, logits)


def greedy_continue(model: Any, state: Extended, max_new_tokens: int, eos_token_id: int,
                    pad_token_id: int) -> Tensor:
    """Greedy tokens ``[B, T]`` after ``state``: ``y_t = argmax_v logits_t``, fed back one at a time
    with the cache; stops when every row has produced eos or ``T = max_new_tokens``; pad after eos."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    cache, mask, logits = state.cache, state.mask, state.logits
    position = position_ids(mask)[:, -1:]
    done = torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
    tokens: list[Tensor] = []
    while True:
        token = logits.argmax(dim=-1).masked_fill(done, pad_token_id)
        tokens.append(token)
        done = done | (token == eos_token_id)
        if len(tokens) == max_new_tokens or bool(done.all()):
            return torch.stack(tokens, dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        position = position + 1
        logits, cache = next_token_logits(model, token.unsqueeze(-1), mask, position, cache)


def common_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of ``sequences``."""
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for other in sequences[1:]:
        n = next((j for j in range(n) if other[j] != first[j]), n)
    return n


@dataclass(frozen=True)
class PromptPlan:
    """Prompts cut as ``x_i = head + pictures[picture_of[i]] + suffixes[i]`` (module docstring)."""

    head: list[int]
    pictures: list[list[int]]  # empty for a record alone on its picture
    picture_convs: list[dict]  # one conversation per picture, to load its pixels from
    picture_of: list[int]
    suffixes: list[list[int]]

    def order(self) -> list[int]:
        """Record indices: those sharing a picture part together (longer parts first), then those
        alone on their picture; longer suffixes first within each."""
        def key(i: int) -> tuple[int, int, int]:
            part = self.pictures[self.picture_of[i]]
            return -len(part), self.picture_of[i] if part else -1, -len(self.suffixes[i])

        return sorted(range(len(self.suffixes)), key=key)


def plan_prompts(collate: Collator, records: Sequence[Record]) -> PromptPlan:
    """Cut the generation prompts of ``records`` into head, picture parts and suffixes."""
    if not records:
        raise ValueError("plan_prompts needs at least one record")
    convs = [to_conversation(record) for record in records]
    prompts = [collate.encode(conv)[0] for conv in convs]
    image = collate.image_token_id
    groups: dict[tuple, list[int]] = {}
    for i, (conv, ids) in enumerate(zip(convs, prompts)):
        end = len(ids) - ids[::-1].index(image)
        if end == len(ids):
            raise ValueError(f"record {records[i].id}: its prompt ends with the image tokens; nothing to ask")
        groups.setdefault((conv["image"], tuple(conv.get("crop") or ()), tuple(ids[:end])), []).append(i)
    head = min(common_length(prompts), min(ids.index(image) for ids in prompts))
    pictures, picture_convs, picture_of, suffixes = [], [], [0] * len(records), [[] for _ in records]
    for g, members in enumerate(groups.values()):
        own = [prompts[i] for i in members]
        cut = min(common_length(own), min(len(ids) for ids in own) - 1) if len(own) > 1 else head
        pictures.append(own[0][head:cut])
        picture_convs.append(convs[members[0]])
        for i in members:
            picture_of[i], suffixes[i] = g, prompts[i][cut:]
    return PromptPlan(prompts[0][:head], pictures, picture_convs, picture_of, suffixes)


def picture_caches(model: Any, collate: Collator, plan: PromptPlan, pictures: Sequence[int],
                   head: CachedPrefix | None, pad_token_id: int) -> dict[int, CachedPrefix]:
    """Head + picture part of each of ``pictures`` (non-empty parts), cached in one forward."""
    pixels = collate.pixel_values([plan.picture_convs[g] for g in pictures])
    state = extend(model, [head] * len(pictures), [plan.pictures[g] for g in pictures], pad_token_id, pixels)
    return dict(zip(pictures, state.rows()))


def suffix_state(model: Any, collate: Collator, plan: PromptPlan, chosen: Sequence[int], head: CachedPrefix | None,
                 cached: dict[int, CachedPrefix], pad_token_id: int) -> Extended:
    """The forward of the suffixes of records ``chosen`` after their picture parts (``cached``), or
    after the head with their pictures' pixel values when their part is empty."""
    alone = [plan.picture_of[i] for i in chosen if not plan.pictures[plan.picture_of[i]]]
    pixels = collate.pixel_values([plan.picture_convs[g] for g in alone]) if alone else None
    bases = [cached[g] if plan.pictures[g] else head for g in (plan.picture_of[i] for i in chosen)]
    return extend(model, bases, [plan.suffixes[i] for i in chosen], pad_token_id, pixels)


@torch.inference_mode()
def greedy_batches(model: Any, collate: Collator, records: Sequence[Record], max_new_tokens: int, batch_size: int,
                   eos_token_id: int, pad_token_id: int) -> Iterator[tuple[list[int], Tensor]]:
    """``(record indices, greedy tokens [B, T])``, ``batch_size`` records at a time in
    :meth:`PromptPlan.order`: the head once, each picture part once (in the batch that first needs it,
    with the other new parts of that batch), its cache kept until its last record is decoded."""
    if not records:
        return
    plan = plan_prompts(collate, records)
    head = extend(model, [None], [plan.head], pad_token_id).rows()[0] if plan.head else None
    order = plan.order()
    remaining = Counter(plan.picture_of)
    cached: dict[int, CachedPrefix] = {}
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        new = [g for g in dict.fromkeys(plan.picture_of[i] for i in chosen) if plan.pictures[g] and g not in cached]
        if new:
            cached.update(picture_caches(model, collate, plan, new, head, pad_token_id))
        state = suffix_state(model, collate, plan, chosen, head, cached, pad_token_id)
        for i in chosen:
            remaining[plan.picture_of[i]] -= 1
            if remaining[plan.picture_of[i]] == 0:
                cached.pop(plan.picture_of[i], None)
        yield chosen, greedy_continue(model, state, max_new_tokens, eos_token_id, pad_token_id)
