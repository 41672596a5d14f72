"""A true sampling CPU profiler, a tracemalloc memory trace, and GPU ranges, behind ``nd.profile``.

Why not pyinstrument or cProfile for the capture: both hook every call and
slowed a recursive fib 5.5-6x on the reference machine. Here a daemon thread
wakes every ``interval`` seconds, reads the target thread's stack from
``sys._current_frames()`` and counts it; the profiled code runs untouched, so
the cost is one stack walk per interval (about 1 % at 5 ms). Each sample is
weighted by the real time since the previous one, so GIL delays do not skew
the shares.

The result is a :class:`ProfileSession`, a plain serializable object;
HTML flame graph, speedscope JSON and JSON are renderers of it
(:mod:`noodle.monitor.render`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from noodle.errors import MonitorError

DEFAULT_INTERVAL = 0.005  # seconds between samples (the GIL switch interval bounds it anyway)
FORMAT = "noodle-profile/1"

_latest_lock = threading.Lock()
_latest: ProfileSession | None = None


@dataclass
class ProfileSession:
    """One profile: interned frames, aggregated stacks with sample counts and seconds, memory and GPU data.

    ``stacks`` rows are ``{"frames": [frame ids, root first], "count": samples, "weight": seconds}``.
    ``memory`` is None unless traced: ``{"peak_bytes", "current_bytes", "top": [{file, line, size, count}]}``.
    """

    name: str
    started: float
    duration: float
    interval: float
    sample_count: int
    frames: list[dict[str, Any]]
    stacks: list[dict[str, Any]]
    memory: dict[str, Any] | None = None
    gpu: list[dict[str, Any]] = field(default_factory=list)
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileSession:
        """Rebuild a session from :meth:`to_json` output (validated, so a bad file fails clearly)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MonitorError(f"not a {FORMAT} profile (wrong or missing 'format')")
        try:
            session = cls(**{k: data[k] for k in (
                "name", "started", "duration", "interval", "sample_count", "frames", "stacks")},
                memory=data.get("memory"), gpu=list(data.get("gpu") or []))
            n = len(session.frames)
            for row in session.stacks:
                if not all(isinstance(i, int) and 0 <= i < n for i in row["frames"]):
                    raise ValueError("a stack refers to a frame that does not exist")
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(f"malformed profile: {exc}") from None
        return session

    def export_metrics(self, format: str = "json") -> str:  # noqa: A002 - the seed's name
        """The session as text: ``json`` (this object), ``speedscope`` or ``html`` (flame graph)."""
        from noodle.monitor.render import to_html, to_speedscope

        if format == "json":
            return json.dumps(self.to_json())
        if format == "speedscope":
            return json.dumps(to_speedscope(self))
        if format == "html":
            return to_html(self)
        raise MonitorError(f"unknown profile format {format!r}: use json, speedscope or html")

    def total_seconds(self) -> float:
        return sum(row["weight"] for row in self.stacks)

    def top_functions(self, n: int = 10) -> list[tuple[str, float, float]]:
        """(function, self seconds, total seconds) of the ``n`` functions with most self time."""
        self_t: dict[int, float] = {}
        total_t: dict[int, float] = {}
        for row in self.stacks:
            ids = row["frames"]
            if ids:
                self_t[ids[-1]] = self_t.get(ids[-1], 0.0) + row["weight"]
            for i in set(ids):
                total_t[i] = total_t.get(i, 0.0) + row["weight"]
        order = sorted(self_t, key=lambda i: -self_t[i])[:n]
        return [(_label(self.frames[i]), self_t[i], total_t[i]) for i in order]

    def save(self, path_prefix: str | os.PathLike[str]) -> dict[str, str]:
        """Write ``<prefix>.html`` (flame graph), ``<prefix>.speedscope.json`` and ``<prefix>.json``."""
        from noodle.monitor.render import to_html, to_speedscope

        prefix = Path(path_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        outputs = {
            "html": (prefix.with_name(prefix.name + ".html"), to_html(self)),
            "speedscope": (prefix.with_name(prefix.name + ".speedscope.json"), json.dumps(to_speedscope(self))),
            "json": (prefix.with_name(prefix.name + ".json"), json.dumps(self.to_json())),
        }
        paths: dict[str, str] = {}
        for kind, (path, text) in outputs.items():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            paths[kind] = str(path)
        return paths


def _label(frame: dict[str, Any]) -> str:
    return f"{frame['name']} ({os.path.basename(frame['file'])}:{frame['line']})"


def latest_profile() -> ProfileSession | None:
    """The most recently finished profile in this process (what ``/api/profile`` serves)."""
    return _latest


def _set_latest(session: ProfileSession) -> None:
    global _latest
    with _latest_lock:
        _latest = session


class SamplingProfiler:
    """Samples one thread's stack every ``interval`` seconds from a background thread.

    Example::

        p = SamplingProfiler(interval=0.005, memory=True)
        p.start(); work(); session = p.stop()
        session.save("out/profile")
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL, memory: bool = False, name: str = "profile",
                 thread_id: int | None = None, memory_top: int = 20) -> None:
        if not isinstance(interval, (int, float)) or not (0.0005 <= interval <= 10.0):
            raise MonitorError(f"profiler interval {interval!r} must be a number of seconds in [0.0005, 10]")
        self.interval = float(interval)
        self.memory = memory
        self.memory_top = memory_top
        self.name = name
        self.thread_id = thread_id
        self._frame_ids: dict[Any, int] = {}
        self._frames: list[dict[str, Any]] = []
        self._stacks: dict[tuple[int, ...], list[float]] = {}
        self._samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._t0 = 0.0
        self._own_tracemalloc = False
        self.gpu: list[dict[str, Any]] = []

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, session_id: str | None = None) -> SamplingProfiler:
        """Start sampling; ``session_id`` (optional) names the session (the seed's
        ``RealTimeProfiler.start(session_id)``)."""
        if session_id is not None:
            self.name = str(session_id)
        if self._thread is not None:
            raise MonitorError("this profiler is already running; stop() it before starting again")
        if self.thread_id is None:
            self.thread_id = threading.get_ident()
        if self.memory and not tracemalloc.is_tracing():
            tracemalloc.start(1)
            self._own_tracemalloc = True
        elif self.memory:
            tracemalloc.reset_peak()
        self._started = time.time()
        self._t0 = time.perf_counter()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="noodle-profiler", daemon=True)
        self._thread.start()
        _active.append(self)
        return self

    def _intern(self, code: Any) -> int:
        fid = self._frame_ids.get(code)
        if fid is None:
            fid = len(self._frames)
            self._frame_ids[code] = fid
            self._frames.append({"name": getattr(code, "co_qualname", code.co_name),
                                 "file": code.co_filename, "line": code.co_firstlineno})
        return fid

    def _run(self) -> None:
        target = self.thread_id
        last = time.perf_counter()
        wait = self._stop.wait
        interval = self.interval
        while not wait(interval):
            frame = sys._current_frames().get(target)
            now = time.perf_counter()
            elapsed, last = now - last, now
            if frame is None:
                continue
            ids = []
            while frame is not None:
                ids.append(self._intern(frame.f_code))
                frame = frame.f_back
            ids.reverse()
            key = tuple(ids)
            slot = self._stacks.get(key)
            if slot is None:
                self._stacks[key] = [1, elapsed]
            else:
                slot[0] += 1
                slot[1] += elapsed
            self._samples += 1

    def stop(self) -> ProfileSession:
        """Stop sampling and return the session (also kept as the process's latest profile)."""
        if self._thread is None:
            raise MonitorError("this profiler is not running; call start() first")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self in _active:
            _active.remove(self)
        duration = time.perf_counter() - self._t0
        memory = None
        if self.memory and tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)])
            top = [{"file": s.traceback[0].filename, "line": s.traceback[0].lineno, "size": s.size,
                    "count": s.count} for s in snap.statistics("lineno")[: self.memory_top]]
            memory = {"peak_bytes": peak, "current_bytes": current, "top": top}
            if self._own_tracemalloc:
                tracemalloc.stop()
                self._own_tracemalloc = False
        session = ProfileSession(
            name=self.name, started=self._started, duration=duration, interval=self.interval,
            sample_count=self._samples, frames=list(self._frames),
            stacks=[{"frames": list(k), "count": int(v[0]), "weight": v[1]} for k, v in self._stacks.items()],
            memory=memory, gpu=list(self.gpu),
        )
        _set_latest(session)
        return session


