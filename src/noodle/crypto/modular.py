"""Elementwise ``a * b % m`` and ``pow(b, e, m)`` over arrays, the same bits on every backend.

Why one front for all sizes: 64-bit values (int64/uint64 arrays, Python ints that fit) run Montgomery
kernels, on the CPU through Numba (:mod:`noodle.crypto._mod64_cpu`) or on a GPU through CUDA
(:mod:`noodle.crypto._mod64_cuda`); anything bigger (object arrays of Python ints, RSA-size moduli)
goes to the big-integer backends. Which device runs is :func:`noodle.crypto.placement.decide`'s call,
per op, from the element count, the bit sizes and where the data lives.

The semantics are Python's, whatever runs: inputs at or above ``m`` and negative inputs are reduced
the way ``%`` reduces them, ``m == 1`` gives 0, ``e == 0`` gives ``1 % m``, and a negative exponent
means the modular inverse (only with ``allow_negative_exp=True``; ``pow(b, -e, m)``). Moduli must be
``>= 1``: Python's ``pow`` accepts a negative modulus, this module refuses it, because no backend
defines a negative residue.

Result dtypes: int64 when every array input is a signed (or narrower unsigned) integer, uint64 when one
is uint64, object when one is an object array or a Python int outside int64 (a modulus of 2**63 or
more given as a Python int is such an int). All-Python-int inputs give a Python int, as ``pow`` does.
uint64 moduli up to ``2**64 - 1`` stay on the exact 64-bit path.

Where results live: with a CuPy input, a CuPy array (wherever placement ran the op; object results,
which CuPy cannot hold, are NumPy); otherwise NumPy, also when the GPU computed it.

Example::

    >>> import numpy as np
    >>> modpow(np.array([2, 3, 10]), 5, 7).tolist()
    [4, 5, 5]
    >>> modmul(-3, 5, 7)
    6
"""

from __future__ import annotations

import importlib
import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from noodle.crypto.placement import decide
from noodle.errors import CryptoValueError, DeviceUnavailableError, DTypeError, ShapeError

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_U64 = np.dtype(np.uint64)
_I64 = np.dtype(np.int64)
# exp_bits given to placement for the ladder: 64 steps of two products, where its model counts
# 1.5 products per exponent bit
_LADDER_EXP_BITS = 86
_DEVICES = ("auto", "cpu", "gpu", "cuda")


@dataclass
class _Arg:
    """One operand after classification: a NumPy or CuPy integer array, or a NumPy object array of ints."""

    name: str
    value: Any
    python: bool = False     # a Python int scalar
    gpu: bool = False        # a CuPy array

    @property
    def is_object(self) -> bool:
        return self.value.dtype == object


# ------------------------------------------------------------------------------ public API
def modmul(a: Any, b: Any, m: Any, *, device: str = "auto") -> np.ndarray | int | Any:
    """``a * b % m`` elementwise, with NumPy broadcasting, exactly as Python computes it.

    ``a``, ``b``, ``m``: integer arrays (int64/uint64; narrower ints are widened), Python ints,
    lists of ints, or object arrays of Python ints (any size, e.g. RSA moduli); CuPy arrays too.
    ``m`` must be >= 1 everywhere. ``device``: 'auto' (placement decides), 'cpu' or 'gpu'.

    Why not ``a * b % m`` in NumPy: the product of two 64-bit values needs 128 bits, so NumPy
    wraps it silently; here it is exact (Montgomery products, or big ints).

    Example::

        >>> import numpy as np
        >>> modmul(np.array([2**62, -5], dtype=np.int64), 3, 2**61 - 1).tolist()
        [6, 2305843009213693936]
    """
    args = [_classify("a", a), _classify("b", b), _classify("m", m)]
    return _run("modmul", args, device=device, constant_time=False, allow_negative_exp=False)


