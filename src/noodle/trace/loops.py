"""``nd.while_loop`` and ``nd.fori_loop``: loops with JAX's semantics, eager or traced.

Why JAX's shape: a loop whose carried values keep their shapes and dtypes can be traced once
(cond and body become sub-programs of one ``while_loop`` node) and compiled once, whatever the
trip count; the runner then loops around the body's compiled kernels (see
:mod:`noodle.jit.lower`). Outside ``nd.jit`` both are plain Python loops.

The carry is one array or a tuple/list of arrays; a body that changes a carried value's shape or
dtype raises :class:`~noodle.errors.TraceError` naming the element (eagerly too, so a function
behaves the same jitted or not); under ``nd.jit`` a carry that starts as a Python scalar raises too,
since NumPy would type it by what it meets. ``fori_loop`` passes its counter as a NumPy ``int64`` (a 0-d
``int64`` array when traced), so ``x * i`` promotes the same way in both modes. Values of the
enclosing function a body reads from its closure become extra operands of the loop; a Python
scalar argument read there is made static (the function retraces for a new value).

Example::

    >>> import numpy as np
    >>> import noodle as nd
    >>> nd.fori_loop(0, 3, lambda i, x: x * 2.0, np.ones(2))
    array([8., 8.])
    >>> halve = nd.jit(lambda x: nd.while_loop(lambda c: c.max() > 1.0, lambda c: c / 2.0, x))
    >>> halve(np.array([3.0, 10.0]))
    array([0.1875, 0.625 ])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from noodle.errors import TraceError
from noodle.ir.graph import SubProgram
from noodle.trace.tracer import (
    Concretize,
    TraceContext,
    Tracer,
    active,
    active_context,
    numpy_scalar,
    user_location,
)


class _Scope:
    """The values of the enclosing trace (``parent``) that a loop's cond and body read.

    Each captured value gets one input slot after the ``k`` carried ones, shared by cond and body,
    so both sub-programs take the loop node's operands in the same order."""

    def __init__(self, parent: TraceContext, k: int) -> None:
        self.parent = parent
        self.k = k
        self.outer: list[Tracer] = []           # captured values, as Tracers of the parent
        self.slot: dict[int, int] = {}          # parent value -> capture number
        self.inner: dict[tuple[int, int], Tracer] = {}   # (id(child ctx), capture number) -> child input

    def encloses(self, ctx: TraceContext) -> bool:
        c: TraceContext | None = self.parent
        while c is not None:
            if c is ctx:
                return True
            c = c.scope.parent if c.scope is not None else None
        return False

    def capture(self, child: TraceContext, x: Tracer) -> Tracer:
        if x.ctx is not self.parent:
            x = self.parent.lift(x, None)        # from further out: the parent captures it first
        x = self.parent.lift(x, None)            # a stale view raises here
        params = self.parent.weak.get(x.value)
        if params:
            raise Concretize(params)             # a Python scalar argument: its value is needed
        j = self.slot.get(x.value)
        if j is None:
            j = self.slot[x.value] = len(self.outer)
            self.outer.append(x)
        key = (id(child), j)
        t = self.inner.get(key)
        if t is None:
            t = self.inner[key] = Tracer(child, child.builder.input(self.k + j, x.shape, x.dtype.name))
            if numpy_scalar(x):   # what it stands for keeps NumPy's scalar semantics in the body
                child.scalar_inputs.add(t.value)
        return t

    def child(self) -> TraceContext:
        ctx = TraceContext()
        ctx.scope = self
        ctx.raised = self.parent.raised
        ctx.baked = self.parent.baked
        return ctx


def _leaves(value: Any, what: str) -> tuple[list[Any], bool]:
    """The carried arrays of ``value`` and whether it was a tuple/list (else one array)."""
    if isinstance(value, tuple | list):
        if not value:
            raise TraceError(f"{what}: the carry is an empty {type(value).__name__}; carry at least one array")
        for v in value:
            if isinstance(v, tuple | list | dict):
                raise TraceError(f"{what}: nested carries are not supported; carry a flat tuple of arrays")
        return list(value), True
    if isinstance(value, dict):
        raise TraceError(f"{what}: a dict carry is not supported; carry an array or a tuple of arrays")
    return [value], False


def _rebuild(leaves: list[Any], is_seq: bool, like: Any) -> Any:
    if not is_seq:
        return leaves[0]
    return list(leaves) if isinstance(like, list) else tuple(leaves)


def _aval(v: Any) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(v, Tracer):
        return v.shape, v.dtype
    return np.shape(v), np.asarray(v).dtype


