"""The Numba backend's op table and the emitter that writes Python/Numba source from it.

Why one table (``NUMBA_OPS``): the code generator spells every op through its
entry here (an expression template for elementwise ops, an accumulator update for
reductions, a library call for matmul, a view for shape ops), so a new row in
:mod:`noodle.ir.ops` without an entry here is caught by the coverage test
(:func:`noodle.backends.coverage.missing_ops`), not by a user's program.

:class:`Emitter` turns the values of one spec into source lines: which values are
uniform over the iteration space (hoisted out of the loop), which are computed
per element, and how a value is loaded or stored. The loop shapes
(:mod:`noodle.backends.numba_loops`) and the stages (:mod:`noodle.backends.numba_stages`)
arrange those lines.

Example::

    >>> op_expr("add", ["a", "b"], ["int8", "int8"], "int8")
    'np.int8((a + b))'
    >>> op_expr("exp", ["x"], ["float32"], "float32")
    'np.exp(x)'
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from noodle.backends.emit_rules import Elementwise, Library, Reduction, comparisons, lone_nodes, lookup, views
from noodle.backends.op_text import arith_symbol, cast_pair, infix, is_float, truth
from noodle.backends.reference import eval_instr
from noodle.backends.spec import KernelSpec
from noodle.errors import CompileError, DTypeError
from noodle.ir.ops import OPS
from noodle.ir.reduction import LANES, identity

SUPPORTED_DTYPES = {"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                    "uint32", "uint64", "bool"}
# Numba computes int8 * int8 in int64; NumPy wraps to int8, and so must every use of the value
_NARROW_INTS = frozenset({"int8", "int16", "int32", "uint8", "uint16", "uint32"})


def nb_type(dtype: str) -> str:
    """Numba type name of a dtype string."""
    if dtype not in SUPPORTED_DTYPES:
        raise DTypeError(f"the Numba backend does not support dtype {dtype!r}; "
                         f"supported: {', '.join(sorted(SUPPORTED_DTYPES))}")
    return "boolean" if dtype == "bool" else dtype


def np_ctor(dtype: str) -> str:
    """The NumPy scalar constructor of ``dtype`` in generated source."""
    return "np.bool_" if dtype == "bool" else f"np.{dtype}"


def cast(name: str, have: str, want: str) -> str:
    """``name`` (of dtype ``have``) converted to ``want`` as NumPy's ``astype`` does."""
    if have == want:
        return name
    if want == "bool":
        return f"({name} != 0)"
    if is_float(have) and want in _TRUNCATING:
        return _float_to_int(name, want)
    return f"{np_ctor(want)}({name})"


#: float -> int casts written out as x86's truncating conversion (below)
_TRUNCATING = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16"})


def _float_to_int(name: str, want: str) -> str:
    """A float -> int cast as NumPy's compiled C cast gives it on x86-64: a truncating conversion
    to int32 (int64 for int64), whose out-of-range and NaN result is the minimum int, then the low
    bits. Why written out: LLVM's ``fptosi``/``fptoui`` leave those inputs undefined, and once
    vectorized a float32 -> uint16 cast gave 65535 for NaN and negatives (NumPy: 0 and 65494 for
    -42.0). Used only where :func:`_x86_casts_match_numpy` finds this NumPy doing the same."""
    if not _x86_casts_match_numpy():
        raise CompileError(f"a float -> {want} cast: this NumPy's results for out-of-range values are not the "
                           "truncating conversion the kernels write; it runs interpreted")
    via, lim = ("int64", "9.223372036854775808e18") if want == "int64" else ("int32", "2147483648.0")
    low = f"np.{via}({np.iinfo(via).min})"
    inner = f"(np.{via}({name}) if ({name} >= -{lim} and {name} < {lim}) else {low})"
    return inner if want == via else f"{np_ctor(want)}({inner})"


_x86_verdict: bool | None = None


