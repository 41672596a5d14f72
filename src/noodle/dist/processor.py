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
import collections
import gc
import logging
import multiprocessing.process
import os
import socket
import sys
import tempfile
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
from noodle.errors import (
    ClusterConnectionError,
    DistArgumentError,
    DistError,
    DistTypeError,
    TaskTimeoutError,
    WorkerCrashError,
)

log = logging.getLogger("noodle.dist")

_PORT_ENV = "NOODLE_SYNTAX_FIXER_COORDINATOR_PORT"
_TIMEOUT_ENV = "NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT"
WORKER_START_TIMEOUT = 60.0  # seconds for local worker processes to start and register
RESTART_WAIT = 10.0  # seconds workers() waits for a nanny to restart a crashed worker process
CLIENT_MESSAGE_LOG = 0  # batches of sent messages the client keeps for debugging (Dask keeps 1,000)

# A spawned worker that re-imports an unguarded script writes here (the path travels in the
# environment) and exits; the parent, waiting for its workers, reads it and raises one clear error.
_SPAWN_REPORT_ENV = "NOODLE_DIST_SPAWN_REPORT"
_spawn_report: str | None = None

GUARD_HELP = """\
noodle.dist starts its local worker processes with Python's 'spawn': each one re-imports your
script, so code at the top level of the script runs again in every worker, and here it started
another Processor. Put the script's top-level work under the main guard:

    from noodle.dist import Processor

    def main():
        with Processor(n_workers=2) as proc:
            print(proc.map(abs, range(-5, 5)))

    if __name__ == "__main__":
        main()
"""

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


def _in_spawn_bootstrap() -> bool:
    """True while a process started by multiprocessing's spawn is still importing the parent's ``__main__``
    (as ``__mp_main__``): code running then is the script's unguarded top level, re-run in a child."""
    return bool(getattr(multiprocessing.process.current_process(), "_inheriting", False))


def _refuse_unguarded_start() -> None:
    """In a worker re-importing an unguarded script: tell the parent (which raises) and leave quietly."""
    report = os.environ.get(_SPAWN_REPORT_ENV)
    if report:
        try:
            with open(report, "w", encoding="utf-8") as f:
                f.write(GUARD_HELP)
        except OSError:
            pass
        else:
            # Exit at once (status 3) rather than raise: a traceback from every worker would bury the parent's
            # one message. The parent's Dask then fails this worker's nanny; _QuietFailedStart drops those
            # echoes because this report exists.
            raise SystemExit(3)
    raise DistError("a Processor was started while a spawned process imported the main script.\n" + GUARD_HELP)


