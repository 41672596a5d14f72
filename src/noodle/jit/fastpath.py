"""The jitted call's fast path: one generated function per compiled signature.

Why generated: a compiled 16-element call must cost about what Numba's own dispatch
does (the issue's target is 1 µs), and the general call path (bind the arguments,
build a signature key, hash it, walk the guard variants, place the inputs) costs more
than the kernel at that size. For the signature a function was last called with, the
generated function does only what the key and the guards demand, unrolled: per argument
``type(a) is ndarray``, its dtype (by identity: the canonical dtypes NumPy hands out)
and its shape; the guard check (captured globals, cells and attributes are still read and
compared on every call, see :mod:`noodle.trace.guards`); then the runner. Anything it does
not recognise (keyword arguments, another arity, another dtype or shape, a guard that
fails, a runner that is gone or raises) returns :data:`MISS` and the general path decides,
with its errors and retracing, so the fast path can only be faster, never different.

Example::

    >>> import numpy as np, noodle as nd
    >>> f = nd.jit(lambda a, b: a * b + 1.0, hot_threshold=0)
    >>> x = np.arange(4.0)
    >>> _ = f.compile(x, x)
    >>> _ = f(x, x)           # the general path, which then installs the fast one
    >>> f(x, x)               # the fast path
    array([ 1.,  2.,  5., 10.])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from noodle.trace import is_array

#: what a fast path returns when the general call path must handle the call
MISS = object()


def no_fast_path(args: tuple) -> Any:
    """The fast path of a function with no compiled signature yet: always the general path."""
    return MISS

_SCALAR_TYPES = (float, int, bool)
_VALUE_TYPES = (bool, int, float, complex, str, bytes, type(None))


def _is_plain_value(v: Any) -> bool:
    if isinstance(v, tuple):
        return all(_is_plain_value(x) for x in v)
    return type(v) in _VALUE_TYPES


def arg_specs(args: Sequence[Any], static: frozenset[int]) -> tuple[tuple[Any, ...], ...] | None:
    """Per argument, what the signature key records about it (the key of ``JitFunction``):
    ``("nd", shape, dtype)`` for an ndarray, ``("type", t)`` for a Python scalar parameter,
    ``("generic", t, dtype)`` for a NumPy scalar, ``("array", t, shape, dtype)`` for another
    array type, ``("value", t, v, by_identity)`` for a value in the key. None when an argument's
    key part cannot be checked cheaply and exactly (the general path handles every call)."""
    specs: list[tuple[Any, ...]] = []
    for i, a in enumerate(args):
        t = type(a)
        if i not in static and t is np.ndarray:
            if not a.dtype.isnative:
                return None   # converted to native order on every call: the general path does it
            specs.append(("nd", a.shape, a.dtype))
        elif i not in static and t in _SCALAR_TYPES:
            specs.append(("type", t))
        elif i not in static and is_array(a):
            specs.append(("array", t, a.shape, a.dtype))
        elif i not in static and isinstance(a, np.generic):
            specs.append(("generic", t, a.dtype))
        elif _is_plain_value(a):
            specs.append(("value", t, a, False))
        elif t.__eq__ is object.__eq__ and t.__hash__ is object.__hash__:
            specs.append(("value", t, a, True))   # an object keyed by identity (``self`` of a method)
        else:
            return None
    return tuple(specs)


def _shape_differs(a: str, shape: tuple[int, ...], i: int) -> str:
    """The test that array ``a`` does not have ``shape``: for 0-d and 1-d arrays without building
    the shape tuple (``ndim`` first: ``len`` of a 0-d array raises)."""
    if len(shape) == 0:
        return f"{a}.ndim != 0"
    if len(shape) == 1:
        return f"{a}.ndim != 1 or len({a}) != {int(shape[0])}"
    return f"{a}.shape != s{i}"


def build_fast_path(entry: Any, name: str, finish: Callable[[tuple, tuple, tuple, Any], tuple],
                    hot: Callable[[], None] | None = None) -> Callable[[tuple], Any]:
    """The fast path of one cache entry (``_Entry`` of :mod:`noodle.jit.api`): ``fast(args)`` is
    the call's result, or :data:`MISS`. ``hot()`` runs every 256th compiled call (default: publish
    the call count to the metrics registry)."""
    specs = entry.specs
    env: dict[str, Any] = {"MISS": MISS, "ND": np.ndarray, "asarray": np.asarray, "state": entry.state,
                           "check": entry.check, "finish": finish, "actions": entry.out_actions,
                           "hot": hot or entry.state.flush_metrics}
    n = len(specs)
    names = [f"a{i}" for i in range(n)]
    lines = [f"if len(args) != {n}: return MISS"]
    if n:
        lines.append(f"{', '.join(names)}{',' if n == 1 else ''} = args")
    for i, spec in enumerate(specs):
        a = names[i]
        kind = spec[0]
        if kind == "nd":
            env[f"s{i}"], env[f"d{i}"] = spec[1], spec[2]
            lines.append(f"if type({a}) is not ND or {a}.dtype is not d{i} or {_shape_differs(a, spec[1], i)}: "
                         "return MISS")
        elif kind == "type":
            env[f"t{i}"] = spec[1]
            lines.append(f"if type({a}) is not t{i}: return MISS")
        elif kind == "generic":
            env[f"t{i}"], env[f"d{i}"] = spec[1], spec[2]
            lines.append(f"if type({a}) is not t{i} or {a}.dtype != d{i}: return MISS")
        elif kind == "array":
            env[f"t{i}"], env[f"s{i}"], env[f"d{i}"] = spec[1], spec[2], spec[3]
            lines.append(f"if type({a}) is not t{i} or {a}.shape != s{i} or {a}.dtype != d{i}: return MISS")
        else:
            env[f"t{i}"], env[f"v{i}"] = spec[1], spec[2]
            same = f"{a} is v{i}" if spec[3] else f"({a} is v{i} or {a} == v{i})"
            lines.append(f"if type({a}) is not t{i} or not {same}: return MISS")
    implicit = entry.check is not None
    if implicit:
        lines += ["imp = check(args)", "if imp is None: return MISS"]
    if entry.positions is None:
        arrays = "args + imp" if implicit else "args"
    else:
        parts = [f"asarray({names[i]})" if i in entry.params else names[i] for i in entry.positions]
        if implicit:
            parts.append("*imp")
        arrays = f"[{', '.join(parts)}]"
    lines += [
        "runner = state.runner",
        "if runner is None: return MISS",
        f"arrays = {arrays}",
        "try:",
        "    out = runner(arrays)",
        "except Exception as exc:",   # a backend bug: drop the runner; the general path interprets
        "    state.runtime_failure(exc)",
        "    return MISS",
        "c = state.compiled_calls = state.compiled_calls + 1",
        "if not c & 255: hot()",
    ]
    if entry.out_actions is not None:
        lines.append("out = finish(out, actions, args, arrays)")
    env["make"] = entry.state.make_output
    lines.append("return out[0]" if entry.state.single_output else
                 "return out" if entry.state.make_output is None else "return make(out)")
    src = "def fast(args):\n" + "".join(f"    {ln}\n" for ln in lines)
    exec(compile(src, f"<noodle fast path of {name}>", "exec"), env)  # noqa: S102 - our own text
    return env.pop("fast")   # (not left in its own globals: no cycle keeps the state alive)


#: compiled calls of one signature after which its Python fast path is replaced by a native
#: entry where the kernel offers one (building it costs a few milliseconds: only for hot calls)
NATIVE_AFTER = 1024


def build_native_fast_path(entry: Any) -> Callable[[tuple], Any] | None:
    """A native entry (:mod:`noodle.backends.numba_native_call`) doing what :func:`build_fast_path`'s
    function does, for an entry whose arguments (1-D arrays, Python ``float`` parameters) all go
    straight to one small compiled kernel, followed by the 1-D arrays its guards return (no static
    values, no output fix-ups); None otherwise."""
    from noodle.backends.base import Kernel
    from noodle.backends.numba_native_call import InputSpec, build_native_call

    state = entry.state
    specs = entry.specs
    if entry.out_actions is not None or not specs or state.make_output is not None:
        return None
    if entry.positions is not None and tuple(entry.positions) != tuple(range(len(specs))):
        return None   # some argument is not a program input (a static value)
    inputs = []
    for i, sp in enumerate(specs):
        if sp[0] == "nd" and len(sp[1]) == 1 and i not in entry.params:
            inputs.append(InputSpec(tuple(sp[1]), sp[2]))
        elif sp[0] == "type" and sp[1] is float and i in entry.params:
            inputs.append(InputSpec((), np.dtype(np.float64), python_float=True))
        else:
            return None
    kernel = getattr(state.runner, "single_kernel", None)
    if not isinstance(kernel, Kernel):
        return None
    target = kernel.native_target()
    if target is None:
        return None
    # the arrays the guards return (captured globals) follow the arguments among the kernel's inputs
    n_args = len(inputs)
    extra = list(kernel.spec.inputs[n_args:])
    if entry.check is None and extra:
        return None
    for dtype, shape in extra:
        if len(shape) != 1:
            return None
        inputs.append(InputSpec(tuple(shape), np.dtype(dtype)))
    return build_native_call(target, inputs, check=entry.check, n_args=n_args,
                             single_output=state.single_output, miss=MISS, counter=state.native_calls,
                             owner=state, runner=state.runner, flush=state.flush_metrics)


__all__ = ["MISS", "NATIVE_AFTER", "arg_specs", "build_fast_path", "build_native_fast_path", "no_fast_path"]
