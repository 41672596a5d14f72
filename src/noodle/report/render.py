"""Collect the report sections and print them with rich."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from noodle.metrics import Registry
from noodle.metrics import registry as default_registry


def _sections() -> list[Any]:
    import noodle.report as pkg

    mods = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("section_"):
            mods.append(importlib.import_module(f"noodle.report.{info.name}"))
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 100))


def render_report(registry: Registry | None = None, console: Any = None, title: str = "noodle report") -> None:
    """Print every section that has something to say."""
    from rich.console import Console
    from rich.rule import Rule

    reg = registry or default_registry
    out = console or Console(stderr=False)
    if console is None and not out.is_terminal:
        out = Console(stderr=False, width=120)  # pipes and CI logs: don't squeeze tables to 80 columns
    out.print(Rule(title))
    for mod in _sections():
        try:
            renderable = mod.render(reg)
        except Exception as exc:  # a broken section must not hide the others
            out.print(f"[red]report section {mod.__name__} failed: {exc}[/red]")
            continue
        if renderable is not None:
            out.print(renderable)