def modpow(base: Any, exp: Any, m: Any, *, device: str = "auto", constant_time: bool = False,
           allow_negative_exp: bool = False) -> np.ndarray | int | Any:
    """``pow(base, exp, m)`` elementwise, with NumPy broadcasting, exactly as Python computes it.

    Inputs as for :func:`modmul`. ``exp`` must be >= 0 unless ``allow_negative_exp=True``, which
    uses the modular inverse of ``base`` (as ``pow(b, -e, m)`` does; an element without an inverse
    raises CryptoValueError naming it).

    ``constant_time=True`` runs a Montgomery ladder in the 64-bit kernels: every exponent bit of the
    dtype's 64 is processed with both products computed and the result selected by arithmetic
    masks, so the kernel has no branch or memory index that depends on the base or the exponent
    (also on the GPU). For object inputs the flag is passed to the big-integer backend. What it does
    not promise: the Python around the kernel (argument checks, conversions, allocation, thread
    scheduling, the OS) is not constant-time, nor is the inverse taken for negative exponents, and
    the modulus and the array shapes are treated as public.

    Example::

        >>> import numpy as np
        >>> modpow(np.arange(5, dtype=np.uint64), 65537, 2**61 - 1).tolist()
        [0, 1, 8388608, 1632245349093053787, 70368744177664]
        >>> modpow(3, -1, 7, allow_negative_exp=True)
        5
    """
    if not isinstance(constant_time, bool) or not isinstance(allow_negative_exp, bool):
        raise CryptoValueError(f"constant_time and allow_negative_exp must be True or False, got "
                               f"{constant_time!r} and {allow_negative_exp!r}.")
    args = [_classify("base", base), _classify("exp", exp), _classify("m", m)]
    return _run("modpow", args, device=device, constant_time=constant_time,
                allow_negative_exp=allow_negative_exp)


# ------------------------------------------------------------------------------ inputs
_WHAT_TO_PASS = ("pass an integer array (int64/uint64), Python ints, or for values beyond 64 bits an "
                 "object array of Python ints (np.array(values, dtype=object))")


def _bad_dtype(name: str, dt: Any) -> DTypeError:
    dt = np.dtype(dt)
    if dt.kind == "b":
        why = "booleans are not residues"
    elif dt.kind in "fc":
        why = "modular arithmetic is exact integer math, which floating-point values cannot carry"
    else:
        why = "modular arithmetic needs integers"
    return DTypeError(f"{name} has dtype {dt}: {why}; {_WHAT_TO_PASS}.")


def _python_int(name: str, v: Any) -> int:
    """``v`` as a Python int (ints, NumPy ints, anything with ``__index__`` such as gmpy2.mpz)."""
    if type(v) is int:
        return v
    if isinstance(v, (bool, np.bool_)):
        raise DTypeError(f"{name} holds the bool {v!r}: booleans are not residues; {_WHAT_TO_PASS}.")
    try:
        return operator.index(v)
    except TypeError:
        raise DTypeError(f"{name} holds {v!r} of type {type(v).__name__}, not an integer; "
                         f"{_WHAT_TO_PASS}.") from None


def _pyints(name: str, arr: np.ndarray) -> np.ndarray:
    """A new object array of Python ints with ``arr``'s shape, every element checked."""
    out = np.empty(arr.shape, dtype=object)
    if arr.dtype != object:
        out[...] = arr.astype(object)    # NumPy ints become Python ints
        return out
    flat = arr.ravel()
    vals = []
    for i, v in enumerate(flat.tolist()):
        if type(v) is int:
            vals.append(v)
        else:
            vals.append(_python_int(f"{name}{_index(arr.shape, i)}", v))
    out.reshape(-1)[:] = vals
    return out


def _fits_int64(values: Any) -> bool:
    return all(_I64_MIN <= v <= _I64_MAX for v in values)


