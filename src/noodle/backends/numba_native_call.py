"""A C-level entry for a hot, small compiled call: the checks of the fast path and the kernel call in one
machine-code function, with no Python frame or Numba dispatch in between.

Why: a jitted call on 16 elements spent about 2 µs, of which the kernel's work was a tenth. Numba's own
dispatch alone (type-fingerprint each argument, then unbox each array into a fresh ``MemInfo``) costs
0.5 µs for nine arguments, and the Python fast path in front of it (``noodle.jit.fastpath``) another
0.7. This module emits, with Numba's code generator, one function ``fast(args)`` that does what the
Python fast path checks, in the same order of meaning, by reading NumPy's array struct directly:

* the tuple has the traced arity; every array argument is exactly an ``ndarray`` (not a subclass) whose
  dtype object *is* the traced one (NumPy hands out one canonical descriptor per native dtype), of the
  traced rank and shape, C-contiguous and aligned (what Numba's dispatcher checks for a ``[::1]``
  signature); every float parameter is exactly a Python ``float``, passed by value;
* the program's runner is still the one it was built from (a runtime failure drops it, see
  ``ProgramState.runtime_failure``);
* the guards of captured state, called as the Python fast path calls them (``noodle.trace.guards``):
  None is a miss, and the arrays they return are checked like arguments and passed after them; the
  arguments are checked and read again after the guards, which may run Python code;

then allocates the outputs with ``PyArray_Empty`` (what ``np.empty`` calls), calls the very compiled
function the Python path would call for this shape (its native entry, by Numba's calling convention,
arrays passed as views without a ``MemInfo``, as ``numba.carray`` makes them), counts the call, and
returns the outputs. A failed check, a kernel that declines or reports an error, or an allocation
failure returns the ``MISS`` sentinel, and the general path handles the call with its errors: the native
entry can only be faster, never different. Same inputs, same compiled code: the same bits. An exception
raised by the guards or by the metrics flush reaches the caller (the function returns NULL with it set),
as it does on the Python path. (A kernel error whose Numba exception is dynamic would leak its record on
each such call; the generated kernels raise only static ones.)

Trust: the struct offsets of ``PyArrayObject``, ``PyTupleObject`` and ``PyFloatObject`` are public ABI;
:func:`layout_ok` still checks the object header and every offset this module reads against live objects
once per process, and nothing is built where one differs (another Python or NumPy build): the Python
fast path serves.

Example (a hot signature gets its entry from a background thread; the answers never change)::

    >>> import time, types, numpy as np, noodle as nd
    >>> from noodle.backends.numba_native_call import layout_ok
    >>> from noodle.jit.fastpath import NATIVE_AFTER
    >>> f = nd.jit(lambda x, a: x * a + 1.0)
    >>> x = np.arange(4.0)
    >>> _ = f.compile(x, 2.0)
    >>> for _ in range(NATIVE_AFTER + 256):
    ...     _ = f(x, 2.0)
    >>> for _ in range(400):          # wait for the build (about 25 ms)
    ...     if isinstance(f._fast, types.BuiltinFunctionType):
    ...         break
    ...     time.sleep(0.05)
    >>> isinstance(f._fast, types.BuiltinFunctionType) == layout_ok()
    True
    >>> f(x, 2.0), f(x, 0.5)
    (array([1., 3., 5., 7.]), array([1. , 1.5, 2. , 2.5]))
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from noodle.config import env_flag

#: NumPy's array flags the kernels' ``[::1]`` signatures need
_C_CONTIGUOUS = 0x1
_ALIGNED = 0x100

# byte offsets on a 64-bit CPython (checked by layout_ok)
_OB_TYPE = 8
_TUPLE_SIZE = 16
_TUPLE_ITEMS = 24
_ARR_DATA = 16
_ARR_ND = 24
_ARR_DIMS = 32
_ARR_STRIDES = 40
_ARR_DESCR = 56
_ARR_FLAGS = 64
_FLOAT_VALUE = 16

#: index of ``PyArray_Empty`` in NumPy's C-API table (``__multiarray_api.h``, NumPy 1.x and 2.x)
_PYARRAY_EMPTY = 184

_lock = threading.Lock()
_layout: bool | None = None
_RUNNER = "runner"   # the attribute name the native entry looks up (this exact str object)
_serial = itertools.count()   # one symbol name per built entry: the JIT's symbols share one namespace


def native_entries() -> bool:
    """Whether hot small calls may get a native entry: ``NOODLE_NATIVE_CALLS`` (a boolean, default 1;
    0 keeps every call on the Python fast path), read on every decision so a test can switch it."""
    return env_flag("NOODLE_NATIVE_CALLS", "1 (native entries for hot small calls, the default) or 0 (the "
                    "Python fast path only)")


def _read_ptr(addr: int) -> int:
    return ctypes.c_void_p.from_address(addr).value or 0


def _plain_object_header() -> bool:
    """A 64-bit CPython whose object header is refcount + type (16 bytes): not free-threaded (its header
    has a thread id and a shared refcount), not a trace-refs build (two more pointers)."""
    import sys
    import sysconfig

    return (ctypes.sizeof(ctypes.c_void_p) == 8 and not sysconfig.get_config_var("Py_GIL_DISABLED")
            and not hasattr(sys, "getobjects") and object.__basicsize__ == 16 and tuple.__basicsize__ == 24
            and tuple.__itemsize__ == 8)


_PROBE_FLOAT = float("-1.2345678901234567e-300")


def _check_layout() -> bool:
    """Each offset read checked against a live object, in an order where nothing is dereferenced
    before the fields that locate it are confirmed (a wrong guess ends the check, never the process)."""
    if not _plain_object_header():
        return False
    a = np.arange(6.0)[::2].copy()   # a fresh C-contiguous array: known data, shape, strides, flags
    v = a[::2]                       # and a non-contiguous view of it
    t = (a, v)
    base = id(a)
    checks = [
        lambda: ctypes.c_ssize_t.from_address(id(t) + _TUPLE_SIZE).value == 2,
        lambda: _read_ptr(id(t) + _TUPLE_ITEMS) == id(a) and _read_ptr(id(t) + _TUPLE_ITEMS + 8) == id(v),
        lambda: _read_ptr(base + _OB_TYPE) == id(np.ndarray) == _read_ptr(id(v) + _OB_TYPE),
        lambda: _read_ptr(base + _ARR_DATA) == a.ctypes.data and _read_ptr(id(v) + _ARR_DATA) == v.ctypes.data,
        lambda: ctypes.c_int.from_address(base + _ARR_ND).value == 1,
        lambda: _read_ptr(base + _ARR_DESCR) == id(a.dtype) == id(np.dtype(np.float64)),
        # data (16), nd (24) and descr (56) confirmed: the struct is NumPy's, so the dimensions and
        # strides pointers between them (32, 40) are what they must be, and only now dereferenced
        lambda: ctypes.c_int64.from_address(_read_ptr(base + _ARR_DIMS)).value == 3,
        lambda: ctypes.c_int64.from_address(_read_ptr(base + _ARR_STRIDES)).value == 8,
        lambda: ctypes.c_int64.from_address(_read_ptr(id(v) + _ARR_STRIDES)).value == 16,
        lambda: (ctypes.c_int.from_address(base + _ARR_FLAGS).value & (_C_CONTIGUOUS | _ALIGNED)
                 == _C_CONTIGUOUS | _ALIGNED),
        lambda: ctypes.c_int.from_address(id(v) + _ARR_FLAGS).value & _C_CONTIGUOUS == 0,
        lambda: ctypes.c_double.from_address(id(_PROBE_FLOAT) + _FLOAT_VALUE).value == _PROBE_FLOAT,
    ]
    if not all(check() for check in checks):   # in order: the first that fails ends it
        return False
    try:   # PyArray_Empty at its index: an empty (3,) float32 array
        fn = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_int, ctypes.POINTER(ctypes.c_ssize_t), ctypes.py_object,
                               ctypes.c_int)(_array_api(_PYARRAY_EMPTY))
        d = np.dtype(np.float32)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(d))   # PyArray_Empty steals a reference
        out = fn(1, (ctypes.c_ssize_t * 1)(3), d, 0)
        return type(out) is np.ndarray and out.shape == (3,) and out.dtype == d and out.flags.c_contiguous
    except Exception:  # noqa: BLE001 - any surprise means: no native entries in this process
        return False


def layout_ok() -> bool:
    """True when this process's CPython and NumPy lay out arrays and tuples as this module reads them."""
    global _layout
    if _layout is None:
        with _lock:
            if _layout is None:
                _layout = _check_layout()
    return _layout


