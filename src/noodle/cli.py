"""The ``noodle`` command line.

Each subcommand is one module in :mod:`noodle.commands` defining ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``main(args) -> int``; modules are
discovered, so adding a command never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from noodle.errors import NoodleError


def _commands(only: str | None = None) -> list:
    import noodle.commands as pkg

    names = sorted(i.name for i in pkgutil.iter_modules(pkg.__path__) if not i.name.startswith("_"))
    if only is not None and only in names:
        names = [only]
    return [importlib.import_module(f"noodle.commands.{name}") for name in names]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command ``only`` alone (when it exists).

    Why ``only``: ``noodle fix small.py`` must answer from a fresh process in well under half a
    second, so ``main`` imports just the module of the command it was asked for; ``noodle
    --help`` and a mistyped command still see them all.
    """
    parser = argparse.ArgumentParser(
        prog="noodle",
        description="noodle: a Python acceleration runtime that decides what runs where, and shows why.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _commands(only):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except NoodleError as exc:
        print(f"noodle: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
