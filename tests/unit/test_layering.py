"""Imports point one way (ARCHITECTURE.md): a package may import only the packages listed for it.

Every ``import``/``from ... import`` in src/noodle, at any depth (lazy imports
inside functions count too), is checked against the allowed edges below.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "noodle"

LEAVES = {"errors", "config", "metrics", "_lazy", "_numba_warnings"}
# package -> packages it may import (besides itself and the leaves)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_lazy": set(),
    "_numba_warnings": set(),
    "config": set(),
    "metrics": set(),
    "ir": set(),
    "devices": set(),
    "memory": set(),
    "trace": {"ir"},
    "passes": {"ir", "backends"},
    "nbc": {"ir"},
    "placement": {"ir", "devices"},
    "backends": {"ir", "memory", "devices"},
    "exec": {"ir", "nbc", "passes", "backends", "memory", "devices"},
    "array": {"ir", "devices", "placement", "memory"},   # eager outputs go to the current region
    "jit": {"ir", "trace", "passes", "nbc", "exec", "backends", "memory", "devices", "placement", "array"},
    "cache": {"ir"},
    "store": {"cache"},
    "monitor": {"devices", "ir"},
    "dist": {"ir", "nbc", "exec", "jit", "devices", "backends", "trace", "passes", "memory", "array"},
    "report": {"devices", "monitor"},
    "crypto": {"devices", "backends", "memory", "array"},
    "inference": {"devices", "placement", "cache", "monitor"},
    "fixer": {"cache", "dist", "monitor", "inference"},
    "benchtools": set(),
}
TOP = {"__init__", "cli", "commands"}   # the facade and the command line may import anything


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "noodle":
                found += [(node.lineno, f"noodle.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_imports_point_one_way() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package(path)
        if pkg in TOP:
            continue
        allowed = ALLOWED.get(pkg)
        assert allowed is not None, f"package {pkg!r} has no entry in the layering table: add one"
        for lineno, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "noodle" or len(parts) < 2:
                continue
            target = parts[1]
            if target == pkg or target in LEAVES and pkg not in LEAVES or target in allowed:
                continue
            if target in LEAVES and pkg in LEAVES and target == "errors":
                continue   # config may raise ConfigError
            violations.append(f"{path.relative_to(SRC)}:{lineno} ({pkg}) imports noodle.{target}")
    assert violations == [], "\n".join(violations)


def test_leaves_import_nothing_upward() -> None:
    for leaf in ("ir", "metrics", "errors"):
        files = [SRC / f"{leaf}.py"] if (SRC / f"{leaf}.py").exists() else list((SRC / leaf).rglob("*.py"))
        for path in files:
            for _, module in _imports(path):
                parts = module.split(".")
                if parts[0] == "noodle" and len(parts) > 1:
                    assert parts[1] in {leaf, "errors"}, f"{path} imports {module}"


def test_a_lazy_public_name_never_hides_the_subpackage_of_the_same_name() -> None:
    """``nd.jit`` used first, then ``import noodle.jit.lower as lower`` (and the same for every lazy name
    that is also a subpackage): the import must still find the subpackage, in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, noodle as nd\n"
        "subs = {m.name for m in pkgutil.iter_modules(nd.__path__) if m.ispkg}\n"
        "clash = sorted(n for n in nd.__all__ if n in subs)\n"
        "assert 'jit' in clash, clash\n"
        "for n in clash:\n"
        "    getattr(nd, n)\n"
        "import noodle.jit.lower as lower\n"
        "assert lower.__name__ == 'noodle.jit.lower'\n"
        "assert callable(nd.jit) and nd.jit is importlib.import_module('noodle.jit')\n"
        "for n in clash:\n"
        "    assert getattr(nd, n) is importlib.import_module('noodle.' + n), n\n"
        "import numpy as np\n"
        "assert float(nd.jit(lambda a: (a * a).sum(), backend='interpret')(np.arange(4.0))) == 14.0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
