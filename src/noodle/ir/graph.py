"""NIR: a typed SSA program over the op table.

Why this shape: a program is a flat, topologically ordered list of nodes, and
value ``i`` is the result of node ``i``. That makes SSA structural (a node may
only name earlier values), keeps passes simple list rewrites, and maps one to
one onto the NBC instruction stream. Every node carries its result shape and
dtype, so the verifier can re-derive and check them after every pass.

Arguments of the program are ``input`` nodes (attr ``index``); literals are
``const`` nodes (attr ``index`` into :attr:`Program.consts`, a pool of NumPy
arrays, usually 0-d). Fusion is an *annotation* (attr ``group``): a fused
program is still an ordinary program the interpreter can run.

Example::

    >>> import numpy as np
    >>> from noodle.ir.graph import Builder
    >>> b = Builder()
    >>> x = b.input(0, (3,), "float64")
    >>> y = b.add("exp", x)
    >>> prog = b.finish([y])
    >>> prog.nodes[y].dtype
    'float64'
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from noodle.errors import DTypeError, IRVerifyError, ShapeError
from noodle.ir.ops import OPS, OpKind
from noodle.ir.shapes import matmul_shape, size

# dtypes a program may use: fixed-size, no objects, no complex (backends cannot all do them)
DTYPES: tuple[str, ...] = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64",
)
DTYPE_SET = frozenset(DTYPES)

# attributes each op may carry (besides ``group``, allowed on every computing node)
ATTRS: dict[str, frozenset[str]] = {
    "input": frozenset({"index"}),
    "const": frozenset({"index"}),
    "sum": frozenset({"axis", "keepdims"}),
    "mean": frozenset({"axis", "keepdims"}),
    "max": frozenset({"axis", "keepdims"}),
    "min": frozenset({"axis", "keepdims"}),
    "reshape": frozenset({"shape"}),
    "transpose": frozenset({"axes"}),
    "broadcast_to": frozenset({"shape"}),
    # ``order``: "C" for ``x.copy()`` (NumPy's default there), absent for "K" (astype's and
    # np.copy's default); the values do not depend on it, a product of the copy does (passes/layout)
    "astype": frozenset({"dtype", "order"}),
    "slice": frozenset({"starts", "stops", "steps"}),
    # ``subscript``: from ``x[..., idx]`` (NumPy lays the result out with the indexed axis outermost),
    # not ``np.take`` (C order): the values are the same, a product of the result reads the layout
    "gather": frozenset({"axis", "subscript"}),
    "concatenate": frozenset({"axis"}),
    "while_loop": frozenset({"body", "carry", "cond"}),
    "loop_result": frozenset({"item"}),
    # ``scalar``: ``a ** b`` of two NumPy scalars, which NumPy computes with its scalar math
    # (C ``pow``), not the ufunc's loop (ir.semantics.scalar_power)
    "power": frozenset({"scalar"}),
}
MAX_NDIM = 32


@dataclass(frozen=True)
class Node:
    """One SSA instruction: ``op`` applied to earlier values ``args``."""

    op: str
    args: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: tuple[tuple[str, Any], ...] = ()

    def attr(self, name: str, default: Any = None) -> Any:
        """The value of attribute ``name`` (``default`` when absent)."""
        for key, value in self.attrs:
            if key == name:
                return value
        return default

    def with_attr(self, name: str, value: Any) -> Node:
        """A copy with ``name`` set (attributes stay sorted, so equal nodes compare equal)."""
        items = dict(self.attrs)
        items[name] = value
        return replace(self, attrs=tuple(sorted(items.items())))

    def without_attr(self, name: str) -> Node:
        """A copy with attribute ``name`` removed."""
        return replace(self, attrs=tuple((k, v) for k, v in self.attrs if k != name))


@dataclass
class Program:
    """A NIR program: nodes in topological order, a constant pool, output values."""

    nodes: list[Node]
    consts: list[np.ndarray]
    outputs: tuple[int, ...]
    n_inputs: int
    meta: dict[str, Any] = field(default_factory=dict)

    def input_types(self) -> list[tuple[tuple[int, ...], str]]:
        """(shape, dtype) of each argument, in argument order."""
        found: dict[int, tuple[tuple[int, ...], str]] = {}
        for node in self.nodes:
            if node.op == "input":
                found[node.attr("index")] = (node.shape, node.dtype)
        return [found[i] for i in range(self.n_inputs)]

    def users(self) -> list[list[int]]:
        """For each value, the nodes that use it (in order)."""
        result: list[list[int]] = [[] for _ in self.nodes]
        for i, node in enumerate(self.nodes):
            for a in node.args:
                result[a].append(i)
        return result

    def copy(self) -> Program:
        return Program(list(self.nodes), list(self.consts), tuple(self.outputs), self.n_inputs,
                       dict(self.meta))


class SubProgram:
    """A program held as an attribute of a loop node (its cond or its body).

    Why a wrapper: node attributes must be hashable and compare by value (CSE keys on them, NBC
    round trips compare them), which a :class:`Program` with NumPy constants is not. Equality is
    structural: same nodes, constants (by bytes), outputs and inputs.
    """

    __slots__ = ("program",)

    def __init__(self, program: Program) -> None:
        self.program = program

    def _key(self) -> tuple:
        p = self.program
        return (tuple(p.nodes), tuple((c.dtype.name, c.shape, c.tobytes()) for c in p.consts), tuple(p.outputs),
                p.n_inputs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubProgram) and (other is self or self._key() == other._key())

    def __hash__(self) -> int:
        p = self.program
        return hash((len(p.nodes), tuple(p.outputs), p.n_inputs))

    def __repr__(self) -> str:
        p = self.program
        return f"<program: {p.n_inputs} inputs, {len(p.nodes)} nodes, {len(p.outputs)} outputs>"


def value_nbytes(node: Node) -> int:
    """Bytes one value of this node occupies."""
    return size(node.shape) * np.dtype(node.dtype).itemsize


# ---------------------------------------------------------------- type inference

_DUMMY_CACHE: dict[tuple[Any, ...], str] = {}


def _dummy_dtype(op_name: str, dtypes: tuple[str, ...], attrs: tuple[tuple[str, Any], ...]) -> str:
    """Result dtype by running the defining NumPy function on one-element arrays.

    Why: the op table's ``numpy`` column *is* the semantics, so the surest way to
    agree with it on every promotion corner (int sum -> int64, f32 mean -> f32,
    NEP 50 rules) is to ask NumPy. Cached, so it runs once per combination.
    """
    key = (op_name, dtypes, attrs)
    hit = _DUMMY_CACHE.get(key)
    if hit is not None:
        return hit
    row = OPS[op_name]
    fn = getattr(np, row.numpy)  # type: ignore[arg-type]
    dummies = [np.ones((1,), dtype=d) for d in dtypes]
    try:
        with np.errstate(all="ignore"):
            if row.kind is OpKind.REDUCE:
                out = fn(dummies[0], axis=0)
            else:
                out = fn(*dummies)
    except (TypeError, ValueError) as exc:
        raise DTypeError(f"{op_name} is not defined for dtypes {', '.join(dtypes)} ({exc}); "
                         "cast with .astype(...) first") from None
    result = np.asarray(out).dtype.name
    _DUMMY_CACHE[key] = result
    return result


def _norm_axes(axis: Any, ndim: int) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = tuple(int(a) for a in axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for an array with {ndim} dimensions")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axes}")
    return tuple(sorted(out))


def infer(op_name: str, arg_types: list[tuple[tuple[int, ...], str]], attrs: dict[str, Any]
          ) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of ``op_name`` applied to values of ``arg_types``.

    Raises :class:`ShapeError` / :class:`IRVerifyError` naming what does not fit.
    Used by the tracer (to type new nodes) and the verifier (to re-check them).
    """
    row = OPS.get(op_name)
    if row is None:
        raise IRVerifyError(f"unknown op {op_name!r}")
    if row.kind in (OpKind.INDEX, OpKind.LOOP):
        from noodle.ir.shapes import index_type  # noqa: PLC0415 - shapes imports this module's names lazily

        return index_type(op_name, arg_types, attrs)
    if len(arg_types) != row.arity:
        raise IRVerifyError(f"op {op_name} takes {row.arity} operands, got {len(arg_types)}")
    shapes = [s for s, _ in arg_types]
    dtypes = tuple(d for _, d in arg_types)
    kind = row.kind
    if kind in (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY):
        try:
            shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            raise ShapeError(f"{op_name}: operand shapes {shapes} do not broadcast together") from None
        return shape, _dummy_dtype(op_name, dtypes, ())
    if kind is OpKind.REDUCE:
        (shape,) = shapes
        axes = _norm_axes(attrs.get("axis"), len(shape))
        keep = bool(attrs.get("keepdims", False))
        red = set(range(len(shape))) if axes is None else set(axes)
        for a in red:
            if shape[a] == 0 and op_name in ("max", "min"):
                raise ShapeError(f"{op_name} over an empty axis has no identity; reduce a non-empty axis")
        if keep:
            out = tuple(1 if i in red else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in red)
        return out, _dummy_dtype(op_name, dtypes, ())
    if kind is OpKind.MATMUL:
        try:
            out = matmul_shape(*shapes)
        except ValueError as exc:
            raise ShapeError(str(exc)) from None
        return out, _dummy_dtype(op_name, dtypes, ())
    if kind is OpKind.SHAPE:
        (shape,) = shapes
        if op_name == "reshape":
            new = tuple(int(d) for d in attrs["shape"])
            if any(d < 0 for d in new):
                raise ShapeError(f"reshape target {new} has a negative dimension; resolve -1 first")
            if int(np.prod(new, dtype=object)) != int(np.prod(shape, dtype=object)):
                raise ShapeError(f"cannot reshape {shape} into {new}: sizes differ")
            return new, dtypes[0]
        if op_name == "transpose":
            axes = tuple(int(a) for a in attrs["axes"])
            if sorted(axes) != list(range(len(shape))):
                raise ShapeError(f"transpose axes {axes} are not a permutation of {len(shape)} dimensions")
            return tuple(shape[a] for a in axes), dtypes[0]
        if op_name == "broadcast_to":
            new = tuple(int(d) for d in attrs["shape"])
            try:
                if tuple(np.broadcast_shapes(shape, new)) != new:
                    raise ValueError
            except ValueError:
                raise ShapeError(f"cannot broadcast {shape} to {new}") from None
            return new, dtypes[0]
    if kind is OpKind.CAST:
        target = attrs.get("dtype")
        if target not in DTYPE_SET:
            raise IRVerifyError(f"astype to unsupported dtype {target!r}; use one of {', '.join(DTYPES)}")
        return shapes[0], target
    raise IRVerifyError(f"op {op_name} ({kind.value}) cannot appear as a computing node")