def _x86_casts_match_numpy() -> bool:
    """Whether ``astype`` from float32/float64 to every :data:`_TRUNCATING` dtype gives, on values
    out of range, NaN and infinities, what :func:`_float_to_int` computes (checked once)."""
    global _x86_verdict
    if _x86_verdict is None:
        probe = [-42.0, -3.7, -0.5, 0.0, 3.9, 127.5, 128.0, 255.9, 256.0, 32768.0, 65535.9, 70000.0, -70000.0,
                 3e9, -3e9, 1e10, -1e10, 1e19, -1e19, 1e30, float("nan"), float("inf"), float("-inf")]
        ok = True
        with np.errstate(all="ignore"):
            for src in (np.float32, np.float64):
                x = np.array(probe, dtype=src)
                for want in sorted(_TRUNCATING):
                    via = np.int64 if want == "int64" else np.int32
                    lim = 2.0 ** 63 if want == "int64" else 2.0 ** 31
                    inside = (x >= -lim) & (x < lim)
                    expect = np.where(inside, np.where(inside, x, 0).astype(via), np.iinfo(via).min).astype(want)
                    ok = ok and bool(np.array_equal(x.astype(want), expect))
        _x86_verdict = ok
    return _x86_verdict


def float_literal(x: float) -> str:
    """Source text for ``x`` that Numba compiles (repr gives 'nan'/'inf', which it does not)."""
    if x != x:
        return "np.nan"
    if x in (float("inf"), float("-inf")):
        return "np.inf" if x > 0 else "-np.inf"
    return repr(x)


def literal(dtype: str, value: float | int | bool) -> str:
    """A scalar of ``dtype`` in generated source."""
    if dtype == "bool":
        return f"np.bool_({bool(value)!r})"
    text = float_literal(float(value)) if is_float(dtype) else repr(int(value))
    return f"{np_ctor(dtype)}({text})"


# ------------------------------------------------------------------------------ the op table
def _wrapping(expr: Callable[[list[str], list[str], str], str]) -> Elementwise:
    """An integer-arithmetic entry: narrow ints wrap as NumPy's do, in every use of the value."""
    def emit(args: list[str], dts: list[str], out: str) -> str:
        text = expr(args, dts, out)
        return f"{np_ctor(out)}({text})" if out in _NARROW_INTS else text
    return Elementwise(emit)


def _arith(op: str) -> Elementwise:
    return _wrapping(lambda args, dts, out: infix(arith_symbol(op, out), args, dts, out, cast))


def _extreme(rel: str) -> Elementwise:
    def emit(args: list[str], dts: list[str], out: str) -> str:
        a, b = cast_pair(args, dts, out, cast)
        if is_float(out):  # NumPy: NaN from either side (a's if both), and b when they are equal (±0)
            return f"({a} if ({a} {rel} {b} or {a} != {a}) else {b})"
        return f"({a} if {a} {rel} {b} else {b})"
    return Elementwise(emit)


def _math(op: str) -> Elementwise:
    fn = OPS[op].numpy
    return Elementwise(lambda args, dts, out: f"np.{fn}({cast(args[0], dts[0], out)})")


def _where(args: list[str], dts: list[str], out: str) -> str:
    return f"({cast(args[1], dts[1], out)} if {truth(args[0], dts[0])} else {cast(args[2], dts[2], out)})"


def _sum(acc: str, x: str, acc_dt: str) -> str:
    return f"{acc} += {x}"


def _extreme_update(op: str) -> Reduction:
    rel = ">" if op == "max" else "<"

    def update(acc: str, x: str, acc_dt: str) -> str:
        if is_float(acc_dt):
            # NaN wins; between zeros max takes +0.0 and min -0.0 (the defined order's rule)
            zero = f"math.copysign(1.0, {acc}) < 0" if op == "max" else f"math.copysign(1.0, {x}) < 0"
            return (f"{acc} = {x} if ({x} {rel} {acc} or {x} != {x} or ({x} == {acc} and {acc} == 0 "
                    f"and {zero})) else {acc}")
        return f"{acc} = {x} if {x} {rel} {acc} else {acc}"
    return Reduction(update)