def _check(what: str, new: Any, old: Any, n: int, is_seq: bool, init: Any, strict_dtype: bool) -> list[Any]:
    """The body's result as leaves, checked against the carry's structure, shapes and dtypes."""
    leaves, seq = (_leaves(new, what) if isinstance(new, tuple | list | dict) else ([new], False))
    if seq != is_seq or len(leaves) != n:
        raise TraceError(f"{what}: the body returns {len(leaves) if seq else 'one array'} where the carry is "
                         f"{n if is_seq else 'one array'} ({type(init).__name__}); return the same structure")
    for j, (a, b) in enumerate(zip(leaves, old, strict=True)):
        (sa, da), (sb, db) = _aval(a), _aval(b)
        python_scalar = isinstance(b, bool | int | float) or isinstance(a, bool | int | float)
        # byte order is storage, not type: a big-endian carry comes back native from NumPy's arithmetic
        same_type = da == db or da.newbyteorder("=") == db.newbyteorder("=")
        if tuple(sa) != tuple(sb) or (not same_type and (strict_dtype or not python_scalar)):
            name = f"carry element {j}" if is_seq else "the carry"
            raise TraceError(f"{what}: the body changes {name} from {db.name}{list(sb)} to {da.name}{list(sa)} "
                             f"(at {user_location()}); a loop's carried values keep their shapes and dtypes "
                             "across iterations: cast with .astype(...) or keep the shape")
    return leaves


def _context(values: list[Any]) -> TraceContext | None:
    for v in values:
        if isinstance(v, Tracer):
            return v.ctx
    return active_context()


def while_loop(cond_fun: Callable[[Any], Any], body_fun: Callable[[Any], Any], init_val: Any) -> Any:
    """``carry = body_fun(carry)`` while ``cond_fun(carry)``, starting from ``init_val``; returns the
    last carry (JAX's ``lax.while_loop``). ``cond_fun`` returns a boolean scalar.

    Inside ``nd.jit`` it is one loop node, traced once; eagerly a Python ``while`` loop.

    Example: ``nd.while_loop(lambda c: c[0] < 10, lambda c: (c[0] + 1, c[1] * 2.0), (np.int64(0), x))``
    (under ``nd.jit`` a Python scalar carry, ``0``, is refused: see :func:`_refuse_python_scalars`).
    """
    what = "nd.while_loop"
    leaves, is_seq = _leaves(init_val, what)
    ctx = _context(leaves)
    if ctx is None:
        carry, cur = init_val, leaves
        while bool(cond_fun(carry)):
            cur = _check(what, body_fun(carry), cur, len(leaves), is_seq, init_val, False)
            carry = _rebuild(cur, is_seq, init_val)
        return carry

    _refuse_python_scalars(what, leaves, is_seq)

    def cond_flat(ls: list[Tracer]) -> Any:
        return cond_fun(_rebuild(ls, is_seq, init_val))

    def body_flat(ls: list[Tracer]) -> list[Any]:
        return _check(what, body_fun(_rebuild(ls, is_seq, init_val)), ls, len(ls), is_seq, init_val, True)

    out = traced_while(ctx, cond_flat, body_flat, leaves, what)
    return _rebuild(out, is_seq, init_val)


def fori_loop(lower: Any, upper: Any, body_fun: Callable[[Any, Any], Any], init_val: Any) -> Any:
    """``carry = body_fun(i, carry)`` for ``i`` in ``range(lower, upper)``; returns the last carry
    (JAX's ``lax.fori_loop``). ``i`` is a NumPy ``int64`` (eagerly) or a 0-d ``int64`` array (traced).

    Inside ``nd.jit`` it is a ``while_loop`` over ``(i, carry)``; the bounds may be ints or traced
    integer scalars. Eagerly a Python ``for`` loop.

    Example: ``nd.fori_loop(0, n, lambda i, x: x + v[i], np.zeros(()))`` sums ``v[:n]``.
    """
    what = "nd.fori_loop"
    leaves, is_seq = _leaves(init_val, what)
    ctx = _context([lower, upper, *leaves])
    if ctx is None:
        carry, cur = init_val, leaves
        for i in range(int(lower), int(upper)):
            cur = _check(what, body_fun(np.int64(i), carry), cur, len(leaves), is_seq, init_val, False)
            carry = _rebuild(cur, is_seq, init_val)
        return carry
    for name, b in (("lower", lower), ("upper", upper)):
        if isinstance(b, Tracer) and (b.shape != () or b.dtype.kind not in "iu"):
            raise TraceError(f"{what}: {name} must be an integer scalar, got {b.dtype.name}{list(b.shape)} "
                             f"(at {user_location()})")
        if not isinstance(b, Tracer) and not isinstance(b, int | np.integer):
            raise TraceError(f"{what}: {name} must be an int, got {type(b).__name__} (at {user_location()})")
    _refuse_python_scalars(what, leaves, is_seq)
    # eagerly ``i`` is a NumPy int64 scalar (``i ** 2`` is scalar math): so it is here
    start = lower.astype(np.int64) if isinstance(lower, Tracer) else np.int64(int(lower))

    def cond_flat(ls: list[Tracer]) -> Any:
        return ls[0] < upper

    def body_flat(ls: list[Tracer]) -> list[Any]:
        new = body_fun(ls[0], _rebuild(ls[1:], is_seq, init_val))
        return [ls[0] + 1, *_check(what, new, ls[1:], len(ls) - 1, is_seq, init_val, True)]

    out = traced_while(ctx, cond_flat, body_flat, [start, *leaves], what)
    return _rebuild(out[1:], is_seq, init_val)


