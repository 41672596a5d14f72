"""``Processor``: one API for work on a local cluster of worker processes or on a remote Dask cluster.

Why Dask and no scheduler of our own: Dask distributed already does task
placement, work stealing, worker heartbeats, rescheduling after a worker dies
and giving up on a task that keeps killing workers (``allowed-failures``).
noodle adds what a user of the runtime asks for on top: chunking (a Dask task
costs milliseconds, so tiny items must travel in groups), results back in input
order with a check that none is lost or duplicated, reductions on the workers,
timeouts that cancel and report, GPU routing from noodle's device layer, clear
errors, progress and metrics.

Worker processes are started with Python's ``spawn``: a script that uses a
local ``Processor`` must keep its top-level code under
``if __name__ == "__main__":`` (as with ``multiprocessing``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from noodle import metrics
from noodle.config import get_settings
from noodle.dist import tasks as worker_tasks
from noodle.dist.chunks import plan_chunks
from noodle.dist.health import WorkerInfo, worker_infos
from noodle.dist.maprun import MapRun
from noodle.dist.progress import TASKS, WORKERS, MapProgress, want_bar
from noodle.errors import DistError, TaskTimeoutError, WorkerCrashError

_LIVE: weakref.WeakSet[Processor] = weakref.WeakSet()


def _close_all() -> None:
    for proc in list(_LIVE):
        try:
            proc.close()
        except Exception:  # interpreter exit: never turn shutdown into a traceback
            pass


atexit.register(_close_all)


def gpu_count() -> int:
    """GPUs noodle's device layer can use (0 if the device layer cannot tell)."""
    try:
        from noodle.devices import gpu_count as device_gpu_count

        return int(device_gpu_count())
    except Exception:  # no usable device layer: declare no GPU rather than fail the cluster
        return 0


def _is_jit_function(fn: Any) -> bool:
    """True for a ``@noodle.jit`` function (without importing the JIT when it was never used)."""
    api = sys.modules.get("noodle.jit.api")
    return api is not None and isinstance(fn, api.JitFunction)


class Task:
    """A submitted task: a thin handle on a Dask future plus a deadline.

    ``result()`` waits at most until the deadline (submission time + timeout);
    past it the task is cancelled, counted and reported as TaskTimeoutError.
    Dask cannot interrupt a Python function already running on a worker
    thread: a cancelled running task finishes in the background and its result
    is dropped.
    """

    __slots__ = ("future", "deadline", "timeout", "_proc")

    def __init__(self, proc: Processor, future: Any, timeout: float | None) -> None:
        self._proc = proc
        self.future = future
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    @property
    def key(self) -> str:
        """The Dask key of this task."""
        return str(self.future.key)

    @property
    def status(self) -> str:
        """Dask's status: pending, finished, error, cancelled, lost."""
        return str(self.future.status)

    def done(self) -> bool:
        """True once the task has finished, failed or been cancelled."""
        return bool(self.future.done())

    def cancel(self) -> None:
        """Cancel the task (a running one finishes in the background; its result is dropped)."""
        self.future.cancel()

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def result(self) -> Any:
        """The task's value; raises its exception, TaskTimeoutError or WorkerCrashError."""
        try:
            value = self.future.result(timeout=self.remaining())
        except TimeoutError as exc:
            if self.future.done():  # the function itself raised TimeoutError
                TASKS.labels("failed").inc()
                raise
            self._proc._timed_out([self.future], f"task {self.key}", self.timeout)
            raise TaskTimeoutError(
                f"task {self.key} did not finish within {self.timeout:g} s and was cancelled; "
                f"pass a larger timeout= or set NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT"
            ) from exc
        except Exception as exc:
            TASKS.labels("failed").inc()
            translated = self._proc._translate(exc, f"task {self.key}")
            if translated is exc:
                raise
            raise translated from exc
        TASKS.labels("completed").inc()
        return value

    def __repr__(self) -> str:
        return f"<noodle Task {self.key} {self.status}>"


