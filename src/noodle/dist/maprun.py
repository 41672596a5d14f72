"""One map in flight: drains chunk futures as they complete, watches for stalls, checks every chunk.

Why its own object: ordered lists, streams and reductions share the same
draining loop, and the same rules: a chunk's results are taken once (an
``OrderedResults`` refuses duplicates and reports gaps), the first failed
chunk cancels the others, and a stall (no chunk done for ``timeout`` seconds)
cancels everything outstanding and raises TaskTimeoutError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from noodle.dist import tasks as worker_tasks
from noodle.dist.chunks import OrderedResults, group
from noodle.dist.progress import ACTIVE_MAPS, REGIONS, TASKS, MapProgress
from noodle.errors import DistError, TaskTimeoutError, WorkerCrashError

if TYPE_CHECKING:
    from noodle.dist.processor import Processor

REDUCE_FAN_IN = 8  # partial results folded per reduction task


class MapRun:
    """One map in flight: drains futures as they complete, watches for stalls, checks every chunk."""

    def __init__(self, proc: Processor, chunks: list[Any], futures: list[Any], stall: float,
                 progress: MapProgress) -> None:
        self.proc = proc
        self.chunks = chunks
        self.futures = futures
        self.index = {f.key: i for i, f in enumerate(futures)}
        self.stall = stall
        self.progress = progress
        self.last_progress = time.monotonic()
        self.timed_out = False
        self._finished = threading.Event()
        ACTIVE_MAPS.begin(self, stall)
        self._watchdog = threading.Thread(target=self._watch, name="noodle-dist-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        # Progress is chunks finishing on the cluster, not the caller taking results: a slow consumer
        # of a stream must not get chunks that are still running (and on time) cancelled.
        # It also ends the map's "active" entry once nothing is left on the cluster, even when the caller
        # never drains a stream (its draining loop, which ends it too, may never run).
        step = min(1.0, max(0.01, self.stall / 4))
        done_before = 0
        try:
            while not self._finished.wait(step):
                done = sum(1 for f in self.futures if f.done())
                if done == len(self.futures):
                    return
                if done != done_before:
                    done_before, self.last_progress = done, time.monotonic()
                    ACTIVE_MAPS.chunk(self)
                elif time.monotonic() - self.last_progress > self.stall:
                    self.timed_out = True
                    self.proc._timed_out(self.futures, f"map of {len(self.chunks)} chunk(s)", self.stall)
                    return
        finally:
            ACTIVE_MAPS.end(self)

    def _finish(self) -> None:
        ACTIVE_MAPS.end(self)
        self._finished.set()
        self.progress.close()

    def _fail(self, future: Any, result: Any) -> BaseException:
        """Cancel the rest and return the exception to raise for this failed/cancelled chunk."""
        self.proc.client.cancel([f for f in self.futures if not f.done()])
        if self.timed_out:
            return TaskTimeoutError(
                f"map stalled: no chunk finished within {self.stall:g} s; {len(self.chunks)} chunk(s), "
                f"outstanding ones cancelled. Pass a larger timeout= or set NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT"
            )
        TASKS.labels("failed").inc()
        i = self.index.get(future.key, -1)
        chunk = self.chunks[i] if i >= 0 else None
        where = f"map chunk {i} (items {chunk.start}..{chunk.stop - 1})" if chunk else "a map chunk"
        if isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException):
            result = result[1].with_traceback(result[2])  # Dask hands errors over as (type, value, tb)
        from noodle.dist.processor import _connection_lost

        if future.status == "cancelled" and _connection_lost(self.proc._client, result):
            return self.proc._lost_error(f"a map of {len(self.chunks)} chunk(s)")
        if future.status == "cancelled" or not isinstance(result, BaseException):
            return DistError(f"{where} was cancelled before it finished (was the cluster closed?)")
        exc = self.proc._translate(result, where)
        if exc is result:
            exc.add_note(f"noodle: raised in {where}")
        elif isinstance(exc, WorkerCrashError):
            exc.args = (exc.args[0] + self._other_crashed(future),)
        return exc

    def _other_crashed(self, failed: Any) -> str:
        """Name every chunk Dask failed for killing workers: a death counts against every task running on
        the dying worker, so a chunk running beside a crasher can be blamed too (rarely, with the default
        allowed-failures=3)."""
        from distributed.scheduler import KilledWorker

        time.sleep(0.05)  # failures decided together reach the client in the same batch
        others = []
        for f in self.futures:
            if f is not failed and f.status == "error":
                try:
                    if isinstance(f.exception(timeout=1), KilledWorker):
                        others.append(self.index[f.key])
                except Exception:
                    pass
        if not others:
            return ""
        listed = ", ".join(f"{i} (items {self.chunks[i].start}..{self.chunks[i].stop - 1})" for i in sorted(others))
        return f". Also failed for killed workers: chunk {listed}"

    def _completed(self, keep: Any = None) -> Iterator[tuple[Any, Any]]:
        """(future, (worker, value)) as chunks finish; raises on the first failed or cancelled chunk.

        ``keep``: a future not to release (a reduction's final value, which is a chunk's own future
        when there is only one chunk).

        Each finished chunk's future is released as soon as its result is here
        (every chunk that finished meanwhile with it, before any is handed on):
        while the client holds a future, Dask keeps the result on its worker
        and, if that worker dies, computes the chunk again. Released, a dead
        worker's delivered chunks are not rerun (5 worker kills in a 2,000-item
        map ran 731 items twice before).
        """
        from distributed import as_completed

        try:
            for batch in as_completed(self.futures, with_results=True, raise_errors=False,
                                      loop=self.proc.client.loop).batches():
                for future, result in batch:
                    if future.status != "finished":
                        raise self._fail(future, result)
                ACTIVE_MAPS.chunk(self)
                for future, _ in batch:  # a reduction's combine tasks still hold theirs on the scheduler
                    if future is not keep:
                        future.release()
                for future, result in batch:
                    if len(result) > 2:  # the chunk ran in a region: (worker, value, its figures)
                        REGIONS.record(result[0], result[2])
                    yield future, result[:2]
        finally:
            self._finish()

    def ordered(self) -> list[Any]:
        acc = OrderedResults(self.chunks)
        for future, (worker, values) in self._completed():
            acc.add(self.index[future.key], values)
            self.progress.chunk_done(len(values), worker)
        return acc.results()

    def stream(self) -> Iterator[tuple[int, Any]]:
        acc = OrderedResults(self.chunks)

        def gen() -> Iterator[tuple[int, Any]]:
            for future, (worker, values) in self._completed():
                i = self.index[future.key]
                acc.add(i, values)
                self.progress.chunk_done(len(values), worker)
                yield from enumerate(values, self.chunks[i].start)
            acc.results()  # raises if anything went missing

        return gen()

    def reduce(self, combine: Callable[[Any, Any], Any], common: dict[str, Any]) -> Any:
        if not self.futures:
            self._finish()
            raise DistError("map with reduce= needs at least one item (there is no identity to return)")
        client = self.proc.client
        layer = list(self.futures)
        while len(layer) > 1:  # ordered tree: adjacent partials, left to right
            layer = [client.submit(worker_tasks.combine_partials, combine, part, **common)
                     for part in group(layer, REDUCE_FAN_IN)]
            TASKS.labels("submitted").inc(len(layer))
        final = layer[0]
        for future, (worker, _) in self._completed(keep=final):
            self.progress.chunk_done(len(self.chunks[self.index[future.key]]), worker)
        try:
            value = final.result(timeout=self.stall)[1]
        except TimeoutError as exc:
            self.proc._timed_out([final], "reduction", self.stall)
            raise TaskTimeoutError(f"the final reduction did not finish within {self.stall:g} s") from exc
        except Exception as exc:
            TASKS.labels("failed").inc()
            translated = self.proc._translate(exc, "the reduction")
            if translated is exc:
                raise
            raise translated from exc
        return value
