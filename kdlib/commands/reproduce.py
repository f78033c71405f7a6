"""``kdlib reproduce``: execute every notebook of the book on a profile and build it.

The work is :func:`kdlib.chapters.reproduce.reproduce`; this module parses the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdlib.chapters.reproduce import reproduce
from kdlib.commands.args import add_profile_args, add_run_args, overrides_from_args, profile_from_args
from kdlib.run import default_out_dir


def _seconds(text: str) -> int:
    """``--timeout`` value: a positive whole number of seconds."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--timeout must be a positive number of seconds, got {text}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="execute every notebook of the book on a profile and build it",
                       description="Execute the book's notebooks (in _toc.yml order) with papermill on a "
                       "profile, then build the book to HTML with jupyter-book (-W).")
    add_profile_args(p)
    add_run_args(p, progress=False)
    p.add_argument("--kernel", default="kdlib", help="Jupyter kernel papermill uses (default: %(default)s)")
    p.add_argument("--timeout", type=_seconds, default=None,
                   help="seconds per cell (default: no limit; at small a training cell runs for about an hour on a CPU)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks (stems), skip the build")
    p.add_argument("--no-build", action="store_true", help="execute the notebooks but do not build the book")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                   help="show the notebook's cells and its training/evaluation bars as they run "
                   "(default: on at a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profile = profile_from_args(args)  # validates the overrides before anything runs
    out = Path(args.out) if args.out else default_out_dir(profile.name)
    reproduce(profile.name, overrides_from_args(args), args.data_root or None, out, args.seed,
              args.device, args.kernel, args.timeout, build=not (args.no_build or args.only), only=args.only,
              progress=args.progress)
    return 0