class Builder:
    """Appends typed nodes; used by the tracer and by tests that build programs by hand."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.consts: list[np.ndarray] = []
        self.n_inputs = 0
        self._const_index: dict[tuple[str, tuple[int, ...], bytes], int] = {}

    def _push(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def input(self, index: int, shape: tuple[int, ...], dtype: str) -> int:
        """Declare argument ``index`` with its shape and dtype."""
        if dtype not in DTYPE_SET:
            raise IRVerifyError(f"unsupported input dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self.n_inputs = max(self.n_inputs, index + 1)
        return self._push(Node("input", (), tuple(int(d) for d in shape), dtype, (("index", index),)))

    def const(self, value: Any, dtype: str | None = None) -> int:
        """A literal (deduplicated by dtype, shape and bytes)."""
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype.name not in DTYPE_SET:
            raise IRVerifyError(f"constant of unsupported dtype {arr.dtype.name}")
        arr = np.array(arr, order="C", copy=True)
        key = (arr.dtype.name, arr.shape, arr.tobytes())
        idx = self._const_index.get(key)
        if idx is None:
            idx = len(self.consts)
            self.consts.append(arr)
            self._const_index[key] = idx
        return self._push(Node("const", (), tuple(arr.shape), arr.dtype.name, (("index", idx),)))

    def add(self, op_name: str, *args: int, **attrs: Any) -> int:
        """Append ``op_name(*args)`` with inferred type; returns the new value."""
        types = [(self.nodes[a].shape, self.nodes[a].dtype) for a in args]
        if op_name == "loop_result":
            shape, dtype = loop_result_type(self.nodes[args[0]], attrs.get("item"))
            return self._push(Node(op_name, tuple(args), shape, dtype, (("item", int(attrs["item"])),)))
        shape, dtype = infer(op_name, types, attrs)
        if dtype not in DTYPE_SET:
            # e.g. NumPy computes exp of an int8 array in float16, which no backend has
            raise DTypeError(f"{op_name} of {', '.join(t[1] for t in types)} gives {dtype} in NumPy, which noodle "
                             f"programs do not support; cast the operand first (x.astype(np.float32)); "
                             f"supported dtypes: {', '.join(DTYPES)}")
        clean = tuple(sorted((k, _freeze(v)) for k, v in attrs.items()))
        return self._push(Node(op_name, tuple(args), shape, dtype, clean))

    def finish(self, outputs: list[int]) -> Program:
        return Program(list(self.nodes), list(self.consts), tuple(outputs), self.n_inputs)


def loop_result_type(loop: Node, item: Any) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of carried value ``item`` of ``loop`` (a ``while_loop`` node): its body's output.

    Why here and not in :func:`infer`: the type comes from the loop's body, not from the operand's
    own (placeholder) type, so both the builder and the verifier look at the loop node itself.
    """
    if loop.op != "while_loop":
        raise IRVerifyError(f"loop_result reads a while_loop node, not {loop.op}")
    body = loop.attr("body")
    carry = loop.attr("carry")
    if not isinstance(body, SubProgram) or not isinstance(carry, int) or isinstance(item, bool) \
            or not isinstance(item, int) or not 0 <= item < carry or carry > len(body.program.outputs):
        raise IRVerifyError(f"loop_result item {item!r} is not one of the loop's {carry!r} carried values")
    out = body.program.nodes[body.program.outputs[item]]
    return out.shape, out.dtype


def _freeze(value: Any) -> Any:
    if isinstance(value, SubProgram | Program):
        return value if isinstance(value, SubProgram) else SubProgram(value)
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    if isinstance(value, np.dtype):
        return value.name
    return value


__all__ = ["ATTRS", "Builder", "DTYPES", "Node", "Program", "SubProgram", "infer", "loop_result_type",
           "value_nbytes"]