#: op name -> its translation in generated Numba source (see the module docstring)
NUMBA_OPS = {
    "add": _arith("add"), "subtract": _arith("subtract"), "multiply": _arith("multiply"),
    "divide": _arith("divide"), "power": _arith("power"),
    "maximum": _extreme(">"), "minimum": _extreme("<"),
    **comparisons(cast),
    "negative": _wrapping(lambda args, dts, out: f"(-{cast(args[0], dts[0], out)})"),
    "abs": _wrapping(lambda args, dts, out: f"abs({cast(args[0], dts[0], out)})"),
    # exp, log, sin, cos, tanh (``libm`` rows) run as NumPy ufuncs between stages at every size
    # (numba_plan.UFUNC_OPS), float32 exp as NumPy's algorithm inline (Emitter._expr, numba_expf);
    # these expressions serve constants folded at compile time only
    "exp": _math("exp"), "log": _math("log"), "sqrt": _math("sqrt"), "sin": _math("sin"),
    "cos": _math("cos"), "tanh": _math("tanh"),
    "where": Elementwise(_where),
    "astype": Elementwise(lambda args, dts, out: cast(args[0], dts[0], out)),
    "sum": Reduction(_sum), "mean": Reduction(_sum), "max": _extreme_update("max"), "min": _extreme_update("min"),
    "matmul": Library("np.matmul"),
    **views("np"),
    **lone_nodes(),
}


def op_expr(op: str, args: list[str], dts: list[str], out: str) -> str:
    """One elementwise op as a Numba expression over scalar names (NumPy semantics)."""
    return lookup(NUMBA_OPS, "numba", op, Elementwise).expr(args, dts, out)


def acc_update(op: str, acc: str, val: str, acc_dt: str, val_dt: str) -> str:
    """The statement folding ``val`` (of ``val_dt``) into accumulator ``acc`` of reduction ``op``."""
    return lookup(NUMBA_OPS, "numba", op, Reduction).update(acc, cast(val, val_dt, acc_dt), acc_dt)


def acc_init(op: str, acc_dt: str) -> str:
    """The accumulator's starting value in source (:func:`noodle.ir.reduction.identity`)."""
    return literal(acc_dt, identity(op, acc_dt))


# ------------------------------------------------------------------------------ the emitter
def uniform(spec: KernelSpec, n: int | str, in_strides: list[tuple[int | str, ...]]) -> list[bool]:
    """Per value: True when it is the same at every point (constants, size-1 inputs). In a
    one-point space inputs count as varying: their exp/pow... then run as NumPy stages."""
    n_in = len(spec.inputs)
    # a generic plan's ``n`` is a name in the source: its spaces always hold more than one point
    big = not isinstance(n, int) or n > 1
    uni = [big and all(s == 0 for s in in_strides[k]) for k in range(n_in)]
    uni += [True] * len(spec.consts)
    for ins in spec.body:
        uni.append(all(uni[a] for a in ins.args))
    return uni


