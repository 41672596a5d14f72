"""``noodle.Executor``: run NIR programs or NBC bytes, interpreted until hot.

Example::

    >>> import numpy as np, noodle as nd
    >>> from noodle.trace import trace
    >>> data = nd.nbc.dumps(trace(lambda a, b: a * b + 1.0, (np.ones(3), np.ones(3))))
    >>> ex = nd.Executor()
    >>> ex.execute(data, np.ones(3), np.full(3, 2.0), use_jit=False)
    array([3., 3., 3.])

It keeps the ``cache_size`` most recently used programs (``NOODLE_JIT_CACHE_SIZE``, 256)::

    >>> small = nd.Executor(backend="interpret", cache_size=1)
    >>> other = nd.nbc.dumps(trace(lambda a: a - 1.0, (np.ones(3),)))
    >>> small.execute(data, np.ones(3), np.ones(3)), small.execute(other, np.ones(3))
    (array([2., 2., 2.]), array([0., 0., 0.]))
    >>> small.evictions
    1
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from noodle.config import get_settings
from noodle.errors import ExecutionError
from noodle.exec.limits import bounded_loops, check_resources
from noodle.exec.state import ProgramState, parse_hot_threshold
from noodle.ir.graph import Program
from noodle.ir.verify import verify


class Executor:
    """Interprets programs instruction by instruction and compiles hot ones in the background.

    ``hot_threshold``: int calls, float cumulative seconds, or ``(calls, seconds)``.
    ``backend``: None (choose from where inputs live), "numba", "cuda" or "interpret".
    ``cache_size``: most programs kept (default: the ``jit_cache_size`` setting,
    ``NOODLE_JIT_CACHE_SIZE``). Why bounded: a server that executes bytecode it is sent would
    otherwise keep every program it ever saw; the least recently used one goes, and running it
    again decodes, checks and counts it afresh (its compiled kernel is still cached elsewhere).
    """

    def __init__(self, hot_threshold: Any = None, backend: str | None = None,
                 cache_size: int | None = None) -> None:
        self.hot_calls, self.hot_seconds = parse_hot_threshold(hot_threshold)
        self.backend = backend
        if cache_size is None:
            cache_size = get_settings().jit_cache_size
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ExecutionError(f"Executor(cache_size={cache_size!r}): expected an integer >= 1 (programs kept); "
                                 "pass a positive count, or None for the NOODLE_JIT_CACHE_SIZE setting")
        self.cache_size = cache_size
        self.evictions = 0
        self._lock = threading.Lock()
        self._made = 0
        # least recently used first: ("nbc", bytes) or ("nir", id(program)) -> (program, state);
        # a NIR program is kept alive by its entry, so its id cannot name another program meanwhile
        self._entries: OrderedDict[tuple[str, Any], tuple[Program, ProgramState]] = OrderedDict()

    def state(self, program: Program | bytes) -> ProgramState:
        """The run state of ``program`` (NBC bytes are decoded and verified once, then cached).

        Before a state exists the program's peak memory and total work are bounded from its
        declared shapes (:func:`noodle.exec.limits.check_resources`): a program over the limits
        raises :class:`~noodle.errors.NBCResourceError` and is never run (nor cached).
        """
        if isinstance(program, bytes | bytearray | memoryview):
            key: tuple[str, Any] = ("nbc", bytes(program))
        elif isinstance(program, Program):
            key = ("nir", id(program))
        else:
            raise ExecutionError(f"execute() takes a noodle Program or NBC bytes, got {type(program).__name__}")
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (key[0] == "nbc" or entry[0] is program):
                self._entries.move_to_end(key)
                return entry[1]
        if key[0] == "nbc":
            from noodle.nbc import loads

            decoded = loads(key[1])
            check_resources(decoded)  # untrusted bytes: refuse what would hang or exhaust memory
        else:
            decoded = program
            verify(decoded)
            check_resources(decoded)  # cheap (one walk of the nodes), same bounds as for NBC bytes
        with self._lock:
            entry = self._entries.get(key)   # (another thread may have made it meanwhile)
            if entry is None or (key[0] == "nir" and entry[0] is not program):
                entry = (decoded, self._new_state(decoded))
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.cache_size:
                    self._entries.popitem(last=False)
                    self.evictions += 1
        return entry[1]

    def _new_state(self, program: Program) -> ProgramState:
        self._made += 1
        return ProgramState(program, hot_calls=self.hot_calls, hot_seconds=self.hot_seconds,
                            backend=self.backend, name=f"program{self._made - 1}")

    def execute(self, program: Program | bytes, *args: Any, use_jit: bool = True) -> Any:
        """Run ``program`` on ``args``; one output is returned as is, several as a tuple."""
        st = self.state(program)
        types = st.input_types
        if len(args) != len(types):
            raise ExecutionError(f"the program takes {len(types)} arrays, got {len(args)}")
        for i, (a, (shape, dtype)) in enumerate(zip(args, types, strict=True)):
            if not hasattr(a, "shape") or tuple(a.shape) != shape or np.dtype(a.dtype).name != dtype:
                got = f"{getattr(a, 'dtype', type(a).__name__)}{list(getattr(a, 'shape', ()))}"
                raise ExecutionError(f"argument {i} is {got}, the program expects {dtype}{list(shape)}; "
                                     "trace the function again for this signature")
        with bounded_loops(st.program):   # a loop's trip count is data: bounded as it runs
            out = st.run(args, use_jit=use_jit)
        return out[0] if len(out) == 1 else out

    def stats(self) -> dict[str, Any]:
        """Per-program counters (calls, interpreted/compiled, time, per-instruction)."""
        with self._lock:
            states = [st for _, st in self._entries.values()]
        return {st.key(): st.stats() for st in states}


__all__ = ["Executor"]
