"""Resource bounds of a program, computed from its declared shapes before anything runs.

Why: NBC bytes may come from a file or a socket. A well-formed program of a
hundred bytes can broadcast an 8-byte input to 2**40 elements and sum it (the
interpreter would spin for hours) or multiply a (1e6, 1) by a (1, 1e6) input
(8 TB). Every shape is declared and verified, so what a program will allocate
and how many elements it will touch are known exactly up front; this module
bounds both and refuses a program over ``NOODLE_EXEC_MAX_BYTES`` or
``NOODLE_EXEC_MAX_ELEMENTS`` with :class:`~noodle.errors.NBCResourceError`,
naming the instruction, instead of hanging or exhausting the machine.

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

from dataclasses import dataclass

import numpy as np

from noodle.errors import NBCResourceError
from noodle.ir.graph import Node, Program

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
    return Limits(max_bytes, max_elements, bytes_source, f"NOODLE_EXEC_MAX_ELEMENTS={max_elements}")


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
    if node.op in _REDUCE:
        n = _size(nodes[node.args[0]].shape)
        # the defined-order sum (noodle.ir.reduction) reads its input as float64, laid out with the
        # reduced axes last (two copies of a broadcast view at most); max/min test for zeros
        return 16 * n if node.op in ("sum", "mean") else 2 * n
    return 0


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


__all__ = ["Estimate", "Limits", "available_bytes", "check_resources", "current_limits", "estimate",
           "human_bytes", "human_count"]
