"""A trained model that sees fewer visual tokens (GeoLLaVA-8K token reduction) and its evaluation.

:class:`PrunedMLLM` wraps a ``LlavaForConditionalGeneration`` so that its LLM receives ``keep``
of the ``N`` visual tokens of each image, chosen as GeoLLaVA-8K does (``llava_arch.py``, ``docs/methods.md``
§6): on the vision features of the selected CLIP layer ``F = [cls; f_1..f_N]`` (before the
projector),

1. background token pruning merges homogeneous neighbouring patches into cluster means
   (:func:`kdlib.pruning.background_prune`, cosine threshold ``threshold``);
2. anchored token selection keeps the ``keep`` cluster means ``c`` with the highest
   ``<W_q cls, W_v c> / sqrt(D_v)`` (:func:`kdlib.pruning.anchored_select`), ``W_q``, ``W_v`` the
   ``q_proj`` and ``v_proj`` of the vision layer ``vision_feature_layer`` (GeoLLaVA-8K's choice),
   in spatial order;
3. the projector maps the ``keep`` tokens into the LLM, as it maps all ``N`` normally.

Mechanics: a forward hook on the vision tower replaces the selected hidden layer ``[B, 1 + N, D_v]``
by ``[B, 1 + keep, D_v]`` (CLS kept, dropped by LLaVA as usual), and the wrapper removes the last
``N - keep`` ``<image>`` ids of every prompt (:func:`drop_image_tokens`), so the number of
placeholders equals the number of features. ``generate`` returns ``[original prompt; new tokens]``
like ``generate`` on the original prompt, so :func:`kdlib.evaluate.runner.evaluate_model` runs the
wrapper unchanged. Empty cluster slots (when an image has fewer than ``keep`` clusters) are taken
last, as zero features, like GeoLLaVA-8K's masked top-k; :attr:`PrunedMLLM.clusters` records how
many clusters each image had.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from kdlib.data.study import Study
from kdlib.models.features import num_image_tokens
from kdlib.models.io import LoadedMLLM
from kdlib.models.lora import unwrap
from kdlib.models.pooling import inner_tower
from kdlib.pruning import anchored_select, background_prune
from kdlib.run import RunContext


def drop_image_tokens(input_ids: Tensor, image_token_id: int, keep: int, *aligned: Tensor) -> tuple[Tensor, ...]:
    """Remove all but the first ``keep`` image-token positions of every row: ``[B, S] -> [B, S - (N - keep)]``.

    ``aligned`` tensors ``[B, S]`` (attention mask, labels) lose the same positions; returns
    ``(input_ids, *aligned)``. Every row must hold the same number ``N >= keep`` of image tokens;
    padding (left or right) is untouched.
    """
    is_image = input_ids == image_token_id
    counts = is_image.sum(1)
    if (counts != counts[0]).any() or not 1 <= keep <= int(counts[0]):
        raise ValueError(f"every row needs the same number N >= keep = {keep} of image tokens; "
                         f"found {counts.tolist()}")
    rank = is_image.long().cumsum(1) - 1
    kept = ~(is_image & (rank >= keep))
    width = input_ids.shape[1] - int(counts[0]) + keep
    return tuple(x[kept].view(-1, width) for x in (input_ids, *aligned))


def select_visual_tokens(layer: Tensor, grid: tuple[int, int], keep: int, query: nn.Module, key: nn.Module,
                         threshold: float = 0.9) -> tuple[Tensor, Tensor]:
    """GeoLLaVA-8K's reduction of one vision layer ``[B, 1 + N, D]`` (CLS first) to ``[B, 1 + keep, D]``.

    Returns ``(reduced layer, clusters per image [B])``.
    """
    cls, patches = layer[:, 0], layer[:, 1:]
    clusters = background_prune(patches, grid, threshold=threshold)
    picked, _ = anchored_select(clusters.centers, cls, keep, clusters.counts, query=query, key=key)
    return torch.cat([layer[:, :1], picked.to(layer.dtype)], dim=1), clusters.num_clusters


def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a vision tower, whatever its layout: the first ``ModuleList`` named
    ``layers`` or ``layer`` (CLIP ``vision_model.encoder.layers``, DINOv2 ``encoder.layer``, ViT ``layers``)."""
    for name, module in tower.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer"):
            return module
    raise ValueError(f"{type(tower).__name__} has no list of encoder layers (a ModuleList named layers or layer)")


def query_value_maps(tower: nn.Module, layer_index: int) -> tuple[nn.Module, nn.Module]:
    """``(W_q, W_v)`` of encoder layer ``layer_index`` of a vision tower, found by their names inside the
    layer: ``q_proj``/``v_proj`` (CLIP, SigLIP, ViT and DINOv2 in transformers 5) or ``query``/``value``
    (ViT and DINOv2 in transformers 4)."""
    layer = encoder_layers(tower)[layer_index]
    by_leaf = {name.rsplit(".", 1)[-1]: module for name, module in layer.named_modules() if name}
    for q, v in (("q_proj", "v_proj"), ("query", "value")):
        if q in by_leaf and v in by_leaf:
            return by_leaf[q], by_leaf[v]
    raise ValueError(f"vision layer {layer_index} of {type(tower).__name__} has no q_proj/v_proj or query/value maps")


