"""The IREE backend's op table: how each op of ``ir/ops.py`` is spelled in MLIR (``arith``/``math``).

Why a module of its own: the translation of one scalar op is where NumPy's semantics are
either kept or silently lost (promotion, casts, NaN in ``maximum``, bool arithmetic), so it
is kept pure and small, separate from the module structure (:mod:`noodle.backends.iree_emit`)
and from compiling and running (:mod:`noodle.backends.iree_compile`,
:mod:`noodle.backends.iree_mlir`). Each entry of :data:`OP_TABLE` is a callable that writes
MLIR lines into a :class:`Body` and returns the SSA name of the result, or
:class:`~noodle.backends.base.Unsupported` where MLIR cannot reproduce NumPy exactly.

Inside a kernel's body a value has its NumPy dtype's scalar type, ``i1`` for bools (stored in
tensors as ``i8``: NumPy bools are one byte). Integers are signless in MLIR: the dtype decides
between ``divsi``/``divui``, ``cmpi slt``/``ult``, ``extsi``/``extui``.

Example::

    body = Body()
    x = body.arg("%in0", "float32")
    y = OP_TABLE["exp"](body, [(x, "float32")], "float32", {})
    print("\\n".join(body.lines))   # %v0 = math.exp %in0 : f32
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from noodle.backends.base import Unsupported
from noodle.errors import CompileError

#: NumPy dtype name -> MLIR element type of a tensor holding it
STORAGE = {
    "float32": "f32", "float64": "f64",
    "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "i8", "uint16": "i16", "uint32": "i32", "uint64": "i64",
    "bool": "i8",
}


def storage_type(dtype: str) -> str:
    """The tensor element type of ``dtype``; CompileError for dtypes this backend cannot run exactly."""
    try:
        return STORAGE[np.dtype(dtype).name]
    except KeyError:
        raise CompileError(f"the IREE backend has no exact translation for dtype {dtype!r} "
                           f"(supported: {', '.join(STORAGE)}); the region runs on another backend") from None


def scalar_type(dtype: str) -> str:
    """The type of one element inside a kernel body (``i1`` for bools)."""
    return "i1" if np.dtype(dtype).kind == "b" else storage_type(dtype)


def _kind(dtype: str) -> str:
    return np.dtype(dtype).kind       # "f", "i", "u" or "b"


def _bits(dtype: str) -> int:
    return 1 if _kind(dtype) == "b" else np.dtype(dtype).itemsize * 8


class Body:
    """MLIR lines of one region (a ``linalg.generic`` body), with fresh SSA names."""

    def __init__(self, prefix: str = "v", guard: bool = False) -> None:
        self.lines: list[str] = []
        self._n = 0
        self._prefix = prefix
        self.fences: set[int] = set()     # widths of the opaque all-ones masks the body reads
        self.guard = guard                # record where flush-to-zero may have changed a result
        self.hazards: list[str] = []      # i1 names: "this element's result may differ from NumPy's"

    # IREE's CPU runtime runs every dispatch with flush-to-zero and denormals-are-zero set (no
    # switch in 3.13): a float result NumPy gives as a subnormal comes out as a zero of its sign,
    # and a subnormal operand reads as zero. Zero is the only symptom, so each float op that can
    # underflow records "result is zero although the exact result is not", each float read from
    # memory records "is subnormal" (an integer test: float compares read it as zero), and the
    # kernel returns the OR of them; the caller then recomputes that call exactly.

    def hazard(self, cond: str) -> None:
        """Record an i1 that is true where this element's result may be a flushed subnormal."""
        if self.guard:
            self.hazards.append(cond)

    def check_subnormal(self, value: str, dtype: str) -> None:
        """Record ``value`` (a float read from memory) being subnormal, by its bit pattern."""
        if not self.guard or _kind(dtype) != "f":
            return
        ty = scalar_type(dtype)
        bits = 32 if ty == "f32" else 64
        mag_mask = (1 << (bits - 1)) - 1
        smallest_normal = 1 << (23 if bits == 32 else 52)
        as_int = self.emit(f"arith.bitcast {value} : {ty} to i{bits}")
        mask = self.emit(f"arith.constant {mag_mask} : i{bits}")
        mag = self.emit(f"arith.andi {as_int}, {mask} : i{bits}")
        one = self.emit(f"arith.constant 1 : i{bits}")
        below = self.emit(f"arith.constant {smallest_normal - 1} : i{bits}")
        shifted = self.emit(f"arith.subi {mag}, {one} : i{bits}")     # 0 wraps to the largest
        self.hazard(self.emit(f"arith.cmpi ult, {shifted}, {below} : i{bits}"))

    def check_flushed(self, result: str, dtype: str, exact_nonzero: list[str]) -> None:
        """Record ``result == 0`` while the i1s ``exact_nonzero`` (all true) say the exact result is not.

        The zero test reads ``result`` through the opaque mask: LLVM assumes IEEE gradual underflow
        and could otherwise prove e.g. ``a + b == 0 and a != -b`` false and drop the check."""
        if not self.guard:
            return
        ty = scalar_type(dtype)
        seen = self.fence(result, dtype)
        zero = self.emit(f"arith.constant 0.0 : {ty}")
        cond = self.emit(f"arith.cmpf oeq, {seen}, {zero} : {ty}")
        for c in exact_nonzero:
            cond = self.emit(f"arith.andi {cond}, {c} : i1")
        self.hazard(cond)

    def nonzero(self, value: str, dtype: str) -> str:
        """i1: ``value != 0`` (true for NaN; a NaN operand makes the result NaN, never zero)."""
        ty = scalar_type(dtype)
        zero = self.emit(f"arith.constant 0.0 : {ty}")
        return self.emit(f"arith.cmpf une, {value}, {zero} : {ty}")

    def any_hazard(self) -> str:
        """i1: the OR of every recorded hazard (false when none)."""
        if not self.hazards:
            return self.emit("arith.constant false")
        acc = self.hazards[0]
        for h in self.hazards[1:]:
            acc = self.emit(f"arith.ori {acc}, {h} : i1")
        return acc

    def fence(self, value: str, dtype: str) -> str:
        """``value`` through an AND with an all-ones mask the compiler cannot see (a kernel argument).

        Why: IREE marks every float op ``contract``, so LLVM fuses ``a*b + c`` into one FMA (one
        rounding instead of NumPy's two: 17% of a chain's results differed). Turning the FMA
        feature off stops that but also turns the FMAs inside IREE's own ``exp`` into library
        calls (7x slower); an opaque integer AND between the multiply and its use keeps the
        product rounded on its own and costs one vector AND."""
        ty = scalar_type(dtype)
        bits = 32 if ty == "f32" else 64
        self.fences.add(bits)
        as_int = self.emit(f"arith.bitcast {value} : {ty} to i{bits}")
        masked = self.emit(f"arith.andi {as_int}, %fm{bits} : i{bits}")
        return self.emit(f"arith.bitcast {masked} : i{bits} to {ty}")

    def fresh(self) -> str:
        name = f"%{self._prefix}{self._n}"
        self._n += 1
        return name

    def emit(self, rhs: str) -> str:
        """Append ``%new = rhs`` and return ``%new``."""
        name = self.fresh()
        self.lines.append(f"{name} = {rhs}")
        return name

    def arg(self, name: str, dtype: str) -> str:
        """A block argument in storage type, as the body's scalar (an ``i8`` bool becomes ``i1``)."""
        if _kind(dtype) == "b":
            zero = self.emit("arith.constant 0 : i8")
            return self.emit(f"arith.cmpi ne, {name}, {zero} : i8")
        return name

    def store(self, value: str, dtype: str) -> str:
        """A body scalar as its storage type (an ``i1`` bool widened to ``i8``)."""
        if _kind(dtype) == "b":
            return self.emit(f"arith.extui {value} : i1 to i8")
        return value

    def const(self, value: Any, dtype: str) -> str:
        """A literal of ``dtype``, bit-exact (floats by their bit pattern: NaN, inf and -0.0 survive)."""
        kind = _kind(dtype)
        ty = scalar_type(dtype)
        if kind == "b":
            return self.emit(f"arith.constant {'true' if bool(value) else 'false'}")
        if kind == "f":
            if ty == "f32":
                bits = struct.unpack("<I", struct.pack("<f", float(np.float32(value))))[0]
                return self.emit(f"arith.constant 0x{bits:08X} : f32")
            bits = struct.unpack("<Q", struct.pack("<d", float(value)))[0]
            return self.emit(f"arith.constant 0x{bits:016X} : f64")
        n = _bits(dtype)
        v = int(value) % (1 << n)
        if v >= 1 << (n - 1):
            v -= 1 << n              # signless: the two's complement pattern as a signed literal
        return self.emit(f"arith.constant {v} : {ty}")


