"""``kdlib train``: one training run of the study (SFT of the teacher or student, or a distillation).

Examples::

    kdlib train --profile tiny --method sft --role teacher
    kdlib train --profile tiny --method sft --role student
    kdlib train --profile tiny --method paper --ablate long --ablate lm
    kdlib train --profile tiny --method paper --minillm-form unbiased --ppo-epochs 4
    kdlib train --profile tiny --method paper --resume        # continue from the newest checkpoint
    accelerate launch --config_file configs/accelerate/ddp.yaml -m kdlib.cli train --profile paper --method paper

The model lands in ``OUT/models/<run name>`` and the metrics in ``OUT/train/<run name>/metrics.jsonl``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState

from kdlib.commands.profiles import add_profile_args, add_run_args, profile_from_args
from kdlib.losses.minillm import FORM_DEFAULTS
from kdlib.train.config import ABLATIONS, METHODS, ROLES

MINILLM_FORMS = tuple(FORM_DEFAULTS)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a teacher / student by SFT, or distil the student",
                       description="Train one model of the study: SFT of the teacher or the baseline student, "
                                   "or distillation of the student from the SFT models with a method.")
    add_profile_args(p)
    p.add_argument("--method", choices=METHODS, required=True,
                   help="sft, or a distillation method (paper = the core paper's full recipe)")
    p.add_argument("--role", choices=ROLES, default="student", help="which model sft trains (default: %(default)s)")
    p.add_argument("--ablate", action="append", choices=ABLATIONS, default=[], metavar="TERM",
                   help=f"drop a term of the paper method (repeatable): {', '.join(ABLATIONS)}")
    p.add_argument("--minillm-form", choices=MINILLM_FORMS, default="code",
                   help="MiniLLM estimator of the paper method: code (LMOps defaults), paper (Eq. 8-9) or "
                        "unbiased (sequence-level weights q/p~ on both terms; expected update = grad KL(q||p)) "
                        "(default: %(default)s)")
    p.add_argument("--ppo-epochs", type=int, default=1, metavar="N",
                   help="updates per batch of rollouts of the paper method, PPO-clipped against the rollout's "
                        "log-probs (MiniLLM: 4; default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    p.add_argument("--no-reuse", action="store_true",
                   help="train even when the saved model already has this configuration and every step")
    add_run_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlib.models.io import loading_bars
    from kdlib.train.study import train_run  # models and data load only when a run starts

    profile = profile_from_args(args)
    loading_bars(not args.no_progress)
    out = Path(args.out or f"runs/{profile.name}").expanduser().resolve()
    changes = {k: v for k, v, default in (("form", args.minillm_form, "code"), ("ppo_epochs", args.ppo_epochs, 1))
               if v != default}
    paths = train_run(profile, args.method, out, data_root=args.data_root or None, role=args.role,
                      ablate=args.ablate, seed=args.seed, progress=not args.no_progress, resume=args.resume,
                      reuse=not args.no_reuse, device=None if args.device == "auto" else args.device, **changes)
    if PartialState().is_main_process:
        print(f"model: {paths.model}\nmetrics: {paths.metrics}")
    return 0