class Emitter:
    """Source lines for the values of one spec (names, hoisting, per-element bodies)."""

    def __init__(self, spec: KernelSpec, n: int | str, in_strides: list[tuple[int | str, ...]],
                 ufunc_ops: frozenset[str] = frozenset()) -> None:
        self.spec = spec
        self.n_in = len(spec.inputs)
        self.base = self.n_in + len(spec.consts)
        self.uni = uniform(spec, n, in_strides)
        self.ufunc_ops = ufunc_ops   # ops whose bits must be NumPy's: folded, never emitted

    def name(self, v: int, sfx: str = "") -> str:
        """The variable holding value ``v`` (uniform values have one name for the whole kernel)."""
        return f"v{v}" if self.uni[v] else f"v{v}{sfx}"

    def hoisted(self, needed: set[int]) -> list[str]:
        """Lines computing the uniform values among ``needed`` once, before the loop."""
        lines = []
        for v in sorted(self.spec.closure(needed)):
            if not self.uni[v]:
                continue
            if v < self.n_in:
                lines.append(f"v{v} = i{v}[0]")
            elif v < self.base:
                d, val = self.spec.consts[v - self.n_in]
                lines.append(f"v{v} = {literal(d, val)}")
            elif self.spec.body[v - self.base].op in self.ufunc_ops and self.const_only(v):
                lines.append(f"v{v} = {self._folded(v)}")   # NumPy's bits, folded here
            else:
                lines.append(f"v{v} = {self._expr(v, '')}")
        return lines

    def const_only(self, v: int) -> bool:
        """True when ``v`` depends on constants alone (it can be computed at compile time)."""
        if v < self.n_in:
            return False
        return v < self.base or all(self.const_only(a) for a in self.spec.body[v - self.base].args)

    def _value(self, v: int) -> np.ndarray:
        """A constant-only value computed as the interpreter computes it (0-d array)."""
        if v < self.base:
            d, val = self.spec.consts[v - self.n_in]
            return np.asarray(val, dtype=d)
        ins = self.spec.body[v - self.base]
        return np.asarray(eval_instr(ins, [self._value(a) for a in ins.args]))

    def _folded(self, v: int) -> str:
        val = self._value(v)
        return literal(val.dtype.name, val.item())

    def _expr(self, v: int, sfx: str) -> str:
        ins = self.spec.body[v - self.base]
        dts = [self.spec.dtype_of(a) for a in ins.args]
        if ins.op == "exp":
            from noodle.backends.numba_expf import inline_exp  # noqa: PLC0415 - compiles Numba code

            if inline_exp(self.spec, ins):
                return f"expf_numpy({self.name(ins.args[0], sfx)})"   # NumPy's bits (numba_expf)
        return op_expr(ins.op, [self.name(a, sfx) for a in ins.args], dts, ins.dtype)

    def body(self, targets: set[int], load: dict[int, str], sfx: str) -> list[str]:
        """Lines computing every varying value ``targets`` needs; ``load`` gives array reads."""
        lines = []
        need = set()
        stack = list(targets)
        while stack:
            v = stack.pop()
            if v in need or self.uni[v]:
                continue
            need.add(v)
            if v in load:
                continue
            if v < self.n_in:
                raise CompileError(f"internal: no load for input {v}")
            stack.extend(self.spec.body[v - self.base].args)
        for v in sorted(need):
            lines.append(f"v{v}{sfx} = {load[v] if v in load else self._expr(v, sfx)}")
        return lines

    def loads(self, idx: list[str], prefix: str = "i") -> dict[int, str]:
        """Reads of every varying input at its index expression."""
        return {k: f"{prefix}{k}[{idx[k]}]" for k in range(self.n_in) if not self.uni[k]}

    def store_outputs(self, oidx: str, sfx: str, prefix: str = "o") -> list[str]:
        """Lines writing every output value at index ``oidx``."""
        return [f"{prefix}{j}[{oidx}] = {self.name(v, sfx)}" for j, v in enumerate(self.spec.outputs)]

    def targets(self) -> set[int]:
        """The values a kernel must produce: its outputs and the value it reduces."""
        t = set(self.spec.outputs)
        if self.spec.reduce is not None:
            t.add(self.spec.reduce.value)
        return t


