"""``noodle config``: every effective setting, its environment variable, and where it came from.

Why: when a setting surprises you (a GPU not used, a cache too small), the
first question is which of default, ``noodle.toml`` or the environment won.
Loading the settings here also validates them, so a bad value fails now with a
message naming the variable.
"""

from __future__ import annotations

import argparse
import json

NAME = "config"
HELP = "print every effective setting and where it came from (default, noodle.toml, environment)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from noodle.config import reload

    settings = reload()
    rows = settings.describe()
    if args.json:
        print(json.dumps({name: {"env": env, "value": value, "source": source}
                          for name, env, value, source in rows}, indent=2))
        return 0
    table = Table(title="noodle settings")
    for col in ("setting", "environment variable", "value", "source"):
        table.add_column(col)
    for name, env, value, source in rows:
        table.add_row(name, env, repr(value), source)
    Console().print(table)
    return 0
