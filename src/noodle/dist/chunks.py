"""Chunking and ordered reassembly: the pure bookkeeping of ``Processor.map``.

Why a separate module: the logic that splits items into chunks, puts chunk
results back in input order and checks that every item came back exactly once
is where "nothing lost, nothing duplicated" is decided. It needs no cluster, so
it is kept free of I/O and tested on its own (dask/distributed keeps its
scheduler state the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from noodle.errors import DistError


@dataclass(frozen=True)
class Chunk:
    """A contiguous run of input items: ``items[start:stop]``, sent to a worker as one task."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def plan_chunks(n_items: int, chunk_size: int) -> list[Chunk]:
    """Split ``n_items`` into contiguous chunks of at most ``chunk_size`` items.

    >>> [(c.start, c.stop) for c in plan_chunks(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise DistError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if n_items < 0:
        raise DistError(f"cannot chunk a negative number of items ({n_items})")
    return [Chunk(i, start, min(start + chunk_size, n_items))
            for i, start in enumerate(range(0, n_items, chunk_size))]


class OrderedResults:
    """Collects chunk results as they complete, in any order, and gives them back in input order.

    A chunk delivered twice, a chunk with the wrong number of results, or a
    missing chunk at the end is an error, never a silently wrong list.

    >>> acc = OrderedResults(plan_chunks(3, 2))
    >>> acc.add(1, ["c"]); acc.add(0, ["a", "b"])
    >>> acc.results()
    ['a', 'b', 'c']
    """

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self._chunks = list(chunks)
        self._parts: list[list[Any] | None] = [None] * len(self._chunks)
        self._done = 0
        self._items_done = 0

    @property
    def done(self) -> int:
        """How many chunks have come back."""
        return self._done

    @property
    def items_done(self) -> int:
        """How many items have come back."""
        return self._items_done

    def add(self, chunk_index: int, values: Iterable[Any]) -> list[Any]:
        """Record one chunk's results; returns them as a list."""
        if not 0 <= chunk_index < len(self._chunks):
            raise DistError(f"result for unknown chunk {chunk_index} (map has {len(self._chunks)} chunks)")
        if self._parts[chunk_index] is not None:
            raise DistError(f"chunk {chunk_index} delivered twice; refusing to duplicate its results")
        values = list(values)
        expected = len(self._chunks[chunk_index])
        if len(values) != expected:
            raise DistError(f"chunk {chunk_index} returned {len(values)} results for {expected} items")
        self._parts[chunk_index] = values
        self._done += 1
        self._items_done += expected
        return values

    def results(self) -> list[Any]:
        """Every item's result in input order; raises if any chunk is missing."""
        missing = [i for i, part in enumerate(self._parts) if part is None]
        if missing:
            raise DistError(f"{len(missing)} chunk(s) never came back (first: {missing[0]}); no partial result")
        out: list[Any] = []
        for part in self._parts:
            out.extend(part)  # type: ignore[arg-type]
        return out


def group(seq: Sequence[Any], size: int) -> list[list[Any]]:
    """Adjacent groups of ``size`` (order kept), for tree reductions."""
    return [list(seq[i:i + size]) for i in range(0, len(seq), size)]
