"""One validated configuration for every training run: SFT and the distillation methods.

:meth:`TrainConfig.from_profile` reads the numbers from a :class:`~kdlib.profiles.Profile`
(steps, batch, learning rates, sampling) and the method's terms from its name and ablations:

=============  =========================================================================
``projector``  LLaVA's stage 1 (feature alignment): CE on image descriptions with the LLM frozen, the
               projector alone trained (``train.projector_steps`` at ``train.projector_lr``); every SFT
               of that role then starts from it
``sft``        cross-entropy on the ground-truth responses (teacher SFT, student baseline)
``guided_sft`` the student's Table 1 initialisation: ``(1 - k) CE`` on the ground truth + ``k KL(p || q)``
               to the teacher on the same tokens (``k = guided_kd_ratio``), best validation kept
``paper``      core paper Eq. 10 / Table 1: projector MSE (Eq. 4-5) + single-step reverse KL
               + length-normalised long-term PPO term on teacher-mixed samples (Eq. 8-9,
               MiniLLM code form) + LM loss on ``D_PT`` (Eq. 7)
``forward_kl`` token-level ``KL(p || q)`` on ground-truth responses (no sampling)
``reverse_kl`` token-level ``KL(q || p)`` on ground-truth responses (no sampling)
``align_kd``   Align-KD: CE + logit KD + visual-token enhanced projector MSE + first-layer
               text-to-vision attention MSE
``switch_kd``  Switch-KD: CE + DBiLD on the teacher and on the visual switch
=============  =========================================================================

``--ablate`` removes terms of ``paper``: ``align``, ``single``, ``long``, ``lm``,
``teacher_mix`` (sample from the student alone, ``alpha = 0``) and ``length_norm``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from kdlib.losses.minillm import MiniLLMConfig
from kdlib.losses.switch_kd import KNEEDLE_READINGS, SWITCH_DIRECTIONS
from kdlib.profiles import NOT_IN_RUNS, Profile, TrainSpec, without
from kdlib.run import TEACHER

METHODS = ("projector", "sft", "guided_sft", "paper", "forward_kl", "reverse_kl", "align_kd", "switch_kd")
ABLATIONS = ("align", "single", "long", "lm", "teacher_mix", "length_norm")
ROLES = ("teacher", "student")
SFT_METHODS = ("projector", "sft", "guided_sft")
"""Fine-tuning on the ground truth from a built model (the stage-1 one when ``train.projector_steps > 0``):
dropout on, validation; ``projector`` takes its own steps and learning rate."""
TEACHER_METHODS = ("projector", "sft")
"""The methods that can train the teacher."""
KD_INITS = ("sft", "guided")
"""Where distillation starts: the plain SFT student (``student_sft``) or the teacher-guided one (``student_guided``)."""
DIVERGENCES = ("reverse_kl", "forward_kl", "jsd")
NOT_IN_RESULTS = ("progress", "checkpoint_every", "keep_checkpoints", "snapshot_every", "micro_batch_size",
                  "group_by_length")
"""TrainConfig fields that change how a run reports, saves or splits its batches, not the model it trains
(micro-batches give the same loss and gradient, up to float rounding)."""
SWITCH_KD_DEFAULTS = (KNEEDLE_READINGS[0], SWITCH_DIRECTIONS[0])
"""Default ``(kneedle_reading, switch_direction)``: Kneedle's own knee, the switched teacher trained towards the teacher."""
RETIRED = ("minillm.single", "minillm.long", "minillm.lm")
"""Fields that older runs recorded and no code ever read (the live switches are ``ablate``): ignored
when a saved run is compared, so those runs stay reusable."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the models and the data (validated on construction)."""

    method: str
    steps: int  # optimiser updates
    batch_size: int  # global batch (all devices, all micro-batches)
    lr: float
    role: str = "student"  # which model an ``sft`` run trains
    micro_batch_size: int = 0  # sequences per forward on one device; 0 = the whole local batch
    group_by_length: bool = False  # ground-truth batches: micro-batches of similar length, each padded to its longest
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0  # floor of the cosine schedule, as a fraction of lr
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.95)  # MiniLLM's AdamW
    adam_eps: float = 1e-8
    max_length: int = 128  # text tokens per sequence (image tokens excluded)
    seed: int = 0
    checkpoint_every: int = 0  # 0 = no intermediate checkpoints
    keep_checkpoints: int = 2
    snapshot_every: int = 0  # keep the trainable weights of every n-th step (learning curves); 0 = none
    dtype: str = "float32"  # bfloat16: autocast (GPU or CPU)
    chunk_size: int = 0  # rows per chunk of the chunked head losses; 0 = kdlib.losses' default
    progress: bool = True
    ablate: frozenset[str] = frozenset()
    max_new_tokens: int = 16  # response length sampled per prompt (``paper``)
    do_sample: bool = True
    minillm: MiniLLMConfig = field(default_factory=MiniLLMConfig)  # rewards, returns, PPO clip, mixing
    align_coef: float = 1.0  # weight of the projector MSE (the paper gives none)
    single_coef: float = 1.0  # weight of the single-step term (Eq. 10 sums the terms with weight 1)
    long_coef: float = 1.0  # weight of the long-term PPO term
    lm_coef: float = 1.0  # weight of the LM loss on D_PT (Eq. 7)
    pt_batch_size: int = 0  # D_PT sequences per global step; 0 = batch_size
    divergence: str = "reverse_kl"  # paper's single-step term: reverse_kl (Eq. 8), or jsd / forward_kl (GKD)
    jsd_beta: float = 0.5  # beta of the generalized JSD when divergence is jsd
    ppo_epochs: int = 1  # updates per batch of rollouts (``paper``; MiniLLM: 4)
    val_every: int = 0  # validation loss every n steps, best-validation weights kept; 0 = off
    val_size: int = 0  # validation records used: the first of the (seeded, mixed) val split; 0 = all
    grad_norm_every: int = 0  # log each term's gradient norm and cosine to the total every n steps; 0 = off
    guided_kd_ratio: float = 0.5  # teacher share k of guided_sft (LMOps' KD baseline and torchtune: 0.5)
    kneedle_reading: str = SWITCH_KD_DEFAULTS[0]  # switch_kd's Kneedle sign: knee or dbild_code (public code)
    switch_direction: str = SWITCH_KD_DEFAULTS[1]  # switch_kd's visual switch: or student_to_switched (public code)

    def __post_init__(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.role not in ROLES:
            problems.append(f"role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.method not in TEACHER_METHODS and self.role != "student":
            problems.append(f"only {' and '.join(TEACHER_METHODS)} train the teacher; method {self.method!r} trains the student")
        unknown = set(self.ablate) - set(ABLATIONS)
        if unknown:
            problems.append(f"unknown ablation(s) {sorted(unknown)}; choose from {', '.join(ABLATIONS)}")
        if self.ablate and self.method != "paper":
            problems.append(f"--ablate applies to the paper method only, not {self.method!r}")
        if self.steps < 0 or self.batch_size <= 0 or not 0 < self.lr < math.inf:
            problems.append(f"steps must be >= 0, batch_size > 0 and lr finite and > 0 (lr {self.lr})")
        if not math.isfinite(self.grad_clip) or not math.isfinite(self.adam_eps):
            problems.append("grad_clip and adam_eps must be finite")
        if self.micro_batch_size < 0 or self.pt_batch_size < 0 or self.chunk_size < 0:
            problems.append("micro_batch_size, pt_batch_size and chunk_size must be >= 0")
        if self.group_by_length and not 0 < self.micro_batch_size < self.batch_size:
            problems.append(f"group_by_length groups rows into micro-batches: micro_batch_size must be in "
                            f"(0, batch_size {self.batch_size}) (got {self.micro_batch_size})")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            problems.append("warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1]")
        if self.grad_clip <= 0 or self.max_length <= 0 or self.max_new_tokens <= 0:
            problems.append("grad_clip, max_length and max_new_tokens must be > 0")
        if min(self.checkpoint_every, self.snapshot_every) < 0 or self.keep_checkpoints < 1:
            problems.append("checkpoint_every and snapshot_every must be >= 0 and keep_checkpoints >= 1")
        if self.dtype not in ("float32", "bfloat16"):
            problems.append(f"dtype {self.dtype!r} must be float32 or bfloat16")
        if self.divergence not in DIVERGENCES or not 0.0 < self.jsd_beta < 1.0:
            problems.append(f"divergence must be one of {', '.join(DIVERGENCES)} and jsd_beta in (0, 1)")
        if self.ppo_epochs < 1 or (self.ppo_epochs > 1 and self.method != "paper"):
            problems.append(f"ppo_epochs must be >= 1, and > 1 only for the paper method (got {self.ppo_epochs})")
        if not 0.0 < self.guided_kd_ratio < 1.0:
            problems.append(f"guided_kd_ratio must be in (0, 1) so both signals guide (got {self.guided_kd_ratio})")
        if self.kneedle_reading not in KNEEDLE_READINGS or self.switch_direction not in SWITCH_DIRECTIONS:
            problems.append(f"kneedle_reading must be one of {', '.join(KNEEDLE_READINGS)} and switch_direction one of "
                            f"{', '.join(SWITCH_DIRECTIONS)} (got {self.kneedle_reading!r}, {self.switch_direction!r})")
        elif self.method != "switch_kd" and (self.kneedle_reading, self.switch_direction) != SWITCH_KD_DEFAULTS:
            problems.append(f"kneedle_reading and switch_direction apply to switch_kd only, not {self.method!r}")
        if min(self.val_every, self.val_size, self.grad_norm_every) < 0:
            problems.append(f"val_every, val_size and grad_norm_every must be >= 0 (got {self.val_every}, "
                            f"{self.val_size}, {self.grad_norm_every})")
        coefs = (self.align_coef, self.single_coef, self.long_coef, self.lm_coef)
        if not all(0.0 <= c < math.inf for c in coefs):
            problems.append(f"align_coef, single_coef, long_coef and lm_coef must be finite and >= 0 (got {coefs})")
        if self.ablate >= {"align", "single", "long", "lm"}:
            problems.append("every term of paper is ablated: nothing to optimise")
        if problems:
            raise ValueError("TrainConfig: " + "; ".join(problems))

    @classmethod
    def from_profile(cls, profile: Profile, method: str, ablate: Iterable[str] = (), role: str = "student",
                     seed: int = 0, progress: bool = True, form: str = "code", **changes: Any) -> "TrainConfig":
        """The run of ``method`` at ``profile``.

        SFT takes ``train.sft_steps`` (the teacher ``train.teacher_steps`` when set) at ``train.lr`` with
        validation every ``train.val_every`` steps,
        ``projector`` ``train.projector_steps`` at ``train.projector_lr``, distillation ``train.kd_steps`` at ``train.kd_lr``;
        ``form`` is the MiniLLM estimator of ``paper`` (:class:`~kdlib.losses.minillm.MiniLLMConfig`:
        ``code``, ``paper`` or ``unbiased``); ``changes`` override any field.
        """
        t = profile.train
        ablated = frozenset(ablate)
        sft = method in SFT_METHODS
        minillm = MiniLLMConfig(form=form, mix_alpha=0.0 if "teacher_mix" in ablated else t.mix_alpha,  # type: ignore[arg-type]
                                length_norm=False if "length_norm" in ablated else None)
        sft_steps = t.teacher_steps if role == "teacher" and t.teacher_steps else t.sft_steps
        steps, lr = {"projector": (t.projector_steps, t.projector_lr)}.get(
            method, (sft_steps, t.lr) if sft else (t.kd_steps, t.kd_lr))
        base = cls(method=method, role=role, steps=steps, batch_size=t.batch_size, lr=lr,
                   micro_batch_size=t.micro_batch_size, group_by_length=t.group_by_length, warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay,
                   grad_clip=t.grad_clip, max_length=profile.data.max_length, seed=seed,
                   checkpoint_every=t.checkpoint_every, snapshot_every=t.snapshot_every, dtype=profile.dtype, progress=progress, ablate=ablated,
                   max_new_tokens=t.max_new_tokens, minillm=minillm, val_every=t.val_every if method in ("sft", "guided_sft") else 0, val_size=t.val_size,
                   grad_norm_every=0 if method == "sft" else t.grad_norm_every,
                   guided_kd_ratio=t.guided_kd_ratio)
        if method == "paper":  # the term weights belong to the paper objective only (no other run changes with them)
            base = dataclasses.replace(base, align_coef=t.align_coef, single_coef=t.single_coef,
                                       long_coef=t.long_coef, lm_coef=t.lm_coef)
        return dataclasses.replace(base, **changes) if changes else base

    @property
    def terms(self) -> tuple[str, ...]:
        """Names of the loss terms this run optimises (the keys logged besides ``loss``)."""
        if self.method == "paper":
            return tuple(name for name in ("align", "single", "long", "lm") if name not in self.ablate)
        return {"projector": ("ce",), "sft": ("ce",), "guided_sft": ("ce", "forward_kl"), "forward_kl": ("forward_kl",), "reverse_kl": ("reverse_kl",),
                "align_kd": ("ce", "logit", "visual", "attention"), "switch_kd": ("ce", "dbild", "switch")}[self.method]

    @property
    def run_name(self) -> str:
        """Folder and model name of this run (:func:`run_name`)."""
        return run_name(self.method, self.ablate, self.role, self.minillm.form, self.ppo_epochs,
                        (self.kneedle_reading, self.switch_direction))

    @property
    def effective_pt_batch_size(self) -> int:
        return self.pt_batch_size or self.batch_size

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ablate"] = sorted(self.ablate)
        return d


def run_name(method: str, ablate: Iterable[str] = (), role: str = "student", form: str = "code",
             ppo_epochs: int = 1, switch_readings: tuple[str, str] = SWITCH_KD_DEFAULTS) -> str:
    """The one name of a run, its model folder and its results: ``teacher_projector`` / ``student_projector``
    (stage 1), ``teacher``, ``student_sft``, ``student_guided``,
    ``student_kd`` (``paper``), ``student_kd-no_<term>...`` (``paper`` with ``ablate``), ``student_<method>``;
    a MiniLLM ``form`` other than ``code`` and ``ppo_epochs > 1`` add ``_<form>`` and ``_ppo<n>``
    after ``student_kd``; each of Switch-KD's ``(kneedle_reading, switch_direction)`` other than its
    default adds ``_<reading>`` after ``student_switch_kd``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    unknown = set(ablate) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown ablation(s) {sorted(unknown)}; choose from {', '.join(ABLATIONS)}")
    if method == "projector":
        return f"{role}_projector"
    if method == "sft":
        return TEACHER if role == "teacher" else "student_sft"
    if method == "guided_sft":
        return "student_guided"
    if method == "paper":
        variant = ("" if form == "code" else f"_{form}") + ("" if ppo_epochs == 1 else f"_ppo{ppo_epochs}")
        return "student_kd" + variant + "".join(f"-no_{a}" for a in sorted(ablate))
    if method == "switch_kd":
        return "student_switch_kd" + "".join(f"_{r}" for r, d in zip(switch_readings, SWITCH_KD_DEFAULTS) if r != d)
    return f"student_{method}"


def sft_start(profile: Profile, method: str, role: str = "student") -> str | None:
    """The stage-1 model an ``sft`` / ``guided_sft`` run of ``role`` starts from (``<role>_projector``)
    when ``profile.train.projector_steps > 0``; None when it starts from a built model."""
    if method in ("sft", "guided_sft") and profile.train.projector_steps:
        return run_name("projector", role=role)
    return None


def kd_start(profile: Profile) -> str:
    """The model every distillation run starts from: ``student_sft``, or ``student_guided`` when
    ``profile.train.kd_init`` is ``guided`` (the core paper's Table 1 and MiniLLM)."""
    return run_name("guided_sft" if profile.train.kd_init == "guided" else "sft")


def run_record(cfg: TrainConfig, profile: Profile) -> dict[str, Any]:
    """What a run's ``config.json`` holds of its configuration and profile, as JSON reads it back."""
    return json.loads(json.dumps({"train": cfg.to_dict(), "profile": profile.to_dict()}))


def changed_fields(saved: Mapping[str, Any], cfg: TrainConfig, profile: Profile) -> list[str]:
    """Dotted names of the fields where a saved ``config.json`` and this run differ, leaving out
    those that cannot change the trained model (:data:`NOT_IN_RESULTS`, :data:`RETIRED`, profile ``NOT_IN_RUNS``)."""
    ignore = [f"train.{k}" for k in (*NOT_IN_RESULTS, *RETIRED)] + [f"profile.{k}" for k in NOT_IN_RUNS]
    defaults = {k: v for k, v in _defaults().items() if k not in ignore}
    old = {**defaults, **_flat(without(dict(saved), ignore))}
    new = _flat(without(run_record(cfg, profile), ignore))
    return sorted(k for k in old.keys() | new.keys()
                  if k.split(".")[0] in ("train", "profile") and old.get(k) != new.get(k))


def _defaults() -> dict[str, Any]:
    """``train.<field>`` and ``profile.train.<field>`` defaults of the fields with one: a field added after
    a run was saved reads as its default."""
    return {f"{prefix}.{f.name}": f.default for prefix, cls in (("train", TrainConfig), ("profile.train", TrainSpec))
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING and not isinstance(f.default, (frozenset, tuple))}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out