def _refuse_python_scalars(what: str, leaves: list[Any], is_seq: bool) -> None:
    """A carry that starts as a Python scalar has no dtype of its own: NumPy types it by what it
    meets (NEP 50), so eagerly ``c + x32[i]`` makes the carry float32 after the first iteration
    and an int carry that meets an int8 array stays int8, while a traced loop must fix one dtype
    before it runs (it took int64/float64: other bits, another dtype). A NumPy scalar says which."""
    for j, v in enumerate(leaves):
        if isinstance(v, Tracer) and v.ctx.weak.get(v.value):
            # a Python scalar passed in as an argument: as weak as one written in the code
            py = {"b": "bool", "i": "int"}.get(v.dtype.kind, "float")
            what_it_is, example = f"a Python {py} argument", f"np.{'bool_' if py == 'bool' else py + '64'}(...)"
        elif isinstance(v, bool | int | float) and not isinstance(v, np.generic):   # (np.float64 is a float)
            kind = "np.bool_" if isinstance(v, bool) else "np.int64" if isinstance(v, int) else "np.float64"
            what_it_is, example = f"the Python {type(v).__name__} {v!r}", f"{kind}({v!r})"
        else:
            continue
        name = f"carry element {j}" if is_seq else "the carry"
        raise TraceError(f"{what}: {name} starts as {what_it_is} (at {user_location()}); NumPy gives a Python "
                         "scalar the dtype of what it meets (NEP 50), so the eager loop's dtype can change after "
                         "its first iteration, which a compiled loop cannot follow. Start it as a NumPy scalar of "
                         f"the dtype you want, e.g. {example} or np.float32(...)")


def traced_while(ctx: TraceContext, cond_flat: Callable[[list[Tracer]], Any],
                 body_flat: Callable[[list[Tracer]], list[Any]], leaves: list[Any], what: str) -> list[Tracer]:
    """Record a ``while_loop`` node in ``ctx``: cond and body traced once each with the carry's
    shapes and dtypes; returns the final carried values (``loop_result`` nodes)."""
    init = [ctx.lift(v, None) for v in leaves]
    scope = _Scope(ctx, len(init))
    progs = []
    for name, fn in (("cond", cond_flat), ("body", body_flat)):
        sub = scope.child()
        ins = [Tracer(sub, sub.builder.input(j, t.shape, t.dtype.name)) for j, t in enumerate(init)]
        for t, leaf in zip(ins, leaves, strict=True):
            if numpy_scalar(leaf):   # a scalar carry is a NumPy scalar in every eager iteration
                sub.scalar_inputs.add(t.value)
        with active(sub):
            result = fn(ins)
        outs = [result] if name == "cond" else result
        lifted = [sub.lift(o, None) for o in outs]
        if name == "cond" and (lifted[0].shape != () or lifted[0].dtype != np.bool_):
            raise TraceError(f"{what}: the condition returns {lifted[0].dtype.name}{list(lifted[0].shape)}; it must "
                             "return a boolean scalar (e.g. c.max() > tol, i < n)")
        progs.append((sub, lifted))
    n = len(init) + len(scope.outer)
    subs = []
    for sub, lifted in progs:
        declared = {node.attr("index") for node in sub.builder.nodes if node.op == "input"}
        for j in range(n):
            if j not in declared:   # a capture only the other sub-program reads
                x = scope.outer[j - len(init)]
                sub.builder.input(j, x.shape, x.dtype.name)
        program = sub.builder.finish([t.value for t in lifted])
        program.n_inputs = n
        if len(subs) == 1:     # the body: the layouts it carries matter to its products (passes/layout)
            program.meta["loop_carry"] = len(init)
        subs.append(SubProgram(program))
    node = ctx.builder.add("while_loop", *[t.value for t in init], *[t.value for t in scope.outer],
                           cond=subs[0], body=subs[1], carry=len(init))
    return [Tracer(ctx, ctx.builder.add("loop_result", node, item=j)) for j in range(len(init))]


__all__ = ["fori_loop", "traced_while", "while_loop"]
