"""Package attributes that import their module on first use (PEP 562).

Why one helper: the facade (``import noodle``) and the subpackages whose public
names sit behind heavy imports (NumPy, Numba, gmpy2, the language model) all
want ``import x`` to cost nothing until a name is used; one implementation
keeps their error messages and ``dir()`` alike.

Example::

    _LAZY = {"fix": "noodle.fixer.repair:fix", "corpus": "noodle.fixer.corpus:"}
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(module_name: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the module ``module_name``: ``table`` maps a public name to
    ``"module:attribute"`` (or ``"module:"`` for the module itself); the value is cached on first use."""
    module = sys.modules[module_name]

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        target_module, _, attr = target.partition(":")
        value: Any = importlib.import_module(target_module)
        if attr:
            value = getattr(value, attr)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(table))

    return __getattr__, __dir__


__all__ = ["lazy_attributes"]