def _classify(name: str, x: Any) -> _Arg:
    """Check one operand's type and put it in the form the rest of the module uses."""
    if type(x).__module__.split(".")[0] == "cupy":
        from noodle.devices.detect import cupy_module  # noqa: PLC0415 - only for CuPy inputs

        cp = cupy_module()
        if cp is None:
            raise DeviceUnavailableError(f"{name} is a CuPy array, but CuPy cannot use a GPU in this process; "
                                         "pass a NumPy array (cupy.asnumpy) or run where the GPU works.")
        if isinstance(x, cp.ndarray):
            if x.dtype.kind not in "iu":
                raise _bad_dtype(name, x.dtype)
            return _Arg(name, x, gpu=True)
    if isinstance(x, (bool, np.bool_)):
        raise _bad_dtype(name, np.bool_)
    if isinstance(x, int):
        return _scalar(name, x, python=True)
    if isinstance(x, (np.ndarray, np.generic)):
        arr = np.asarray(x)
        if arr.dtype.kind in "iu":
            return _Arg(name, arr)
        if arr.dtype == object:
            return _Arg(name, _pyints(name, arr))
        raise _bad_dtype(name, arr.dtype)
    if isinstance(x, (list, tuple)):
        # through object: NumPy makes [-1, 2**63] float64 and [2**63] uint64, and [True, 2] int64
        try:
            raw = np.array(x, dtype=object)
        except ValueError as exc:
            raise ShapeError(f"{name} is a ragged nested list ({exc}); pass a rectangular list or an array.") from None
        for v in raw.flat:
            if isinstance(v, (float, complex, np.floating, np.complexfloating)):
                raise _bad_dtype(name, np.asarray(v).dtype)
            if isinstance(v, (list, tuple, np.ndarray)):
                raise ShapeError(f"{name} is a ragged nested list (rows of different lengths); pass a "
                                 "rectangular list or an array.")
        obj = _pyints(name, raw)
        if _fits_int64(obj.flat):
            return _Arg(name, obj.astype(np.int64))
        return _Arg(name, obj)
    if isinstance(x, (float, complex)):
        raise _bad_dtype(name, np.asarray(x).dtype)
    if hasattr(x, "__index__"):
        return _scalar(name, _python_int(name, x), python=True)
    raise DTypeError(f"{name} is a {type(x).__name__}; {_WHAT_TO_PASS}.")


def _scalar(name: str, v: int, *, python: bool) -> _Arg:
    if _I64_MIN <= v <= _I64_MAX:
        return _Arg(name, np.array(v, dtype=np.int64), python=python)
    obj = np.empty((), dtype=object)
    obj[()] = v
    return _Arg(name, obj, python=python)


def _index(shape: tuple[int, ...], flat_pos: int) -> str:
    """'[i, j]' for a flat position in ``shape`` ('' for a 0-d operand)."""
    if not shape:
        return ""
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat_pos, shape)) + "]"


def _host(x: Any) -> np.ndarray:
    return x.get() if type(x).__module__.split(".")[0] == "cupy" else np.asarray(x)


def _check_modulus(m: _Arg) -> None:
    """Every modulus >= 1, else CryptoValueError naming the first one that is not."""
    v = m.value
    if m.is_object:
        bad = np.less(v, 1) if v.size else np.zeros(v.shape, bool)
    else:
        bad = (v == 0) if v.dtype == _U64 else (v <= 0)
        if m.gpu:
            bad = _host(bad)
    bad = np.asarray(bad)
    if bad.any():
        pos = int(np.flatnonzero(bad.reshape(-1))[0])
        val = int(_host(v).reshape(-1)[pos])
        raise CryptoValueError(f"the modulus must be >= 1 everywhere, but m{_index(v.shape, pos)} = {val}; "
                               "modular arithmetic defines no residues modulo a number below 1 (Python's "
                               "pow raises for 0). Pass positive moduli.")


def _negative_exponent(e: _Arg) -> None:
    v = e.value
    if e.is_object:
        neg = np.asarray(np.less(v, 0), dtype=bool)
    elif v.dtype.kind == "u":
        return
    else:
        neg = _host(v < 0)
    if neg.any():
        pos = int(np.flatnonzero(neg.reshape(-1))[0])
        val = int(_host(v).reshape(-1)[pos])
        raise CryptoValueError(f"exponent exp{_index(v.shape, pos)} = {val} is negative; a negative "
                               "exponent means the modular inverse: pass allow_negative_exp=True for "
                               "that (as pow(b, -e, m) does), or exponents >= 0.")


def _shape(args: list[_Arg]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(tuple(a.value.shape) for a in args)))
    except ValueError:
        shapes = ", ".join(f"{a.name}{tuple(a.value.shape)}" for a in args)
        raise ShapeError(f"operand shapes do not broadcast together: {shapes}; give them shapes that "
                         "NumPy broadcasting accepts (equal, or 1 along the differing axes).") from None


