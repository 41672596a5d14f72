"""Resource bounds of a program, computed from its declared shapes before anything runs.

Why: NBC bytes may come from a file or a socket. A well-formed program of a
hundred bytes can broadcast an 8-byte input to 2**40 elements and sum it (the
interpreter would spin for hours) or multiply a (1e6, 1) by a (1, 1e6) input
(8 TB). Every shape is declared and verified, so what a program will allocate
and how many elements it will touch are known exactly up front; this module
bounds both and refuses a program over ``NOODLE_EXEC_MAX_BYTES`` or
``NOODLE_EXEC_MAX_ELEMENTS`` with :class:`~noodle.errors.NBCResourceError`,
naming the instruction, instead of hanging or exhausting the machine.

Loops are the exception: how often a ``while_loop`` runs is data. Its cond and
body are checked like programs (one trip of each counts), and while an untrusted
program runs (:func:`bounded_loops`, the Executor) every iteration is counted:
the run stops with ``NBCResourceError`` past ``NOODLE_EXEC_MAX_ITERATIONS``
iterations in all, or once the elements its iterations processed push the run
past ``NOODLE_EXEC_MAX_ELEMENTS``.

The estimate is an upper bound of what the interpreter does: every node
except ``broadcast_to`` and ``transpose`` (always NumPy views) gets a buffer
of its full size (``reshape`` is counted as a copy and also keeps its source
alive, since NumPy may do either), a value lives until its last reader ran
(values no one reads, and outputs, to the end), a view keeps its source
alive, and ``matmul`` may copy view operands to contiguous memory. Program
inputs are the caller's memory and constants were allocated by ``loads``;
neither counts. Work is the number of elements every node processes: its
output size, the input size for reductions (a sum over a broadcast view
iterates every element of the view), ``m*n*k / 32`` for matmul (BLAS speed).

Example::

    >>> from noodle.ir.graph import Builder
    >>> b = Builder(); x = b.input(0, (1000,), "float64")
    >>> est = estimate(b.finish([b.add("exp", b.add("negative", x))]))
    >>> est.peak_bytes, est.work_elements
    (16000, 2000)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from noodle.errors import NBCResourceError
from noodle.ir.graph import Node, Program
from noodle.ir.semantics import LOOP_GUARD

_VIEWS = frozenset({"broadcast_to", "transpose"})     # NumPy always returns views for these
_KEEPS_SOURCE = _VIEWS | {"reshape"}                  # reshape may be a view of its source
_FREE = frozenset({"input", "const"})                 # memory that exists before the program runs
_REDUCE = frozenset({"sum", "mean", "max", "min"})
_ITEMSIZE: dict[str, int] = {}
MATMUL_WORK_DIVISOR = 32   # multiply-adds of a BLAS product counted as one element of work


@dataclass(frozen=True)
class Limits:
    """The bounds a program is checked against, and where each came from (for messages)."""

    max_bytes: int
    max_elements: int
    bytes_source: str
    elements_source: str
    max_iterations: int = 10**6
    iterations_source: str = "NOODLE_EXEC_MAX_ITERATIONS=1000000"


@dataclass(frozen=True)
class Estimate:
    """Upper bounds for one run: most bytes live at once, total elements processed, and where."""

    peak_bytes: int
    peak_node: int          # the node during which the peak is reached (-1: nothing allocated)
    work_elements: int
    heaviest_node: int      # the node processing the most elements (-1: none)
    node_bytes: tuple[int, ...]
    node_work: tuple[int, ...]


def human_bytes(n: int) -> str:
    """``1.5 GiB`` style text for messages."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"


def human_count(n: int) -> str:
    """``1.1e12 (2**40.0)`` style text: element counts span too many magnitudes for plain digits."""
    if n < 10**6:
        return f"{n:,}"
    return f"{n:.2e} (~2**{np.log2(float(n)):.1f})"


