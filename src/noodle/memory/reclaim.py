"""Which objects a region may break apart at its exit, and which memory is merely held by locals.

Why not leave it to the garbage collector: objects in reference cycles that
hold large arrays stay alive until a collection runs, which is driven by the
*number* of container allocations, not by bytes; a loop building cyclic
objects around 8 MB arrays can pile up gigabytes in between. An unconditional
``gc.collect()`` at every region exit costs milliseconds. Instead the region
looks only at what it knows: the objects registered with it.

The method is the collector's own, restricted to a small graph: for every
node (registered objects, the containers and views reachable from them, and
the values of the local variables of the function that ran the ``with``),
take ``sys.getrefcount`` and subtract the references that come from other
nodes (``gc.get_referents``) and from that frame's local variables. A node
with references left over is held from outside (a global, another object,
another thread, a return value on the stack): it *escaped*, and everything
reachable from it is left intact. Nodes reachable only from the frame's
locals are *held by locals*: left intact too, but not reported as escapes.
The rest is garbage: the registered objects among it get their ``__dict__``
and slots cleared, which breaks their cycles, and reference counting frees
them at once.

Every count must come out exactly zero for an object to be cleared; anything
the analysis cannot account for (a node it did not expand because the graph
was too large, a count below zero) counts as held from outside. So a mistake
can only leave an object alive, never clear one somebody uses. (Weak
references are not uses: an object reachable only through one, and kept alive
a little longer by a cycle of unregistered garbage, may be seen emptied until
the collector frees it.)

Reading a running function's locals (``frame.f_locals``) before Python 3.13
fills a snapshot dict on the frame that would pin their old values; it is
emptied again right after the analysis.

Example::

    verdict = analyse(members, locals_of(frame), region_arrays)
    clear(verdict.garbage)
"""

from __future__ import annotations

import gc
import sys
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_NODES = 20_000      # graph nodes expanded per exit; beyond, the rest counts as held from outside
MAX_REFERENTS = 200_000  # references looked at per exit (a local list of a million floats must not
                         # make every exit slow); beyond, the same

_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
           types.CodeType, types.FrameType, types.TracebackType, types.GeneratorType, types.CoroutineType)


def _refs_of(nodes: dict[int, Any], k: int) -> int:
    return sys.getrefcount(nodes[k])


def _weight_of_function_locals() -> int:
    """References one local variable of a running function holds (its slot, plus the frame's
    ``f_locals`` snapshot dict before Python 3.13): measured, not assumed."""
    probe = object()
    frame = sys._getframe()
    values = list(frame.f_locals.values())
    n = sys.getrefcount(probe) - 2   # minus the ``values`` entry and getrefcount's argument
    snap = frame.f_locals
    if type(snap) is dict:
        snap.clear()
    del values, frame
    return n


_NODE_REFS = _refs_of({0: object()}, 0)   # a node held only by the analysis' own dict
FUNCTION_LOCAL_WEIGHT = _weight_of_function_locals()


@dataclass
class FrameLocals:
    """The values of a frame's local variables and how many references each one holds."""

    values: list[Any] = field(default_factory=list)
    weight: int = 1
    snapshot: dict | None = None   # the f_locals dict to empty afterwards (it pins old values)

    def release(self) -> None:
        """Drop the references taken to read the locals (call once the analysis is done)."""
        self.values = []
        if self.snapshot is not None:
            self.snapshot.clear()
            self.snapshot = None


def locals_of(frame: types.FrameType | None) -> FrameLocals:
    """The local variables of ``frame`` (module and class bodies: their namespace)."""
    if frame is None:
        return FrameLocals()
    ns = frame.f_locals
    if not frame.f_code.co_flags & 0x1:   # not CO_OPTIMIZED: a module or class body, ns is its dict
        return FrameLocals(list(ns.values()), 1, None)
    snapshot = ns if type(ns) is dict and ns is not frame.f_globals else None
    return FrameLocals(list(ns.values()), FUNCTION_LOCAL_WEIGHT, snapshot)


@dataclass
class Verdict:
    """What :func:`analyse` found."""

    garbage: list[Any] = field(default_factory=list)      # registered objects nobody else holds
    kept: list[Any] = field(default_factory=list)         # registered objects held (by locals or outside)
    escaped_ids: set[int] = field(default_factory=set)    # ids of registered objects held from outside
    local_views: Counter = field(default_factory=Counter)  # id(base array) -> views held only by locals
    cyclic_garbage: bool = False   # unregistered garbage seen: a collection could free more


