"""``noodle devices``: a table of the compute devices and which backends are usable, and why.

Why a command: "is my GPU used, and if not why not" is the first question of
anyone trying noodle on a new machine; this answers it without writing code.
"""

from __future__ import annotations

import argparse
import json

NAME = "devices"
HELP = "list the CPU and GPUs noodle sees, and which backends (CUDA, ROCm, OpenCL, Metal) are usable and why"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--calibrate", action="store_true",
                   help="measure this machine's device throughputs again (placement uses them) and show them")


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**3:.1f} GiB"


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from noodle.devices import backend_status, devices, gpu_count, gpu_unavailable_reason

    found = devices()
    status = backend_status()
    usable = gpu_count()
    why = gpu_unavailable_reason()
    if args.json:
        print(json.dumps({
            "devices": [d.to_dict() for d in found],
            "backends": {k: v.to_dict() for k, v in status.items()},
            "gpu_count": usable,
            "gpu_unavailable_reason": why,
        }, indent=2))
        return 0

    console = Console()
    table = Table(title="noodle devices")
    for col in ("device", "name", "cores / SMs", "compute cap.", "memory total", "memory free", "util."):
        table.add_column(col)
    for d in found:
        if d.kind == "cpu":
            cores = f"{d.cores_logical} ({d.cores_physical or '?'} phys.)"
        else:
            cores = f"{d.multiprocessors} SMs" if d.multiprocessors else "-"
        util = "-" if d.utilization_percent is None else f"{d.utilization_percent:.0f} %"
        table.add_row(d.id, escape(d.name), cores, d.compute_capability or "-", _gib(d.memory_total),
                      _gib(d.memory_available), util)
    console.print(table)

    backends = Table(title="backends")
    backends.add_column("backend")
    backends.add_column("available")
    backends.add_column("reason")
    for name, st in status.items():
        backends.add_row(name, "yes" if st.available else "no", escape(st.reason))
    console.print(backends)
    if usable:
        console.print(f"noodle may place work on {usable} GPU(s).")
    else:
        console.print(escape(f"noodle computes on the CPU only: {why}."))
    if args.calibrate:
        _print_calibration(console)
    return 0


def _print_calibration(console) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from noodle.placement import calibrate

    cal = calibrate.load_or_measure(force=True)
    table = Table(title="calibration (used by device='auto')")
    for col in ("device", "bandwidth", "elementwise", "exp-like", "matmul f64", "matmul f32", "call", "h2d", "d2h"):
        table.add_column(col, justify="right" if col != "device" else "left")

    def row(name, r) -> None:  # type: ignore[no-untyped-def]
        table.add_row(name, f"{r.bandwidth / 1e9:.1f} GB/s", f"{r.flops / 1e9:.1f} GFLOP/s",
                      f"{r.transcendental / 1e9:.2f} G/s", f"{r.matmul_flops.get('float64', 0) / 1e9:.1f} GFLOP/s",
                      f"{r.matmul_flops.get('float32', 0) / 1e9:.1f} GFLOP/s", f"{r.call_overhead * 1e6:.1f} µs",
                      f"{r.h2d / 1e9:.1f} GB/s" if r.h2d else "-", f"{r.d2h / 1e9:.1f} GB/s" if r.d2h else "-")

    row("cpu", cal.cpu)
    for index, rates in sorted(cal.gpus.items()):
        row(f"cuda:{index}", rates)
    console.print(table)
