"""NIR: noodle's typed intermediate representation, and the single op table.

A leaf package: it imports nothing from the rest of noodle except errors.
"""

from noodle.ir.ops import OPS, OpDef, OpKind, op

__all__ = ["OPS", "OpDef", "OpKind", "op"]
