"""``kdlib train``: one training run of the study (SFT of the teacher or student, or a distillation).

Examples::

    kdlib train --profile tiny --method sft --role teacher
    kdlib train --profile tiny --method sft --role student
    kdlib train --profile tiny --method paper --ablate long --ablate lm
    kdlib train --profile tiny --method paper --resume        # continue from the newest checkpoint
    accelerate launch --config_file configs/accelerate/ddp.yaml -m kdlib.cli train --profile paper --method paper

The model and the metrics land where :class:`kdlib.run.RunContext` puts them (``model_dir`` and
``train_dir`` of the run name) under ``--out`` (default: ``runs/<profile>`` in the repository).
"""

from __future__ import annotations

import argparse

from accelerate import PartialState

from kdlib.commands.args import add_profile_args, add_run_args, context_from_args
from kdlib.train.config import ABLATIONS, METHODS, ROLES


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
    p.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    p.add_argument("--no-reuse", action="store_true",
                   help="train even when the saved model already has this configuration and every step")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlib.models.io import loading_bars
    from kdlib.train.study import train_run  # models and data load only when a run starts

    ctx = context_from_args(args)
    loading_bars(ctx.progress)
    paths = train_run(ctx, args.method, role=args.role, ablate=args.ablate, resume=args.resume,
                      reuse=not args.no_reuse)
    if PartialState().is_main_process:
        print(f"model: {paths.model}\nmetrics: {paths.metrics}")
    return 0