def _bits(x: _Arg) -> int:
    """Bit length of the largest magnitude in ``x`` (placement's size input)."""
    v = x.value
    if v.size == 0:
        return 1
    if x.is_object:
        return max(1, max(abs(int(t)).bit_length() for t in v.flat))
    if v.size == 1:
        return max(1, abs(int(_host(v).reshape(-1)[0])).bit_length())
    lo, hi = int(v.min()), int(v.max())
    return max(1, abs(lo).bit_length(), abs(hi).bit_length())


# ------------------------------------------------------------------------------ dispatch
def _run(op: str, args: list[_Arg], *, device: str, constant_time: bool, allow_negative_exp: bool) -> Any:
    if device not in _DEVICES:
        raise CryptoValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}.")
    shape = _shape(args)
    n = int(np.prod(shape, dtype=np.int64))
    m = args[2]
    _check_modulus(m)
    if op == "modpow" and not allow_negative_exp:
        _negative_exponent(args[1])
    on_gpu = any(a.gpu for a in args)
    obj = any(a.is_object for a in args)
    if op == "modpow":
        exp_bits = _LADDER_EXP_BITS if constant_time and not obj else _bits(args[1])
    else:
        exp_bits = 1
    decision = decide(op, elements=n, bits=_bits(m) if (obj or m.value.size == 1) else 64,
                      exp_bits=exp_bits, on_gpu=on_gpu, device=device)
    all_python = all(a.python for a in args)
    if obj:
        out = _run_object(op, args, shape, decision.device, device, constant_time)
        return out[()] if out.shape == () else out
    backend = _gpu_backend("_mod64_cuda", device) if decision.device == "gpu" else None
    gpu = backend is not None
    if backend is None:
        from noodle.crypto import _mod64_cpu as backend  # noqa: PLC0415 - Numba compiles on first use
    out = _run_64(op, args, shape, n, backend=backend, xp=backend.array_module(), constant_time=constant_time)
    if all_python:
        return int(_host(out).reshape(-1)[0])
    if gpu and not on_gpu:
        out = _host(out)
    elif on_gpu and not gpu:
        from noodle.devices.detect import cupy_module  # noqa: PLC0415 - CuPy inputs came in

        out = cupy_module().asarray(out)
    if out.shape == () and not on_gpu:
        return out[()]
    return out


def _gpu_backend(name: str, device: str) -> Any:
    """The GPU backend module, or None (placement chose the GPU on 'auto' but the backend cannot run:
    the CPU runs instead). An explicit 'gpu' that cannot run raises DeviceUnavailableError."""
    try:
        mod = importlib.import_module(f"noodle.crypto.{name}")
        ok, why = mod.available()
    except ImportError as exc:
        ok, why = False, f"noodle.crypto.{name} cannot be imported ({exc})"
    if ok:
        return mod
    if device in ("gpu", "cuda"):
        raise DeviceUnavailableError(f"the GPU was asked for, but {why}. Use device='auto' or 'cpu', or "
                                     "install the GPU extra on a machine with a CUDA GPU.")
    return None


def _flat(x: Any, shape: tuple[int, ...], xp: Any) -> Any:
    """``x`` as 1-D contiguous: one element (broadcast with stride 0) or all of ``shape``."""
    if x.size == 1:
        return xp.ascontiguousarray(x.reshape(1))
    if tuple(x.shape) != shape:
        x = xp.broadcast_to(x, shape)
    return xp.ascontiguousarray(x).reshape(-1)


def _as_u64(x: Any, xp: Any) -> tuple[Any, bool]:
    """(uint64 bits, signed): int64 bits are read as signed by the kernels, unsigned ones as they are."""
    if x.dtype.kind == "u":
        return (x if x.dtype == _U64 else x.astype(np.uint64)), False
    return (x if x.dtype == _I64 else x.astype(np.int64)).view(np.uint64), True


