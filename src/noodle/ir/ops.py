"""The one op table.

Why one table: the eager API, the tracer, the interpreter, every backend and the
NBC bytecode all need to agree on what an op is: its arity, how its result dtype
is derived, roughly what it costs, and its stable bytecode number. Keeping all
of that in one place (numexpr's ``opcodes.hpp``, tinygrad's ``Ops``) means a new
op is one row here plus one implementation per backend, and the bytecode number
of an existing op never changes.

``numpy`` names the NumPy function that *defines* the op's semantics (the
interpreter and the eager CPU path call it; other backends are tested against
it). ``flops`` is a cost hint per output element used by placement.
``ufuncs``/``functions`` name what the tracer records as the op, so its maps are
read from here too.

Example::

    >>> op("divide").symbol, traced_ufuncs()["true_divide"], traced_functions()["amax"]
    ('/', 'divide', 'max')
    >>> "input" in computing_ops(), "astype" in computing_ops()
    (False, True)
    >>> op("concatenate").arity == VARIADIC
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class OpKind(str, Enum):
    """How an op maps inputs to outputs; decides fusion and codegen shape."""

    INPUT = "input"          # a program argument
    CONST = "const"          # a literal from the constant pool
    UNARY = "unary"          # elementwise, one operand
    BINARY = "binary"        # elementwise, two operands, broadcasting
    TERNARY = "ternary"      # elementwise, three operands (where)
    REDUCE = "reduce"        # reduction over axes
    MATMUL = "matmul"        # matrix product
    SHAPE = "shape"          # reshape / transpose / broadcast: no arithmetic
    CAST = "cast"            # dtype conversion
    INDEX = "index"          # slice / gather / concatenate: data movement, run as lone steps (views where NumPy's are)
    LOOP = "loop"            # a loop over sub-programs, and the pick of one carried value


class DTypeRule(str, Enum):
    """How the result dtype follows from the operand dtypes."""

    SAME = "same"            # the operand's dtype (abs, neg, reductions other than mean)
    PROMOTE = "promote"      # NumPy promotion of the operands (add, maximum, matmul)
    FLOAT = "float"          # promotion, then at least float (divide, exp, mean)
    BOOL = "bool"            # comparisons
    WHERE = "where"          # promotion of operands 2 and 3
    ATTR = "attr"            # given by an attribute (astype)


@dataclass(frozen=True)
class OpDef:
    """One row of the op table."""

    name: str
    code: int               # stable NBC opcode: never reuse or renumber
    kind: OpKind
    arity: int              # operand count; VARIADIC for concatenate / while_loop
    dtype_rule: DTypeRule
    numpy: str | None       # NumPy function defining the semantics
    flops: float = 1.0      # cost hint per output element
    symbol: str | None = None  # infix symbol for printing, if any
    # float results depend on the math library (not fixed by IEEE 754 like + - * / sqrt): the
    # bits are NumPy's (its SIMD/SVML loops), so a CPU backend must call NumPy for them
    libm: bool = False
    # what the tracer records as this op: NumPy ufunc names (``__array_ufunc__``) and NumPy
    # function / array-method names (``__array_function__``, ``nd.<name>``)
    ufuncs: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()


_ROWS: tuple[OpDef, ...] = (
    OpDef("input", 1, OpKind.INPUT, 0, DTypeRule.ATTR, None, 0.0),
    OpDef("const", 2, OpKind.CONST, 0, DTypeRule.ATTR, None, 0.0),
    # binary elementwise
    OpDef("add", 10, OpKind.BINARY, 2, DTypeRule.PROMOTE, "add", 1.0, "+", ufuncs=("add",)),
    OpDef("subtract", 11, OpKind.BINARY, 2, DTypeRule.PROMOTE, "subtract", 1.0, "-", ufuncs=("subtract",)),
    OpDef("multiply", 12, OpKind.BINARY, 2, DTypeRule.PROMOTE, "multiply", 1.0, "*", ufuncs=("multiply",)),
    OpDef("divide", 13, OpKind.BINARY, 2, DTypeRule.FLOAT, "true_divide", 4.0, "/",
          ufuncs=("true_divide", "divide")),
    OpDef("power", 14, OpKind.BINARY, 2, DTypeRule.PROMOTE, "power", 20.0, "**", libm=True, ufuncs=("power",)),
    OpDef("maximum", 15, OpKind.BINARY, 2, DTypeRule.PROMOTE, "maximum", 1.0, ufuncs=("maximum",)),
    OpDef("minimum", 16, OpKind.BINARY, 2, DTypeRule.PROMOTE, "minimum", 1.0, ufuncs=("minimum",)),
    OpDef("less", 20, OpKind.BINARY, 2, DTypeRule.BOOL, "less", 1.0, "<", ufuncs=("less",)),
    OpDef("less_equal", 21, OpKind.BINARY, 2, DTypeRule.BOOL, "less_equal", 1.0, "<=", ufuncs=("less_equal",)),
    OpDef("greater", 22, OpKind.BINARY, 2, DTypeRule.BOOL, "greater", 1.0, ">", ufuncs=("greater",)),
    OpDef("greater_equal", 23, OpKind.BINARY, 2, DTypeRule.BOOL, "greater_equal", 1.0, ">=",
          ufuncs=("greater_equal",)),
    OpDef("equal", 24, OpKind.BINARY, 2, DTypeRule.BOOL, "equal", 1.0, "==", ufuncs=("equal",)),
    OpDef("not_equal", 25, OpKind.BINARY, 2, DTypeRule.BOOL, "not_equal", 1.0, "!=", ufuncs=("not_equal",)),
    # unary elementwise
    OpDef("negative", 30, OpKind.UNARY, 1, DTypeRule.SAME, "negative", 1.0, "-", ufuncs=("negative",)),
    OpDef("abs", 31, OpKind.UNARY, 1, DTypeRule.SAME, "absolute", 1.0, ufuncs=("absolute",)),
    OpDef("exp", 32, OpKind.UNARY, 1, DTypeRule.FLOAT, "exp", 20.0, libm=True, ufuncs=("exp",)),
    OpDef("log", 33, OpKind.UNARY, 1, DTypeRule.FLOAT, "log", 20.0, libm=True, ufuncs=("log",)),
    OpDef("sqrt", 34, OpKind.UNARY, 1, DTypeRule.FLOAT, "sqrt", 4.0, ufuncs=("sqrt",)),
    OpDef("sin", 35, OpKind.UNARY, 1, DTypeRule.FLOAT, "sin", 20.0, libm=True, ufuncs=("sin",)),
    OpDef("cos", 36, OpKind.UNARY, 1, DTypeRule.FLOAT, "cos", 20.0, libm=True, ufuncs=("cos",)),
    OpDef("tanh", 37, OpKind.UNARY, 1, DTypeRule.FLOAT, "tanh", 25.0, libm=True, ufuncs=("tanh",)),
    # ternary
    OpDef("where", 40, OpKind.TERNARY, 3, DTypeRule.WHERE, "where", 1.0, functions=("where",)),
    # reductions (attribute: axis tuple or None; keepdims)
    OpDef("sum", 50, OpKind.REDUCE, 1, DTypeRule.SAME, "sum", 1.0, functions=("sum",)),
    OpDef("mean", 51, OpKind.REDUCE, 1, DTypeRule.FLOAT, "mean", 1.0, functions=("mean",)),
    OpDef("max", 52, OpKind.REDUCE, 1, DTypeRule.SAME, "max", 1.0, functions=("max", "amax")),
    OpDef("min", 53, OpKind.REDUCE, 1, DTypeRule.SAME, "min", 1.0, functions=("min", "amin")),
    # linear algebra
    OpDef("matmul", 60, OpKind.MATMUL, 2, DTypeRule.PROMOTE, "matmul", 2.0, "@", ufuncs=("matmul",),
          functions=("matmul",)),
    # shape and dtype
    OpDef("reshape", 70, OpKind.SHAPE, 1, DTypeRule.SAME, "reshape", 0.0, functions=("reshape",)),
    OpDef("transpose", 71, OpKind.SHAPE, 1, DTypeRule.SAME, "transpose", 0.0, functions=("transpose",)),
    OpDef("broadcast_to", 72, OpKind.SHAPE, 1, DTypeRule.SAME, "broadcast_to", 0.0, functions=("broadcast_to",)),
    OpDef("astype", 80, OpKind.CAST, 1, DTypeRule.ATTR, None, 1.0, functions=("astype",)),
    # indexing (attributes normalized by the tracer: static ints only)
    OpDef("slice", 90, OpKind.INDEX, 1, DTypeRule.SAME, None, 0.0),
    OpDef("gather", 91, OpKind.INDEX, 2, DTypeRule.SAME, "take", 1.0),
    OpDef("concatenate", 92, OpKind.INDEX, -1, DTypeRule.PROMOTE, "concatenate", 1.0),
    # loops: the node holds its cond and body sub-programs; its value is the carried tuple,
    # which loop_result nodes pick from
    OpDef("while_loop", 100, OpKind.LOOP, -1, DTypeRule.ATTR, None, 0.0),
    OpDef("loop_result", 101, OpKind.LOOP, 1, DTypeRule.ATTR, None, 0.0),
)
VARIADIC = -1

OPS: dict[str, OpDef] = {row.name: row for row in _ROWS}
BY_CODE: dict[int, OpDef] = {row.code: row for row in _ROWS}

assert len(OPS) == len(_ROWS), "duplicate op name in the op table"
assert len(BY_CODE) == len(_ROWS), "duplicate opcode in the op table"

ELEMENTWISE_KINDS = frozenset({OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY, OpKind.CAST})
LIBM_OPS = frozenset(row.name for row in _ROWS if row.libm)


def traced_ufuncs() -> dict[str, str]:
    """NumPy ufunc name -> op name, for every row (what the tracer's ``__array_ufunc__`` records)."""
    return {u: row.name for row in OPS.values() for u in row.ufuncs}


def traced_functions() -> dict[str, str]:
    """NumPy function / method name -> op name, for every row (``__array_function__``, ``nd.<name>``)."""
    return {f: row.name for row in OPS.values() for f in row.functions}


def computing_ops() -> tuple[str, ...]:
    """Every op a program computes with (all but ``input`` and ``const``), in table order."""
    return tuple(row.name for row in OPS.values() if row.kind not in (OpKind.INPUT, OpKind.CONST))


def op(name: str) -> OpDef:
    """The table row for ``name``; KeyError names the known ops."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {', '.join(OPS)}") from None
