"""The dynamic batcher: many small requests, one model run, each answer back to its own future.

Why this shape (Triton's dynamic batcher, Ray Serve's ``@serve.batch``): a
model run has a fixed cost that a batch of 32 rows pays once instead of 32
times, so under concurrent load one worker gathers queued requests until the
batch holds ``max_batch_size`` rows or the oldest request has waited
``max_queue_delay`` seconds, then runs them as one batch and splits the output
by row offsets. A batch that reaches one of the ``preferred_batch_sizes`` (the
sizes the optimizer measured fastest) with nothing else queued is sent at once
instead of waiting out the delay.

With no delay ("batch while busy"), closed-loop clients fall into a lockstep:
the one request answered first comes back while the other seven run, so the
batches alternate 1, 7, 1, 7 and run twice as often as needed. The batcher
therefore counts the requests it expects back (those it just answered plus
those still queued) and, when the queue runs dry short of that count, waits
for them a little longer: at most ``return_wait_fraction`` of the last batch's
run time (25% by default; 0 turns it off). A lone client is never held (it
expects only itself), and the wait is bounded by a share of the run it saves.

Correctness rules this module keeps:

* a request's rows are never mixed with another's: requests are concatenated
  in order along axis 0 and each gets exactly its own ``[offset, offset+rows)``
  slice back; only requests with the same trailing shapes and dtypes are put
  in one batch;
* when a batched run fails, or its outputs do not have one row per input row,
  each request of that batch is run again on its own, so one bad request
  fails only itself and a model that does not keep rows apart is never split;
* the queue is bounded: a full queue blocks ``submit`` for up to its timeout,
  then raises :class:`~noodle.errors.InferenceOverloadError` (backpressure);
* :meth:`DynamicBatcher.close` answers every request that was accepted (or,
  with ``cancel_pending=True``, fails it with
  :class:`~noodle.errors.InferenceShutdownError`); none is left hanging.

Example::

    import numpy as np
    b = DynamicBatcher(lambda feeds: {"y": feeds["x"] * 2}, lambda out: out["y"])
    fut = b.submit({"x": np.ones((3, 4), np.float32)}, rows=3)
    print(fut.result().shape)      # (3, 4)
    b.close()
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from noodle.errors import InferenceOverloadError, InferenceShutdownError

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class BatchStats:
    """What one dispatched batch looked like, for the metrics observer."""

    rows: int
    requests: int
    queue_delays_s: list[float]
    run_s: float
    split_ok: bool


@dataclass(eq=False)
class _Request:
    feeds: dict[str, np.ndarray]
    rows: int
    signature: tuple
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    on_result: Callable[[dict[str, np.ndarray]], None] | None = None


_STOP = object()


def signature_of(feeds: dict[str, np.ndarray]) -> tuple:
    """Requests can share a batch only when every input has the same dtype and trailing shape."""
    return tuple(sorted((name, arr.dtype.str, arr.shape[1:]) for name, arr in feeds.items()))


class DynamicBatcher:
    """Groups submitted requests into batches for ``run`` and resolves each request's future.

    ``run`` maps name -> batched array feeds to name -> output arrays; ``present``
    turns one request's slice of the outputs into what its future returns.
    ``observer`` (optional) is called with a :class:`BatchStats` after each batch.
    """

    def __init__(self, run: RunFn, present: Callable[[dict[str, np.ndarray]], Any], *,
                 max_batch_size: int = 64, max_queue_delay_s: float = 0.0, queue_size: int = 1024,
                 preferred_batch_sizes: tuple[int, ...] = (), submit_timeout_s: float = 30.0,
                 observer: Callable[[BatchStats], None] | None = None, name: str = "noodle-batcher",
                 return_wait_fraction: float = 0.25) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_queue_delay_s < 0:
            raise ValueError(f"max_queue_delay_s must be >= 0, got {max_queue_delay_s}")
        if not 0 <= return_wait_fraction <= 1:
            raise ValueError(f"return_wait_fraction must be in [0, 1], got {return_wait_fraction}")
        self._run = run
        self._present = present
        self.max_batch_size = int(max_batch_size)
        self.max_queue_delay_s = float(max_queue_delay_s)
        self.preferred_batch_sizes = frozenset(int(s) for s in preferred_batch_sizes)
        self.submit_timeout_s = float(submit_timeout_s)
        self.return_wait_fraction = float(return_wait_fraction)
        self._expected = 1          # requests expected in the next batch (see the module docstring)
        self._last_run_s = 0.0
        self._observer = observer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, int(queue_size)))
        self._lock = threading.Lock()
        self._no_entering = threading.Condition(self._lock)
        self._entering = 0
        self._closed = False
        self._cancel = False
        self._carry: deque[_Request] = deque()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ---- client side -------------------------------------------------------------------------------

    def submit(self, feeds: dict[str, np.ndarray], rows: int, timeout: float | None = None,
               on_result: Callable[[dict[str, np.ndarray]], None] | None = None) -> Future:
        """Queue one request of ``rows`` rows; returns its future. Blocks while the queue is full, for up
        to ``timeout`` (default: the batcher's ``submit_timeout_s``), then raises InferenceOverloadError.
        ``on_result`` sees the request's own outputs (name -> array) before its future is resolved."""
        with self._lock:
            if self._closed:
                raise InferenceShutdownError("the inference engine is closed; no new requests are accepted. "
                                             "Create a new engine to serve more requests.")
            self._entering += 1
        try:
            req = _Request(feeds, int(rows), signature_of(feeds), on_result=on_result)
            wait = self.submit_timeout_s if timeout is None else timeout
            try:
                self._queue.put(req, timeout=wait)
            except queue.Full:
                raise InferenceOverloadError(
                    f"the request queue stayed full ({self._queue.maxsize} requests) for {wait:.3g} s: the "
                    "engine is overloaded. Retry later, submit fewer concurrent requests, or raise the "
                    "queue size.") from None
            return req.future
        finally:
            with self._lock:
                self._entering -= 1
                if self._entering == 0:
                    self._no_entering.notify_all()

    def pending(self) -> int:
        """Requests accepted but not yet dispatched (approximate, for metrics and load shedding)."""
        return self._queue.qsize() + len(self._carry)

    def close(self, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Stop accepting requests, then answer every accepted one (or fail it with InferenceShutdownError
        when ``cancel_pending``). Waits up to ``timeout`` seconds for the worker; requests it could not
        reach by then are failed, never left unresolved."""
        with self._lock:
            if self._closed and not self._thread.is_alive():
                return
            self._closed = True
            self._cancel = self._cancel or cancel_pending
            while self._entering:          # a submit between its closed-check and its put finishes first
                self._no_entering.wait()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._cancel = True            # the worker is inside a model run: fail what it has not reached
        self._fail_leftovers()

    # ---- worker side -------------------------------------------------------------------------------

    def _fail_leftovers(self) -> None:
        err = InferenceShutdownError("the inference engine was closed before this request ran; it was not run. "
                                     "Submit it to a new engine.")
        while True:
            try:
                item = self._carry.popleft()
            except IndexError:
                break
            _fail(item.future, err)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                _fail(item.future, err)

    def _next(self, timeout: float | None) -> Any:
        if self._carry:
            return self._carry.popleft()
        if timeout is None:
            return self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait()
        return self._queue.get(timeout=timeout)

    def _loop(self) -> None:
        stopping = False
        while True:
            if stopping and not self._carry and self._queue.empty():
                return
            if self._cancel:               # only close() sets it, after refusing new requests
                self._fail_leftovers()
                return
            try:
                first = self._next(None if not stopping else 0)
            except queue.Empty:
                return
            if first is _STOP:
                stopping = True
                continue
            batch, stopping = self._gather(first, stopping)
            self._dispatch(batch)

    def _gather(self, first: _Request, stopping: bool) -> tuple[list[_Request], bool]:
        batch = [first]
        rows = first.rows
        deadline = first.enqueued + self.max_queue_delay_s
        # How long to wait, past the delay, for the requests answered last time to come back.
        return_deadline = time.perf_counter() + self.return_wait_fraction * self._last_run_s
        expected = self._expected
        deferred: list[_Request] = []
        # Only the carried-over requests that were already waiting are scanned once; new ones come
        # from the queue, so a request of another signature waits at most one batch.
        carry_scan = len(self._carry)
        while rows < self.max_batch_size:
            short = len(batch) < expected
            if rows in self.preferred_batch_sizes and self._queue.empty() and not carry_scan and not short:
                break      # a size measured fast, and nothing else waiting: do not wait out the delay
            if carry_scan:
                carry_scan -= 1
                item: Any = self._carry.popleft()
            else:
                until = max(deadline, return_deadline) if short else deadline
                wait = 0.0 if stopping else until - time.perf_counter()
                try:
                    item = self._queue.get_nowait() if wait <= 0 else self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if item is _STOP:
                stopping = True
                continue
            if item.signature != first.signature or rows + item.rows > self.max_batch_size:
                deferred.append(item)
                if rows + item.rows > self.max_batch_size and item.signature == first.signature:
                    break          # the next same-shaped request does not fit: this batch is full
                continue
            batch.append(item)
            rows += item.rows
        # Deferred requests go first next time, in arrival order.
        self._carry.extendleft(reversed(deferred))
        return batch, stopping

    def _dispatch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        if self._cancel:
            err = InferenceShutdownError("the inference engine was closed with cancel_pending=True before this "
                                         "request ran; it was not run.")
            for r in live:
                _fail(r.future, err)
            return
        now = time.perf_counter()
        delays = [now - r.enqueued for r in live]
        rows = sum(r.rows for r in live)
        t0 = time.perf_counter()
        split_ok = True
        if len(live) == 1:
            self._run_one(live[0])
        else:
            split_ok = self._run_batched(live, rows)
        run_s = time.perf_counter() - t0
        self._last_run_s = run_s
        # The clients just answered may send again; those queued meanwhile are already here.
        self._expected = len(live) + self.pending()
        if self._observer is not None:
            try:
                self._observer(BatchStats(rows, len(live), delays, run_s, split_ok))
            except Exception:   # metrics must never break serving
                pass

    def _run_one(self, req: _Request) -> None:
        try:
            out = self._run(req.feeds)
            _deliver(req, out, self._present)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the request's own future
            _fail(req.future, exc)

    def _run_batched(self, live: list[_Request], rows: int) -> bool:
        names = list(live[0].feeds)
        try:
            feeds = {n: np.concatenate([r.feeds[n] for r in live], axis=0) for n in names}
            out = self._run(feeds)
        except BaseException:  # noqa: BLE001 - retry one by one so a bad request fails only itself
            for r in live:
                self._run_one(r)
            return False
        if any(getattr(v, "ndim", 0) == 0 or v.shape[0] != rows for v in out.values()):
            # Outputs without one row per input row cannot be split by offsets: answer each alone.
            for r in live:
                self._run_one(r)
            return False
        offset = 0
        for r in live:
            part = {k: v[offset:offset + r.rows].copy() for k, v in out.items()}
            offset += r.rows
            try:
                _deliver(r, part, self._present)
            except BaseException as exc:  # noqa: BLE001
                _fail(r.future, exc)
        return True


def _deliver(req: _Request, out: dict[str, np.ndarray], present: Callable[[dict[str, np.ndarray]], Any]) -> None:
    if req.on_result is not None:
        try:
            req.on_result(out)
        except Exception:   # a cache write must never fail the request
            pass
    req.future.set_result(present(out))


def _fail(fut: Future, exc: BaseException) -> None:
    if fut.done():
        return
    if fut.running() or fut.set_running_or_notify_cancel():
        fut.set_exception(exc)
