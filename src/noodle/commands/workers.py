"""``noodle workers``: each Dask worker's status, memory, tasks and last heartbeat.

With ``--address`` it asks a running scheduler (the usual case: a cluster
shared by several programs). Without it, it starts a local cluster the way
``noodle.dist.Processor`` would, reports it and shuts it down: a quick check
that worker processes start on this machine.
"""

from __future__ import annotations

import argparse
import json

NAME = "workers"
HELP = "show Dask workers: status, memory, tasks, last heartbeat (local cluster or --address)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="scheduler address, tcp://host:port (default: start a local cluster)")
    p.add_argument("--n-workers", type=int, default=None, help="workers of the local cluster")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n else "-"


def main(args: argparse.Namespace) -> int:
    from noodle.dist import Processor

    with Processor(address=args.address, n_workers=args.n_workers, port=0 if args.address is None else None) as proc:
        infos = proc.workers()
        scheduler, dashboard = proc.scheduler_address, proc.dashboard_address
    if args.json:
        print(json.dumps({"scheduler": scheduler, "dashboard": dashboard,
                          "workers": [i.to_json() for i in infos]}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"workers of {scheduler}")
    for col in ("worker", "pid", "status", "threads", "memory", "limit", "executing", "ready", "in memory",
                "heartbeat", "resources"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.address, str(i.pid or "-"), i.status, str(i.nthreads), _mib(i.memory_bytes),
                      _mib(i.memory_limit_bytes), str(i.executing), str(i.ready), str(i.in_memory),
                      "-" if i.status == "restarting" else f"{i.heartbeat_age:.1f} s ago", ", ".join(f"{k}={v:g}" for k, v in i.resources.items()) or "-")
    console = Console()
    console.print(table)
    console.print(f"dashboard: {dashboard or 'none'} (/health and /metrics; /status needs bokeh)")
    return 0
