"""Which ops of the op table a backend lacks a translation for.

Why a function (not only a test): adding a row to :mod:`noodle.ir.ops` must fail
loudly until every backend declares what it does with the new op (a translation,
or ``Unsupported(reason)`` that placement respects), and the check must be the
same one the tests, the CLI and a new backend's author run.

Example::

    >>> from noodle.backends.registry import get_backend
    >>> missing_ops(get_backend("numba"))
    []
"""

from __future__ import annotations

from typing import Any

from noodle.backends.base import Backend, Unsupported, table_ops


def missing_ops(backend: Backend | type[Backend]) -> list[str]:
    """The ops of :func:`~noodle.backends.base.table_ops` with no entry in ``backend.op_table``, sorted."""
    table = backend.op_table
    return sorted(op for op in table_ops() if op not in table)


def unsupported_ops(backend: Backend | type[Backend]) -> dict[str, str]:
    """Op -> reason for each op the backend declares :class:`~noodle.backends.base.Unsupported`."""
    return {op: entry.reason for op, entry in backend.op_table.items() if isinstance(entry, Unsupported)}


def unknown_entries(backend: Backend | type[Backend]) -> list[str]:
    """Entries of ``backend.op_table`` that name no op of the table (a typo, or a removed op)."""
    known: Any = table_ops()
    return sorted(op for op in backend.op_table if op not in known)


__all__ = ["missing_ops", "unknown_entries", "unsupported_ops"]