class PrunedMLLM(nn.Module):
    """``model`` with ``keep`` visual tokens per image (module docstring); ``keep = N`` is the model itself."""

    def __init__(self, model: nn.Module, keep: int, threshold: float = 0.9) -> None:
        super().__init__()
        base = unwrap(model)
        self.model = model
        self.num_image_tokens = num_image_tokens(base)
        side = math.isqrt(self.num_image_tokens)
        if side * side != self.num_image_tokens or base.config.vision_feature_select_strategy != "default":
            raise ValueError("PrunedMLLM needs a square patch grid without CLS in the features "
                             f"(N = {self.num_image_tokens}, strategy {base.config.vision_feature_select_strategy!r})")
        if not 1 <= keep <= self.num_image_tokens:
            raise ValueError(f"keep = {keep} must be in [1, {self.num_image_tokens}]")
        self.keep, self.threshold, self.grid = keep, threshold, (side, side)
        self.layer_index = base.config.vision_feature_layer
        self._projections = query_value_maps(inner_tower(base), self.layer_index)  # a tuple: not registered twice
        self.clusters: list[int] = []

    @property
    def config(self) -> Any:
        return unwrap(self.model).config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _reduce(self, module: nn.Module, args: Any, output: Any) -> Any:
        """Forward hook of the vision tower: the selected hidden layer keeps ``1 + keep`` tokens."""
        if output.hidden_states is None:
            raise RuntimeError("the vision tower returned no hidden states; LLaVA should have asked for them")
        layers = list(output.hidden_states)
        layers[self.layer_index], counts = select_visual_tokens(layers[self.layer_index], self.grid, self.keep,
                                                                *self._projections, threshold=self.threshold)
        self.clusters += counts.tolist()
        output.hidden_states = tuple(layers)
        return output

    @contextmanager
    def _pruning(self) -> Iterator[None]:
        if self.keep == self.num_image_tokens:
            yield
            return
        handle = unwrap(self.model).model.vision_tower.register_forward_hook(self._reduce)
        try:
            yield
        finally:
            handle.remove()

    def _inputs(self, input_ids: Tensor, attention_mask: Tensor | None, *aligned: Tensor) -> tuple[Tensor, ...]:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if self.keep == self.num_image_tokens:
            return (input_ids, mask, *aligned)
        return drop_image_tokens(input_ids, self.config.image_token_id, self.keep, mask, *aligned)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, pixel_values: Tensor | None = None,
                labels: Tensor | None = None, **kwargs: Any) -> Any:
        """The wrapped model's forward on the reduced prompt (its outputs cover the reduced positions;
        ``labels`` lose the same positions)."""
        if labels is None:
            ids, mask = self._inputs(input_ids, attention_mask)
        else:
            ids, mask, labels = self._inputs(input_ids, attention_mask, labels)
        with self._pruning():
            return self.model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 pixel_values: Tensor | None = None, **kwargs: Any) -> Tensor:
        """``[B, P + T]``: the original prompt ``[B, P]`` followed by the tokens generated from the reduced one."""
        ids, mask = self._inputs(input_ids, attention_mask)
        with self._pruning():
            out = self.model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, **kwargs)
        return torch.cat([input_ids, out[:, ids.shape[1]:]], dim=1)


@torch.no_grad()
def answer_nll(model: nn.Module, batches: Iterable[dict[str, Tensor]]) -> float:
    """Mean negative log-likelihood (nats per token) of the reference answers, teacher-forced.

    ``batches``: train-mode collated batches (``labels`` -100 everywhere but on answer tokens).
    The model's own causal-LM loss is a mean over a batch's scored tokens; it is weighted by
    their count, so the result is the mean over all answer tokens.
    """
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * n
        count += n
    if count == 0:
        raise ValueError("no answer token to score: the batches' labels are all -100")
    return total / count


def keep_counts(num_tokens: int, fractions: tuple[float, ...]) -> list[int]:
    """Visual tokens kept for each fraction of ``num_tokens``: ``max(1, round(f N))``, in the given order."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"fractions must lie in (0, 1], got {bad}")
    return [max(1, round(f * num_tokens)) for f in fractions]


PRUNING_FRACTIONS = (1.0, 0.5, 0.25, 0.125)
"""Shares of the visual tokens kept in the book's sweep (100 %, 50 %, 25 %, 12.5 %)."""
SCENE_TASKS = ("scene_ucmerced", "scene_aid")


def pruned_name(model: str, keep: int) -> str:
    """The answers' name of ``model`` with ``keep`` visual tokens: ``<model>_keep<keep>``."""
    return f"{model}_keep{keep}"


