"""The syntax fixer: repair Python syntax errors, ranked by a language model trained here.

Why this package imports nothing heavy: ``noodle fix`` on a small file must
answer from a fresh process in well under half a second, so NumPy, Dask and
the rest load only on the paths that need them (the distributed run).

Example::

    from noodle.fixer import fix
    result = fix("def f(x)\\n    return x\\n")
    print(result.source, result.edits)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "fix": "noodle.fixer.repair:fix",
    "FixResult": "noodle.fixer.result:FixResult",
    "Candidate": "noodle.fixer.result:Candidate",
    "Edit": "noodle.fixer.result:Edit",
    "SyntaxErrorInfo": "noodle.fixer.result:SyntaxErrorInfo",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'noodle.fixer' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


__all__ = list(_LAZY)
