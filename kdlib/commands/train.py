"""``kdlib train``: one training run of the study (SFT of the teacher or student, or a distillation).

Examples::

    kdlib train --profile small --method projector --role teacher  # LLaVA stage 1 (train.projector_steps > 0)
    kdlib train --profile tiny --method sft --role teacher
    kdlib train --profile tiny --method sft --role student
    kdlib train --profile tiny --method paper --ablate long --ablate lm
    kdlib train --profile tiny --method paper --minillm-form unbiased --ppo-epochs 4
    kdlib train --profile tiny --method switch_kd --kneedle-reading dbild_code --switch-direction student_to_switched
    kdlib train --profile tiny --method paper --resume        # continue from the newest checkpoint
    kdlib train --profile tiny --method paper --restart       # start over, deleting its checkpoints
    accelerate launch --config_file configs/accelerate/ddp.yaml -m kdlib.cli train --profile paper --method paper

The model and the metrics land where :class:`kdlib.run.RunContext` puts them (``model_dir`` and
``train_dir`` of the run name) under ``--out`` (default: ``runs/<profile>`` in the repository).

Text-only (two plain causal LMs, prompt/response JSONL; :mod:`kdlib.train.text`)::

    kdlib train --profile small --method paper --teacher T --student S --data pairs.jsonl --out runs/text

writes ``OUT/config.json``, ``OUT/metrics.jsonl`` and the student in ``OUT/model``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState

from kdlib.commands.args import add_profile_args, add_run_args, context_from_args, profile_from_args
from kdlib.errors import UserError
from kdlib.losses.minillm import FORM_DEFAULTS
from kdlib.losses.switch_kd import KNEEDLE_READINGS, SWITCH_DIRECTIONS
from kdlib.profiles import Profile
from kdlib.train.config import ABLATIONS, METHODS, ROLES, SWITCH_KD_DEFAULTS

MINILLM_FORMS = tuple(FORM_DEFAULTS)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a teacher / student by SFT, or distil the student",
                       description="Train one model of the study: SFT of the teacher or the baseline student, "
                                   "or distillation of the student from the SFT models with a method.")
    add_profile_args(p)
    p.add_argument("--method", choices=METHODS, required=True,
                   help="projector (stage 1), sft, guided_sft, or a distillation method (paper = the core paper's full recipe)")
    p.add_argument("--role", choices=ROLES, default="student", help="which model projector / sft trains (default: %(default)s)")
    p.add_argument("--ablate", action="append", choices=ABLATIONS, default=[], metavar="TERM",
                   help=f"drop a term of the paper method (repeatable): {', '.join(ABLATIONS)}")
    p.add_argument("--minillm-form", choices=MINILLM_FORMS, default="code",
                   help="MiniLLM estimator of the paper method: code (LMOps defaults), paper (Eq. 8-9) or "
                        "unbiased (sequence-level weights q/p~ on both terms; expected update = grad KL(q||p)) "
                        "(default: %(default)s)")
    p.add_argument("--ppo-epochs", type=int, default=1, metavar="N",
                   help="updates per batch of rollouts of the paper method, PPO-clipped against the rollout's "
                        "log-probs (MiniLLM: 4; default: %(default)s)")
    p.add_argument("--kneedle-reading", choices=KNEEDLE_READINGS, default=SWITCH_KD_DEFAULTS[0],
                   help="sign of switch_kd's per-token Kneedle k: knee (Kneedle's knee, below the chord of the "
                        "convex sorted logits) or dbild_code (the public DBiLD code's sign, above it) "
                        "(default: %(default)s)")
    p.add_argument("--switch-direction", choices=SWITCH_DIRECTIONS, default=SWITCH_KD_DEFAULTS[1],
                   help="switch_kd's visual switch: switched_to_teacher (the teacher run on the student's visual "
                        "tokens is pulled towards the teacher, training the projector through it) or "
                        "student_to_switched (the switched logits are the student's reference, as the public "
                        "code) (default: %(default)s)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    start.add_argument("--restart", action="store_true",
                       help="start over, deleting the run's checkpoints (needed when some exist)")
    p.add_argument("--no-reuse", action="store_true",
                   help="train even when the saved model already has this configuration and every step")
    add_run_args(p)
    text = p.add_argument_group("text-only distillation (plain causal LMs)")
    text.add_argument("--teacher", default="", help="teacher causal LM: hub id or folder")
    text.add_argument("--student", default="", help="student causal LM: hub id or folder (same tokenizer)")
    text.add_argument("--data", default="", help="JSONL of {\"prompt\": ..., \"response\": ...} records")
    p.set_defaults(func=run, on_interrupt="run the same command with --resume to continue from the newest "
                                          "checkpoint (train.checkpoint_every sets how often one is saved)")


def run(args: argparse.Namespace) -> int:
    from kdlib.models.io import loading_bars
    from kdlib.train.study import train_run  # models and data load only when a run starts

    if args.teacher or args.student or args.data:  # no study data, no run layout: kdlib.train.text
        loading_bars(not args.no_progress)
        return run_text(args, profile_from_args(args))
    ctx = context_from_args(args)
    loading_bars(ctx.progress)
    flags = (("form", args.minillm_form, "code"), ("ppo_epochs", args.ppo_epochs, 1),
             ("kneedle_reading", args.kneedle_reading, SWITCH_KD_DEFAULTS[0]),
             ("switch_direction", args.switch_direction, SWITCH_KD_DEFAULTS[1]))
    changes = {k: v for k, v, default in flags if v != default}
    paths = train_run(ctx, args.method, role=args.role, ablate=args.ablate, resume=args.resume,
                      restart=args.restart, reuse=not args.no_reuse, **changes)
    if PartialState().is_main_process:
        print(f"model: {paths.model}\nmetrics: {paths.metrics}")
    return 0


def run_text(args: argparse.Namespace, profile: Profile) -> int:
    """The text-only run of ``kdlib train --teacher T --student S --data FILE``."""
    from kdlib.train.text import distill_text

    if not (args.teacher and args.student and args.data and args.out):
        raise UserError("a text-only run needs --teacher, --student, --data and --out")
    out = Path(args.out).expanduser().resolve()
    distill_text(args.teacher, args.student, args.data, out, profile, args.method, args.ablate, seed=args.seed,
                 progress=not args.no_progress, resume=args.resume,
                 device=None if args.device == "auto" else args.device)
    if PartialState().is_main_process:
        print(f"model: {out / 'model'}\nmetrics: {out / 'metrics.jsonl'}")
    return 0