def pruned_answers(ctx: RunContext, model: str, task: str, keeps: Iterable[int]) -> dict[int, list[str]]:
    """The answers :func:`pruning_sweep` wrote for ``model`` on ``task``, per number of tokens kept."""
    from kdlib.evaluate.report import read_lines

    return {keep: [r["answer"] for r in read_lines(ctx.require(ctx.answers_file(pruned_name(model, keep), task),
                                                               producer="related_methods"))]
            for keep in keeps}


def pruning_sweep(ctx: RunContext, model: str = "student_kd", tasks: tuple[str, ...] = SCENE_TASKS,
                  fractions: tuple[float, ...] = PRUNING_FRACTIONS, threshold: float = 0.9,
                  batch_size: int = 16) -> list[dict[str, Any]]:
    """Scores of the run's model ``model`` on the test split of ``tasks`` with a share of its visual tokens.

    ``ctx`` is a :class:`kdlib.run.RunContext`. For each fraction ``f`` the wrapper keeps
    ``max(1, round(f N))`` tokens; answers go to ``ctx.answers_file(pruned_name(model, k), task)`` (greedy,
    the token budget of :func:`kdlib.evaluate.runner.evaluate_study`). Returns one row per
    ``(keep, task)``: ``keep``, ``fraction`` (``keep / N``), ``task``, the task's headline metrics
    (and ``AA`` for scenes), ``answer_nll`` (:func:`answer_nll` of the reference answers), ``n``,
    ``mean_clusters`` (background clusters per image), ``short_images`` (images with fewer clusters
    than ``keep``, which get empty zero-feature slots; both ``None`` when nothing is pruned) and
    ``seconds`` (generation).
    """
    from kdlib.data.study import load_study
    from kdlib.models.io import load_for_inference

    mllm = load_for_inference(ctx.require(ctx.model_dir(model), producer="training"), ctx.device, ctx.profile.dtype)
    study = load_study(ctx.profile, ctx.data_root, ctx.split_seed)
    n_tokens = num_image_tokens(mllm.model)
    rows = []
    for keep in keep_counts(n_tokens, fractions):
        pruned = PrunedMLLM(mllm.model, keep, threshold)
        for task in tasks:
            row = _score_pruned(ctx, LoadedMLLM(pruned, mllm.tokenizer, mllm.image_processor), task, study,
                                pruned_name(model, keep), batch_size)
            rows.append({"keep": keep, "fraction": keep / n_tokens, "task": task, **row})
    return rows


def _score_pruned(ctx: RunContext, wrapped: LoadedMLLM, task: str, study: Study, name: str, batch_size: int) -> dict[str, Any]:
    """One ``(keep, task)`` row of :func:`pruning_sweep` without its first three keys."""
    from kdlib.data.collate import Collator
    from kdlib.evaluate.generate import answer_budget
    from kdlib.evaluate.report import HEADLINE
    from kdlib.evaluate.runner import evaluate_model, score_answers
    from kdlib.evaluate.tasks import eval_task

    pruned, spec = wrapped.model, eval_task(task)
    records = spec.select(study.test)
    forced = Collator(wrapped.tokenizer, wrapped.image_processor, pruned.num_image_tokens, ctx.profile.data.max_length)
    nll = answer_nll(pruned, (forced(records[i:i + batch_size]) for i in range(0, len(records), batch_size)))
    budget = answer_budget([r.answer for r in spec.select(study.train)], wrapped.tokenizer)
    pruned.clusters = []
    run = evaluate_model(wrapped, records, task, ctx.answers_file(name, task), max_new_tokens=budget,
                         batch_size=batch_size, progress=ctx.progress)
    result = score_answers(task, run.path)
    found = pruned.clusters
    return {**{key: result[key] for key in (HEADLINE[task], "AA") if key in result}, "answer_nll": nll,
            "n": run.n, "mean_clusters": sum(found) / len(found) if found else None,
            "short_images": sum(c < pruned.keep for c in found) if found else None,
            "seconds": round(run.seconds, 2)}


def pruning_verdict(rows: list[dict[str, Any]], metric: str = "OA") -> str:
    """How ``metric`` changes from all tokens to the fewest kept, per task (rows of :func:`pruning_sweep`),
    e.g. ``"Keeping 8 of the 64 tokens changes OA by +0.00 points on scene_ucmerced and -4.76 on scene_aid."``."""
    changes = []
    for task in dict.fromkeys(r["task"] for r in rows):
        part = sorted((r for r in rows if r["task"] == task), key=lambda r: r["keep"])
        changes.append((task, part[0]["keep"], part[-1]["keep"], part[0][metric] - part[-1][metric]))
    fewest, total = changes[0][1], changes[0][2]
    listed = " and ".join(f"{change:+.2f}{' points' if i == 0 else ''} on {task}"
                          for i, (task, _, _, change) in enumerate(changes))
    return f"Keeping {fewest} of the {total} tokens changes {metric} by {listed}."