class Processor:
    """Runs Python functions on Dask workers: a local cluster of processes, or a cluster by address.

    >>> with Processor(n_workers=2) as proc:          # doctest: +SKIP
    ...     proc.map(abs, range(-5, 5), chunk_size=3)
    [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]

    ``address=None`` starts a local cluster on first use (at most
    ``max_workers`` worker processes, ``threads_per_worker`` threads each,
    default 1 so CPU-bound pure-Python work really runs in parallel) and shuts
    it down on ``close()``, context exit or interpreter exit. An address
    (``tcp://host:port``) joins that scheduler; ``close()`` then only
    disconnects. ``resources`` are labels every local worker declares;
    ``gpus`` (default: what noodle's device layer found) gives that many
    local workers ``{'GPU': 1}`` so ``resources={'GPU': 1}`` work lands only
    there. ``allowed_failures`` is how many worker deaths a task may cause
    before it is failed (Dask's ``distributed.scheduler.allowed-failures``).
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None,
                 threads_per_worker: int | None = None, resources: Mapping[str, float] | None = None,
                 *, gpus: int | None = None, allowed_failures: int | None = None,
                 port: int | None = None) -> None:
        settings = get_settings()
        if address is None and not settings.distributed_processing:
            raise DistError(
                "distributed processing is disabled (NOODLE_SYNTAX_FIXER_DISTRIBUTED_PROCESSING=false); "
                "enable it or pass the address of an existing scheduler"
            )
        if address is not None and not (isinstance(address, str) and "://" in address):
            raise DistError(f"scheduler address must look like 'tcp://host:port', got {address!r}")
        max_workers = settings.max_workers
        if n_workers is None:
            n_workers = min(max_workers, os.cpu_count() or 1)
        if not isinstance(n_workers, int) or n_workers < 1:
            raise DistError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        if address is None and n_workers > max_workers:
            raise DistError(
                f"n_workers={n_workers} is above NOODLE_SYNTAX_FIXER_MAX_WORKERS={max_workers}; "
                f"ask for fewer workers or raise the setting"
            )
        if threads_per_worker is not None and (not isinstance(threads_per_worker, int) or threads_per_worker < 1):
            raise DistError(f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}")
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker or 1
        self.resources = dict(resources or {})
        self.gpus = gpu_count() if gpus is None else int(gpus)
        if self.gpus < 0:
            raise DistError(f"gpus must be >= 0, got {gpus!r}")
        self.allowed_failures = allowed_failures
        self.port = settings.coordinator_port if port is None else port
        self.default_timeout: float = float(settings.worker_timeout)
        self.default_chunk_size: int = settings.task_chunk_size
        self.start_seconds: float | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()

    # lifecycle -------------------------------------------------------------
    def start(self) -> Processor:
        """Start the local cluster or connect to the scheduler (done on first use anyway)."""
        with self._lock:
            if self._client is not None:
                return self
            t0 = time.perf_counter()
            from distributed import Client

            if self.address is not None:
                try:
                    self._client = Client(self.address, timeout=10, set_as_default=False)
                except OSError as exc:
                    raise DistError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from exc
            else:
                self._cluster = self._start_local_cluster()
                self._client = Client(self._cluster, set_as_default=False)
                self._client.wait_for_workers(self.n_workers, timeout=60)
            self.start_seconds = time.perf_counter() - t0
            _LIVE.add(self)
            metrics.emit("dist_start", address=self.scheduler_address, local=self.address is None,
                         dashboard=self.dashboard_address,
                         workers=len(self._client.scheduler_info(n_workers=-1).get("workers", {})),
                         seconds=round(self.start_seconds, 3))
            return self

    def _start_local_cluster(self) -> Any:
        from distributed import LocalCluster

        scheduler_kwargs = {}
        if self.allowed_failures is not None:
            scheduler_kwargs["allowed_failures"] = int(self.allowed_failures)
        try:
            cluster = LocalCluster(
                n_workers=0, threads_per_worker=self.threads_per_worker, processes=True,
                host="127.0.0.1", scheduler_port=self.port, dashboard_address="127.0.0.1:0",
                scheduler_kwargs=scheduler_kwargs,
            )
        except OSError as exc:
            raise DistError(
                f"cannot start the local scheduler on 127.0.0.1:{self.port}: {exc}; "
                f"set NOODLE_SYNTAX_FIXER_COORDINATOR_PORT=0 to use any free port"
            ) from exc
        # one spec per worker so that only the first `gpus` workers declare a GPU
        for i in range(self.n_workers):
            name, spec = next(iter(cluster.new_worker_spec().items()))
            declared = dict(self.resources)
            if i < self.gpus:
                declared["GPU"] = declared.get("GPU", 0) + 1
            options = dict(spec["options"])
            if declared:
                options["resources"] = declared
            cluster.worker_spec[name] = {"cls": spec["cls"], "options": options}
        cluster.scale(self.n_workers)
        return cluster

    def close(self) -> None:
        """Disconnect, and shut the local cluster down if this Processor started it."""
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
            _LIVE.discard(self)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> Processor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (starting the cluster if needed): the escape hatch to raw Dask."""
        if self._client is None:
            self.start()
        return self._client

    @property
    def scheduler_address(self) -> str:
        """The scheduler's ``tcp://`` address (give it to another Processor to share the cluster)."""
        return str(self.client.scheduler.address)

    @property
    def dashboard_address(self) -> str | None:
        """``http://host:port`` of the scheduler's HTTP server (/health, /metrics; /status needs bokeh)."""
        info = self.client.scheduler_info(n_workers=0)
        port = (info.get("services") or {}).get("dashboard")
        if port is None:
            return None
        host = self.scheduler_address.split("://", 1)[-1].rsplit(":", 1)[0]
        return f"http://{host}:{port}"

    # health ----------------------------------------------------------------
    def worker_pids(self) -> dict[str, int]:
        """Worker address -> process id (asks every worker; for fault injection and ``noodle workers``)."""
        return {str(k): int(v) for k, v in self.client.run(os.getpid).items()}

    def workers(self, pids: bool = True) -> list[WorkerInfo]:
        """Each worker's status, memory, task counts and last heartbeat, from the scheduler."""
        info = self.client.scheduler_info(n_workers=-1)
        rows = worker_infos(info, self.worker_pids() if pids else None)
        WORKERS.set(len(rows))
        return rows

    # work ------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 0, retries: int | None = None,
               timeout: float | None = None, resources: Mapping[str, float] | None = None,
               **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` on a worker; returns a Task (``.result()``).

        Higher ``priority`` runs first when the cluster is busy. ``retries``
        re-runs a task that raised (Dask's retries; a task that kills its
        worker is governed by ``allowed_failures`` instead). ``timeout``
        (default NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT) counts from submission.
        """
        future = self.client.submit(fn, *args, priority=priority, retries=retries,
                                    resources=dict(resources) if resources else None, pure=False, **kwargs)
        TASKS.labels("submitted").inc()
        return Task(self, future, self.default_timeout if timeout is None else float(timeout))

    def gather(self, tasks: Iterable[Task]) -> list[Any]:
        """Results of many tasks in the given order (one round trip), honouring their deadlines."""
        from distributed import wait

        tasks = list(tasks)
        if not tasks:
            return []
        # Wait up to the nearest deadline, then judge each task by its OWN deadline: a task with a
        # later deadline that is still running is waited for again, not cancelled early.
        pending = [t for t in tasks if not t.done()]
        while pending:
            deadlines = [t.remaining() for t in pending if t.deadline is not None]
            try:
                with self.client.as_current():
                    wait([t.future for t in pending], timeout=min(deadlines) if deadlines else None)
                break
            except TimeoutError as exc:
                pending = [t for t in pending if not t.done()]
                late = [t for t in pending if t.deadline is not None and t.remaining() <= 0]
                if late:
                    self._timed_out([t.future for t in late], f"{len(late)} task(s)", late[0].timeout)
                    raise TaskTimeoutError(
                        f"{len(late)} of {len(tasks)} task(s) passed their timeout and were cancelled "
                        f"(first: {late[0].key})"
                    ) from exc
        try:
            values = self.client.gather([t.future for t in tasks])
        except Exception as exc:
            TASKS.labels("failed").inc()
            translated = self._translate(exc, "a gathered task")
            if translated is exc:
                raise
            raise translated from exc
        TASKS.labels("completed").inc(len(tasks))
        return values

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], chunk_size: int | None = None,
            priority: int = 0, ordered: bool = True, reduce: Callable[[Any, Any], Any] | None = None,
            *, retries: int | None = None, timeout: float | None = None,
            resources: Mapping[str, float] | None = None, progress: bool | None = None) -> Any:
        """Apply ``fn`` to every item on the workers, ``chunk_size`` items per task.

        Returns a list in input order (``ordered=True``), or an iterator of
        ``(index, result)`` pairs as chunks complete (``ordered=False``), or,
        with ``reduce``, the single value ``reduce(reduce(r0, r1), r2)...``
        folded on the workers in input order (``reduce`` must be associative;
        it need not be commutative). ``timeout`` (default
        NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT) is a stall limit: if no chunk
        finishes for that long, every outstanding chunk is cancelled and
        TaskTimeoutError is raised. A chunk whose function raises cancels the
        rest and re-raises that exception with a note naming the chunk.
        A ``@noodle.jit`` function is sent as NBC bytes (see ``map_program``).
        """
        if _is_jit_function(fn):
            if reduce is not None:
                raise DistError("reduce= is not supported with a @noodle.jit function: map it, then reduce "
                                "the list (or reduce inside the jitted function)")
            return self.map_program(fn, items, chunk_size, priority, ordered, retries=retries,
                                    timeout=timeout, resources=resources, progress=progress)
        items = list(items)
        chunks = plan_chunks(len(items), self.default_chunk_size if chunk_size is None else chunk_size)
        client = self.client
        res = dict(resources) if resources else None
        stall = self.default_timeout if timeout is None else float(timeout)
        tag = uuid.uuid4().hex[:12]
        common = dict(priority=priority, retries=retries, resources=res, pure=False)
        if reduce is None:
            futures = client.map(worker_tasks.run_chunk, [fn] * len(chunks),
                                 [items[c.start:c.stop] for c in chunks],
                                 key=[f"noodle-map-{tag}-{c.index}" for c in chunks], **common)
        else:
            futures = client.map(worker_tasks.reduce_chunk, [fn] * len(chunks),
                                 [items[c.start:c.stop] for c in chunks], [reduce] * len(chunks),
                                 key=[f"noodle-reduce-{tag}-{c.index}" for c in chunks], **common)
        TASKS.labels("submitted").inc(len(futures))
        metrics.emit("dist_map", chunks=len(chunks), items=len(items), chunk_size=chunk_size, ordered=ordered,
                     reduce=reduce is not None)
        run = MapRun(self, chunks, futures, stall, MapProgress(len(items), len(chunks), want_bar(progress)))
        if reduce is not None:
            return run.reduce(reduce, common)
        if ordered:
            return run.ordered()
        return run.stream()

    def map_program(self, program: Any, items: Iterable[Any], chunk_size: int | None = None,
                    priority: int = 0, ordered: bool = True, *, compile: bool = True,
                    retries: int | None = None, timeout: float | None = None,
                    resources: Mapping[str, float] | None = None, progress: bool | None = None) -> Any:
        """Run a noodle program over items on the workers: programs travel as NBC bytes, never as pickled code.

        ``program`` is NBC bytes, a traced ``noodle`` Program, or a ``@noodle.jit``
        function (traced here on the first item to get its bytecode). Each item
        is a tuple of arrays (the program's arguments) or one array. Workers
        decode the bytes with ``noodle.nbc.loads`` (which validates every field),
        run them on a per-process Executor and, with ``compile=True``, compile
        once per worker first; compiled kernels go through the kernel cache
        under NOODLE_CACHE_DIR, so workers that share that path (all local
        workers do; on a cluster, point it at a shared filesystem) load a kernel
        another worker already built. Results and errors are as for ``map``.
        """
        from noodle.nbc import dumps, loads

        items = [item if isinstance(item, tuple) else (item,) for item in items]
        if isinstance(program, bytes | bytearray | memoryview):
            nbc = bytes(program)
        elif hasattr(program, "program_inputs") and callable(program.program_inputs):
            if not items:
                return [] if ordered else iter(())
            # scalars become 0-d inputs and captured arrays extra inputs: the workers get them all
            lowered = [program.program_inputs(*item) for item in items]
            nbc = lowered[0][0]
            if any(code != nbc for code, _ in lowered):
                raise DistError("map of a @noodle.jit function: the items need different programs (their "
                                "shapes, dtypes or static arguments differ); map each kind separately")
            items = [arrays for _, arrays in lowered]
        else:
            try:
                nbc = dumps(program)
            except Exception as exc:
                raise DistError(
                    f"map_program takes NBC bytes, a noodle Program or a @noodle.jit function, "
                    f"got {type(program).__name__}"
                ) from exc
        loads(nbc)  # fail here, once, with the NBCFormatError, rather than on every worker
        chunks = plan_chunks(len(items), self.default_chunk_size if chunk_size is None else chunk_size)
        tag = uuid.uuid4().hex[:12]
        futures = self.client.map(worker_tasks.run_program_chunk, [nbc] * len(chunks),
                                  [items[c.start:c.stop] for c in chunks], [bool(compile)] * len(chunks),
                                  key=[f"noodle-program-{tag}-{c.index}" for c in chunks], priority=priority,
                                  retries=retries, resources=dict(resources) if resources else None, pure=False)
        TASKS.labels("submitted").inc(len(futures))
        metrics.emit("dist_map", chunks=len(chunks), items=len(items), chunk_size=chunk_size, ordered=ordered,
                     program=True)
        stall = self.default_timeout if timeout is None else float(timeout)
        run = MapRun(self, chunks, futures, stall, MapProgress(len(items), len(chunks), want_bar(progress)))
        return run.ordered() if ordered else run.stream()

    def program_stats(self) -> dict[str, dict[str, Any]]:
        """Per worker: programs it ran (calls, interpreted/compiled, backend) and kernels built vs loaded from cache."""
        return {str(k): v for k, v in self.client.run(worker_tasks.program_stats).items()}

    # errors ----------------------------------------------------------------
    def _translate(self, exc: BaseException, what: str) -> BaseException:
        """Dask's KilledWorker becomes WorkerCrashError; other exceptions pass through."""
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            return WorkerCrashError(
                f"{what} killed {exc.allowed_failures + 1} worker process(es) in a row and was failed "
                f"(Dask's allowed-failures={exc.allowed_failures}, last worker {exc.last_worker.address}); "
                f"the function crashes its process (os._exit, a segfault, out of memory): fix it, or pass "
                f"allowed_failures= to Processor if the crashes are transient"
            )
        return exc

    def _timed_out(self, futures: list[Any], what: str, timeout: float | None) -> None:
        pending = [f for f in futures if not f.done()]
        if pending:
            self.client.cancel(pending)
        TASKS.labels("timeout").inc(max(1, len(pending)))
        metrics.emit("dist_timeout", what=what, timeout=timeout, cancelled=len(pending))
