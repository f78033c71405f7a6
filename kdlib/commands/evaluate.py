"""``kdlib evaluate``: answer the test tasks with a run's trained models and score them.

    kdlib evaluate --profile tiny [--models teacher student_kd] [--tasks scene_aid vqa_lr]
                   [--out DIR] [--data-root DIR] [--batch-size 16] [--max-new-tokens N] [--geochat-7b]

    kdlib curve --profile small --run teacher [--tasks scene_ucmerced scene_aid] [--limit N] [--out DIR]

The work is :func:`kdlib.evaluate.runner.evaluate_study` and
:func:`kdlib.analysis.learning_curve.learning_curve`; this module parses the arguments.
"""

from __future__ import annotations

import argparse

from kdlib.commands.args import add_profile_args, add_run_args, context_from_args
from kdlib.evaluate.runner import MODELS
from kdlib.evaluate.tasks import CURVE_TASKS, TASK_NAMES
from kdlib.run import RunContext, seed_everything


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="answer the test tasks with the trained models and score them",
                       description="Generate answers (greedy, GeoChat prompts) with the trained models of a "
                       "profile, write them as GeoChat-Bench JSONL and score them (results/<model>/<task>.json).")
    add_profile_args(p)
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                   help=f"model folders under OUT/models (default: {' '.join(MODELS)})")
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES, metavar="TASK",
                   help=f"evaluation tasks (default: all: {', '.join(TASK_NAMES)})")
    add_answering_args(p)
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="answer length cap for every task (default: per task, from its training answers)")
    p.add_argument("--no-reuse", action="store_true",
                   help="regenerate answers even when a saved result still holds (same model, records, budget)")
    p.add_argument("--geochat-7b", action="store_true",
                   help="also score the real GeoChat-7B answer files of DATA_ROOT/geochat_bench")
    add_run_args(p)
    p.set_defaults(func=run)
    add_curve_parser(sub)


def add_curve_parser(sub) -> None:
    p = sub.add_parser("curve", help="learning curve of a run: its snapshots scored on test tasks",
                       description="Answer the test tasks with the model of every kept step of a run "
                       "(train.snapshot_every) and print task accuracy and validation loss against CPU-hours "
                       "(written to OUT/curves/<run>/curve.json).")
    add_profile_args(p)
    p.add_argument("--run", default="teacher", help="training run whose snapshots are scored (default: %(default)s)")
    p.add_argument("--tasks", nargs="+", default=list(CURVE_TASKS), choices=TASK_NAMES, metavar="TASK",
                   help=f"evaluation tasks (default: {' '.join(CURVE_TASKS)})")
    add_answering_args(p)
    add_run_args(p)
    p.set_defaults(func=run_curve)


def add_answering_args(p: argparse.ArgumentParser) -> None:
    """``--batch-size`` and ``--limit``: how many prompts per generate call, how many test records per task."""
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N test records per task")


def answering_context(args: argparse.Namespace) -> RunContext:
    """The run's context for a command that generates answers: its counts checked (each >= 1 when given),
    the seed set and the loading bars following ``--no-progress``."""
    from kdlib.models.io import loading_bars

    for name in ("batch_size", "limit", "max_new_tokens"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    ctx = context_from_args(args)
    seed_everything(ctx.seed)
    loading_bars(ctx.progress)
    return ctx


def run(args: argparse.Namespace) -> int:
    from kdlib.evaluate.report import headline_table
    from kdlib.evaluate.runner import GEOCHAT_7B_FILES, REAL_GEOCHAT, evaluate_study, score_geochat_7b

    ctx = answering_context(args)
    results = evaluate_study(ctx, args.models, args.tasks, batch_size=args.batch_size,
                             max_new_tokens=args.max_new_tokens, limit=args.limit, reuse=not args.no_reuse)
    if args.geochat_7b:
        results[REAL_GEOCHAT] = score_geochat_7b(ctx, [t for t in args.tasks if t in GEOCHAT_7B_FILES])
    print(headline_table(results).to_string())
    print(f"answers: {ctx.answers_file('<model>', '<task>')}\nresults: {ctx.result_file('<model>', '<task>')}")
    return 0


def run_curve(args: argparse.Namespace) -> int:
    from kdlib.analysis.learning_curve import learning_curve

    ctx = answering_context(args)
    table = learning_curve(ctx, args.run, args.tasks, limit=args.limit, batch_size=args.batch_size)
    print(table.round(3).to_string())
    print(f"curve: {ctx.curve_file(args.run)}")
    return 0
