"""Every backend declares its translation of every op in one table; see what each one does.

The op list lives in ``noodle.ir.ops``; each backend's ``op_table`` maps every op to its
translation (an expression template, an accumulator update, a library call, a view) or to
``Unsupported(reason)``, which placement respects. ``missing_ops`` is the check the coverage
test runs: adding an op to the table without a translation makes it non-empty.

Run: python examples/backends_op_tables.py
"""

from __future__ import annotations

from noodle.backends.base import Unsupported, table_ops
from noodle.backends.coverage import missing_ops, unsupported_ops
from noodle.backends.numba_emit import op_expr
from noodle.backends.registry import backend_names, get_backend

print(f"{len(table_ops())} ops in the table")
for name in backend_names():
    try:
        backend = get_backend(name)
    except ImportError as exc:   # an optional toolchain that is not installed
        print(f"{name:6s} cannot be imported here: {exc}")
        continue
    kinds: dict[str, int] = {}
    for entry in backend.op_table.values():
        kind = "Unsupported" if isinstance(entry, Unsupported) else type(entry).__name__
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{name:6s} missing={missing_ops(backend)} entries={kinds}")
    for op, why in sorted(unsupported_ops(backend).items()):
        print(f"       {op}: unsupported ({why})")

# how the Numba generator spells two ops (int8 arithmetic wraps as NumPy's does)
print(op_expr("multiply", ["a", "b"], ["int8", "int8"], "int8"))
print(op_expr("maximum", ["a", "b"], ["float64", "float64"], "float64"))
