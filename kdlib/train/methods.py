"""The objective of each training method, as a module whose forward returns the loss terms.

An objective owns the student and the trainable adapters (width / head maps); the teacher is
held outside the module tree (frozen, in eval mode, never wrapped by DDP nor checkpointed).
``forward(micro)`` returns ``{"loss": total, term: value}`` for one micro-batch; every term is
already divided by the step's global normaliser carried in the micro-batch (``denom``: counted
tokens of the global batch / number of processes; ``share``: this micro-batch's fraction of the
global batch times the number of processes), so that the loop's sum over micro-batches and
average over processes equals the loss of the whole global batch.

Full-vocabulary divergences go through :func:`~kdlib.losses.chunked.chunked_divergence` on the
scored rows only; DBiLD (top-k of both models) forms logits on the scored rows only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kdlib.losses import (HeadMap, WidthMap, attention_mse, chunked_divergence, clip_fraction, dbild,
                          enhanced_projector_mse, pg_loss, projector_mse, single_step_weights, switch_pair,
                          visual_switch_inputs)
from kdlib.losses.chunked import DEFAULT_CHUNK_SIZE
from kdlib.train.config import TrainConfig
from kdlib.train.forward import (features, output_head, response_rows, shift_for_labels,
                                 token_logprobs_chunked)

#: Align-KD's code weighs its four terms equally (``docs/methods.md`` §4); top-16 teacher-attended tokens
ALIGN_KD_TOP_K = 16
#: Switch-KD: LM 1.0, DBiLD 0.5, visual switch 0.5 (the public third-party reading, ``docs/methods.md`` §5)
SWITCH_KD_WEIGHTS = {"ce": 1.0, "dbild": 0.5, "switch": 0.5}


def _text_config(model: nn.Module) -> Any:
    config = model.config
    return getattr(config, "text_config", config)


class Objective(nn.Module):
    """Base: the student, a reference to the frozen teacher, the chunk size of the head losses."""

    weights: dict[str, float] = {}
    #: terms reported but not optimised (detached statistics)
    reported: frozenset[str] = frozenset({"clip_frac"})

    def __init__(self, student: nn.Module, teacher: nn.Module | None, cfg: TrainConfig) -> None:
        super().__init__()
        self.student = student
        self._teacher = (teacher,)  # a tuple keeps it out of the module tree
        self.cfg = cfg
        self.chunk = cfg.chunk_size or DEFAULT_CHUNK_SIZE

    @property
    def teacher(self) -> nn.Module:
        teacher = self._teacher[0]
        if teacher is None:
            raise RuntimeError(f"{type(self).__name__} needs a teacher")
        return teacher

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError

    def forward(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        terms = self.terms(micro)
        loss = sum(self.weights.get(name, 1.0) * value for name, value in terms.items() if name not in self.reported)
        return {"loss": loss, **terms}

    def ce(self, hidden: Tensor, labels: Tensor, denom: float) -> Tensor:
        """Token cross-entropy of the student on ``labels`` (aligned with the inputs), sum / ``denom``."""
        rows, targets, _ = shift_for_labels(hidden, labels)
        return -token_logprobs_chunked(rows, output_head(self.student), targets, self.chunk).sum() / denom

    def teacher_features(self, micro: dict[str, Any], **kwargs: Any):
        with torch.no_grad():
            return features(self.teacher, micro["input_ids"], micro["attention_mask"], micro.get("pixel_values"),
                            **kwargs)


class SFTObjective(Objective):
    """Supervised fine-tuning: ``CE`` on the ground-truth response tokens."""

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        fs = features(self.student, micro["input_ids"], micro["attention_mask"], micro.get("pixel_values"))
        return {"ce": self.ce(fs.hidden, micro["labels"], micro["denom"])}


class GuidedSFTObjective(Objective):
    """Teacher-guided SFT (the student's initialisation in the core paper's Table 1 and MiniLLM):
    ``(1 - k) CE(y) + k KL(p || q)`` on the ground-truth response tokens, ``k = cfg.guided_kd_ratio``.

    The mixture is LMOps' word-level KD baseline (``(1 - kd_ratio) LM + kd_ratio KD``, scripts 0.5),
    the same form as the LM term's ``pt_kd_ratio``; the paper names both signals but not their weights.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: TrainConfig) -> None:
        super().__init__(student, teacher, cfg)
        self.weights = {"ce": 1.0 - cfg.guided_kd_ratio, "forward_kl": cfg.guided_kd_ratio}

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        fs = features(self.student, micro["input_ids"], micro["attention_mask"], micro.get("pixel_values"))
        ft = self.teacher_features(micro)
        _, _, mask = shift_for_labels(fs.hidden, micro["labels"])
        kl = chunked_divergence(fs.hidden[:, :-1][mask], output_head(self.student), ft.hidden[:, :-1][mask],
                                output_head(self.teacher), kind="forward_kl", chunk_size=self.chunk,
                                denom=micro["denom"])
        return {"ce": self.ce(fs.hidden, micro["labels"], micro["denom"]), "forward_kl": kl}