_active: list[SamplingProfiler] = []


class profile:  # noqa: N801 - used like a function: ``with nd.profile():`` / ``@nd.profile``
    """Profile a block (context manager) or every call of a function (decorator).

    Sampling CPU profile at ``interval`` seconds; ``memory=True`` adds a
    tracemalloc trace (top allocation sites and peak; it slows allocation-heavy
    code, so it is off by default); ``output`` is a path prefix where the HTML
    flame graph, speedscope JSON and session JSON are written on exit.

    Example::

        with nd.profile(output="out/run") as p:
            work()
        print(p.session.top_functions(5), p.paths)

        @nd.profile(memory=True)
        def step(): ...
    """

    def __init__(self, fn: Callable[..., Any] | None = None, *, interval: float = DEFAULT_INTERVAL,
                 memory: bool = False, output: str | os.PathLike[str] | None = None,
                 name: str | None = None) -> None:
        self._fn = fn
        self.interval = interval
        self.memory = memory
        self.output = output
        self.name = name or (getattr(fn, "__qualname__", None) if fn else None) or "profile"
        self.session: ProfileSession | None = None
        self.paths: dict[str, str] = {}
        self._profiler: SamplingProfiler | None = None
        if fn is not None:
            functools.update_wrapper(self, fn)

    def __enter__(self) -> profile:
        self._profiler = SamplingProfiler(self.interval, self.memory, self.name).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._profiler is not None
        self.session = self._profiler.stop()
        self._profiler = None
        if self.output is not None:
            self.paths = self.session.save(self.output)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fn is None:  # @profile(...) with options: wrap the function now
            if len(args) != 1 or kwargs or not callable(args[0]):
                raise MonitorError("profile(...) used as a decorator takes exactly one function")
            return profile(args[0], interval=self.interval, memory=self.memory, output=self.output,
                           name=self.name if self.name != "profile" else None)
        with profile(interval=self.interval, memory=self.memory, output=self.output, name=self.name) as p:
            result = self._fn(*args, **kwargs)
        self.session, self.paths = p.session, p.paths
        return result


