"""The ``kdlib`` command line: one sub-command per module of :mod:`kdlib.commands`, each with its own ``--help``.

Every module named in ``COMMANDS`` (thin adapters: arguments in, a library call, output) provides ``add_parser(subparsers)``, which registers its
sub-command and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kdlib import __version__
from kdlib.errors import UserError

COMMANDS = {
    "profiles": "kdlib.commands.profiles",
    "reproduce": "kdlib.commands.reproduce",
    "train": "kdlib.commands.train",
    "evaluate": "kdlib.commands.evaluate",
    "score": "kdlib.commands.score",
    "efficiency": "kdlib.commands.models",
    "convert-geochat": "kdlib.commands.models",
}
"""Sub-command -> the module that registers it (a module may register several)."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that sub-command's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(
        prog="kdlib",
        description="Knowledge distillation of remote-sensing multimodal LLMs "
        "(GeoChat-13B -> GeoChat-7B): train, evaluate, score and reproduce the book.",
    )
    parser.add_argument("--version", action="version", version=f"kdlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as err:
        print(f"kdlib {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (`kdlib profiles | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