def analyse(members: list[Any], frame_locals: FrameLocals, bases: set[int],
            skip: set[int] | None = None, skip_types: tuple[type, ...] = ()) -> Verdict:
    """Classify ``members`` (and the region views in ``bases``) as described in the module docstring.

    ``members`` must be the only list holding the registered objects (each
    appearance counts as one reference); ``bases`` are ``id``s of the chunk
    base arrays whose views are of interest; ``skip`` ids and instances of
    ``skip_types`` are never followed (regions, managers, chunks: their
    bookkeeping is not user data).
    """
    g = _Graph(bases, skip or set(), members, skip_types)
    g.seed(members, frame_locals.values)
    g.expand()
    g.count(frame_locals.weight)
    return g.verdict(members)


_CONTAINERS = (dict, list, tuple, set, frozenset)


class _Graph:
    """The nodes of one analysis. Every pass is a method, so that no loop variable outlives its
    pass and adds a reference the counts do not expect."""

    def __init__(self, bases: set[int], skip: set[int], members: list[Any], skip_types: tuple[type, ...]) -> None:
        self.bases = bases
        self.skip = skip
        self.opaque = _OPAQUE + skip_types
        self.nodes: dict[int, Any] = {}
        self.views: set[int] = set()
        self.queue: list[int] = []
        self.member_refs: Counter = Counter(map(id, members))
        self.local_refs: Counter = Counter()
        self.unexpanded: set[int] = set()
        self.ext: dict[int, int] = {}

    def add(self, obj: Any) -> None:
        k = id(obj)
        if k in self.nodes or k in self.skip:
            return
        if type(obj) is np.ndarray:
            base = obj.base
            if base is None or id(base) not in self.bases:
                return
            self.views.add(k)
        elif k not in self.member_refs and (isinstance(obj, self.opaque) or not (
                type(obj) in _CONTAINERS or gc.is_tracked(obj))):
            return
        self.nodes[k] = obj
        self.queue.append(k)

    def seed(self, members: list[Any], local_values: list[Any]) -> None:
        for m in members:
            self.add(m)
        for v in local_values:
            self.local_refs[id(v)] += 1
            self.add(v)

    def expand(self) -> None:
        queue, nodes, views = self.queue, self.nodes, self.views
        done = 0
        budget = MAX_REFERENTS
        skipped: list[int] = []
        while done < len(queue) and done < MAX_NODES and budget > 0:
            k = queue[done]
            done += 1
            if k not in views:
                refs = gc.get_referents(nodes[k])
                if len(refs) > budget:
                    skipped.append(k)   # too large to look through: counts as held from outside
                    continue
                budget -= len(refs)
                for r in refs:
                    self.add(r)
        self.unexpanded = set(queue[done:]) | set(skipped)
        self.queue = []

    def count(self, weight: int) -> None:
        """References left over once the analysis' own, the members list's, the locals' and
        the other nodes' are taken off."""
        nodes, ext = self.nodes, self.ext
        for k in nodes:
            ext[k] = _refs_of(nodes, k) - _NODE_REFS - self.member_refs[k] - (1 + weight) * self.local_refs[k]
        for k in nodes:
            if k in self.views or k in self.unexpanded:
                continue
            for r in gc.get_referents(nodes[k]):
                rk = id(r)
                if rk in ext:
                    ext[rk] -= 1

    def reach(self, roots: list[int]) -> set[int]:
        nodes = self.nodes
        seen = set(roots)
        stack = list(roots)
        while stack:
            k = stack.pop()
            if k in self.views or k in self.unexpanded:
                continue
            for r in gc.get_referents(nodes[k]):
                rk = id(r)
                if rk in nodes and rk not in seen:
                    seen.add(rk)
                    stack.append(rk)
        return seen

    def verdict(self, members: list[Any]) -> Verdict:
        nodes = self.nodes
        escaped = self.reach([k for k, n in self.ext.items() if n != 0 or k in self.unexpanded])
        held = self.reach([k for k in self.local_refs if k in nodes and k not in escaped]) - escaped
        v = Verdict()
        for k in self.views:
            if k in held:
                v.local_views[id(nodes[k].base)] += 1
        for m in members:
            k = id(m)
            if k in escaped:
                v.kept.append(m)
                v.escaped_ids.add(k)
            elif k in held:
                v.kept.append(m)
            else:
                v.garbage.append(m)
        v.cyclic_garbage = any(k not in escaped and k not in held and k not in self.member_refs
                               and k not in self.views and type(nodes[k]) not in _CONTAINERS for k in nodes)
        self.nodes = {}
        return v


def clear(objects: list[Any]) -> int:
    """Empty the ``__dict__`` and slots of ``objects`` (garbage by :func:`analyse`); how many."""
    n = 0
    for obj in objects:
        d = getattr(obj, "__dict__", None)
        if type(d) is dict:
            d.clear()
        for cls in type(obj).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                if name in ("__dict__", "__weakref__"):
                    continue
                try:
                    delattr(obj, name)
                except (AttributeError, TypeError):
                    pass
        n += 1
    return n


__all__ = ["FUNCTION_LOCAL_WEIGHT", "FrameLocals", "MAX_NODES", "Verdict", "analyse", "clear", "locals_of"]