def available_bytes() -> int:
    """Memory the OS could give this process now (psutil); used for the default byte limit."""
    import psutil  # noqa: PLC0415  (a dependency, imported when a program is first checked)

    return int(psutil.virtual_memory().available)


def current_limits() -> Limits:
    """Limits from the settings; an unset (0) byte limit is half the memory available right now."""
    from noodle.config import get_settings  # noqa: PLC0415  (config is read at check time)

    settings = get_settings()
    max_bytes = int(settings.exec_max_bytes)
    if max_bytes > 0:
        bytes_source = f"NOODLE_EXEC_MAX_BYTES={max_bytes}"
    else:
        avail = available_bytes()
        max_bytes = avail // 2
        bytes_source = f"half of the {human_bytes(avail)} available now; NOODLE_EXEC_MAX_BYTES is unset"
    max_elements = int(settings.exec_max_elements)
    its = int(settings.exec_max_iterations)
    return Limits(max_bytes, max_elements, bytes_source, f"NOODLE_EXEC_MAX_ELEMENTS={max_elements}",
                  its, f"NOODLE_EXEC_MAX_ITERATIONS={its}")


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _nbytes(node: Node) -> int:
    itemsize = _ITEMSIZE.get(node.dtype)
    if itemsize is None:
        itemsize = _ITEMSIZE[node.dtype] = np.dtype(node.dtype).itemsize
    return _size(node.shape) * itemsize