def _array_api(index: int) -> int:
    """The address of entry ``index`` of NumPy's C-API table."""
    from numpy._core import _multiarray_umath as mu

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = get(mu._ARRAY_API, None)
    return _read_ptr(table + 8 * index)


def _py_api(name: str) -> int:
    return ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value or 0


@dataclass(frozen=True)
class NativeTarget:
    """What a kernel's compiled function takes for one fixed shape, in its argument order: ``("int", v)``
    a constant integer, ``("const", array)`` a constant 1-D array (kept alive by ``keep``),
    ``("in", k)`` jitted argument ``k`` (an array), ``("scalar", k)`` jitted argument ``k`` as a float64
    value, ``("out", j)`` fresh output ``j``. ``returns_ok``: the function
    returns False when it declines (sizes it does not take)."""

    dispatcher: Any
    args: tuple[tuple[str, Any], ...]
    out_dtypes: tuple[np.dtype, ...]
    out_shape: tuple[int, ...]
    returns_ok: bool
    keep: tuple[Any, ...] = ()


@dataclass(frozen=True)
class InputSpec:
    """One jitted argument as the native entry checks it: a 1-D array of this shape and dtype, or
    (``python_float``) an exact Python ``float`` parameter, passed to the kernel as a float64 scalar."""

    shape: tuple[int, ...]
    dtype: np.dtype
    python_float: bool = False