def _spawn_report_path() -> str:
    """This process's report file for unguarded re-imports in its worker processes (set in the environment
    so the spawned workers inherit it)."""
    global _spawn_report
    if _spawn_report is None:
        _spawn_report = os.path.join(tempfile.gettempdir(),
                                     f"noodle-dist-spawn-{os.getpid()}-{uuid.uuid4().hex[:8]}.txt")
        atexit.register(_remove_quietly, _spawn_report)
    os.environ[_SPAWN_REPORT_ENV] = _spawn_report
    return _spawn_report


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _port_free(port: int) -> bool:
    """True if a server can bind 127.0.0.1:``port`` now (Dask's listener sets SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0 or timeout == float("inf"):
        raise DistArgumentError(
            f"timeout must be a number of seconds > 0 (or None for {_TIMEOUT_ENV}), got {timeout!r}"
        )
    return float(timeout)


def _check_retries(retries: Any) -> int | None:
    if retries is None:
        return None
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise DistArgumentError(f"retries must be an integer >= 0 (or None), got {retries!r}")
    return retries


def _check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise DistArgumentError(f"priority must be an integer (higher runs first), got {priority!r}")
    return priority


DEFAULT_REGION_SCOPE = "dist-task"  # the region scope of region=True: its warm chunks serve every task


def _check_region(region: Any) -> str | None:
    """The region scope tasks run in (None: no region) from ``region=``."""
    if region is None or region is False:
        return None
    if region is True:
        return DEFAULT_REGION_SCOPE
    if isinstance(region, str) and region:
        return region
    raise DistArgumentError(f"region must be True (a region of scope {DEFAULT_REGION_SCOPE!r} per task), False, or "
                            f"a scope name (a non-empty string), got {region!r}")


def _check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise DistTypeError(f"{what} must be a callable (a function), got {type(fn).__name__} {fn!r:.80}")


def _check_resources(resources: Mapping[str, float] | None) -> dict[str, float] | None:
    if not resources:
        return None
    if not isinstance(resources, Mapping):
        raise DistArgumentError(f"resources must be a mapping like {{'GPU': 1}}, got {resources!r}")
    out = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or isinstance(amount, bool) or not isinstance(amount, int | float) \
                or not amount > 0:
            raise DistArgumentError(f"resources must map names to amounts > 0 like {{'GPU': 1}}, got {resources!r}")
        out[name] = float(amount)
    return out


def _unpicklable(values: Iterable[Any]) -> str | None:
    """Name the first value that cannot be pickled ('argument 2: _thread.lock'), or None."""
    for i, value in enumerate(values):
        exc = worker_tasks._fails_to_pickle(value)
        if exc is not None:
            return f"{i}: a {type(value).__module__}.{type(value).__qualname__} ({exc})"
    return None


class _QuietPickleErrors(logging.Filter):
    """Drops Dask's 'Failed to serialize' log records while noodle submits: noodle raises one clear error."""

    active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.active, "on", False)


class _QuietFailedStart(logging.Filter):
    """Once a worker reported an unguarded re-import, drops Dask's echoes of the doomed start.

    Why: the workers exit, so Dask fails their nannies and reports it several times over ('Nanny failed
    to start' from tornado's callback handler, asyncio's 'Task exception was never retrieved' when the
    gathered start tasks are collected, possibly only at interpreter exit): ~90 lines of tracebacks that
    bury the one message that matters, noodle's DistError showing the guard. The filter is tripped by the
    report file itself (a record logged before noodle's poll saw it is dropped too) and only ever drops
    records about starting or closing nannies and workers; ``watch`` re-arms it for the next start.
    """

    _ECHOES = ("failed to start", "Task exception was never retrieved", "exited with status",
               "Nanny", "nanny", "Worker process", "CommClosedError", "Stream is closed")

    def __init__(self) -> None:
        super().__init__()
        self.report: str | None = None
        self.tripped = False

    def watch(self, report: str) -> None:
        self.report, self.tripped = report, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.tripped:
            if self.report is None or not os.path.exists(self.report):
                return True
            self.tripped = True
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {type(record.exc_info[1]).__name__} {record.exc_info[1]}"
        return not any(echo in text for echo in self._ECHOES)


_FAILED_START = _QuietFailedStart()
_QUIET = _QuietPickleErrors()


def _install_log_filters() -> None:
    """Attach noodle's filters to Dask's loggers (after importing distributed: its logging setup resets them)."""
    quiet_start = ("asyncio", "tornado.application", "distributed.nanny", "distributed.deploy.spec",
                   "distributed.core", "distributed.process", "distributed.worker", "distributed.scheduler")
    for name, filt in ([(n, _FAILED_START) for n in quiet_start]
                       + [("distributed.protocol.pickle", _QUIET), ("distributed.protocol.core", _QUIET)]):
        logger = logging.getLogger(name)
        if filt not in logger.filters:
            logger.addFilter(filt)


def _failed_nannies(cluster: Any) -> int:
    """How many of a local cluster's nannies gave up starting their worker process (Dask lists its nannies
    once every start attempt has ended, and then never retries)."""
    from distributed.core import Status

    return sum(1 for nanny in list(getattr(cluster, "workers", {}).values())
               if getattr(nanny, "status", None) in (Status.failed, Status.closed))