# GPU instrumentation (only does anything where CuPy and a CUDA device exist) ---------------------

def _cupy() -> Any:
    try:
        import cupy

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


@contextmanager
def gpu_range(name: str) -> Iterator[dict[str, Any]]:
    """An NVTX range plus CUDA-event timing around GPU work; a no-op record on machines without a GPU.

    The elapsed GPU milliseconds go into the active profile's ``gpu`` list and
    the ``noodle_gpu_kernel_seconds{kernel}`` histogram.

    Example::

        with gpu_range("fused_add_mul") as rec:
            kernel(...)
        rec["gpu_ms"]   # None without a GPU
    """
    record: dict[str, Any] = {"name": name, "gpu_ms": None}
    cp = _cupy()
    if cp is None:
        yield record
        return
    from cupy.cuda import nvtx

    start, end = cp.cuda.Event(), cp.cuda.Event()
    nvtx.RangePush(name)
    start.record()
    try:
        yield record
    finally:
        end.record()
        nvtx.RangePop()
        end.synchronize()
        ms = float(cp.cuda.get_elapsed_time(start, end))
        record["gpu_ms"] = ms
        from noodle.metrics import histogram

        histogram("noodle_gpu_kernel_seconds", "GPU time of noodle kernels (CUDA events)",
                  ("kernel",)).labels(name).observe(ms / 1000.0)
        for prof in list(_active):
            prof.gpu.append({"name": name, "ms": ms, "t": time.time()})
