"""Which decoder layers a student cut from its teacher keeps (prune-then-distil), chosen by measurement.

The ``small`` student is the teacher LLM with layers removed (``student.keep_layers``,
:func:`kdlib.models.drop_layers`) before any training, so the best cut is the one that breaks the
language model least. Each candidate keep-set is scored on real caption text (UCM-captions
sentences, text only, no image) by

- perplexity ``PPL = exp(-1/N sum_t log q(y_t | y_<t))`` over the ``N`` predicted tokens, and
- the mean token KL to the uncut teacher ``1/N sum_t KL(p(. | y_<t) || q(. | y_<t))`` (nats),
  how far the cut student starts from its teacher on the same positions.

Candidates (:func:`candidate_sets`): every removal of one contiguous block of ``L - k`` layers that
keeps the first and the last layer, plus two references, the first ``k`` layers and ``k``
evenly spaced layers. The cut is applied in place and undone after scoring (:func:`cut_view`),
so one loaded model serves every candidate.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.data.captions import read_ucm_captions
from kdlib.models.build import drop_layers
from kdlib.data.collate import text_batch


def contiguous_cuts(num_layers: int, keep: int) -> dict[str, tuple[int, ...]]:
    """``{"drop a-b": keep_set}`` for every block ``[a, b]`` of ``num_layers - keep`` layers inside ``1..L-2``."""
    drop = num_layers - keep
    if not 2 <= keep < num_layers:
        raise ValueError(f"keep={keep} layers must be in [2, {num_layers})")
    return {f"drop {start}-{start + drop - 1}": tuple(i for i in range(num_layers) if not start <= i < start + drop)
            for start in range(1, num_layers - drop)}


def candidate_sets(num_layers: int, keep: int) -> dict[str, tuple[int, ...]]:
    """:func:`contiguous_cuts` plus ``first k`` and ``uniform k`` (``round(linspace(0, L-1, k))``)."""
    uniform = tuple(int(i) for i in np.round(np.linspace(0, num_layers - 1, keep)))
    return {**contiguous_cuts(num_layers, keep), f"first {keep}": tuple(range(keep)), f"uniform {keep}": uniform}


@contextmanager
def cut_view(llm: Any, keep: tuple[int, ...]) -> Iterator[Any]:
    """``llm`` with only the decoder layers ``keep`` while the block runs; restored afterwards."""
    layers, config = llm.model.layers, llm.config
    saved = (config.num_hidden_layers, getattr(config, "layer_types", None),
             [layer.self_attn.layer_idx for layer in layers])
    try:
        yield drop_layers(llm, keep)
    finally:
        llm.model.layers = layers
        config.num_hidden_layers, layer_types, indices = saved
        if layer_types is not None:
            config.layer_types = layer_types
        for layer, index in zip(layers, indices):
            layer.self_attn.layer_idx = index


def predicted_logprobs(llm: Any, batch: dict[str, Tensor]) -> Tensor:
    """Next-token log-probabilities at every position that predicts a real token: ``[N, V]`` float32."""
    logits = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    rows = batch["attention_mask"][:, 1:].bool()
    return F.log_softmax(logits[:, :-1][rows].float(), dim=-1)


@torch.no_grad()
def score_cut(llm: Any, batches: list[dict[str, Tensor]], teacher_logprobs: list[Tensor]) -> dict[str, float]:
    """``perplexity`` and mean ``kl_to_teacher`` of ``llm`` (already cut) on ``batches``."""
    nll = kl = 0.0
    count = 0
    for batch, p in zip(batches, teacher_logprobs):
        q = predicted_logprobs(llm, batch)
        targets = batch["input_ids"][:, 1:][batch["attention_mask"][:, 1:].bool()]
        nll -= float(q.gather(-1, targets.unsqueeze(-1)).sum())
        kl += float((p.exp() * (p - q)).sum())
        count += targets.numel()
    return {"perplexity": float(np.exp(nll / count)), "kl_to_teacher": kl / count, "tokens": count}


@torch.no_grad()
def layer_choice_table(llm: Any, tokenizer: Any, texts: Sequence[str], keeps: Sequence[int] = (16, 14),
                       batch_size: int = 16, max_length: int = 64) -> pd.DataFrame:
    """One row per candidate keep-set of each size in ``keeps`` (and one for the uncut teacher):
    ``keep``, ``name``, ``kept`` (layer list), ``perplexity``, ``kl_to_teacher``, sorted by size then
    perplexity. ``llm`` is a causal LM (``model.layers``); it is left as it was."""
    llm.eval()
    if not texts:
        raise ValueError("no texts to score the layer choice on")
    batches = [text_batch(tokenizer, texts[i:i + batch_size], max_length) for i in range(0, len(texts), batch_size)]
    teacher = [predicted_logprobs(llm, b) for b in batches]
    total = len(llm.model.layers)
    rows = [{"keep": total, "name": "teacher", "kept": tuple(range(total)), **score_cut(llm, batches, teacher)}]
    for keep in keeps:
        for name, kept in candidate_sets(total, keep).items():
            with cut_view(llm, kept) as cut:
                rows.append({"keep": keep, "name": name, "kept": kept, **score_cut(cut, batches, teacher)})
    table = pd.DataFrame(rows)
    return table.sort_values(["keep", "perplexity"], ascending=[False, True], ignore_index=True)


def caption_texts(data_root: str | Path, n: int, split: str = "val") -> list[str]:
    """``n`` UCM-captions sentences of the official ``split``, evenly spaced over its images' 5 references."""
    sentences = [s for r in read_ucm_captions(data_root, check_images=False) if r.meta["split"] == split
                 for s in r.meta["references"]]
    if len(sentences) < n:
        raise ValueError(f"UCM-captions split {split!r} has {len(sentences)} sentences, fewer than {n}")
    return [sentences[int(i)] for i in np.linspace(0, len(sentences) - 1, n)]


def best_keep_set(table: pd.DataFrame, keep: int) -> tuple[int, ...]:
    """The keep-set of size ``keep`` with the lowest perplexity in a :func:`layer_choice_table`."""
    rows = table[table["keep"] == keep]
    if rows.empty:
        raise ValueError(f"the table has no candidate keeping {keep} layers (sizes: {sorted(set(table['keep']))})")
    return tuple(rows.loc[rows["perplexity"].idxmin(), "kept"])
