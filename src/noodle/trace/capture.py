"""What a traced function reads from outside its arguments, found in its bytecode.

Why bytecode: a traced function runs once, so whatever it reads from a global, a closure
cell, a default or an attribute would be frozen into the program at its first trace (JAX and
Numba both freeze globals this way). noodle instead finds every such read before tracing and
guards it (``noodle.trace.guards``): captured arrays become implicit inputs read at every call,
captured scalars, strings, tuples, helper functions and objects are checked at every call, and a
change retraces. The reads are found as *chains* in the bytecode: ``LOAD_GLOBAL`` /
``LOAD_DEREF`` / ``LOAD_FAST`` (of a parameter) followed by ``LOAD_ATTR`` / ``LOAD_METHOD``, so
``Cfg.scale`` and ``self.w`` are guarded as paths, not only as their first name.

The same scan refuses what cannot be traced faithfully: a call of ``np.random``, ``time``,
``print`` or I/O (it would run once, at trace time) and writes to globals or to captured
objects (side effects that a compiled program would not repeat).

Example::

    >>> W = 2.0
    >>> def f(x):
    ...     return x * W
    >>> [c.label for c in find_chains(f)]
    ['W']
"""

from __future__ import annotations

import builtins
import dis
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from noodle.errors import TraceError

# modules whose functions run at trace time and would be frozen into the program
_IMPURE_MODULES = ("numpy.random", "random", "time", "os", "io", "sys", "subprocess", "socket",
                   "secrets", "uuid", "datetime", "logging", "pathlib", "shutil", "tempfile")
_IMPURE_BUILTINS = frozenset({"print", "open", "input", "exec", "eval", "breakpoint", "__import__"})
# modules trusted not to change under a traced function: not guarded (a guard per call would
# cost more than the call itself for ``np.exp``)
_TRUSTED_PREFIXES = ("numpy", "noodle", "math", "builtins", "cupy", "operator", "functools")

_CHAIN_START = frozenset({"LOAD_GLOBAL", "LOAD_DEREF", "LOAD_FAST", "LOAD_CLASSDEREF"})
_CHAIN_EXTEND = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


@dataclass(frozen=True)
class Chain:
    """One read from outside the arguments: a root and the attribute names after it.

    ``kind`` is ``"global"`` (``scope`` is the globals dict), ``"cell"`` (``scope`` is the
    closure cell) or ``"arg"`` (``index`` is the parameter position); ``where`` is the user's
    ``file:line`` of the first read.
    """

    kind: str
    name: str
    attrs: tuple[str, ...]
    scope: Any
    index: int
    where: str

    @property
    def label(self) -> str:
        return ".".join((self.name, *self.attrs))

    def resolve(self, args: tuple[Any, ...] = ()) -> Any:
        """The chain's current value (``MISSING`` when a name or attribute is absent)."""
        value = root_value(self, args)
        for attr in self.attrs:
            if value is MISSING:
                return MISSING
            try:
                value = getattr(value, attr)
            except Exception:  # noqa: BLE001 - an absent or failing attribute is a value too
                return MISSING
        return value


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def root_value(chain: Chain, args: tuple[Any, ...]) -> Any:
    """The value the chain starts from, now."""
    if chain.kind == "global":
        value = chain.scope.get(chain.name, MISSING)
        if value is MISSING:
            value = getattr(builtins, chain.name, MISSING)
        return value
    if chain.kind == "cell":
        try:
            return chain.scope.cell_contents
        except ValueError:  # an empty cell (the name is assigned later in the outer function)
            return MISSING
    return args[chain.index] if chain.index < len(args) else MISSING


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.extend(_code_objects(const))
    return out


def _where(code: types.CodeType, line: int | None) -> str:
    return f"{code.co_filename}:{line if line is not None else code.co_firstlineno}"


def _param_names(code: types.CodeType) -> list[str]:
    n = code.co_argcount + code.co_kwonlyargcount
    return list(code.co_varnames[:n])


