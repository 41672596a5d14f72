"""``noodle summary``: the performance summary of a running noodle (its API) or of a saved history file."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "summary"
HELP = "print a performance summary (from a running `noodle serve`/`noodle run --dashboard`, or a history file)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--url", default=None, help="base URL of a running monitor API, e.g. http://127.0.0.1:8080")
    src.add_argument("--history", default=None, metavar="FILE", help="summarize a saved history file instead")
    p.add_argument("--window", type=float, default=60.0, help="window in seconds (default 60)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _fetch(url: str, window: float) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    from noodle.errors import MonitorError

    target = f"{url.rstrip('/')}/api/summary?window={window}"
    try:
        with urllib.request.urlopen(target, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise MonitorError(f"{target} answered HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise MonitorError(f"cannot reach the monitor API at {url}: {exc}; is `noodle serve` running?") from None


def _from_history(path: str, window: float) -> dict[str, Any]:
    from noodle.metrics import Registry
    from noodle.monitor.history import History
    from noodle.monitor.summary import Summarizer

    hist = History.load(path)
    points = hist.since(0.0)
    end = max((p["t"] for p in points), default=0.0)
    cur = [p for p in points if p["t"] >= end - window]
    out = Summarizer(Registry(), window).summary(window, [])
    from noodle.monitor.summary import _resources

    out["resources"] = _resources(cur)
    from noodle.monitor.bottlenecks import detect

    out["bottlenecks"] = [b.to_json() for b in detect(cur, Registry(), window)]
    prev = [p for p in points if end - 2 * window <= p["t"] < end - window]
    if prev:
        out["previous"] = {"resources": _resources(prev)}
    return out


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from noodle.errors import MonitorError

    if args.window <= 0:
        raise MonitorError(f"--window must be a positive number of seconds, got {args.window}")
    if args.history:
        summary = _from_history(args.history, args.window)
    else:
        summary = _fetch(args.url or "http://127.0.0.1:8080", args.window)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        from noodle.monitor.summary_text import render

        Console().print(render(summary))
    return 0