def cast(body: Body, x: str, src: str, dst: str) -> str:
    """``x.astype(dst)`` with NumPy's rules (float -> int truncates toward zero; out-of-range and
    NaN give what NumPy's C casts give on x86: the narrow int types go through int32)."""
    src, dst = np.dtype(src).name, np.dtype(dst).name
    if src == dst:
        return x
    ks, kd = _kind(src), _kind(dst)
    ts, td = scalar_type(src), scalar_type(dst)
    if kd == "b":
        if ks == "f":
            zero = body.const(0.0, src)
            return body.emit(f"arith.cmpf une, {x}, {zero} : {ts}")
        zero = body.const(0, src)
        return body.emit(f"arith.cmpi ne, {x}, {zero} : {ts}")
    if ks == "b":
        return body.emit(f"arith.uitofp {x} : i1 to {td}" if kd == "f" else f"arith.extui {x} : i1 to {td}")
    if ks == "f" and kd == "f":
        if _bits(dst) > _bits(src):
            return body.emit(f"arith.extf {x} : {ts} to {td}")      # exact: never subnormal
        out = body.emit(f"arith.truncf {x} : {ts} to {td}")
        body.check_flushed(out, dst, [body.nonzero(x, src)])
        return out
    if kd == "f":
        return body.emit(f"arith.{'sitofp' if ks == 'i' else 'uitofp'} {x} : {ts} to {td}")
    if ks == "f":
        if dst == "uint64":
            return body.emit(f"arith.fptoui {x} : {ts} to i64")
        if dst in ("int64", "int32"):
            return body.emit(f"arith.fptosi {x} : {ts} to {td}")
        wide = "i64" if dst == "uint32" else "i32"
        w = body.emit(f"arith.fptosi {x} : {ts} to {wide}")
        return body.emit(f"arith.trunci {w} : {wide} to {td}")
    # int -> int: sign- or zero-extend by the *source* signedness, or truncate
    if _bits(dst) > _bits(src):
        return body.emit(f"arith.{'extsi' if ks == 'i' else 'extui'} {x} : {ts} to {td}")
    if _bits(dst) < _bits(src):
        return body.emit(f"arith.trunci {x} : {ts} to {td}")
    return x


