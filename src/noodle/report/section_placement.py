"""Report section: where device='auto' put the work, and the bytes moved between devices."""

from __future__ import annotations

import importlib
from typing import Any

from noodle.metrics import Registry

ORDER = 20


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render(registry: Registry) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    per_device: dict[str, int] = {}
    ops = registry.get("noodle_op_seconds")
    if ops is not None:
        for (_op, device, _backend), child in ops.children():
            per_device[device] = per_device.get(device, 0) + child.count
    decisions = registry.get("noodle_placement_decisions_total")
    decided = [(k, c.value) for k, c in decisions.children()] if decisions is not None else []
    if per_device:
        summary = ", ".join(f"{n} on {dev}" for dev, n in sorted(per_device.items()))
        parts.append(Text(f"placement: {summary}"))
    if decided:
        table = Table(title="placement decisions under device='auto'")
        table.add_column("op")
        table.add_column("device")
        table.add_column("decisions", justify="right")
        for (op, device), n in sorted(decided):
            table.add_row(op, device, f"{n:.0f}")
        parts.append(table)
    if per_device and not any(d.startswith("cuda") for d in per_device):
        devices = importlib.import_module("noodle.devices")
        parts.append(Text(f"no GPU work: {devices.gpu_unavailable_reason() or 'GPU not chosen'}"))
    transfers = registry.get("noodle_transfer_bytes_total")
    moved = {k[0]: c.value for k, c in transfers.children()} if transfers is not None else {}
    if per_device or moved:
        text = ", ".join(f"{d} {_bytes(v)}" for d, v in sorted(moved.items())) or "none"
        parts.append(Text(f"bytes moved between devices: {text}"))
    return Group(*parts) if parts else None
