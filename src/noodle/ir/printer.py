"""Readable text of a NIR program (what ``f.nir(*args)`` returns).

One line per value, SSA style, with type and attributes; fused groups are shown
as ``[g3]`` so a reader sees which nodes became one kernel.

Example::

    >>> from noodle.ir.graph import Builder
    >>> from noodle.ir.printer import format_program
    >>> b = Builder(); x = b.input(0, (4,), "float64")
    >>> print(format_program(b.finish([b.add("exp", x)])))  # doctest: +NORMALIZE_WHITESPACE
    program(%0: f64[4]) -> (%1)
      %0 = input 0 : f64[4]
      %1 = exp %0 : f64[4]
"""

from __future__ import annotations

import numpy as np

from noodle.ir.graph import Node, Program

_SHORT = {"float64": "f64", "float32": "f32", "int64": "i64", "int32": "i32", "int16": "i16",
          "int8": "i8", "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64", "bool": "bool"}


def format_type(shape: tuple[int, ...], dtype: str) -> str:
    """``f64[3,4]`` style type text."""
    return f"{_SHORT.get(dtype, dtype)}[{','.join(str(d) for d in shape)}]"


def _const_text(c: np.ndarray) -> str:
    if c.ndim == 0:
        return repr(c.item())
    if c.size <= 4:
        return np.array2string(c.ravel(), separator=",")
    return f"<{c.size} values>"


def format_node(i: int, node: Node, program: Program) -> str:
    """One line for value ``i``."""
    ty = format_type(node.shape, node.dtype)
    if node.op == "input":
        body = f"input {node.attr('index')}"
    elif node.op == "const":
        body = f"const {_const_text(program.consts[node.attr('index')])}"
    else:
        body = node.op + " " + ", ".join(f"%{a}" for a in node.args)
        extra = [f"{k}={v}" for k, v in node.attrs if k != "group"]
        if extra:
            body += " {" + ", ".join(extra) + "}"
    group = node.attr("group")
    tag = f"  [g{group}]" if group is not None else ""
    return f"  %{i} = {body} : {ty}{tag}"


def format_program(program: Program, indent: str = "") -> str:
    """The whole program as text (a loop's cond and body follow its line, indented)."""
    inputs = sorted((n.attr("index"), i, n) for i, n in enumerate(program.nodes) if n.op == "input")
    sig = ", ".join(f"%{i}: {format_type(n.shape, n.dtype)}" for _, i, n in inputs)
    outs = ", ".join(f"%{o}" for o in program.outputs)
    lines = [f"{indent}program({sig}) -> ({outs})"]
    for i, n in enumerate(program.nodes):
        lines.append(indent + format_node(i, n, program))
        if n.op == "while_loop":
            for name in ("cond", "body"):
                lines.append(f"{indent}    {name}:")
                lines.append(format_program(n.attr(name).program, indent + "      "))
    return "\n".join(lines)


__all__ = ["format_node", "format_program", "format_type"]
