"""The three profiles of the study: ``tiny``, ``small`` and ``paper``.

A profile fixes everything that changes with scale: which models (or which random
configs), how much data, how many steps. Everything else (losses, training loop,
evaluation, notebooks) reads its numbers from here, so ``tiny`` on a laptop and
``paper`` on 6 x A100 run the same code.

Profiles are frozen, typed dataclasses validated on construction. Override a field
with a dotted key, from the CLI (``--set train.kd_steps=10``) or a notebook
(``get_profile("tiny", {"train.kd_steps": 10})``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

PROFILE_NAMES = ("tiny", "small", "paper")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class VisionSpec:
    """The frozen vision tower shared in design by teacher and student (CLIP in GeoChat)."""

    name_or_path: str | None  # hub id or folder; None = random-initialised CLIP config
    image_size: int  # input side in pixels (504 in GeoChat)
    patch_size: int  # ViT patch side (14 for CLIP ViT-L/14)
    hidden_size: int = 64  # only used when name_or_path is None
    num_layers: int = 2  # only used when name_or_path is None
    num_heads: int = 2  # only used when name_or_path is None
    feature_layer: int = -2  # hidden layer whose patch tokens feed the projector
    pool_grid: int = 0  # >0: average-pool the patch grid to pool_grid x pool_grid tokens

    def __post_init__(self) -> None:
        _check(self.image_size > 0 and self.patch_size > 0, "vision: sizes must be positive")
        _check(self.image_size % self.patch_size == 0,
               f"vision: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        _check(self.pool_grid >= 0, "vision.pool_grid must be >= 0")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_image_tokens(self) -> int:
        """Visual tokens handed to the LLM (1,296 for GeoChat at 504 px)."""
        return self.pool_grid**2 if self.pool_grid else self.num_patches


@dataclass(frozen=True)
class LLMSpec:
    """A language model: a hub id / folder, or a random Llama config (``tiny``)."""

    name_or_path: str | None  # hub id or folder; None = random Llama config; "" = user must give one
    hidden_size: int = 0  # random configs only
    num_layers: int = 0  # random configs only
    num_heads: int = 0  # random configs only
    intermediate_size: int = 0  # random configs only
    keep_layers: tuple[int, ...] = ()  # student cut from the teacher: decoder layers kept

    def __post_init__(self) -> None:
        if self.name_or_path is None:
            _check(min(self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size) > 0,
                   "a random LLM needs hidden_size, num_layers, num_heads, intermediate_size > 0")
            _check(self.hidden_size % self.num_heads == 0,
                   f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        _check(len(set(self.keep_layers)) == len(self.keep_layers), "keep_layers has duplicates")


@dataclass(frozen=True)
class LoRASpec:
    """LoRA on every linear layer of the LLM (GeoChat: r 64, alpha 16, dropout 0.05). r = 0: full."""

    r: int = 0
    alpha: int = 16
    dropout: float = 0.05

    def __post_init__(self) -> None:
        _check(self.r >= 0 and self.alpha > 0 and 0.0 <= self.dropout < 1.0, f"bad LoRA spec {self}")


@dataclass(frozen=True)
class DataSpec:
    """How much of each real dataset a profile uses (0 = all)."""

    per_class: int  # scene classification images per class (UCMerced, AID)
    vqa_per_type: int  # RSVQA questions per type
    captions: int  # UCM-captions images
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_length: int = 128  # tokens per training sequence, image tokens excluded
    decode_images: bool = False  # decode every training image fully before a run's first step
    test_all: bool = False  # test split: every record whose picture no train / val record shows; train / val keep their subsets

    def __post_init__(self) -> None:
        _check(min(self.per_class, self.vqa_per_type, self.captions) >= 0, "data sizes must be >= 0")
        _check(isinstance(self.test_all, bool), f"data.test_all {self.test_all!r} must be true or false")
        _check(0 < self.val_fraction and 0 < self.test_fraction
               and self.val_fraction + self.test_fraction < 1, "val + test fractions must be in (0, 1)")


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation of the three models (teacher SFT, student SFT, distillation)."""

    sft_steps: int  # steps of supervised fine-tuning of the students (and of the teacher unless teacher_steps)
    kd_steps: int  # steps of distillation
    batch_size: int  # global batch
    lr: float
    kd_lr: float
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mix_alpha: float = 0.2  # teacher-mixed sampling weight (MiniLLM scripts)
    max_new_tokens: int = 16  # response length sampled during distillation
    grounding_steps: int = 0  # second phase on the grounding data (paper: 1,600)
    checkpoint_every: int = 0  # 0 = only at the end
    snapshot_every: int = 0  # trainable weights of every n-th step kept for learning curves; 0 = none
    val_every: int = 0  # SFT: validation loss every n steps, lowest-validation weights kept; 0 = off
    val_size: int = 0  # validation records used (the first of the seeded val split); 0 = all
    grad_norm_every: int = 0  # distillation: each term's gradient norm logged every n steps; 0 = off
    align_coef: float = 1.0  # weights of the paper method's terms (Eq. 10 adds them with weight 1)
    single_coef: float = 1.0
    long_coef: float = 1.0
    lm_coef: float = 1.0
    guided_kd_ratio: float = 0.5  # teacher share of the guided SFT (MiniLLM's KD baseline, torchtune: 0.5)
    kd_init: str = "sft"  # distillation starts from the plain SFT student (sft) or the teacher-guided one (guided)
    micro_batch_size: int = 0  # sequences per forward (gradient accumulation); 0 = the whole batch
    group_by_length: bool = False  # micro-batches of similar length, each padded to its own longest (same loss)
    teacher_steps: int = 0  # SFT steps of the teacher, trained once for every seed (the paper's one GeoChat-13B); 0 = sft_steps
    projector_steps: int = 0  # LLaVA stage 1: projector-only steps on image descriptions before every SFT; 0 = off
    projector_lr: float = 1e-3  # learning rate of that stage (LLaVA-1.5's stage 1)

    def __post_init__(self) -> None:
        _check(min(self.sft_steps, self.kd_steps, self.teacher_steps) >= 0, "steps must be >= 0")
        _check(0 <= self.micro_batch_size <= self.batch_size,
               f"train.micro_batch_size {self.micro_batch_size} must be in [0, batch_size {self.batch_size}]")
        for name in ("lr", "kd_lr", "projector_lr", "grad_clip"):
            _check(math.isfinite(getattr(self, name)), f"train.{name} {getattr(self, name)} must be finite")
        _check(self.batch_size > 0 and min(self.lr, self.kd_lr, self.projector_lr) > 0, "batch_size and lrs must be > 0")
        _check(self.projector_steps >= 0, f"train.projector_steps {self.projector_steps} must be >= 0")
        _check(0.0 <= self.mix_alpha <= 1.0, f"mix_alpha {self.mix_alpha} not in [0, 1]")
        _check(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)")
        _check(self.kd_init in ("sft", "guided"), f"train.kd_init {self.kd_init!r} must be sft or guided")
        _check(0.0 < self.guided_kd_ratio < 1.0, f"train.guided_kd_ratio {self.guided_kd_ratio} must be in (0, 1)")
        _check(min(self.val_every, self.val_size, self.grad_norm_every, self.snapshot_every) >= 0,
               "val_every, val_size, grad_norm_every and snapshot_every must be >= 0")
        for name in ("align_coef", "single_coef", "long_coef", "lm_coef"):
            _check(0.0 <= getattr(self, name) < math.inf, f"train.{name} {getattr(self, name)} must be finite and >= 0")