class NativeCall:
    """What a built entry's code points to (constants by address, the compiled library, its method
    definition): the builtin function holds it as its ``self``, so it lives exactly as long."""

    def __init__(self, keep: tuple[Any, ...], library: Any) -> None:
        self._keep = keep
        self._library = library
        self._method_def: Any = None


#: native entries built per process at most: each one's machine code stays in Numba's JIT engine
#: for the life of the process (about 0.2 MiB); past this, hot calls keep the Python fast path
MAX_NATIVE_ENTRIES = 256
_built = 0


def build_native_call(target: NativeTarget, inputs: Sequence[InputSpec], *, single_output: bool, miss: Any,
                      counter: np.ndarray, owner: Any, runner: Any, flush: Any, check: Any = None,
                      n_args: int | None = None) -> Any:
    """The native entry (a builtin function) for ``target`` called with arguments like ``inputs``; None where
    this module cannot build one exactly (a layout it does not know, an argument type the target's signature
    does not match), or past :data:`MAX_NATIVE_ENTRIES`.

    It runs only while ``owner.runner is runner`` (checked in ``owner``'s instance dict on every call: a
    runner dropped after a failure, or replaced, sends calls back to the general path); it adds its calls
    to ``counter[0]`` and calls ``flush()`` every 256th.

    ``check``: the guards of captured state (``noodle.trace.guards``), called with the argument tuple on
    every call, after the arguments' checks, as the Python fast path calls them: None means something
    changed (``MISS``), an exception reaches the caller, and otherwise its tuple of implicit arrays is
    checked like the arguments and passed after them. The first ``n_args`` of ``inputs`` are arguments,
    the rest those implicit arrays."""
    if not layout_ok():
        return None
    disp = target.dispatcher
    if len(getattr(disp, "signatures", ())) != 1:
        return None
    from numba.core import types

    sig = disp.signatures[0]
    argtys = list(sig)
    if len(argtys) != len(target.args):
        return None
    for (kind, v), ty in zip(target.args, argtys, strict=True):
        if kind == "int":
            if ty != types.int64:
                return None
        elif kind == "scalar":
            if ty != types.float64 or not inputs[v].python_float:
                return None
        else:
            if not (isinstance(ty, types.Array) and ty.ndim == 1 and ty.layout == "C"):
                return None
            if kind == "in":
                spec = inputs[v]
                if spec.python_float or len(spec.shape) != 1 or np.dtype(ty.dtype.name) != spec.dtype:
                    return None
            elif kind == "out":
                if np.dtype(ty.dtype.name) != target.out_dtypes[v] or len(target.out_shape) != 1:
                    return None
            elif not (isinstance(v, np.ndarray) and v.ndim == 1 and v.flags.c_contiguous
                      and np.dtype(ty.dtype.name) == v.dtype):
                return None
    if n_args is not None and check is None and n_args != len(inputs):
        return None   # implicit arrays come only from a check
    if any(spec.python_float for spec in inputs[len(inputs) if n_args is None else n_args:]):
        return None
    passed = {v for kind, v in target.args if kind in ("in", "scalar")}
    if passed != set(range(len(inputs))):
        return None   # every argument goes to the kernel exactly as the runner passes it
    for spec in inputs:
        if spec.python_float:
            continue
        if len(spec.shape) != 1 or spec.dtype.isbuiltin != 1 or spec.dtype is not np.dtype(spec.dtype.char):
            return None   # only the canonical native descriptors are checked by identity
    if target.returns_ok and sig_return(disp) != types.boolean:
        return None
    if not target.returns_ok and sig_return(disp) != types.none:
        return None
    if any(d is not np.dtype(d.char) for d in target.out_dtypes):
        return None
    global _built
    with _lock:
        if _built >= MAX_NATIVE_ENTRIES:
            return None
        _built += 1
        return _emit(target, list(inputs), single_output=single_output, miss=miss, counter=counter,
                     owner_dict=vars(owner), runner=runner, flush=flush, check=check,
                     n_args=len(inputs) if n_args is None else n_args)


