"""``noodle run SCRIPT [args]``: run a Python script with noodle active, then report.

The report, printed when the script ends (normally, by exception or by
``sys.exit``), shows time per op and device, the placement decisions and the
bytes moved between devices; other parts (JIT, cache, monitoring, dist) add
their sections. ``--profile`` samples the script with noodle's profiler and
``--dashboard`` serves the live dashboard while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from noodle.errors import NoodleError

NAME = "run"
HELP = "run a Python script with noodle active and print a performance report at exit"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("script", help="path of the Python script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    p.add_argument("--profile", action="store_true", help="sample the script with noodle's profiler")
    p.add_argument("--dashboard", action="store_true", help="serve the live dashboard while the script runs")
    p.add_argument("--host", default="127.0.0.1", help="dashboard host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="dashboard port (default 8080, 0 = any free)")
    p.add_argument("--no-report", action="store_true", help="do not print the report")
    p.add_argument("--report-json", metavar="PATH", help="also write the metrics snapshot as JSON")


def _start_monitoring(args: argparse.Namespace) -> Any:
    try:
        from noodle.monitor import run_hooks
    except ImportError:
        if args.profile or args.dashboard:
            raise NoodleError("--profile/--dashboard need noodle's monitor package, which is not importable") \
                from None
        return None
    return run_hooks.start(profile=args.profile, dashboard=args.dashboard, host=args.host, port=args.port)


def main(args: argparse.Namespace) -> int:
    from noodle import metrics
    from noodle.report import render_report

    script = Path(args.script)
    if not script.is_file():
        raise NoodleError(f"noodle run: no such script {str(script)!r}; give the path of a .py file")
    handle = _start_monitoring(args)
    old_argv, old_path = list(sys.argv), list(sys.path)
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.resolve().parent))
    status = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:  # the user's error: show it, still report what ran
        traceback.print_exc()
        status = 1
    finally:
        sys.argv, sys.path = old_argv, old_path
        extra: dict[str, Any] = {}
        if handle is not None:
            try:
                extra = handle.stop() or {}
            except Exception as exc:  # reporting must not hide the script's outcome
                print(f"noodle: monitoring did not stop cleanly: {exc}", file=sys.stderr)
        if not args.no_report:
            render_report(title=f"noodle report: {script.name}")
            for key, value in extra.items():
                if (key.endswith("_path") or key.endswith("_paths")) and value:
                    print(f"{key.replace('_', ' ')}: {value}")
        if args.report_json:
            out = Path(args.report_json)
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"metrics": metrics.registry.snapshot(), "monitor": extra},
                                      indent=2, default=str))
            tmp.replace(out)
    return status