def lane_reduce(e: Emitter, acc_dt: str, targets: set[int], start: str, m: str,
                loads: Callable[[str], dict[int, str]], out_prefix: str | None,
                extra: Callable[[str], dict[int, str]] | None = None) -> list[str]:
    """Lines reducing the ``m`` values at positions ``start .. start+m`` of one chunk into
    ``acc0``, in the defined order (:mod:`noodle.ir.reduction`): element ``t`` of the chunk goes
    to lane ``t % LANES``, each lane adds in order, then the lanes are added in order.

    A float sum (the common case) is two loops over the chunk: the values, converted to float64,
    go to the chunk buffer ``buf`` (the caller allocates it, ``CHUNK`` float64s, once per thread
    block); the loop has no loop-carried dependence, so LLVM vectorizes it. Then
    :func:`noodle.backends.numba_reduce.lane_sums` adds the buffer into the eight lanes as one
    ``<8 x double>`` vector (the tail padded with ``-0.0``, which changes no lane's bits).
    The former single loop stored a lane array element on every step (Numba turns off LLVM's
    SLP vectorizer and those stores block the loop vectorizer): scalar code. Measured after the
    change, ``sum((a - b) ** 2)`` ran 1.1-3.8x NumPy at 1e5-1e7 float32/float64, at or above a
    hand-written Numba ``prange`` sum in the same run. Other reductions (integer sums, max,
    min) keep the lane array.
    ``loads(index) -> {value: expression}`` reads the arrays at a position; ``extra(index)`` adds
    loads (scratch buffers); outputs (if ``out_prefix``) are stored at the same positions.
    """
    red = e.spec.reduce
    assert red is not None
    vdt = e.spec.dtype_of(red.value)

    def element(idx: str, acc: str) -> list[str]:
        load = dict(loads(idx))
        if extra is not None:
            load.update(extra(idx))
        out = e.body(targets, load, "")
        if out_prefix is not None:
            out += e.store_outputs(idx, "", out_prefix)
        if acc.startswith("buf"):
            out.append(f"{acc} = {cast(e.name(red.value, ''), vdt, acc_dt)}")
        else:
            out.append(acc_update(red.op, acc, e.name(red.value, ""), acc_dt, vdt))
        return out

    if red.op in ("sum", "mean") and acc_dt == "float64":
        lines = [f"for t in range({m}):"]
        lines += indent(element(f"{start} + t" if start != "0" else "t", "buf[t]"), 1)
        lines.append(f"mp = ({m} + {LANES - 1}) // {LANES} * {LANES}")
        lines.append(f"for t in range({m}, mp):")
        lines.append("    buf[t] = -0.0")
        lines.append(f"ls = lane_sums(buf, 0, mp // {LANES})")
        lines.append("acc0 = ls[0] + ls[1]")
        lines += [f"acc0 += ls[{u}]" for u in range(2, LANES)]
        return lines
    lines = [f"lane = np.full({LANES}, {acc_init(red.op, acc_dt)}, {np_ctor(acc_dt)})"]
    lines.append(f"for q in range({m} // {LANES}):")
    lines.append(f"    j = {start} + q * {LANES}")
    lines.append(f"    for u in range({LANES}):")
    lines += indent(element("j + u", "lane[u]"), 2)
    lines.append(f"jt = {start} + ({m} // {LANES}) * {LANES}")
    lines.append(f"for u in range({m} - ({m} // {LANES}) * {LANES}):")
    lines += indent(element("jt + u", "lane[u]"), 1)
    lines.append("acc0 = lane[0]")
    lines.append(f"for u in range(1, {LANES}):")
    lines.append("    " + acc_update(red.op, "acc0", "lane[u]", acc_dt, acc_dt))
    return lines


SUB_BLOCK = 512   # float64 values a chunk-sum buffer holds (4 KiB: stays in L1 while read back)


def sub_block_sum(e: Emitter, acc_dt: str, targets: set[int], m: str,
                  loads: Callable[[str], dict[int, str]], out_prefix: str | None) -> list[str]:
    """Lines adding the ``m`` (at most :data:`SUB_BLOCK`) values of one piece of a chunk, at
    positions ``0 .. m``, into the lanes ``ls`` (a tuple of eight float64s the caller starts at
    ``-0.0``; :func:`noodle.backends.numba_reduce.lane_sums_from`). The caller slices its arrays
    to the piece and adds the lanes in order when the chunk is done.

    Why pieces: a whole chunk's buffer (32 KiB) is written, then read back, in two passes, and
    the second issues no loads of the inputs, so a memory-bound sum stalled on each chunk; and
    32 KiB fills L1 with the inputs streaming through. Measured on this machine against the
    whole-chunk buffer (same bits): 1e5 float64 serial 0.019 ms against 0.026, 1e6 float32
    parallel 0.108 against 0.131, 1e7 float32 1.76 against 2.10 (best of 150 calls each).
    """
    red = e.spec.reduce
    assert red is not None
    vdt = e.spec.dtype_of(red.value)
    lines = [f"for t in range({m}):"]
    lines += indent(_element(e, targets, loads("t"), out_prefix, "t") +
                    [f"buf[t] = {cast(e.name(red.value, ''), vdt, acc_dt)}"], 1)
    lines.append(f"mp = ({m} + {LANES - 1}) // {LANES} * {LANES}")
    lines.append(f"for t in range({m}, mp):")
    lines.append("    buf[t] = -0.0")
    lines.append(f"ls = lane_sums_from(buf, 0, mp // {LANES}, ls)")
    return lines