def sig_return(disp: Any) -> Any:
    """The return type of a dispatcher's one compiled signature."""
    return disp.overloads[disp.signatures[0]].signature.return_type


def _emit(target: NativeTarget, inputs: list[InputSpec], *, single_output: bool, miss: Any, counter: np.ndarray,
          owner_dict: dict, runner: Any, flush: Any, check: Any, n_args: int) -> Any:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    from numba.np.arrayobj import make_array, populate_array

    ctx = cpu_target.target_context
    disp = target.dispatcher
    cres = disp.overloads[disp.signatures[0]]
    sig = cres.signature
    callee_name = cres.fndesc.llvm_func_name
    callee_addr = cres.library.get_pointer_to_function(callee_name)
    if not callee_addr:
        return None

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    ptr = i8.as_pointer()
    keep: list[Any] = [miss, counter, owner_dict, runner, flush, check, target, *target.keep, *(spec.dtype for spec in inputs),
                       *target.out_dtypes]
    out_shape_arr = np.array(target.out_shape, np.int64)
    keep.append(out_shape_arr)

    with global_compiler_lock:
        codegen = ctx.codegen()
        library = codegen.create_library(f"noodle_native_{callee_name[-24:]}")
        module = library.create_ir_module("noodle_native")
        fnty = ir.FunctionType(ptr, [ptr, ptr])
        fn = ir.Function(module, fnty, name=f"noodle_native_call_{next(_serial)}")
        fn.linkage = "external"
        # the kernel's function, called through its address by an internal thunk LLVM inlines (no
        # symbol lookup: the address is the function the dispatcher itself would run)
        callee_ty = ctx.call_conv.get_function_type(sig.return_type, sig.args)
        callee = ir.Function(module, callee_ty, name=f"{fn.name}_kernel")
        callee.linkage = "internal"
        tb = ir.IRBuilder(callee.append_basic_block("entry"))
        tb.ret(tb.call(tb.inttoptr(ir.Constant(i64, callee_addr), callee_ty.as_pointer()), callee.args))
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        miss_block = fn.append_basic_block("miss")
        _self, args = fn.args

        def const_ptr(addr: int) -> Any:
            return ir.Constant(i64, addr).inttoptr(ptr)

        def field(obj: Any, offset: int, ty: Any) -> Any:
            p = b.gep(obj, [ir.Constant(i64, offset)], inbounds=True)
            return b.load(b.bitcast(p, ty.as_pointer()))

        def call_addr(addr: int, ret: Any, params: list[Any], values: list[Any]) -> Any:
            f = b.inttoptr(ir.Constant(i64, addr), ir.FunctionType(ret, params).as_pointer())
            return b.call(f, values)

        def fail_unless(cond: Any) -> None:
            ok = fn.append_basic_block("ok")
            b.cbranch(cond, ok, miss_block)
            b.position_at_end(ok)

        incref = _py_api("Py_IncRef")
        decref = _py_api("Py_DecRef")
        # what a failure after the first new reference must drop (Py_DecRef takes NULL)
        fail_block = fn.append_basic_block("fail")
        n_outs = len(target.out_dtypes)
        out_slots = cgutils.alloca_once(b, ptr, size=max(n_outs, 1))
        for j in range(n_outs):
            b.store(ir.Constant(ptr, None), b.gep(out_slots, [ir.Constant(i32, j)]))
        imp_slot = cgutils.alloca_once(b, ptr)
        b.store(ir.Constant(ptr, None), imp_slot)

        fail_unless(b.icmp_signed("==", field(args, _TUPLE_SIZE, i64), ir.Constant(i64, n_args)))
        # still the runner it was built from: owner.__dict__["runner"] (a failure sets it to None)
        now = call_addr(_py_api("PyDict_GetItem"), ptr, [ptr, ptr],
                        [const_ptr(id(owner_dict)), const_ptr(id(_RUNNER))])
        fail_unless(b.icmp_unsigned("==", now, const_ptr(id(runner))))
        arrays: list[Any] = []
        scalars: dict[int, Any] = {}

        def take_array(a: Any, spec: InputSpec, miss_to: Any) -> None:
            def need(cond: Any) -> None:
                ok = fn.append_basic_block("ok")
                b.cbranch(cond, ok, miss_to)
                b.position_at_end(ok)
            need(b.icmp_unsigned("==", field(a, _OB_TYPE, ptr), const_ptr(id(np.ndarray))))
            need(b.icmp_unsigned("==", field(a, _ARR_DESCR, ptr), const_ptr(id(spec.dtype))))
            need(b.icmp_signed("==", field(a, _ARR_ND, i32), ir.Constant(i32, 1)))
            dims = field(a, _ARR_DIMS, i64.as_pointer())
            need(b.icmp_signed("==", b.load(dims), ir.Constant(i64, spec.shape[0])))
            flags = field(a, _ARR_FLAGS, i32)
            want = ir.Constant(i32, _C_CONTIGUOUS | _ALIGNED)
            need(b.icmp_signed("==", b.and_(flags, want), want))
            stride = b.load(field(a, _ARR_STRIDES, i64.as_pointer()))
            arrays.append((field(a, _ARR_DATA, ptr), ir.Constant(i64, spec.shape[0]), stride))

        def take_args(miss_to: Any) -> None:
            arrays.clear()
            for k, spec in enumerate(inputs[:n_args]):
                a = field(args, _TUPLE_ITEMS + 8 * k, ptr)
                if spec.python_float:   # exactly a float (not a subclass, not a bool or an int): its value
                    ok = fn.append_basic_block("ok")
                    b.cbranch(b.icmp_unsigned("==", field(a, _OB_TYPE, ptr), const_ptr(id(float))), ok, miss_to)
                    b.position_at_end(ok)
                    scalars[k] = field(a, _FLOAT_VALUE, ir.DoubleType())
                    arrays.append(None)
                    continue
                take_array(a, spec, miss_to)

        take_args(miss_block)
        if check is not None:
            # the guards, as the Python fast path calls them: a raise reaches the caller, None misses
            imp = call_addr(_py_api("PyObject_CallOneArg"), ptr, [ptr, ptr], [const_ptr(id(check)), args])
            called = fn.append_basic_block("checked")
            raised = fn.append_basic_block("check_raised")
            b.cbranch(b.icmp_unsigned("==", imp, ir.Constant(ptr, None)), raised, called)
            b.position_at_end(raised)
            b.ret(ir.Constant(ptr, None))
            b.position_at_end(called)
            b.store(imp, imp_slot)
            n_imp = len(inputs) - n_args

            def need_imp(cond: Any) -> None:
                ok = fn.append_basic_block("ok")
                b.cbranch(cond, ok, fail_block)
                b.position_at_end(ok)
            need_imp(b.icmp_unsigned("==", field(imp, _OB_TYPE, ptr), const_ptr(id(tuple))))   # (None: a miss)
            need_imp(b.icmp_signed("==", field(imp, _TUPLE_SIZE, i64), ir.Constant(i64, n_imp)))
            # the guards may run Python code (a property) that changes an argument array: its fields
            # are checked and read again after them, and only those reads reach the kernel
            take_args(fail_block)
            for k, spec in enumerate(inputs[n_args:]):
                take_array(field(imp, _TUPLE_ITEMS + 8 * k, ptr), spec, fail_block)

        # the outputs: PyArray_Empty(1, shape, descr, 0), which steals a reference to descr
        empty = _array_api(_PYARRAY_EMPTY)
        shape_ptr = b.inttoptr(ir.Constant(i64, out_shape_arr.ctypes.data), i64.as_pointer())
        outs: list[Any] = []
        for j, d in enumerate(target.out_dtypes):
            call_addr(incref, ir.VoidType(), [ptr], [const_ptr(id(d))])
            o = call_addr(empty, ptr, [i32, i64.as_pointer(), ptr, i32],
                          [ir.Constant(i32, 1), shape_ptr, const_ptr(id(d)), ir.Constant(i32, 0)])
            made = fn.append_basic_block("made")
            b.cbranch(b.icmp_unsigned("==", o, ir.Constant(ptr, None)), fail_block, made)
            b.position_at_end(made)
            b.store(o, b.gep(out_slots, [ir.Constant(i32, j)]))
            outs.append(o)

        values = []
        for (kind, v), ty in zip(target.args, sig.args, strict=True):
            if kind == "int":
                values.append(ir.Constant(i64, int(v)))
                continue
            if kind == "scalar":
                values.append(scalars[v])
                continue
            if kind == "in":
                data, size, stride = arrays[v]
            elif kind == "out":
                data = field(outs[v], _ARR_DATA, ptr)
                size = ir.Constant(i64, target.out_shape[0])
                stride = ir.Constant(i64, target.out_dtypes[v].itemsize)
            else:
                data = const_ptr(v.ctypes.data)
                size, stride = ir.Constant(i64, v.shape[0]), ir.Constant(i64, v.strides[0])
            ary = make_array(ty)(ctx, b)
            populate_array(ary, data=b.bitcast(data, ary.data.type), shape=[size], strides=[stride],
                           itemsize=ir.Constant(i64, ctx.get_abi_sizeof(ctx.get_data_type(ty.dtype))),
                           meminfo=None)
            values.append(ary._getvalue())
        status, ret = ctx.call_conv.call_function(b, callee, sig.return_type, sig.args, values)
        ran = fn.append_basic_block("ran")
        b.cbranch(status.is_ok, ran, fail_block)
        b.position_at_end(ran)
        if target.returns_ok:
            fail_unless_block = fn.append_basic_block("accepted")
            b.cbranch(b.icmp_unsigned("!=", ret, ir.Constant(ret.type, 0)), fail_unless_block, fail_block)
            b.position_at_end(fail_unless_block)

        # the result: the output, or a tuple of them (PyTuple_SetItem steals each reference)
        if single_output and n_outs == 1:
            result = outs[0]
        else:
            result = call_addr(_py_api("PyTuple_New"), ptr, [i64], [ir.Constant(i64, n_outs)])
            have = fn.append_basic_block("tuple")
            b.cbranch(b.icmp_unsigned("==", result, ir.Constant(ptr, None)), fail_block, have)
            b.position_at_end(have)
            for j, o in enumerate(outs):
                call_addr(_py_api("PyTuple_SetItem"), i32, [ptr, i64, ptr], [result, ir.Constant(i64, j), o])
        # count the call; every 256th publishes to the metrics registry (as the Python fast path does),
        # and what that raises (a KeyboardInterrupt delivered there) reaches the caller, as it would there
        cptr = b.inttoptr(ir.Constant(i64, counter.ctypes.data), i64.as_pointer())
        c = b.add(b.load(cptr), ir.Constant(i64, 1))
        b.store(c, cptr)
        publish = fn.append_basic_block("publish")
        done = fn.append_basic_block("done")
        b.cbranch(b.icmp_signed("==", b.and_(c, ir.Constant(i64, 255)), ir.Constant(i64, 0)), publish, done)
        b.position_at_end(publish)
        r = call_addr(_py_api("PyObject_CallNoArgs"), ptr, [ptr], [const_ptr(id(flush))])
        raised = fn.append_basic_block("raised")
        got = fn.append_basic_block("got")
        b.cbranch(b.icmp_unsigned("==", r, ir.Constant(ptr, None)), raised, got)
        b.position_at_end(raised)
        call_addr(decref, ir.VoidType(), [ptr], [result])
        call_addr(decref, ir.VoidType(), [ptr], [b.load(imp_slot)])
        b.ret(ir.Constant(ptr, None))
        b.position_at_end(got)
        call_addr(decref, ir.VoidType(), [ptr], [r])
        b.branch(done)
        b.position_at_end(done)
        call_addr(decref, ir.VoidType(), [ptr], [b.load(imp_slot)])
        b.ret(result)

        # a failure after allocation: drop the outputs (Py_DecRef takes NULL), then miss
        b.position_at_end(fail_block)
        for j in range(n_outs):
            call_addr(decref, ir.VoidType(), [ptr], [b.load(b.gep(out_slots, [ir.Constant(i32, j)]))])
        call_addr(decref, ir.VoidType(), [ptr], [b.load(imp_slot)])
        call_addr(_py_api("PyErr_Clear"), ir.VoidType(), [], [])   # PyArray_Empty's MemoryError, if any
        b.branch(miss_block)
        b.position_at_end(miss_block)
        call_addr(incref, ir.VoidType(), [ptr], [const_ptr(id(miss))])
        b.ret(const_ptr(id(miss)))

        library.add_ir_module(module)
        library.finalize()
        addr = library.get_pointer_to_function(fn.name)
    if not addr:
        return None
    return _as_builtin(addr, fn.name, NativeCall(tuple(keep), library))


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


_METH_O = 0x0008


def _as_builtin(addr: int, name: str, owner: Any) -> Any:
    """A Python builtin function (METH_O) calling the machine code at ``addr``, holding ``owner`` (its
    ``self``, unused by the code) so what the code points to lives as long as the function."""
    raw = name.encode()
    d = _MethodDef(raw, addr, _METH_O, None)
    owner._method_def = (d, raw)   # the function reads its PyMethodDef on every call: owned with it
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]
    return new(ctypes.addressof(d), owner, None)


__all__ = ["MAX_NATIVE_ENTRIES", "InputSpec", "NativeCall", "NativeTarget", "build_native_call", "layout_ok",
           "native_entries"]