def find_chains(fn: Callable[..., Any]) -> list[Chain]:
    """Every chain ``fn``'s code (and the lambdas and comprehensions inside it) reads.

    Raises :class:`TraceError` for writes to globals and to captured objects.
    """
    top = fn.__code__
    cells = dict(zip(top.co_freevars, fn.__closure__ or (), strict=True))
    params = {name: i for i, name in enumerate(_param_names(top))}
    chains: dict[tuple[str, str, tuple[str, ...]], Chain] = {}
    for code in _code_objects(top):
        is_top = code is top
        current: list[Any] | None = None   # [kind, name, attrs, scope, index, where]
        line: int | None = None

        def close() -> None:
            nonlocal current
            if current is not None:
                kind, name, attrs, scope, index, where = current
                chains.setdefault((kind, name, tuple(attrs)), Chain(kind, name, tuple(attrs), scope, index, where))
            current = None

        for ins in dis.get_instructions(code):
            if ins.starts_line is not None:
                line = ins.starts_line
            op = ins.opname
            if op in _CHAIN_EXTEND and current is not None:
                current[2].append(ins.argval)
                continue
            close()
            if op == "LOAD_GLOBAL":
                current = ["global", ins.argval, [], fn.__globals__, -1, _where(code, line)]
            elif op in ("LOAD_DEREF", "LOAD_CLASSDEREF") and is_top and ins.argval in cells:
                current = ["cell", ins.argval, [], cells[ins.argval], -1, _where(code, line)]
            elif op == "LOAD_FAST" and is_top and ins.argval in params:
                current = ["arg", ins.argval, [], None, params[ins.argval], _where(code, line)]
            elif op in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                raise TraceError(
                    f"{fn.__qualname__} assigns the global {ins.argval!r} (at {_where(code, line)}): a jitted "
                    "function runs its Python code only when it is traced, so the assignment would "
                    "happen once, not on every call. Return the value instead.")
            elif op == "STORE_DEREF" and is_top and ins.argval in cells:
                raise TraceError(
                    f"{fn.__qualname__} assigns the captured variable {ins.argval!r} (nonlocal, at "
                    f"{_where(code, line)}): that side effect would happen once, at trace time, not on "
                    "every call. Return the value instead.")
        close()
    return list(chains.values())


def _module_of(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    mod = getattr(value, "__module__", None)
    if isinstance(mod, str):
        return mod
    owner = getattr(value, "__self__", None)   # bound methods of objects (rng.normal)
    if owner is not None and not isinstance(owner, types.ModuleType):
        return getattr(type(owner), "__module__", "") or ""
    return ""


def is_trusted(value: Any) -> bool:
    """A value from a library module (NumPy, noodle, math...): not guarded, not traced into."""
    mod = _module_of(value)
    return any(mod == p or mod.startswith(p + ".") for p in _TRUSTED_PREFIXES) and not is_impure(value)


def is_impure(value: Any) -> bool:
    """A callable with hidden state or side effects (random numbers, clocks, I/O, printing)."""
    if value is MISSING:
        return False
    if isinstance(value, types.BuiltinFunctionType) and getattr(value, "__module__", None) == "builtins":
        return value.__name__ in _IMPURE_BUILTINS
    if not callable(value) and not isinstance(value, types.ModuleType):
        return False
    mod = _module_of(value)
    return any(mod == p or mod.startswith(p + ".") for p in _IMPURE_MODULES)


def impure_error(fn: Callable[..., Any], chain: Chain, value: Any = None) -> TraceError:
    """The error for a call that would run once at trace time."""
    what = chain.label
    mod = _module_of(value) if value is not None else ""
    if mod.startswith(("numpy.random", "random")) or "random" in what:
        advice = ("draw the random numbers outside and pass the array in "
                  "(e.g. f(x, rng.standard_normal(x.shape)))")
    elif what in _IMPURE_BUILTINS:
        advice = "move the call out of the jitted function (it would run once, when the function is traced)"
    else:
        advice = "call it outside and pass its result in as an argument"
    return TraceError(
        f"{fn.__qualname__} uses {what} (at {chain.where}), which has hidden state or side effects: "
        f"inside @noodle.jit it would run once, at trace time, and its result would be reused on every "
        f"call. {advice[0].upper() + advice[1:]}; or call {fn.__qualname__} without @noodle.jit.")


__all__ = ["MISSING", "Chain", "find_chains", "impure_error", "is_impure", "is_trusted", "root_value"]
