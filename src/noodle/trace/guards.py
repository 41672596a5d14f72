"""Guards: a traced program stays valid only while what it captured is unchanged.

Why (the rule, as the README states it): JAX and Numba freeze the globals a function reads at
its first compile; noodle does what torch.compile does instead. Before tracing, every read from
outside the arguments is found in the bytecode (:mod:`noodle.trace.capture`), then:

* a captured **array** (a global, a closure cell, a default, an attribute such as ``self.w``)
  becomes an *implicit input* of the program, read again at every call: in-place changes and
  rebinding are both seen. Globals and cells holding arrays are replaced by traced values while
  tracing, so NumPy code on them (``W.T``, ``np.sum(W)``) is traced too;
* a captured **scalar, string, tuple** is checked by value at every call, a **helper function**
  or **object** by identity (and an object's or container's items by identity); any change
  retraces. Library modules and their functions (``np``, ``math``, ``nd``) are not checked;
* a captured array that the function only used through NumPy outside traced ops (an attribute's
  ``.sum()`` computed before any traced value is involved), and a constant array that is still
  referenced from outside, are checked by content on every call: correct, but O(size) per call,
  so noodle logs a hint to pass them as arguments.

The checks for one traced program are generated as one small Python function, so a call pays
one function call plus one comparison per captured value (none at all for a function that
captures nothing but library modules).
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from noodle.trace.capture import MISSING, Chain, find_chains, impure_error, is_impure, is_trusted
from noodle.trace.tracer import native_byte_order

log = logging.getLogger("noodle.jit")

_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.generic)
_SHALLOW_MAX = 32     # items of a captured container/object checked one by one
_MAX_DEPTH = 8        # helper functions followed this deep


def _is_value(v: Any) -> bool:
    if isinstance(v, _SCALARS):
        return True
    if isinstance(v, tuple | frozenset):
        return len(v) <= _SHALLOW_MAX and all(_is_value(x) for x in v)
    return False


def _is_array(v: Any) -> bool:
    return isinstance(v, np.ndarray) or (hasattr(v, "__cuda_array_interface__") and hasattr(v, "dtype"))


@dataclass
class _Item:
    chain: Chain
    value: Any
    proxied: bool = False   # read through a proxy: its attributes are guarded one by one


def _proxyable(v: Any) -> bool:
    """A user object or class whose attributes the function may read (``self.w``, ``Cfg.scale``):
    it is traced through an :class:`_AttrProxy` so each attribute read is seen and guarded."""
    if v is MISSING or _is_array(v) or _is_value(v) or is_trusted(v):
        return False
    if isinstance(v, types.ModuleType | types.FunctionType | types.BuiltinFunctionType | types.MethodType
                  | dict | list | set | frozenset | tuple):
        return False
    return isinstance(v, type) or hasattr(v, "__dict__")


class _AttrProxy:
    """Stands in for a captured object while tracing: attribute reads return traced values for
    arrays (implicit inputs), proxies for nested objects, methods bound to the proxy, and record
    a guard for everything else; writes are refused (a side effect the program would not repeat)."""

    __slots__ = ("_capture", "_chain", "_ctx", "_real")

    def __init__(self, capture: Capture, ctx: Any, chain: Chain, real: Any) -> None:
        object.__setattr__(self, "_capture", capture)
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_chain", chain)
        object.__setattr__(self, "_real", real)

    @property  # type: ignore[misc]
    def __class__(self) -> type:   # isinstance(proxy, Layer) holds as for the real object
        return type(object.__getattribute__(self, "_real"))

    def __getattr__(self, name: str) -> Any:
        real = object.__getattribute__(self, "_real")
        chain = object.__getattribute__(self, "_chain")
        capture = object.__getattribute__(self, "_capture")
        ctx = object.__getattribute__(self, "_ctx")
        value = getattr(real, name)
        sub = Chain(chain.kind, chain.name, (*chain.attrs, name), chain.scope, chain.index, chain.where)
        return capture.traced_value(ctx, sub, value)

    def __setattr__(self, name: str, value: Any) -> None:
        from noodle.errors import TraceError

        chain = object.__getattribute__(self, "_chain")
        raise TraceError(f"a jitted function sets the attribute {chain.label}.{name} (first read at "
                         f"{chain.where}): that side effect would happen once, at trace time, not on every "
                         "call. Return the value instead.")

    __delattr__ = __setattr__  # type: ignore[assignment]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return object.__getattribute__(self, "_real")(*args, **kwargs)

    def __instancecheck__(self, obj: Any) -> bool:   # isinstance(x, ProxiedClass)
        real = object.__getattribute__(self, "_real")
        if isinstance(obj, _AttrProxy):
            obj = object.__getattribute__(obj, "_real")
        return isinstance(real, type) and isinstance(obj, real)

    def __subclasscheck__(self, cls: Any) -> bool:
        real = object.__getattribute__(self, "_real")
        return isinstance(real, type) and issubclass(cls, real)

    def __repr__(self) -> str:
        return f"<traced {object.__getattribute__(self, '_real')!r}>"


class Capture:
    """What ``fn`` reads from outside its arguments, for one trace.

    ``bind`` gives the function to trace (captured globals and cells replaced by traced
    values); ``guard`` (after the trace) gives the per-call check.
    """

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], kinds: Sequence[str]) -> None:
        self.fn = fn
        self.args = tuple(args)
        self.kinds = list(kinds)
        self.items: list[_Item] = []
        self._helpers: dict[int, Callable[..., Any]] = {}   # id -> user function read by the trace
        self._scan(fn, top=True, depth=0)
        self.implicit: list[_Item] = []

    # ---- finding what is read
    def _scan(self, fn: Callable[..., Any], top: bool, depth: int) -> None:
        if id(fn) in self._helpers:
            return
        self._helpers[id(fn)] = fn
        for chain in find_chains(fn):
            if chain.kind == "arg":
                if not top or self.kinds[chain.index] != "static" or not chain.attrs:
                    continue   # traced arguments are no captured state; a static one is in the key
            value = chain.resolve(self.args)
            if is_impure(value):
                raise impure_error(fn, chain, value)
            if chain.attrs:
                root = Chain(chain.kind, chain.name, (), chain.scope, chain.index, chain.where)
                if _is_array(root.resolve(self.args)):
                    chain, value = root, root.resolve(self.args)   # W.T, W.sum: the root is traced
            self.items.append(_Item(chain, value))
            self._follow(value, depth)
        if not top and fn.__defaults__:
            for k, value in enumerate(fn.__defaults__):
                chain = Chain("default", f"{fn.__qualname__}.__defaults__[{k}]", (), fn, k,
                              f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}")
                self.items.append(_Item(chain, value))

    def _follow(self, value: Any, depth: int) -> None:
        """Scan a helper the function calls (user code only), so its captured state is guarded too."""
        if depth >= _MAX_DEPTH or is_trusted(value):
            return
        inner = getattr(value, "fn", None)   # a JitFunction called from a jitted function
        if isinstance(inner, types.FunctionType) and type(value).__name__ == "JitFunction":
            value = inner
        if isinstance(value, types.MethodType) and isinstance(value.__func__, types.FunctionType):
            value = value.__func__
        if isinstance(value, types.FunctionType):
            self._scan(value, top=False, depth=depth + 1)

    def traced_value(self, ctx: Any, chain: Chain, value: Any) -> Any:
        """What a traced read of ``chain`` (an attribute through a proxy) returns, with its guard."""
        self.items.append(_Item(chain, value, proxied=_proxyable(value)))
        if _is_array(value):
            make = ctx.captured.get(id(value))
            if make is None:
                make = ctx.captured[id(value)] = self._factory(ctx, self.items[-1])
            return make()
        if _proxyable(value):
            return _AttrProxy(self, ctx, chain, value)
        if isinstance(value, types.MethodType):
            owner = value.__self__
            if isinstance(value.__func__, types.FunctionType) and not is_trusted(value.__func__):
                parent = Chain(chain.kind, chain.name, chain.attrs[:-1], chain.scope, chain.index, chain.where)
                self._follow(value.__func__, 0)
                func = self._substituted(value.__func__, ctx, self._memo, self._globs)
                return types.MethodType(func, _AttrProxy(self, ctx, parent, owner))
        if isinstance(value, types.FunctionType) and not is_trusted(value):
            self._follow(value, 0)
            return self._substituted(value, ctx, self._memo, self._globs)
        return value

    def _factory(self, ctx: Any, item: _Item) -> Callable[[], Any]:
        from noodle.trace.tracer import Tracer, check_array_type

        made = self._made

        def make() -> Tracer:
            t = made.get(id(item.value))
            if t is None:
                v = item.value
                check_array_type(v, f"the captured {item.chain.label} (read at {item.chain.where})")
                t = Tracer(ctx, ctx.builder.input(ctx.builder.n_inputs, tuple(v.shape), np.dtype(v.dtype).name))
                made[id(item.value)] = t
                self.implicit.append(item)
            return t
        return make

    # ---- tracing with captured arrays as implicit inputs
    def bind(self, ctx: Any, n_explicit: int, call_args: list[Any]) -> Callable[..., Any]:
        """Register captured arrays with ``ctx``; return ``fn`` with array globals/cells traced
        and captured objects (static arguments included, in ``call_args``) behind proxies."""
        from noodle.trace.tracer import Tracer

        made: dict[int, Tracer] = {}
        self._made = made
        self._memo: dict[int, Any] = {}
        self._globs: dict[int, dict[str, Any]] = {}
        for i, kind in enumerate(self.kinds):
            if kind == "static" and _proxyable(call_args[i]):
                chain = Chain("arg", f"argument {i}", (), None, i, f"{self.fn.__code__.co_filename}")
                self.items.append(_Item(chain, call_args[i], proxied=True))
                call_args[i] = _AttrProxy(self, ctx, chain, call_args[i])

        ctx.builder.n_inputs = max(ctx.builder.n_inputs, n_explicit)
        for item in list(self.items):
            if _is_array(item.value) and id(item.value) not in ctx.captured:
                ctx.captured[id(item.value)] = self._factory(ctx, item)
        return self._substituted(self.fn, ctx, self._memo, self._globs)

    def _substituted(self, fn: Callable[..., Any], ctx: Any, memo: dict[int, Any],
                     globs: dict[int, dict[str, Any]]) -> Callable[..., Any]:
        """``fn`` with its globals, cells and defaults that hold arrays or helpers swapped for
        traced values and substituted helpers (a copy: the user's function is untouched)."""
        if id(fn) in memo:
            return memo[id(fn)]
        code = fn.__code__
        swaps = self._swaps_for(fn, ctx)
        if not any(swaps.values()):
            memo[id(fn)] = fn
            return fn
        g = fn.__globals__
        new_g = globs.get(id(g))
        if new_g is None:
            new_g = globs[id(g)] = dict(g)
        closure = fn.__closure__
        if swaps["cells"]:
            closure = tuple(types.CellType(swaps["cells"][name]) if name in swaps["cells"] else cell
                            for name, cell in zip(code.co_freevars, closure or (), strict=True))
        defaults = fn.__defaults__
        if swaps["defaults"]:
            defaults = tuple(swaps["defaults"].get(k, v) for k, v in enumerate(defaults or ()))
        clone = types.FunctionType(code, new_g, fn.__name__, defaults, closure)
        clone.__kwdefaults__ = fn.__kwdefaults__
        memo[id(fn)] = clone
        for name, value in swaps["globals"].items():
            new_g[name] = value
        for name, helper in swaps["global_helpers"].items():
            new_g[name] = self._substituted(helper, ctx, memo, globs)
        if swaps["cell_helpers"]:
            cells = dict(zip(code.co_freevars, clone.__closure__ or (), strict=True))
            for name, helper in swaps["cell_helpers"].items():
                cells[name].cell_contents = self._substituted(helper, ctx, memo, globs)
        return clone

    def _swaps_for(self, fn: Callable[..., Any], ctx: Any) -> dict[str, dict[Any, Any]]:
        out: dict[str, dict[Any, Any]] = {"globals": {}, "cells": {}, "defaults": {},
                                          "global_helpers": {}, "cell_helpers": {}}
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
        for item in list(self.items):
            c = item.chain
            v = item.value
            if c.attrs and c.kind in ("global", "cell"):
                root = Chain(c.kind, c.name, (), c.scope, c.index, c.where)
                rv = root.resolve()
                if _proxyable(rv) and ((c.kind == "global" and c.scope is fn.__globals__)
                                       or (c.kind == "cell" and cells.get(c.name) is c.scope)):
                    self.items.append(_Item(root, rv, proxied=True))
                    out["globals" if c.kind == "global" else "cells"][c.name] = _AttrProxy(self, ctx, root, rv)
                continue
            if c.attrs:
                continue
            owned = ((c.kind == "global" and c.scope is fn.__globals__ and c.name in fn.__code__.co_names)
                     or (c.kind == "cell" and cells.get(c.name) is c.scope)
                     or (c.kind == "default" and c.scope is fn))
            if not owned:
                continue
            if _proxyable(v) and c.kind in ("global", "cell"):
                item.proxied = True
                out["globals" if c.kind == "global" else "cells"][c.name] = _AttrProxy(self, ctx, c, v)
                continue
            if _is_array(v):
                tracer = ctx.captured[id(v)]()
                if c.kind == "global":
                    out["globals"][c.name] = tracer
                elif c.kind == "cell":
                    out["cells"][c.name] = tracer
                else:
                    out["defaults"][c.index] = tracer
            elif isinstance(v, types.FunctionType) and id(v) in self._helpers and not is_trusted(v):
                if c.kind == "global":
                    out["global_helpers"][c.name] = v
                elif c.kind == "cell":
                    out["cells"][c.name] = None      # placeholder, filled in after the clone exists
                    out["cell_helpers"][c.name] = v
        return out

    # ---- the per-call check
    def guard(self, ctx: Any, name: str) -> tuple[Callable[[tuple], tuple | None] | None, list[str]]:
        """The check for the traced program: ``check(args)`` returns the implicit input arrays
        (in input order) while every guard holds, None when something changed (retrace).
        None instead of a function when nothing needs checking. Also the labels checked."""
        lines: list[str] = []
        env: dict[str, Any] = {"_M": MISSING, "_bytes": bytes}
        labels: list[str] = []
        fetch: dict[int, str] = {}
        slow: list[str] = []
        seen: set[tuple[str, str, tuple[str, ...], int]] = set()
        implicit_ids = {id(it.value) for it in self.implicit}
        for k, item in enumerate(self.items):
            c, v = item.chain, item.value
            key = (c.kind, c.name, c.attrs, id(c.scope))
            if key in seen:
                continue
            seen.add(key)
            if v is not MISSING and is_trusted(v) and not _is_array(v):
                continue
            expr = self._expr(c, k, env)
            var = f"v{k}"
            lines.append(f"{var} = {expr}")
            labels.append(c.label)
            if _is_array(v):
                env[f"t{k}"], env[f"s{k}"], env[f"d{k}"] = type(v), tuple(v.shape), v.dtype
                lines.append(f"if type({var}) is not t{k} or {var}.shape != s{k} or {var}.dtype != d{k}: return None")
                if id(v) in implicit_ids and id(v) in fetch:   # one array read through two paths
                    lines.append(f"if {var} is not {fetch[id(v)]}: return None")
                elif id(v) in implicit_ids:
                    fetch[id(v)] = var
                else:
                    env[f"b{k}"] = _content(v)
                    lines.append(f"if _content({var}) != b{k}: return None")
                    slow.append(c.label)
            elif _is_value(v):
                env[f"t{k}"], env[f"k{k}"] = type(v), v
                nan = isinstance(v, float | np.floating) and v != v
                cmp = f"{var} == {var}" if nan else f"{var} == k{k}"
                if nan:
                    cmp = f"{var} != {var}"
                lines.append(f"if type({var}) is not t{k} or not ({cmp}): return None")
            elif isinstance(v, types.MethodType):
                env[f"f{k}"], env[f"o{k}"] = v.__func__, v.__self__
                lines.append(f"if getattr({var}, '__func__', None) is not f{k} or "
                             f"getattr({var}, '__self__', None) is not o{k}: return None")
            else:
                env[f"k{k}"] = v
                lines.append(f"if {var} is not k{k}: return None")
                if not item.proxied:
                    lines += self._shallow(var, k, v, env, slow)
        shared = [ctx.baked[i] for i in range(len(ctx.baked)) if _externally_held(ctx.baked, i)]
        for j, x in enumerate(shared):
            env[f"c{j}"], env[f"cb{j}"] = x, _content(x)
            lines.append(f"if _content(c{j}) != cb{j}: return None")
            slow.append(f"a constant array of shape {x.shape}")
        if not lines and not self.implicit:
            return None, labels
        missing = [it for it in self.implicit if id(it.value) not in fetch]
        if missing:  # pragma: no cover - every implicit input comes from a scanned chain
            raise AssertionError(f"implicit inputs without a guard: {[m.chain.label for m in missing]}")
        # a captured array in the other byte order goes to compiled code as a native copy (see
        # native_byte_order); a native one that turns swapped fails its dtype guard and retraces here
        ret = ", ".join(fetch[id(it.value)] if getattr(it.value.dtype, "isnative", True)
                        else f"_native({fetch[id(it.value)]})" for it in self.implicit)
        env["_content"] = _content
        env["_native"] = native_byte_order
        src = ["def check(args):", "    try:"]
        src += [f"        {ln}" for ln in lines]
        src += ["    except Exception:", "        return None", f"    return ({ret}{',' if ret else ''})"]
        exec(compile("\n".join(src), f"<noodle guards of {name}>", "exec"), env)  # noqa: S102 - our own text
        if slow:
            log.info("noodle.jit: %s uses %s outside traced operations; noodle checks their contents on "
                     "every call (O(size)). Pass them as arguments, or use them only in noodle/NumPy "
                     "operations on traced values, to avoid that cost.", name, ", ".join(slow))
        return env["check"], labels

    def _expr(self, c: Chain, k: int, env: dict[str, Any]) -> str:
        if c.kind == "global":
            env[f"g{k}"] = c.scope
            if c.name in c.scope:
                base = f"g{k}.get({c.name!r}, _M)"
            else:
                import builtins

                env[f"bi{k}"] = getattr(builtins, c.name, MISSING)
                base = f"g{k}.get({c.name!r}, bi{k})"
        elif c.kind == "cell":
            env[f"cell{k}"] = c.scope
            base = f"cell{k}.cell_contents"
        elif c.kind == "default":
            env[f"fn{k}"] = c.scope
            base = f"fn{k}.__defaults__[{c.index}]"
        else:
            base = f"args[{c.index}]"
        return base + "".join(f".{a}" for a in c.attrs)

    def _shallow(self, var: str, k: int, v: Any, env: dict[str, Any], slow: list[str]) -> list[str]:
        """Identity checks of a container's items or an object's attributes (small ones); array
        items are checked by content too (NumPy code on them is not traced)."""
        if isinstance(v, dict):
            items, getter = v, var
        elif isinstance(v, list):
            if len(v) > _SHALLOW_MAX:
                return []
            env[f"n{k}"] = len(v)
            out = [f"if len({var}) != n{k}: return None"]
            for j, x in enumerate(v):
                env[f"i{k}_{j}"] = x
                out.append(f"if {var}[{j}] is not i{k}_{j}: return None")
                out += _content_line(f"i{k}_{j}", x, env, slow)
            return out
        elif not isinstance(v, type | types.ModuleType | types.FunctionType) and hasattr(v, "__dict__"):
            items, getter = vars(v), f"{var}.__dict__"
        else:
            return []
        if len(items) > _SHALLOW_MAX:
            return []
        env[f"n{k}"] = len(items)
        out = [f"if len({getter}) != n{k}: return None"]
        for j, (key, x) in enumerate(items.items()):
            env[f"i{k}_{j}"], env[f"key{k}_{j}"] = x, key
            out.append(f"if {getter}.get(key{k}_{j}, _M) is not i{k}_{j}: return None")
            out += _content_line(f"i{k}_{j}", x, env, slow)
        return out


def _content_line(name: str, x: Any, env: dict[str, Any], slow: list[str]) -> list[str]:
    if not isinstance(x, np.ndarray):
        return []
    env[f"{name}_b"] = _content(x)
    slow.append(f"an array of shape {x.shape} in a captured container")
    return [f"if _content({name}) != {name}_b: return None"]


def _content(x: Any) -> bytes:
    """The bytes of an array (C order), for content guards."""
    return np.ascontiguousarray(x).tobytes() if isinstance(x, np.ndarray) else bytes(memoryview(x))


def _externally_held(baked: list[Any], i: int) -> bool:
    """True when the array baked as constant ``baked[i]`` is still referenced outside the trace
    (so it may change later), or is a view of such an array."""
    if sys.getrefcount(baked[i]) > 2:   # the list's reference and getrefcount's argument
        return True
    x = baked[i]
    base = x
    while isinstance(base, np.ndarray) and base.base is not None and isinstance(base.base, np.ndarray):
        base = base.base
    return base is not x


__all__ = ["Capture"]
