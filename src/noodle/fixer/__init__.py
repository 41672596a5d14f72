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

from noodle._lazy import lazy_attributes

_LAZY = {
    "fix": "noodle.fixer.repair:fix",
    "FixResult": "noodle.fixer.result:FixResult",
    "Candidate": "noodle.fixer.result:Candidate",
    "Edit": "noodle.fixer.result:Edit",
    "SyntaxErrorInfo": "noodle.fixer.result:SyntaxErrorInfo",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = list(_LAZY)