NOT_IN_RUNS = ("description", "budget", "seeds", "train.checkpoint_every", "train.snapshot_every", "data.decode_images",
               "data.test_all", "train.micro_batch_size", "train.group_by_length")
"""Profile fields (dotted) that describe the study, how often a run saves, what it checks before
starting or how it splits a batch, not what it learns: a saved run stays valid when they change."""


def without(d: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A copy of the nested dict ``d`` without the dotted ``paths`` (missing ones ignored)."""
    out = dict(d)
    for head, _, rest in (path.partition(".") for path in paths):
        if rest and isinstance(out.get(head), Mapping):
            out[head] = without(out[head], [rest])
        elif not rest:
            out.pop(head, None)
    return out


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    vision: VisionSpec
    teacher: LLMSpec
    student: LLMSpec
    lora: LoRASpec
    data: DataSpec
    train: TrainSpec
    vocab_size: int = 0  # size of the tokenizer kdlib trains (tiny); 0 = the model's own
    dtype: str = "float32"  # float32 | bfloat16 (autocast)
    budget: str = ""  # what the profile costs, in words
    seeds: int = 3  # seeds of the three main models (the book's seeds chapter: mean and 95% CI)

    def __post_init__(self) -> None:
        _check(self.name in PROFILE_NAMES, f"unknown profile {self.name!r}; choose one of {PROFILE_NAMES}")
        _check(self.seeds >= 1, f"seeds {self.seeds} must be >= 1")
        _check(self.dtype in ("float32", "bfloat16"), f"dtype {self.dtype!r} must be float32 or bfloat16")
        t, s = self.teacher, self.student
        if t.name_or_path is None and s.name_or_path is None:
            _check(t.hidden_size * t.num_layers > s.hidden_size * s.num_layers,
                   "the teacher must be larger than the student")

    def override(self, changes: Mapping[str, Any]) -> "Profile":
        """Return a copy with dotted-key fields replaced, e.g. ``{"train.kd_steps": 5}``.

        String values (from the CLI) are converted to the field's type.
        """
        profile: Any = self
        for key, value in changes.items():
            profile = _replace_path(profile, key.split("."), value, key)
        return profile

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _replace_path(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        raise ValueError(f"profile has no field {key!r} (known here: {', '.join(names)})")
    f = names[parts[0]]
    if len(parts) == 1 and dataclasses.is_dataclass(getattr(obj, parts[0])):
        sub = ", ".join(g.name for g in dataclasses.fields(getattr(obj, parts[0])))
        raise ValueError(f"profile field {key!r} has sub-fields: set one of them, e.g. {key}.<name> ({sub})")
    if len(parts) > 1:
        child = getattr(obj, parts[0])
        if not dataclasses.is_dataclass(child):
            raise ValueError(f"profile field {key!r}: {parts[0]} has no sub-fields")
        return dataclasses.replace(obj, **{parts[0]: _replace_path(child, parts[1:], value, key)})
    hint = typing.get_type_hints(type(obj))[f.name]
    return dataclasses.replace(obj, **{parts[0]: _coerce(value, hint, key)})


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value.lower() in ("none", "null", ""):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"{key}: cannot read {value!r} as comma-separated integers") from None
    if hint is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key}: expected true/false, got {value!r}")
        return value.lower() in ("true", "1")
    try:
        return hint(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: cannot read {value!r} as {getattr(hint, '__name__', hint)}") from err


def _tiny() -> Profile:
    return Profile(
        name="tiny",
        description="random-initialised teacher and student, 64-px images, a few hundred real samples",
        vision=VisionSpec(None, image_size=64, patch_size=8, hidden_size=64, num_layers=2, num_heads=2),
        teacher=LLMSpec(None, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=256),
        student=LLMSpec(None, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128),
        lora=LoRASpec(r=0),
        data=DataSpec(per_class=10, vqa_per_type=20, captions=40, max_length=160),
        train=TrainSpec(sft_steps=240, kd_steps=40, batch_size=8, lr=2e-3, kd_lr=5e-4,
                        max_new_tokens=8, checkpoint_every=0, grad_norm_every=5, snapshot_every=80),
        vocab_size=1024,
        budget="the whole book in <= 10 min on a 2-core CPU",
    )


def _small() -> Profile:
    return Profile(
        name="small",
        description="frozen DINOv2-S/14, SmolLM2-135M-Instruct teacher, student cut from it by layer removal",
        vision=VisionSpec("facebook/dinov2-small", image_size=224, patch_size=14, pool_grid=8),
        teacher=LLMSpec("HuggingFaceTB/SmolLM2-135M-Instruct"),
        student=LLMSpec("HuggingFaceTB/SmolLM2-135M-Instruct",
                        keep_layers=(0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29)),
        lora=LoRASpec(r=0),
        data=DataSpec(per_class=40, vqa_per_type=400, captions=600, max_length=256, decode_images=True,
                      test_all=True),
        train=TrainSpec(sft_steps=300, kd_steps=150, batch_size=8, lr=1e-4, kd_lr=2e-5, max_new_tokens=16,
                        checkpoint_every=25, snapshot_every=100, val_every=100, val_size=200, grad_norm_every=10,
                        kd_init="guided", teacher_steps=750, projector_steps=150, micro_batch_size=4, group_by_length=True,
                        # Measured (seed 0, grad_norm_every log, step 10): at weight 1 the projector MSE's gradient
                        # norm was 276 against 24 (single-step), 21 (LM) and 14 (long-term), cosine 0.99 to the
                        # total, so the clipped update was the alignment alone; 0.08 brings it to the others' size.
                        align_coef=0.08),
        # float32 (the default). Measured on this project's 2-core CPU (AVX512-BF16): --set dtype=bfloat16 makes
        # an SFT step 1.74x and a distillation step 1.52x cheaper (benchmarks/small_step.py), but the teacher
        # then learns less per step (validation loss 0.900 against 0.810 after 750 steps), about the same per
        # CPU-hour (0.900 at 1.97 CPU-h against 0.896 at 2.0), and it answered far worse (UCMerced OA 10.0 against
        # 44.8, paired -34.8 +- 7.0 points; results/small/teacher_bf16).
        budget="hours on a 2-core CPU (one teacher with stage 1: about 2.8 h; then each seed's students), minutes on a GPU",
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        description="GeoChat-13B teacher -> GeoChat-7B student, CLIP ViT-L/14 at 504 px (Sec. 3.2)",
        vision=VisionSpec("openai/clip-vit-large-patch14-336", image_size=504, patch_size=14),
        # No GeoChat-13B is released: the user trains one and sets teacher.name_or_path.
        # The sizes are Vicuna-13B/7B-v1.5's, used to count params/FLOPs on the meta device.
        teacher=LLMSpec("", hidden_size=5120, num_layers=40, num_heads=40, intermediate_size=13824),
        student=LLMSpec("MBZUAI/geochat-7B", hidden_size=4096, num_layers=32, num_heads=32,
                        intermediate_size=11008),
        lora=LoRASpec(r=64, alpha=16, dropout=0.05),
        data=DataSpec(per_class=0, vqa_per_type=0, captions=0, max_length=2048, decode_images=True),
        train=TrainSpec(sft_steps=2400, kd_steps=2400, batch_size=144, lr=2e-4, kd_lr=5e-6,
                        max_new_tokens=256, grounding_steps=1600, checkpoint_every=200,
                        val_every=200),
        dtype="bfloat16",
        budget="6 x A100-80GB; the teacher is a user-given GeoChat-13B path or hub id (teacher.name_or_path)",
        seeds=1,
    )


_BUILDERS = {"tiny": _tiny, "small": _small, "paper": _paper}


def get_profile(name: str, overrides: Mapping[str, Any] | None = None) -> Profile:
    """The named profile, with optional dotted-key overrides."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    profile = _BUILDERS[name]()
    return profile.override(overrides) if overrides else profile


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["train.kd_steps=5", ...]`` -> ``{"train.kd_steps": "5"}`` (spaces around key parts and value dropped)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        out[".".join(part.strip() for part in key.split("."))] = value.strip()
    return out


def profile_rows() -> list[tuple[str, ...]]:
    """The profiles side by side: a header row ``("", tiny, small, paper)``, then one row per property."""
    rows = [("", *PROFILE_NAMES)]
    ps = [get_profile(n) for n in PROFILE_NAMES]

    def llm(s: LLMSpec) -> str:
        if s.name_or_path is None:
            return f"random {s.num_layers}L x {s.hidden_size}"
        return s.name_or_path + (f" ({len(s.keep_layers)} layers kept)" if s.keep_layers else "")

    rows += [
        ("vision tower", *[p.vision.name_or_path or f"random CLIP {p.vision.num_layers}L" for p in ps]),
        ("image size / tokens", *[f"{p.vision.image_size} px / {p.vision.num_image_tokens}" for p in ps]),
        ("teacher", *[llm(p.teacher) if p.name != "paper" else "GeoChat-13B (user path)" for p in ps]),
        ("student", *[llm(p.student) for p in ps]),
        ("LoRA rank", *[str(p.lora.r or "full") for p in ps]),
        ("images per class", *[str(p.data.per_class or "all") for p in ps]),
        ("SFT / KD steps", *[f"{p.train.sft_steps} / {p.train.kd_steps}" for p in ps]),
        ("global batch", *[str(p.train.batch_size) for p in ps]),
        ("seeds", *[str(p.seeds) for p in ps]),
        ("budget", *[p.budget for p in ps]),
    ]
    return rows


def profiles_table() -> str:
    """A plain-text table of the three profiles (``kdlib profiles``)."""
    rows = profile_rows()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