def _work(node: Node, nodes: list[Node]) -> int:
    """Elements ``node`` processes: output size; input size for reductions; m*n*k/32 for matmul."""
    op = node.op
    if op in _FREE:
        return 0
    out = _size(node.shape)
    if op in _REDUCE:
        return max(out, _size(nodes[node.args[0]].shape))
    if op == "while_loop":   # one trip of each; further trips are counted as they run (bounded_loops)
        return _loop_trip(node)[0]
    if op == "matmul":
        # BLAS does ~32 multiply-adds in the time an elementwise op takes per element here, so
        # a 2000^3 product weighs like 2.5e8 elements of other work, not 8e9
        return -(-out * nodes[node.args[0]].shape[-1] // MATMUL_WORK_DIVISOR)
    return out


def _last_uses(program: Program) -> list[int]:
    """Index of the last node reading each value (the interpreter frees it then); views extend it."""
    nodes = program.nodes
    end = len(nodes)
    last = [-1] * end
    for i, node in enumerate(nodes):
        for a in node.args:
            last[a] = i
    for o in program.outputs:
        last[o] = end
    for v in range(end):
        if last[v] < 0:  # never read and not an output: the interpreter keeps it to the end
            last[v] = end
    for v in range(end - 1, -1, -1):  # reverse: a chain of views is resolved from its tail
        node = nodes[v]
        if node.op in _KEEPS_SOURCE:
            src = node.args[0]
            if last[v] > last[src]:
                last[src] = last[v]
    return last


def _transient(node: Node, nodes: list[Node]) -> int:
    """Temporary bytes an instruction allocates while it runs, beyond its result."""
    if node.op == "matmul":  # a view operand may be copied to contiguous memory
        return sum(_nbytes(nodes[a]) for a in node.args if nodes[a].op in _VIEWS)
    if node.op == "while_loop":   # what its cond or body needs while running, whichever is more
        return _loop_trip(node)[1]
    if node.op in _REDUCE:
        n = _size(nodes[node.args[0]].shape)
        # the defined-order sum (noodle.ir.reduction) reads its input as float64, laid out with the
        # reduced axes last (two copies of a broadcast view at most); max/min test for zeros
        return 16 * n if node.op in ("sum", "mean") else 2 * n
    return 0


def _loop_trip(node: Node) -> tuple[int, int]:
    """(elements, peak bytes) of one trip of a loop: its cond and its body, each estimated as a
    program (nested loops recursively, at most 8 deep by verification)."""
    cond, body = estimate(node.attr("cond").program), estimate(node.attr("body").program)
    return cond.work_elements + body.work_elements, max(cond.peak_bytes, body.peak_bytes)


def estimate(program: Program) -> Estimate:
    """Peak memory and total work of one interpreted run of ``program`` (upper bounds, linear time)."""
    nodes = program.nodes
    last = _last_uses(program)
    dying: dict[int, list[int]] = {}
    node_bytes = [0] * len(nodes)   # what a node needs while it runs: its buffer plus temporaries
    sizes = [0] * len(nodes)        # its buffer, live until its last reader ran
    node_work = [0] * len(nodes)
    live = peak = work = heaviest_work = 0
    peak_node = heaviest = -1
    for i, node in enumerate(nodes):
        w = node_work[i] = _work(node, nodes)
        work += w
        if w > heaviest_work:
            heaviest_work, heaviest = w, i
        if node.op in _FREE or node.op in _VIEWS:
            continue
        size = sizes[i] = _nbytes(node)
        transient = _transient(node, nodes)
        node_bytes[i] = size + transient
        if live + size + transient > peak:
            peak, peak_node = live + size + transient, i
        live += size
        dying.setdefault(last[i], []).append(i)
        for v in dying.pop(i, ()):
            live -= sizes[v]
    return Estimate(peak, peak_node, work, heaviest, tuple(node_bytes), tuple(node_work))


def _text(program: Program, i: int) -> str:
    from noodle.ir.printer import format_node  # noqa: PLC0415  (only to word a refusal)

    return format_node(i, program.nodes[i], program).strip()


def check_resources(program: Program, limits: Limits | None = None) -> Estimate:
    """Raise :class:`NBCResourceError` if one run of ``program`` would exceed ``limits``.

    ``limits`` defaults to :func:`current_limits`. Returns the estimate when the
    program fits. Single instructions are checked first, so the message names
    the culprit rather than wherever a running total happened to cross the line.
    """
    lim = current_limits() if limits is None else limits
    for i, node in enumerate(program.nodes):
        if node.op == "while_loop":   # a culprit inside a loop is named there, not as the whole loop
            for part in ("cond", "body"):
                try:
                    check_resources(node.attr(part).program, lim)
                except NBCResourceError as exc:
                    raise NBCResourceError(f"in the {part} of loop {_text(program, i)}: {exc}") from None
    est = estimate(program)
    _check_bytes(program, est, lim)
    _check_work(program, est, lim)
    return est


def _check_bytes(program: Program, est: Estimate, lim: Limits) -> None:
    advice = ("The program is refused before it runs. If you trust it and have the memory, "
              "raise NOODLE_EXEC_MAX_BYTES (bytes).")
    biggest = max(range(len(est.node_bytes)), key=est.node_bytes.__getitem__, default=-1)
    if biggest >= 0 and est.node_bytes[biggest] > lim.max_bytes:
        raise NBCResourceError(
            f"instruction {_text(program, biggest)} needs {human_bytes(est.node_bytes[biggest])}, more than "
            f"the {human_bytes(lim.max_bytes)} a program may use ({lim.bytes_source}). {advice}")
    if est.peak_bytes > lim.max_bytes:
        raise NBCResourceError(
            f"the program needs {human_bytes(est.peak_bytes)} at once (at instruction "
            f"{_text(program, est.peak_node)}), more than the {human_bytes(lim.max_bytes)} a program may use "
            f"({lim.bytes_source}). {advice}")


def _check_work(program: Program, est: Estimate, lim: Limits) -> None:
    advice = ("The program is refused before it runs. If you trust it and can wait, "
              "raise NOODLE_EXEC_MAX_ELEMENTS.")
    if est.heaviest_node < 0:
        return
    heaviest = est.node_work[est.heaviest_node]
    if heaviest > lim.max_elements:
        raise NBCResourceError(
            f"instruction {_text(program, est.heaviest_node)} processes {human_count(heaviest)} elements, "
            f"more than the {human_count(lim.max_elements)} a program may process "
            f"({lim.elements_source}). {advice}")
    if est.work_elements > lim.max_elements:
        raise NBCResourceError(
            f"the program processes {human_count(est.work_elements)} elements in all over "
            f"{len(program.nodes)} instructions, more than the {human_count(lim.max_elements)} a program may "
            f"process ({lim.elements_source}); its heaviest instruction is "
            f"{_text(program, est.heaviest_node)} ({human_count(heaviest)} elements). {advice}")


class LoopBudget:
    """The iterations and elements one run of an untrusted program may still spend on loops.

    Why counted while running: a ``while_loop``'s trip count is data (an NBC loop whose cond is
    always true is a hundred well-formed bytes), so shapes alone cannot bound it. Each iteration
    costs one trip of its loop's cond and body (:func:`estimate`); the run starts with the work
    of its own instructions already spent, so a loop can never take it past the element limit.
    """

    def __init__(self, static_work: int, max_elements: int, max_iterations: int) -> None:
        self.work = static_work
        self.iterations = 0
        self.max_elements = max_elements
        self.max_iterations = max_iterations
        self._trip: dict[int, int] = {}

    def __call__(self, node: Node) -> Callable[[], None]:
        """The per-iteration check of loop ``node`` (:data:`noodle.ir.semantics.LOOP_GUARD`)."""
        trip = self._trip.get(id(node))
        if trip is None:
            trip = self._trip[id(node)] = _loop_trip(node)[0]

        def tick() -> None:
            self.iterations += 1
            self.work += trip
            if self.iterations > self.max_iterations:
                raise NBCResourceError(
                    f"a while_loop ran past {self.max_iterations:,} iterations in one run, the most an untrusted "
                    f"program may run (NOODLE_EXEC_MAX_ITERATIONS={self.max_iterations}); the loop may never end. "
                    "The run was stopped. If you trust the program and it does end, raise "
                    "NOODLE_EXEC_MAX_ITERATIONS (iterations per run, all loops together).")
            if self.work > self.max_elements:
                raise NBCResourceError(
                    f"a while_loop's iterations (after {self.iterations:,}, {human_count(trip)} elements each) took "
                    f"the run past {human_count(self.max_elements)} elements processed, the most an untrusted "
                    f"program may process (NOODLE_EXEC_MAX_ELEMENTS={self.max_elements}). The run was stopped. "
                    "If you trust the program and can wait, raise NOODLE_EXEC_MAX_ELEMENTS.")
        return tick


def has_loops(program: Program) -> bool:
    """Whether ``program`` has a ``while_loop`` (cached: the Executor asks on every call)."""
    found = program.meta.get("_has_loops")
    if found is None:
        found = program.meta["_has_loops"] = any(n.op == "while_loop" for n in program.nodes)
    return bool(found)


@contextmanager
def bounded_loops(program: Program) -> Iterator[LoopBudget | None]:
    """Run ``program``'s loops within the iteration and element limits of the settings (read now).

    Example: ``with bounded_loops(program): run_program(program, args)``; a loop that never ends
    raises :class:`NBCResourceError` naming ``NOODLE_EXEC_MAX_ITERATIONS``. A program without loops
    costs one cached lookup.
    """
    if not has_loops(program):
        yield None
        return
    from noodle.config import get_settings  # noqa: PLC0415  (config is read at run time)

    settings = get_settings()
    static = program.meta.get("_static_work")
    if static is None:
        static = program.meta["_static_work"] = estimate(program).work_elements
    budget = LoopBudget(static, int(settings.exec_max_elements), int(settings.exec_max_iterations))
    token = LOOP_GUARD.set(budget)
    try:
        yield budget
    finally:
        LOOP_GUARD.reset(token)


__all__ = ["Estimate", "Limits", "LoopBudget", "available_bytes", "bounded_loops", "check_resources",
           "current_limits", "estimate", "has_loops", "human_bytes", "human_count"]
