"""``noodle bench [SUITE ...]``: run benchmark suites from ``benchmarks/``.

A suite is ``benchmarks/bench_<name>.py`` defining
``run(quick: bool) -> list[noodle.benchtools.Row]`` (and optionally
``TITLE``). Results print as tables and are saved as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

from noodle.errors import BenchmarkError

NAME = "bench"
HELP = "run benchmark suites (ratios against baselines measured in the same run)"


def _bench_dir() -> Path:
    env = os.environ.get("NOODLE_BENCH_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "benchmarks").is_dir() and (parent / "pyproject.toml").is_file():
            return parent / "benchmarks"
    return Path.cwd() / "benchmarks"


def available_suites() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in _bench_dir().glob("bench_*.py"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suites", nargs="*", metavar="SUITE", help="suites to run (default: the core suites)")
    p.add_argument("--quick", action="store_true", help="fewer sizes and runs (a smoke test)")
    p.add_argument("--out", default=".bench", help="folder for the JSON results (default .bench)")
    p.add_argument("--list", action="store_true", help="list the suites and exit")


DEFAULT_SUITES = ("ops",)


def _load(name: str):
    path = _bench_dir() / f"bench_{name}.py"
    if not path.is_file():
        raise BenchmarkError(
            f"unknown benchmark suite {name!r}; available: {', '.join(available_suites()) or 'none'}"
        )
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"noodle_bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from noodle.benchtools import render_table, save_rows

    if args.list:
        print("\n".join(available_suites()))
        return 0
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # logs and pipes: keep the table rows on one line
    suites = args.suites or list(DEFAULT_SUITES)
    mods = [(name, _load(name)) for name in suites]
    for name, mod in mods:
        t0 = time.perf_counter()
        rows = mod.run(quick=args.quick)
        meta = {"suite": name, "python": platform.python_version(), "machine": platform.machine(),
                "cpus": os.cpu_count(), "seconds": round(time.perf_counter() - t0, 2), "quick": args.quick}
        console.print(render_table(rows, getattr(mod, "TITLE", f"noodle bench {name}")))
        notes = getattr(mod, "notes", None)
        if callable(notes):
            for line in notes(rows):
                console.print(line)
        out = Path(args.out) / f"{name}.json"
        save_rows(rows, out, meta)
        console.print(f"saved {out}")
    return 0