Arg = tuple[str, str]          # (SSA name, dtype)
OpFn = Callable[[Body, list[Arg], str, dict[str, Any]], str]


def _casted(body: Body, args: list[Arg], dtype: str) -> list[str]:
    return [cast(body, name, dt, dtype) for name, dt in args]


def _binary(float_op: str | None, signed: str | None, unsigned: str | None, boolean: str | None,
            name: str) -> OpFn:
    """An arithmetic op: operands cast to the result dtype first (as the interpreter does)."""
    def emit(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
        kind = _kind(dtype)
        op = {"f": float_op, "i": signed, "u": unsigned, "b": boolean}[kind]
        if op is None:
            raise CompileError(f"the IREE backend does not translate {name} on {dtype} "
                               "(NumPy rejects it or its result cannot be reproduced exactly)")
        a, b = _casted(body, args, dtype)
        ty = scalar_type(dtype)
        out = body.emit(f"{op} {a}, {b} : {ty}")
        if op == "arith.mulf":
            out = body.fence(out, dtype)
        if kind == "f" and body.guard:
            _check_underflow(body, op, a, b, out, dtype)
        return out
    return emit


def _check_underflow(body: Body, op: str, a: str, b: str, out: str, dtype: str) -> None:
    """Record where ``a op b`` may have underflowed to zero (see ``Body.check_flushed``).

    The exact result of ``a*b`` is nonzero when both are; ``a/b`` when ``a`` is and ``b`` is
    finite; ``a+b`` unless ``a == -b``; ``a-b`` unless ``a == b``. ``maximum``/``minimum`` pick
    an operand and cannot underflow."""
    ty = scalar_type(dtype)
    if op == "arith.mulf":
        body.check_flushed(out, dtype, [body.nonzero(a, dtype), body.nonzero(b, dtype)])
    elif op == "arith.divf":
        mag = body.emit(f"math.absf {b} : {ty}")
        inf = body.const(np.inf, dtype)
        body.check_flushed(out, dtype, [body.nonzero(a, dtype), body.emit(f"arith.cmpf une, {mag}, {inf} : {ty}")])
    elif op == "arith.addf":
        neg = body.emit(f"arith.negf {b} : {ty}")
        body.check_flushed(out, dtype, [body.emit(f"arith.cmpf une, {a}, {neg} : {ty}")])
    elif op == "arith.subf":
        body.check_flushed(out, dtype, [body.emit(f"arith.cmpf une, {a}, {b} : {ty}")])


_PREDICATES = {
    "less": ("olt", "slt", "ult"), "less_equal": ("ole", "sle", "ule"),
    "greater": ("ogt", "sgt", "ugt"), "greater_equal": ("oge", "sge", "uge"),
    "equal": ("oeq", "eq", "eq"), "not_equal": ("une", "ne", "ne"),
}


def _compare(name: str) -> OpFn:
    """A comparison in NumPy's promoted dtype of its operands (NaN: only ``!=`` is true)."""
    fpred, spred, upred = _PREDICATES[name]

    def emit(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
        (_, da), (_, db) = args
        common = np.result_type(np.dtype(da), np.dtype(db)).name
        if _kind(common) == "f" and _kind(da) in "iub" and _kind(db) in "iub":
            raise CompileError(f"the IREE backend does not translate {name} between {da} and {db} "
                               "(NumPy compares them exactly, not through float64)")
        a, b = _casted(body, args, common)
        kind = _kind(common)
        if kind == "f":
            return body.emit(f"arith.cmpf {fpred}, {a}, {b} : {scalar_type(common)}")
        pred = spred if kind == "i" else upred
        return body.emit(f"arith.cmpi {pred}, {a}, {b} : {scalar_type(common)}")
    return emit


def _math(name: str) -> OpFn:
    """A float function (``math`` dialect) of its operand cast to the float result dtype."""
    def emit(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
        if _kind(dtype) != "f":
            raise CompileError(f"{name} gives {dtype}, expected a float dtype")
        (a,) = _casted(body, args, dtype)
        ty = scalar_type(dtype)
        out = body.emit(f"math.{name} {a} : {ty}")
        if name == "exp" and body.guard:
            # NumPy's exp is nonzero (subnormal) down to ~-103.97 (float32) / ~-745.13 (float64);
            # IREE's is zero below the normal range: a zero above the threshold is a flushed one
            floor = body.const(_EXP_ZERO_BELOW[ty], dtype)
            body.check_flushed(out, dtype, [body.emit(f"arith.cmpf oge, {a}, {floor} : {ty}")])
        return out     # log and sqrt of a normal number are normal
    return emit


#: below these, NumPy's exp is zero too (a little below the exact bound: a spare fallback is harmless)
_EXP_ZERO_BELOW = {"f32": -104.0, "f64": -746.0}


def _negative(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
    kind = _kind(dtype)
    (a,) = _casted(body, args, dtype)
    if kind == "f":
        return body.emit(f"arith.negf {a} : {scalar_type(dtype)}")
    if kind == "b":
        raise CompileError("negative of a bool array: NumPy rejects it (use ~ or logical_not)")
    zero = body.const(0, dtype)
    return body.emit(f"arith.subi {zero}, {a} : {scalar_type(dtype)}")   # wraps, as NumPy's


def _abs(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
    kind = _kind(dtype)
    (a,) = _casted(body, args, dtype)
    if kind == "f":
        return body.emit(f"math.absf {a} : {scalar_type(dtype)}")
    if kind == "i":
        # abs(INT_MIN) wraps to INT_MIN in NumPy: select, not llvm.abs (whose INT_MIN may be poison)
        zero = body.const(0, dtype)
        neg = body.emit(f"arith.subi {zero}, {a} : {scalar_type(dtype)}")
        lt = body.emit(f"arith.cmpi slt, {a}, {zero} : {scalar_type(dtype)}")
        return body.emit(f"arith.select {lt}, {neg}, {a} : {scalar_type(dtype)}")
    return a


def _where(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
    (c, dc), x, y = args
    cond = cast(body, c, dc, "bool")
    a, b = _casted(body, [x, y], dtype)
    return body.emit(f"arith.select {cond}, {a}, {b} : {scalar_type(dtype)}")


def _astype(body: Body, args: list[Arg], dtype: str, attrs: dict[str, Any]) -> str:
    ((x, src),) = args
    return cast(body, x, src, attrs.get("dtype", dtype))


@dataclass(frozen=True)
class ReduceRule:
    """How a reduction combines in MLIR: the combiner per element kind and the identity.

    ``exact_in_mlir(dtype)``: whether any summation order gives the interpreter's bits (integer
    sums, max, min); a float sum or mean has one defined order (:mod:`noodle.ir.reduction`) that
    a vectorized ``linalg.reduce`` does not follow, so the kernel writes the values and the
    defined-order sum reduces them."""

    op: str

    def exact_in_mlir(self, value_dtype: str) -> bool:
        if self.op in ("max", "min"):
            return True
        return self.op == "sum" and _kind(value_dtype) in "iub"

    def acc_dtype(self, value_dtype: str) -> str:
        """The dtype the combined values have (NumPy's accumulator for sums)."""
        kind = _kind(value_dtype)
        if self.op == "sum":
            return "uint64" if kind == "u" else "int64"
        return "uint8" if kind == "b" else np.dtype(value_dtype).name   # bool max/min as 0/1 bytes

    def combiner(self, acc: str) -> str:
        kind = _kind(acc)
        if self.op == "sum":
            return "arith.addi"
        if kind == "f":
            return "arith.maximumf" if self.op == "max" else "arith.minimumf"   # NaN propagates
        sign = "si" if kind == "i" else "ui"
        return f"arith.max{sign}" if self.op == "max" else f"arith.min{sign}"

    def identity(self, acc: str) -> Any:
        kind = _kind(acc)
        if self.op == "sum":
            return 0
        if kind == "f":
            return -np.inf if self.op == "max" else np.inf
        info = np.iinfo(np.dtype(acc))
        return info.min if self.op == "max" else info.max


@dataclass(frozen=True)
class MatmulRule:
    """``linalg.matmul`` / ``linalg.batch_matmul`` of operands cast to the product dtype."""

    named_op: str = "linalg.matmul"
    batched: str = "linalg.batch_matmul"


@dataclass(frozen=True)
class ShapeRule:
    """A shape op as a tensor-level op (see :func:`noodle.backends.iree_emit.shape_module`)."""

    mlir: str


OP_TABLE: dict[str, Any] = {
    "add": _binary("arith.addf", "arith.addi", "arith.addi", "arith.ori", "add"),
    "subtract": _binary("arith.subf", "arith.subi", "arith.subi", None, "subtract"),
    "multiply": _binary("arith.mulf", "arith.muli", "arith.muli", "arith.andi", "multiply"),
    "divide": _binary("arith.divf", None, None, None, "divide"),
    # math.powf lowers to exp(y*log(x)): NaN for a negative base with an integral exponent, and
    # 48 ulp from NumPy's pow on float32 (measured); the region runs on a backend with libm's pow
    "power": Unsupported("IREE lowers math.powf to exp(y*log(x)): wrong for negative bases, ~48 ulp"),
    "maximum": _binary("arith.maximumf", "arith.maxsi", "arith.maxui", "arith.ori", "maximum"),
    "minimum": _binary("arith.minimumf", "arith.minsi", "arith.minui", "arith.andi", "minimum"),
    **{name: _compare(name) for name in _PREDICATES},
    "negative": _negative,
    "abs": _abs,
    "exp": _math("exp"),
    "log": _math("log"),
    "sqrt": _math("sqrt"),
    # measured with IREE 3.13 on llvm-cpu: float32 sin/cos lose all accuracy past |x| ~ 10 (no
    # full range reduction), float32 tanh is 5 ulp off NumPy, and float64 sin/cos/tanh do not
    # link (the embedded linker has no libm): the 2-ulp contract cannot hold
    "sin": Unsupported("IREE's float32 sin is inaccurate past |x| ~ 10 and float64 sin does not link"),
    "cos": Unsupported("IREE's float32 cos is inaccurate past |x| ~ 10 and float64 cos does not link"),
    "tanh": Unsupported("IREE's float32 tanh is 5 ulp from NumPy and float64 tanh does not link"),
    "where": _where,
    "astype": _astype,
    "sum": ReduceRule("sum"),
    "mean": ReduceRule("mean"),
    "max": ReduceRule("max"),
    "min": ReduceRule("min"),
    "matmul": MatmulRule(),
    "reshape": ShapeRule("tensor.collapse_shape/tensor.expand_shape"),
    "transpose": ShapeRule("linalg.transpose"),
    "broadcast_to": ShapeRule("linalg.broadcast"),
    # indexing and loops: lone nodes, never inside a fused region (ir.ops OpKind.INDEX / LOOP)
    "slice": Unsupported("slice runs as a lone node through the interpreter (a view: nothing to compute)"),
    "gather": Unsupported("gather runs as a lone node through the interpreter (np.take, bounds checked)"),
    "concatenate": Unsupported("concatenate runs as a lone node through the interpreter (one copy)"),
    "while_loop": Unsupported("while_loop runs as a lone node: the runner loops around its body's kernels"),
    "loop_result": Unsupported("loop_result runs as a lone node through the interpreter (picks a carried value)"),
}


def elementwise(op: str) -> OpFn:
    """The translation of an elementwise op; CompileError when there is none."""
    entry = OP_TABLE.get(op)
    if isinstance(entry, Unsupported):
        raise CompileError(f"the IREE backend does not translate {op!r}: {entry.reason}")
    if not callable(entry):
        raise CompileError(f"op {op!r} is not elementwise; it cannot appear in a kernel body")
    return entry


__all__ = ["Body", "MatmulRule", "OP_TABLE", "ReduceRule", "STORAGE", "ShapeRule", "cast", "elementwise",
           "scalar_type", "storage_type"]