def _run_64(op: str, args: list[_Arg], shape: tuple[int, ...], n: int, *, backend: Any, xp: Any,
            constant_time: bool) -> Any:
    """The 64-bit path on ``backend`` (_mod64_cpu with NumPy, or _mod64_cuda with CuPy)."""
    values = [_host(a.value) if xp is np else xp.asarray(a.value) for a in args]
    out_dtype = _U64 if any(v.dtype == _U64 for v in values) else _I64
    if n == 0:
        return xp.empty(shape, out_dtype)
    flats = [_flat(v, shape, xp) for v in values]
    x, x_signed = _as_u64(flats[0], xp)
    y, y_signed = _as_u64(flats[1], xp)
    m, _ = _as_u64(flats[2], xp)
    if op == "modmul":
        out = backend.modmul(x, x_signed, y, y_signed, m, n)
    else:
        if y_signed:
            e_signed = flats[1].astype(np.int64, copy=False)
            if bool((e_signed < 0).any()):
                x = _inverted(backend, x, x_signed, e_signed, m, n, shape, flats, xp)
                x_signed = False
                y = xp.where(e_signed < 0, xp.negative(y), y)    # |e| (uint64 wraps: also for -2**63)
        out = backend.modpow(x, x_signed, y, m, n=n, constant_time=constant_time)
    out = out.reshape(shape)
    return out if out_dtype == _U64 else out.view(np.int64)


def _inverted(backend: Any, x: Any, x_signed: bool, e: Any, m: Any, n: int, shape: tuple[int, ...],
              flats: list[Any], xp: Any) -> Any:
    """Bases with the modular inverse where the exponent is negative; CryptoValueError for the first
    element that has none."""
    inv, ok = backend.invert_where_negative(x, x_signed, e, m, n)
    bad = _host(ok == 0)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])

        def at(f: Any) -> int:
            return int(_host(f[pos if f.shape[0] > 1 else 0]))

        b, ev, mv = at(flats[0]), at(flats[1]), at(flats[2])
        raise CryptoValueError(_no_inverse(_index(shape, pos), b, ev, mv))
    return inv


def _no_inverse(where: str, b: int, e: int, m: int) -> str:
    at = f"element {where}: " if where else ""
    return (f"{at}base {b} has no inverse modulo {m} (gcd {math.gcd(b, m)}), so pow({b}, {e}, {m}) "
            "is undefined; give it a base coprime to its modulus, or an exponent >= 0.")


# ------------------------------------------------------------------------------ big integers
def _run_object(op: str, args: list[_Arg], shape: tuple[int, ...], placed: str, device: str,
                constant_time: bool) -> np.ndarray:
    vals = [a.value if a.is_object else _pyints(a.name, _host(a.value)) for a in args]   # objects: checked
    m = np.broadcast_to(vals[2], shape)
    backend = None
    if placed == "gpu":
        backend = _gpu_backend("_bigint_cuda", device)
    if backend is None:
        from noodle.crypto import _bigint_cpu as backend  # noqa: PLC0415
    mm = np.empty(shape, dtype=object)
    mm[...] = m
    x = np.mod(np.broadcast_to(vals[0], shape), mm, out=np.empty(shape, dtype=object))
    if op == "modmul":
        y = np.mod(np.broadcast_to(vals[1], shape), mm, out=np.empty(shape, dtype=object))
        return backend.modmul(x, y, mm)
    e = np.empty(shape, dtype=object)
    e[...] = np.broadcast_to(vals[1], shape)
    neg = np.asarray(np.less(e, 0), dtype=bool) if e.size else np.zeros(shape, bool)
    if neg.any():
        xf, ef, mf = x.reshape(-1), e.reshape(-1), mm.reshape(-1)
        for pos in np.flatnonzero(neg.reshape(-1)).tolist():
            try:
                xf[pos] = pow(xf[pos], -1, mf[pos])
            except ValueError:
                b = int(np.broadcast_to(vals[0], shape).reshape(-1)[pos])
                raise CryptoValueError(_no_inverse(_index(shape, pos), b, ef[pos], mf[pos])) from None
            ef[pos] = -ef[pos]
    return backend.modpow(x, e, mm, constant_time=constant_time)


__all__ = ["modmul", "modpow"]
