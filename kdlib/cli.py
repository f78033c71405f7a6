"""The ``kdlib`` command line: one sub-command per module, each with its own ``--help``.

Every module named in ``COMMANDS`` provides ``add_parser(subparsers)``, which registers its
sub-command and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kdlib.errors import UserError

COMMANDS = (
    "kdlib.commands.profiles",
    "kdlib.reproduce",
    "kdlib.evaluate.score",
    "kdlib.evaluate.runner",
    "kdlib.train.cli",
    "kdlib.models.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdlib",
        description="Knowledge distillation of remote-sensing multimodal LLMs "
        "(GeoChat-13B -> GeoChat-7B): train, evaluate, score and reproduce the book.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"kdlib {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