class TokenKDObjective(Objective):
    """Token-level ``KL(p || q)`` (``forward_kl``) or ``KL(q || p)`` (``reverse_kl``) on ground-truth responses."""

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        fs = features(self.student, micro["input_ids"], micro["attention_mask"], micro.get("pixel_values"))
        ft = self.teacher_features(micro)
        _, _, mask = shift_for_labels(fs.hidden, micro["labels"])
        value = chunked_divergence(fs.hidden[:, :-1][mask], output_head(self.student), ft.hidden[:, :-1][mask],
                                   output_head(self.teacher), kind=self.cfg.method, chunk_size=self.chunk,
                                   denom=micro["denom"])
        return {self.cfg.method: value}


class PaperObjective(Objective):
    """Core paper Eq. 10: ``lambda L_align + L_single + L_long^norm + L_PT`` on teacher-mixed rollouts.

    The micro-batch carries a rollout (``prompt_ids``, ``prompt_mask``, ``tokens``, ``mask``,
    ``old_logprobs``, ``weights``, ``advantages``, ``pixel_values`` for multimodal pairs) and a
    ``D_PT`` batch (``pt_input_ids``, ``pt_attention_mask``, ``pt_labels``). The single-step term
    is ``cfg.divergence`` per response token: the reverse KL of Eq. 8, or GKD's generalized JSD.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: TrainConfig) -> None:
        super().__init__(student, teacher, cfg)
        self.weights = {"align": cfg.align_coef, "single": cfg.single_coef, "long": cfg.long_coef,
                        "lm": cfg.lm_coef}
        self.on = set(cfg.terms)
        if "align" in self.on:
            self.width_map = WidthMap(_text_config(teacher).hidden_size, _text_config(student).hidden_size)

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.on & {"align", "single", "long"}:
            out.update(self._rollout_terms(micro))
        if "lm" in self.on:
            out["lm"] = self._lm_term(micro)
        return out

    def _rollout_terms(self, m: dict[str, Any]) -> dict[str, Tensor]:
        ids = torch.cat([m["prompt_ids"], m["tokens"]], dim=1)
        attn = torch.cat([m["prompt_mask"], m["mask"].to(m["prompt_mask"].dtype)], dim=1)
        plen, resp = m["prompt_ids"].shape[1], m["mask"].bool()
        fs = features(self.student, ids, attn, m.get("pixel_values"))
        out: dict[str, Tensor] = {}
        if self.on & {"align", "single"}:
            with torch.no_grad():
                ft = features(self.teacher, ids, attn, m.get("pixel_values"))
        if "align" in self.on:
            out["align"] = projector_mse(fs.visual, ft.visual, self.width_map) * m["share"]
        rows = response_rows(fs.hidden, plen, resp)
        if "single" in self.on:
            weights = single_step_weights(m["weights"], self.cfg.minillm)[resp]
            out["single"] = chunked_divergence(rows, output_head(self.student), response_rows(ft.hidden, plen, resp),
                                               output_head(self.teacher), kind=self.cfg.divergence,
                                               beta=self.cfg.jsd_beta, chunk_size=self.chunk, denom=m["resp_denom"],
                                               weights=weights)
        if "long" in self.on:
            logprobs = token_logprobs_chunked(rows, output_head(self.student), m["tokens"][resp], self.chunk)
            args = (logprobs, m["old_logprobs"][resp], m["advantages"][resp], m["weights"][resp],
                    torch.ones_like(logprobs), self.cfg.minillm)
            out["long"] = pg_loss(*args, denom=m["resp_denom"])
            out["clip_frac"] = clip_fraction(*args) / m["resp_denom"]
        return out

    def _lm_term(self, m: dict[str, Any]) -> Tensor:
        """Eq. 7 on ``D_PT``: ``(1 - k) CE + k KL(p || q)`` (``k = minillm.pt_kd_ratio``; LMOps' soft CE
        differs from the KL by the teacher entropy, a constant)."""
        ids, attn, labels = m["pt_input_ids"], m["pt_attention_mask"], m["pt_labels"]
        if ids.shape[0] == 0:
            return torch.zeros((), device=m["tokens"].device)
        fs = features(self.student, ids, attn)
        k = self.cfg.minillm.pt_kd_ratio
        ce = self.ce(fs.hidden, labels, m["pt_denom"])
        if k == 0.0:
            return ce
        with torch.no_grad():
            ft = features(self.teacher, ids, attn)
        _, _, mask = shift_for_labels(fs.hidden, labels)
        kd = chunked_divergence(fs.hidden[:, :-1][mask], output_head(self.student), ft.hidden[:, :-1][mask],
                                output_head(self.teacher), kind="forward_kl", chunk_size=self.chunk,
                                denom=m["pt_denom"])
        return (1.0 - k) * ce + k * kd


class AlignKDObjective(Objective):
    """Align-KD: ``CE + L_logit + L_v + L_attn`` (all weights 1, as its code).

    ``L_logit`` is the token reverse KL on response tokens (the paper's R-KLD; the code uses a
    soft cross-entropy over all positions, ``docs/methods.md`` §4), ``L_v`` the projector MSE with the
    top-16 teacher-attended visual tokens counted twice, ``L_attn`` the first-layer text-query ->
    vision-key attention MSE; ``L_v`` and ``L_attn`` are element means, as Align-KD's code. The width
    map is trainable; the head map is trainable by default (``train_head_map``; Align-KD's code leaves
    its adapter untrained, see :class:`~kdlib.losses.align_kd.HeadMap`). Needs eager attention.
    """

    train_head_map = True

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: TrainConfig) -> None:
        super().__init__(student, teacher, cfg)
        s, t = _text_config(student), _text_config(teacher)
        self.width_map = WidthMap(t.hidden_size, s.hidden_size)
        self.head_map = HeadMap(t.num_attention_heads, s.num_attention_heads, self.train_head_map)
        self.image_token_id = student.config.image_token_id

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        fs = features(self.student, micro["input_ids"], micro["attention_mask"], micro["pixel_values"],
                      first_layer_attention=True)
        ft = self.teacher_features(micro, first_layer_attention=True)
        vision = micro["input_ids"] == self.image_token_id
        text = micro["attention_mask"].bool() & ~vision
        _, _, mask = shift_for_labels(fs.hidden, micro["labels"])
        k = min(ALIGN_KD_TOP_K, fs.visual.shape[1])
        return {
            "ce": self.ce(fs.hidden, micro["labels"], micro["denom"]),
            "logit": chunked_divergence(fs.hidden[:, :-1][mask], output_head(self.student), ft.hidden[:, :-1][mask],
                                        output_head(self.teacher), kind="reverse_kl", chunk_size=self.chunk,
                                        denom=micro["denom"]),
            "visual": enhanced_projector_mse(fs.visual, ft.visual, ft.attention, vision, text, k,
                                             self.width_map) * micro["share"],
            "attention": attention_mse(fs.attention, ft.attention, vision, text, self.head_map) * micro["share"],
        }


class SwitchKDObjective(Objective):
    """Switch-KD (our reading, ``docs/methods.md`` §5): ``CE + 0.5 DBiLD(q, p) + 0.5 DBiLD(p_switch, p)``.

    ``p_switch`` = the frozen teacher LLM run on its prompt with the student's visual tokens
    switched in (through a trainable student -> teacher width map); gradient reaches the
    student's projector through the teacher, so the student's visual features learn to drive
    the teacher as its own features do. Logits are formed on response rows only.

    Two readings are switches of the configuration: ``cfg.kneedle_reading`` picks the sign of
    :func:`~kdlib.losses.switch_kd.kneedle_k` (default ``knee``, Kneedle's own knee of the convex
    sorted logits; ``dbild_code`` the public code's sign) and ``cfg.switch_direction`` the pair of
    :func:`~kdlib.losses.switch_kd.switch_pair` (default ``switched_to_teacher``, the only reading in
    which the switch term trains the visual pathway by a route the logit term lacks;
    ``student_to_switched`` the public code's use of the switched logits as the student's reference).
    """

    weights = SWITCH_KD_WEIGHTS

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: TrainConfig) -> None:
        super().__init__(student, teacher, cfg)
        self.width_map = WidthMap(_text_config(student).hidden_size, _text_config(teacher).hidden_size)
        self.image_token_id = student.config.image_token_id

    def terms(self, micro: dict[str, Any]) -> dict[str, Tensor]:
        ids, attn, labels = micro["input_ids"], micro["attention_mask"], micro["labels"]
        fs = features(self.student, ids, attn, micro["pixel_values"])
        ft = self.teacher_features(micro)
        embeds = self.teacher.get_input_embeddings()(ids)
        switched = visual_switch_inputs(embeds, ids == self.image_token_id, fs.visual, self.width_map)
        fw = features(self.teacher, None, attn, inputs_embeds=switched)
        _, _, mask = shift_for_labels(fs.hidden, labels)
        s_logits = output_head(self.student)(fs.hidden[:, :-1][mask])
        t_logits = output_head(self.teacher)(ft.hidden[:, :-1][mask])
        w_logits = output_head(self.teacher)(fw.hidden[:, :-1][mask])
        ones = torch.ones(s_logits.shape[0], device=s_logits.device)
        kneedle = self.cfg.kneedle_reading
        return {"ce": self.ce(fs.hidden, labels, micro["denom"]),
                "dbild": dbild(s_logits, t_logits, ones, denom=micro["denom"], kneedle=kneedle),
                "switch": dbild(*switch_pair(s_logits, t_logits, w_logits, self.cfg.switch_direction), ones,
                                denom=micro["denom"], kneedle=kneedle)}


OBJECTIVES: dict[str, type[Objective]] = {
    "projector": SFTObjective, "sft": SFTObjective, "guided_sft": GuidedSFTObjective, "paper": PaperObjective, "forward_kl": TokenKDObjective, "reverse_kl": TokenKDObjective,
    "align_kd": AlignKDObjective, "switch_kd": SwitchKDObjective,
}


def build_objective(student: nn.Module, teacher: nn.Module | None, cfg: TrainConfig) -> Objective:
    """The objective of ``cfg.method`` (``sft`` takes no teacher)."""
    return OBJECTIVES[cfg.method](student, teacher, cfg)