def _connection_lost(client: Any, exc: BaseException | None = None) -> bool:
    """True when the client no longer talks to a scheduler (Dask then cancels every future)."""
    if exc is not None and "scheduler-connection-lost" in str(exc):
        return True
    return client is not None and getattr(client, "status", "running") not in ("running", "newly-created")


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
            if self.future.done() and self.future.status == "error":  # the function itself raised TimeoutError
                TASKS.labels("failed").inc()
                raise
            if _connection_lost(self._proc._client, exc):
                TASKS.labels("failed").inc()
                raise self._proc._lost_error(f"task {self.key}") from exc
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
        if allowed_failures is not None and (isinstance(allowed_failures, bool) or not isinstance(allowed_failures, int)
                                             or allowed_failures < 0):
            raise DistArgumentError(f"allowed_failures must be an integer >= 0, got {allowed_failures!r}")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
            raise DistArgumentError(f"port must be an integer in 0..65535 (0 = any free port), got {port!r}")
        self.allowed_failures = allowed_failures
        self.port = settings.coordinator_port if port is None else port
        # who chose the port: a busy port someone chose is an error; the default being busy is not
        self._port_source = ("port=" if port is not None else
                             None if settings.sources.get("coordinator_port") == "default" else
                             f"{_PORT_ENV} ({settings.sources.get('coordinator_port')})")
        self.worker_ttl: float = float(settings.worker_timeout)
        self.default_timeout: float = float(settings.worker_timeout)
        self.default_chunk_size: int = settings.task_chunk_size
        self.start_seconds: float | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._closed = False
        self._scheduler_address: str | None = None
        self._satisfiable: set[frozenset[tuple[str, float]]] = set()
        self._lock = threading.Lock()

    # lifecycle -------------------------------------------------------------
    def start(self) -> Processor:
        """Start the local cluster or connect to the scheduler (done on first use anyway)."""
        with self._lock:
            if self._closed:
                raise DistError("this Processor was closed; create a new Processor to start or join a cluster "
                                "again (a closed one never starts a second cluster behind your back)")
            if self._client is not None:
                return self
            if _in_spawn_bootstrap():
                _refuse_unguarded_start()
            t0 = time.perf_counter()
            from distributed import Client

            _install_log_filters()

            if self.address is not None:
                try:
                    self._client = Client(self.address, timeout=10, set_as_default=False)
                except OSError as exc:
                    raise DistError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from exc
            else:
                report = _spawn_report_path()
                _remove_quietly(report)
                _FAILED_START.watch(report)
                self._cluster = self._start_local_cluster()
                try:
                    # Wait for the workers BEFORE connecting a client: Client(cluster) blocks until every
                    # nanny has started, so a worker re-importing an unguarded script was only noticed
                    # after Dask had failed its nanny and logged the failure several times over.
                    self._wait_for_local_workers(report)
                    self._client = Client(self._cluster, set_as_default=False)
                except BaseException:
                    self._shutdown_quietly()
                    raise
            self._trim_message_log()
            self._scheduler_address = str(self._client.scheduler.address)
            self.start_seconds = time.perf_counter() - t0
            _LIVE.add(self)
            metrics.emit("dist_start", address=self.scheduler_address, local=self.address is None,
                         dashboard=self.dashboard_address,
                         workers=len(self._client.scheduler_info(n_workers=-1).get("workers", {})),
                         seconds=round(self.start_seconds, 3))
            return self

    def _port_busy_error(self, port: int) -> DistError:
        hint = ("pass a free port, or port=0 for any free port" if self._port_source == "port=" else
                f"set {_PORT_ENV} to a free port, or to 0 for any free port")
        return DistError(
            f"the coordinator port {port} (set by {self._port_source}) is already in use on 127.0.0.1: another "
            f"program, or another script with a local Processor, listens there; {hint}"
        )

    def _start_local_cluster(self) -> Any:
        from distributed import LocalCluster

        # A silent worker (stopped, swapped out, stuck in C code holding the GIL) is removed after
        # NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT and its tasks move to healthy workers (Dask's worker-ttl;
        # Dask never waits less than 10 heartbeats, 5 s on a small cluster).
        scheduler_kwargs: dict[str, Any] = {"worker_ttl": self.worker_ttl}
        if self.allowed_failures is not None:
            scheduler_kwargs["allowed_failures"] = int(self.allowed_failures)
        port, fallback = self.port, False
        if port and not _port_free(port):
            if self._port_source is not None:
                raise self._port_busy_error(port)
            port, fallback = 0, True
        try:
            cluster = LocalCluster(
                n_workers=0, threads_per_worker=self.threads_per_worker, processes=True,
                host="127.0.0.1", scheduler_port=port, dashboard_address="127.0.0.1:0",
                scheduler_kwargs=scheduler_kwargs,
            )
        except (OSError, RuntimeError) as exc:
            if port and not _port_free(port):  # taken between the check and the bind
                if self._port_source is not None:
                    raise self._port_busy_error(port) from exc
            raise DistError(
                f"cannot start the local scheduler on 127.0.0.1:{port}: {exc}; "
                f"set {_PORT_ENV}=0 to use any free port"
            ) from exc
        if fallback:
            log.warning("the coordinator port %d (the default; %s is not set) is in use on this machine, so the "
                        "local scheduler listens on %s instead; set %s to choose a port (0 = any free port)",
                        self.port, _PORT_ENV, cluster.scheduler_address, _PORT_ENV)
        pc = getattr(cluster.scheduler, "periodic_callbacks", {}).get("worker-ttl")
        if pc is not None:  # Dask checks once per ttl: a silent worker could live for two ttls
            pc.callback_time = min(pc.callback_time, max(250.0, self.worker_ttl * 1000 / 5))
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

    def _wait_for_local_workers(self, report: str) -> None:
        """Wait for the local workers to register, failing at once if they re-imported an unguarded script."""
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while True:
            if os.path.exists(report):
                _FAILED_START.tripped = True
                raise DistError(
                    f"the worker processes re-ran the top level of {sys.argv[0] or 'your script'!r}, which starts "
                    f"a Processor: the script has no 'if __name__ == \"__main__\":' guard.\n{GUARD_HELP}"
                )
            started = len(self._cluster.scheduler.workers)
            if started >= self.n_workers:
                return
            failed = _failed_nannies(self._cluster)
            if failed:
                raise DistError(
                    f"{failed} of {self.n_workers} local worker processes failed to start; the log above says "
                    f"why (an import or an error at the top level of the script, memory), or ask for fewer workers"
                )
            if time.monotonic() > deadline:
                raise DistError(
                    f"only {started} of {self.n_workers} local worker processes started within "
                    f"{WORKER_START_TIMEOUT:g} s; the log above says why they fail (memory, imports), or ask "
                    f"for fewer workers"
                )
            time.sleep(0.05)

    def _shutdown_quietly(self) -> None:
        """Close what a failed start left behind, without Dask's shutdown noise hiding the real error."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        quiet = [logging.getLogger(n) for n in ("distributed", "distributed.nanny", "distributed.deploy.spec",
                                                 "tornado.application", "asyncio")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.CRITICAL)
        try:
            for part in (client, cluster):
                if part is not None:
                    try:
                        part.close()
                    except Exception:  # already failing: the caller's error is the one to report
                        pass
            gc.collect()  # Dask's failed start tasks report "exception never retrieved" when collected
        finally:
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)

    def _trim_message_log(self) -> None:
        """Keep the client's log of sent messages short.

        Why: Dask's client keeps its last 1,000 message batches for debugging,
        each holding the pickled tasks it carried; 50,000 submit() calls left
        about 500 MB there after every future was gone.
        """
        comm = getattr(self._client, "scheduler_comm", None)
        if comm is not None and hasattr(comm, "recent_message_log"):
            comm.recent_message_log = collections.deque(maxlen=CLIENT_MESSAGE_LOG)

    def close(self) -> None:
        """Disconnect, and shut the local cluster down if this Processor started it."""
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
            self._closed = True
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
        """Worker address -> process id (asks every worker; for fault injection and ``noodle workers``).

        A worker that dies while being asked is left out rather than failing the call."""
        return {str(k): int(v) for k, v in self.client.run(os.getpid, on_error="ignore").items()
                if isinstance(v, int)}

    def workers(self, pids: bool = True) -> list[WorkerInfo]:
        """Each worker's status, memory, task counts and last heartbeat, from the scheduler.

        On a local cluster a crashed worker's nanny starts a new process within
        seconds: the call waits up to RESTART_WAIT s for all of them, and a
        worker still missing then is listed with status ``restarting`` (an
        empty list just after a crash read as "no workers at all").
        """
        client = self.client
        info = client.scheduler_info(n_workers=-1)
        if self._cluster is not None and len(info.get("workers") or {}) < self.n_workers:
            try:
                client.wait_for_workers(self.n_workers, timeout=RESTART_WAIT)
            except Exception:  # TimeoutError: report what is there, and the rest as restarting
                pass
            info = client.scheduler_info(n_workers=-1)
        rows = worker_infos(info, self.worker_pids() if pids else None)
        if self._cluster is not None:
            rows += [WorkerInfo(address="-", name=f"restarting-{i}", status="restarting",
                                nthreads=self.threads_per_worker, memory_bytes=0, memory_limit_bytes=0, executing=0,
                                ready=0, in_memory=0, last_seen=0.0)
                     for i in range(self.n_workers - len(rows))]
        WORKERS.set(sum(1 for r in rows if r.status != "restarting"))
        return rows

    # work ------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 0, retries: int | None = None,
               timeout: float | None = None, resources: Mapping[str, float] | None = None,
               region: bool | str = False, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` on a worker; returns a Task (``.result()``).

        Higher ``priority`` runs first when the cluster is busy. ``retries``
        re-runs a task that raised (Dask's retries; a task that kills its
        worker is governed by ``allowed_failures`` instead). ``timeout``
        (default NOODLE_SYNTAX_FIXER_WORKER_TIMEOUT) counts from submission.
        ``region``: run the task in a memory region, as for :meth:`map`.
        """
        _check_callable(fn, "submit's first argument")
        priority, retries = _check_priority(priority), _check_retries(retries)
        timeout = _check_timeout(timeout)
        scope = _check_region(region)
        res = self._require_resources(resources)
        from dask.utils import funcname

        key = f"{funcname(fn)}-{uuid.uuid4()}"
        common = dict(key=key, priority=priority, retries=retries, resources=res, pure=False)
        if scope is None:
            task, task_args, task_kwargs = worker_tasks.call_checked, (fn, *args), kwargs
        else:
            task, task_args, task_kwargs = worker_tasks.call_in_region, (scope, fn, args, kwargs), {}
        future = self._send("submit", lambda: self.client.submit(task, *task_args, **common, **task_kwargs),
                            [fn, *args, *kwargs.values()])
        TASKS.labels("submitted").inc()
        return Task(self, future, self.default_timeout if timeout is None else timeout)

    def _send(self, what: str, send: Callable[[], Any], parts: list[Any]) -> Any:
        """Run a client.submit/map; an argument that cannot be pickled becomes one DistTypeError naming it."""
        _QUIET.active.on = True
        try:
            return send()
        except Exception as exc:
            if _connection_lost(self._client, exc):
                raise self._lost_error(what) from exc
            culprit = _unpicklable(parts)
            if culprit is None:
                raise
            raise DistTypeError(
                f"{what}: value {culprit} cannot be pickled, so it cannot be sent to a worker (value 0 is the "
                f"function); pass plain data, or create the object inside the function on the worker"
            ) from None
        finally:
            _QUIET.active.on = False

    def _require_resources(self, resources: Mapping[str, float] | None) -> dict[str, float] | None:
        """Fail at once when no worker declares the resources asked for (the work would wait forever)."""
        res = _check_resources(resources)
        if not res:
            return res
        wanted = frozenset(res.items())
        if wanted in self._satisfiable:
            return res
        if self._cluster is not None or (self._client is None and self.address is None):
            declared = [dict(self.resources, **({"GPU": self.resources.get("GPU", 0) + 1} if i < self.gpus else {}))
                        for i in range(self.n_workers)]
            where = f"none of the {self.n_workers} local workers declares it"
            advice = ("pass gpus= to Processor for GPU workers (noodle found "
                      f"{gpu_count()} GPU(s) here), or resources= for other labels")
        else:
            workers = (self.client.scheduler_info(n_workers=-1).get("workers") or {}).values()
            declared = [dict(w.get("resources") or {}) for w in workers]
            where = f"none of the {len(declared)} workers connected to {self.scheduler_address} declares it"
            advice = "start workers with --resources (e.g. dask worker --resources GPU=1)"
        if any(all(d.get(k, 0) >= v for k, v in res.items()) for d in declared):
            self._satisfiable.add(wanted)
            return res
        raise DistError(f"resources={res!r} can never be met: {where}, so the work would wait for its whole "
                        f"timeout; {advice}, or drop resources=")

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
                if _connection_lost(self._client, exc):
                    raise self._lost_error(f"{len(tasks)} gathered task(s)") from exc
                pending = [t for t in pending if not t.done()]
                late = [t for t in pending if t.deadline is not None and t.remaining() <= 0]
                if late:
                    self._timed_out([t.future for t in late], f"{len(late)} task(s)", late[0].timeout)
                    raise TaskTimeoutError(
                        f"{len(late)} of {len(tasks)} task(s) passed their timeout and were cancelled "
                        f"(first: {late[0].key})"
                    ) from exc
            except Exception as exc:  # Dask cancels every future when the scheduler connection is lost
                translated = self._translate(exc, f"{len(tasks)} gathered task(s)")
                if translated is exc:
                    raise
                raise translated from exc
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
            resources: Mapping[str, float] | None = None, progress: bool | None = None,
            region: bool | str = False) -> Any:
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

        ``region=True`` runs each chunk in its own memory region
        (``noodle.region('dist-task')``; a string names another scope): the
        chunk's temporaries go back to warm chunks when it ends, so a worker's
        memory returns to its baseline between chunks, and registered cyclic
        objects die without the garbage collector. Region arrays in the results
        are copied to the heap first (see :mod:`noodle.dist.tasks`); the
        regions' figures reach this process's metrics (``noodle_dist_region_*``).
        """
        scope = _check_region(region)
        if _is_jit_function(fn):
            if reduce is not None:
                raise DistError("reduce= is not supported with a @noodle.jit function: map it, then reduce "
                                "the list (or reduce inside the jitted function)")
            return self.map_program(fn, items, chunk_size, priority, ordered, retries=retries,
                                    timeout=timeout, resources=resources, progress=progress, region=region)
        _check_callable(fn, "map's first argument")
        if reduce is not None:
            _check_callable(reduce, "reduce=")
        priority, retries = _check_priority(priority), _check_retries(retries)
        timeout = _check_timeout(timeout)
        if isinstance(items, str | bytes) or not isinstance(items, Iterable):
            raise DistTypeError(f"map's items must be an iterable of items (a list, a range...), "
                                f"got {type(items).__name__}")
        items = list(items)
        chunks = plan_chunks(len(items), self.default_chunk_size if chunk_size is None else chunk_size)
        res = self._require_resources(resources)
        client = self.client
        stall = self.default_timeout if timeout is None else timeout
        tag = uuid.uuid4().hex[:12]
        common = dict(priority=priority, retries=retries, resources=res, pure=False)
        in_region = [] if scope is None else [[scope] * len(chunks)]   # unchanged tasks without a region
        if reduce is None:
            futures = self._send("map", lambda: client.map(
                worker_tasks.run_chunk, [fn] * len(chunks), [items[c.start:c.stop] for c in chunks], *in_region,
                key=[f"noodle-map-{tag}-{c.index}" for c in chunks], **common), [fn, *items])
        else:
            futures = self._send("map", lambda: client.map(
                worker_tasks.reduce_chunk, [fn] * len(chunks), [items[c.start:c.stop] for c in chunks],
                [reduce] * len(chunks), *in_region, key=[f"noodle-reduce-{tag}-{c.index}" for c in chunks],
                **common), [fn, *items])
        TASKS.labels("submitted").inc(len(futures))
        metrics.emit("dist_map", chunks=len(chunks), items=len(items), chunk_size=chunk_size, ordered=ordered,
                     reduce=reduce is not None, region=scope)
        run = MapRun(self, chunks, futures, stall, MapProgress(len(items), len(chunks), want_bar(progress)))
        if reduce is not None:
            return run.reduce(reduce, common)
        if ordered:
            return run.ordered()
        return run.stream()

    def map_program(self, program: Any, items: Iterable[Any], chunk_size: int | None = None,
                    priority: int = 0, ordered: bool = True, *, compile: bool = True,
                    retries: int | None = None, timeout: float | None = None,
                    resources: Mapping[str, float] | None = None, progress: bool | None = None,
                    region: bool | str = False) -> Any:
        """Run a noodle program over items on the workers: programs travel as NBC bytes, never as pickled code.

        ``program`` is NBC bytes, a traced ``noodle`` Program, or a ``@noodle.jit``
        function (traced here on the first item to get its bytecode). Each item
        is a tuple of arrays (the program's arguments) or one array. Workers
        decode the bytes with ``noodle.nbc.loads`` (which validates every field),
        run them on a per-process Executor and, with ``compile=True``, compile
        once per worker first; compiled kernels go through the kernel cache
        under NOODLE_CACHE_DIR, so workers that share that path (all local
        workers do; on a cluster, point it at a shared filesystem) load a kernel
        another worker already built. Results, errors and ``region`` are as for ``map``.
        """
        from noodle.nbc import dumps, loads

        scope = _check_region(region)

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
        priority, retries = _check_priority(priority), _check_retries(retries)
        timeout = _check_timeout(timeout)
        chunks = plan_chunks(len(items), self.default_chunk_size if chunk_size is None else chunk_size)
        res = self._require_resources(resources)
        tag = uuid.uuid4().hex[:12]
        in_region = [] if scope is None else [[scope] * len(chunks)]
        futures = self.client.map(worker_tasks.run_program_chunk, [nbc] * len(chunks),
                                  [items[c.start:c.stop] for c in chunks], [bool(compile)] * len(chunks),
                                  *in_region, key=[f"noodle-program-{tag}-{c.index}" for c in chunks], priority=priority,
                                  retries=retries, resources=res, pure=False)
        TASKS.labels("submitted").inc(len(futures))
        metrics.emit("dist_map", chunks=len(chunks), items=len(items), chunk_size=chunk_size, ordered=ordered,
                     program=True)
        stall = self.default_timeout if timeout is None else timeout
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
        if _connection_lost(self._client, exc):
            return self._lost_error(what)
        if "CancelledError" in type(exc).__name__:
            return DistError(f"{what} was cancelled before it finished (by Processor.close(), a timeout, or "
                             f"client.cancel); submit it again to run it")
        return exc

    def _lost_error(self, what: str) -> ClusterConnectionError:
        return ClusterConnectionError(
            f"{what} failed: the connection to the Dask scheduler at {self._scheduler_address or self.address} "
            f"was lost (the cluster stopped, was closed or crashed), and Dask dropped every task it had. "
            f"Nothing was computed twice or half-returned; check that the scheduler is running, then start "
            f"a new Processor and submit the work again"
        )

    def _timed_out(self, futures: list[Any], what: str, timeout: float | None) -> None:
        pending = [f for f in futures if not f.done()]
        if pending:
            self.client.cancel(pending)
        TASKS.labels("timeout").inc(max(1, len(pending)))
        metrics.emit("dist_timeout", what=what, timeout=timeout, cancelled=len(pending))
