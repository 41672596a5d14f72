"""``noodle.Executor``: run NIR programs or NBC bytes, interpreted until hot.

Example::

    >>> import numpy as np, noodle as nd
    >>> from noodle.trace import trace
    >>> data = nd.nbc.dumps(trace(lambda a, b: a * b + 1.0, (np.ones(3), np.ones(3))))
    >>> ex = nd.Executor()
    >>> ex.execute(data, np.ones(3), np.full(3, 2.0), use_jit=False)
    array([3., 3., 3.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noodle.errors import ExecutionError
from noodle.exec.limits import check_resources
from noodle.exec.state import ProgramState, parse_hot_threshold
from noodle.ir.graph import Program
from noodle.ir.verify import verify


class Executor:
    """Interprets programs instruction by instruction and compiles hot ones in the background.

    ``hot_threshold``: int calls, float cumulative seconds, or ``(calls, seconds)``.
    ``backend``: None (choose from where inputs live), "numba", "cuda" or "interpret".
    """

    def __init__(self, hot_threshold: Any = None, backend: str | None = None) -> None:
        self.hot_calls, self.hot_seconds = parse_hot_threshold(hot_threshold)
        self.backend = backend
        self._by_bytes: dict[bytes, ProgramState] = {}
        self._by_program: dict[int, tuple[Program, ProgramState]] = {}

    def state(self, program: Program | bytes) -> ProgramState:
        """The run state of ``program`` (NBC bytes are decoded and verified once, then cached).

        Before a state exists the program's peak memory and total work are bounded from its
        declared shapes (:func:`noodle.exec.limits.check_resources`): a program over the limits
        raises :class:`~noodle.errors.NBCResourceError` and is never run (nor cached).
        """
        if isinstance(program, bytes | bytearray | memoryview):
            key = bytes(program)
            st = self._by_bytes.get(key)
            if st is None:
                from noodle.nbc import loads

                decoded = loads(key)
                check_resources(decoded)  # untrusted bytes: refuse what would hang or exhaust memory
                st = self._new_state(decoded)
                self._by_bytes[key] = st
            return st
        if not isinstance(program, Program):
            raise ExecutionError(f"execute() takes a noodle Program or NBC bytes, got {type(program).__name__}")
        entry = self._by_program.get(id(program))
        if entry is None or entry[0] is not program:
            verify(program)
            check_resources(program)  # cheap (one walk of the nodes), same bounds as for NBC bytes
            entry = (program, self._new_state(program))
            self._by_program[id(program)] = entry
        return entry[1]

    def _new_state(self, program: Program) -> ProgramState:
        return ProgramState(program, hot_calls=self.hot_calls, hot_seconds=self.hot_seconds,
                            backend=self.backend, name=f"program{len(self._by_bytes) + len(self._by_program)}")

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
        out = st.run(args, use_jit=use_jit)
        return out[0] if len(out) == 1 else out

    def stats(self) -> dict[str, Any]:
        """Per-program counters (calls, interpreted/compiled, time, per-instruction)."""
        states = [st for st in self._by_bytes.values()] + [st for _, st in self._by_program.values()]
        return {st.key(): st.stats() for st in states}


__all__ = ["Executor"]