def unrolled_sum(e: Emitter, acc_dt: str, targets: set[int], m: str,
                 loads: Callable[[str], dict[int, str]], out_prefix: str | None) -> list[str]:
    """Lines reducing the ``m`` values of one chunk (positions ``0 .. m``) into ``acc0`` in one
    pass, with the eight lanes as eight scalar variables and the element code written out once
    per lane; the defined order (:mod:`noodle.ir.reduction`), so the same bits as
    :func:`sub_block_sum`.

    Why: when the values are float64 and the kernel runs on every thread, the sum is bound by
    memory; the buffered form alternates a pass that loads the inputs with one that does not,
    and measured 10-30% slower than this form, which keeps the loads streaming (1e7 float64,
    two threads: 3.1-3.2 ms against 3.5-4.5; a hand-written Numba ``prange`` sum 3.1-3.5). For
    float32 values or one thread the buffered, vectorized form is faster, and is used.
    """
    red = e.spec.reduce
    assert red is not None
    vdt = e.spec.dtype_of(red.value)
    val = cast(e.name(red.value, ""), vdt, acc_dt)
    lines = [f"l{u} = -0.0" for u in range(LANES)]
    lines.append(f"for q in range({m} // {LANES}):")
    lines.append(f"    j = q * {LANES}")
    for u in range(LANES):
        lines += indent(_element(e, targets, loads(f"j + {u}"), out_prefix, f"j + {u}") + [f"l{u} += {val}"], 1)
    lines.append(f"jt = ({m} // {LANES}) * {LANES}")
    for u in range(LANES - 1):   # a short chunk's tail: lanes 0 .. tail-1
        lines.append(f"if {m} - jt > {u}:")
        lines += indent(_element(e, targets, loads(f"jt + {u}"), out_prefix, f"jt + {u}") + [f"l{u} += {val}"], 1)
    return lines + close_lanes([f"l{u}" for u in range(LANES)])


def close_lanes(lanes: list[str]) -> list[str]:
    """``acc0 = ((lane0 + lane1) + lane2) + ...``: a chunk's value from its lanes."""
    return [f"acc0 = {lanes[0]} + {lanes[1]}"] + [f"acc0 += {ln}" for ln in lanes[2:]]


def _element(e: Emitter, targets: set[int], load: dict[int, str], out_prefix: str | None, idx: str) -> list[str]:
    """The element code at ``idx``: its values, and its outputs stored if ``out_prefix``."""
    out = e.body(targets, dict(load), "")
    if out_prefix is not None:
        out += e.store_outputs(idx, "", out_prefix)
    return out


def uses_chunk_buffer(spec: KernelSpec, acc_dt: str) -> bool:
    """True when :func:`lane_reduce` needs the caller's ``buf`` (a float sum or mean)."""
    return spec.reduce is not None and spec.reduce.op in ("sum", "mean") and acc_dt == "float64"


def indent(lines: list[str], n: int) -> list[str]:
    """``lines`` indented ``n`` levels (four spaces each)."""
    return [" " * (4 * n) + ln for ln in lines]


def sig_array(dtype: str) -> str:
    """Numba signature of a contiguous 1-D array of ``dtype``."""
    return f"{nb_type(dtype)}[::1]"


__all__ = ["Emitter", "NUMBA_OPS", "SUB_BLOCK", "SUPPORTED_DTYPES", "acc_init", "acc_update", "cast", "close_lanes",
           "float_literal", "indent", "lane_reduce", "literal", "nb_type", "np_ctor", "op_expr", "sig_array",
           "sub_block_sum", "uniform", "unrolled_sum", "uses_chunk_buffer"]
