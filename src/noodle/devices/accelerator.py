"""GPUAccelerator: one CUDA device with a memory limit, accounting and a timeout.

Why these pieces:

* **Memory limit.** CuPy's default memory pool caches every block it ever
  allocated, so without a cap one noodle process can take the whole GPU from
  its neighbours. The cap is ``min(NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT MB,
  NOODLE_SYNTAX_FIXER_GPU_MEMORY_FRACTION x total)``, applied with
  ``MemoryPool.set_limit(size=...)`` on that device (the pool keeps one limit per
  device). An allocation past it is a :class:`~noodle.errors.DeviceMemoryError`,
  not a crash of some later kernel.
* **Accounting.** Arrays handed out by the accelerator (``to_device``,
  ``empty``, results of ``run``) are counted when made and, through a weak
  reference finaliser, when freed: bytes in use, peak and counts, published as
  ``noodle_gpu_memory_bytes{device}``.
* **Timeout.** A CUDA kernel cannot be interrupted from Python, so ``run``
  executes the work in a daemon worker thread on its own stream, synchronises
  that stream there, and the caller waits at most the timeout. On expiry the
  caller gets :class:`~noodle.errors.DeviceTimeoutError` right away; the late
  result is discarded. ``device='auto'`` callers catch it and redo the op on
  the CPU.
* **Threads.** GPU work itself runs concurrently (one stream per call); a lock
  per accelerator guards only the bookkeeping. ``get_accelerator`` hands out one
  instance per device per process.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from noodle import metrics
from noodle.config import get_settings
from noodle.devices import detect
from noodle.devices.detect import DeviceInfo
from noodle.devices.spec import ALLOWED, is_gpu_array, parse_device
from noodle.errors import (
    ConfigError,
    DeviceError,
    DeviceMemoryError,
    DeviceTimeoutError,
    DeviceUnavailableError,
)

MB = 1024 * 1024

_memory_gauge = metrics.gauge("noodle_gpu_memory_bytes", "bytes of GPU arrays held through noodle", ("device",))
_transfer_bytes = metrics.counter("noodle_transfer_bytes_total", "bytes copied between host and device",
                                  ("direction",))
_allocations = metrics.counter("noodle_gpu_allocations_total", "GPU arrays allocated through noodle", ("device",))
_frees = metrics.counter("noodle_gpu_frees_total", "GPU arrays freed that noodle allocated", ("device",))
_timeouts = metrics.counter("noodle_gpu_timeouts_total", "GPU operations that ran past the timeout", ("device",))
_ooms = metrics.counter("noodle_gpu_oom_total", "GPU allocations refused by the memory limit", ("device",))

# bytes held per device over every accelerator of that device (the gauge's value)
_held: dict[str, int] = {}
_held_lock = threading.Lock()


def _publish_held(device_id: str, delta: int) -> None:
    with _held_lock:
        total = _held.get(device_id, 0) + delta
        _held[device_id] = total
    _memory_gauge.labels(device_id).set(total)


# ---------------------------------------------------------------- pure helpers (tested on CPU)
def effective_limit_bytes(total_bytes: int, limit_mb: int, fraction: float) -> int:
    """The pool cap: ``min(limit_mb MB, fraction x total_bytes)`` in bytes.

    Example::

        >>> effective_limit_bytes(16 * 1024**3, 4096, 0.8)   # 16 GiB card, defaults
        4294967296
    """
    return int(min(limit_mb * MB, fraction * total_bytes))


def pick_least_loaded(infos: Sequence[DeviceInfo]) -> int:
    """Index of the GPU with the most free memory, then the lowest utilization, then the lowest index.

    Unknown free memory counts as 0 and unknown utilization as 100 %, so a GPU
    we know little about is chosen only when nothing better is there.

    Example::

        >>> a = DeviceInfo("cuda", 0, "A", memory_available=1 << 30, utilization_percent=90.0)
        >>> b = DeviceInfo("cuda", 1, "B", memory_available=8 << 30, utilization_percent=10.0)
        >>> pick_least_loaded([a, b])
        1
    """
    gpus = [d for d in infos if d.kind == "cuda" and d.index is not None]
    if not gpus:
        raise DeviceUnavailableError("no CUDA GPU to choose from")

    def load(d: DeviceInfo) -> tuple[int, float, int]:
        free = d.memory_available if d.memory_available is not None else 0
        util = d.utilization_percent if d.utilization_percent is not None else 100.0
        return (-free, util, int(d.index or 0))

    return int(min(gpus, key=load).index or 0)


def run_bounded(call: Callable[[], Any], timeout_ms: int, op: str, where: str) -> Any:
    """Run ``call()`` in a daemon worker thread and wait at most ``timeout_ms``.

    Returns its result or re-raises its exception. On expiry raises
    :class:`DeviceTimeoutError` naming the op, the device, the limit and the
    setting; the worker keeps running in the background (a GPU kernel cannot be
    cancelled) and its result is dropped. Daemon threads so that a stuck
    kernel never blocks interpreter exit.

    Example::

        >>> run_bounded(lambda: 2 + 2, 1000, "add", "cpu")
        4
    """
    done = threading.Event()
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=worker, name=f"noodle-gpu-{op}", daemon=True).start()
    if not done.wait(timeout_ms / 1000.0):
        _timeouts.labels(where).inc()
        metrics.emit("gpu_timeout", op=op, device=where, timeout_ms=timeout_ms)
        raise DeviceTimeoutError(
            f"GPU op {op!r} on {where} did not finish within {timeout_ms} ms "
            f"(NOODLE_SYNTAX_FIXER_GPU_TIMEOUT={timeout_ms}); its result is discarded. "
            f"Raise NOODLE_SYNTAX_FIXER_GPU_TIMEOUT, split the work, or use device='cpu'."
        )
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _check_args(memory_limit_mb: Any, memory_fraction: Any, timeout_ms: Any) -> tuple[int, float, int]:
    """Explicit arguments, else settings; bad values raise ConfigError naming the argument."""
    s = get_settings()
    limit = s.gpu_memory_limit_mb if memory_limit_mb is None else memory_limit_mb
    fraction = s.gpu_memory_fraction if memory_fraction is None else memory_fraction
    timeout = s.gpu_timeout_ms if timeout_ms is None else timeout_ms
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("memory_limit_mb", limit, "an integer >= 1 (MB)", "argument")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise ConfigError("memory_fraction", fraction, "a number in (0, 1]", "argument")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ConfigError("timeout_ms", timeout, "an integer >= 1 (ms)", "argument")
    return limit, float(fraction), timeout


def _resolve_index(device: int | str | None) -> int:
    """A usable GPU index from an int, 'cuda:N', 'gpu'/'cuda'/'auto'/None (least loaded)."""
    count = detect.gpu_count()
    if count == 0:
        reason = detect.gpu_unavailable_reason() or "no CUDA GPU"
        raise DeviceUnavailableError(
            f"GPUAccelerator needs a CUDA GPU but none is usable: {reason}. "
            f"Use device='cpu' (or 'auto', which falls back to the CPU)."
        )
    if isinstance(device, bool):
        raise DeviceError(f"GPUAccelerator device must be an int index or a string; allowed: {ALLOWED}")
    if isinstance(device, int):
        if not 0 <= device < count:
            raise DeviceUnavailableError(
                f"GPU index {device} does not exist: noodle can use {count} CUDA GPU(s) (0..{count - 1})."
            )
        return device
    kind, index = parse_device(device)
    if kind == "cpu":
        raise DeviceError("GPUAccelerator manages a GPU; device='cpu' needs no accelerator")
    if index is not None:
        return index
    return pick_least_loaded(detect.gpu_infos())


def _cupy_arrays(value: Any) -> Iterable[Any]:
    if is_gpu_array(value):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            if is_gpu_array(item):
                yield item


# ---------------------------------------------------------------- the accelerator
class GPUAccelerator:
    """One CUDA GPU with noodle's memory limit, allocation accounting and timeout.

    ``device``: an index, ``'cuda:N'``, or None/``'auto'``/``'gpu'`` for the
    least loaded GPU (most free memory, then lowest utilization). Limits
    default to the settings (``NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT``,
    ``..._GPU_MEMORY_FRACTION``, ``..._GPU_TIMEOUT``). Where no GPU is usable,
    construction raises :class:`~noodle.errors.DeviceUnavailableError` with the
    reason. Prefer :func:`get_accelerator` for the shared per-device instance.

    Example (on a GPU machine)::

        acc = GPUAccelerator(memory_limit_mb=1024)
        x = acc.to_device(np.arange(1e6))
        y = acc.run(lambda a: (a * 2).sum(), x)     # bounded by the timeout
        print(acc.to_host(y), acc.memory_stats())
    """

    def __init__(self, device: int | str | None = None, memory_limit_mb: int | None = None,
                 memory_fraction: float | None = None, timeout_ms: int | None = None) -> None:
        limit_mb, fraction, timeout = _check_args(memory_limit_mb, memory_fraction, timeout_ms)
        index = _resolve_index(device)
        cp = detect.cupy_module()
        if cp is None:  # gpu_count() > 0 implies CuPy works; guard against a refresh race
            raise DeviceUnavailableError(f"GPUAccelerator: CuPy unusable: {detect.gpu_unavailable_reason()}")
        self._cp: ModuleType = cp
        self.index = index
        self.device_id = f"cuda:{index}"
        self.memory_limit_mb = limit_mb
        self.memory_fraction = fraction
        self.timeout_ms = timeout
        self._lock = threading.RLock()  # re-entrant: a GC finaliser may run while we hold it
        self._in_use = 0
        self._peak = 0
        self._alloc_count = 0
        self._free_count = 0
        self._allocated_bytes = 0
        self._freed_bytes = 0
        props = cp.cuda.runtime.getDeviceProperties(index)
        raw = props.get("name", b"")
        self.name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        self.total_memory = int(props["totalGlobalMem"])
        self.memory_limit_bytes = effective_limit_bytes(self.total_memory, limit_mb, fraction)
        with cp.cuda.Device(index):
            pool = cp.get_default_memory_pool()
            self._previous_limit = int(pool.get_limit())
            pool.set_limit(size=self.memory_limit_bytes)
        _publish_held(self.device_id, 0)
        metrics.emit("gpu_accelerator", device=self.device_id, name=self.name,
                     limit_bytes=self.memory_limit_bytes, timeout_ms=timeout)

    # ------------------------------------------------------------ accounting
    def _track(self, array: Any) -> Any:
        nbytes = int(array.nbytes)
        with self._lock:
            self._alloc_count += 1
            self._allocated_bytes += nbytes
            self._in_use += nbytes
            self._peak = max(self._peak, self._in_use)
        _allocations.labels(self.device_id).inc()
        _publish_held(self.device_id, nbytes)
        try:
            weakref.finalize(array, self._on_free, nbytes)
        except TypeError:  # not weak-referenceable: counted as allocated, its free is not seen
            pass
        return array

    def _on_free(self, nbytes: int) -> None:
        with self._lock:
            self._free_count += 1
            self._freed_bytes += nbytes
            self._in_use -= nbytes
        _frees.labels(self.device_id).inc()
        _publish_held(self.device_id, -nbytes)

    def _memory_error(self, exc: BaseException, what: str) -> DeviceMemoryError:
        _ooms.labels(self.device_id).inc()
        return DeviceMemoryError(
            f"{what} on {self.device_id} does not fit noodle's GPU memory limit of "
            f"{self.memory_limit_bytes / MB:.0f} MB = min(NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT="
            f"{self.memory_limit_mb} MB, NOODLE_SYNTAX_FIXER_GPU_MEMORY_FRACTION={self.memory_fraction} x "
            f"{self.total_memory / MB:.0f} MB); {self._in_use / MB:.1f} MB held through noodle. "
            f"Free arrays, raise the limit, or use device='cpu'. ({exc})"
        )

    def memory_stats(self) -> dict[str, int]:
        """Accounting of arrays made through this accelerator, plus CuPy's pool view of the device.

        Keys: in_use_bytes, peak_bytes, allocations, frees, allocated_bytes,
        freed_bytes, limit_bytes, pool_used_bytes, pool_total_bytes.
        """
        with self._cp.cuda.Device(self.index):
            pool = self._cp.get_default_memory_pool()
            pool_used, pool_total = int(pool.used_bytes()), int(pool.total_bytes())
        with self._lock:
            return {
                "in_use_bytes": self._in_use, "peak_bytes": self._peak,
                "allocations": self._alloc_count, "frees": self._free_count,
                "allocated_bytes": self._allocated_bytes, "freed_bytes": self._freed_bytes,
                "limit_bytes": self.memory_limit_bytes,
                "pool_used_bytes": pool_used, "pool_total_bytes": pool_total,
            }

    # ------------------------------------------------------------ data movement
    def empty(self, shape: int | tuple[int, ...], dtype: Any = "float64") -> Any:
        """An uninitialised CuPy array on this device, counted and within the limit."""
        cp = self._cp
        try:
            with cp.cuda.Device(self.index):
                array = cp.empty(shape, dtype=dtype)
        except cp.cuda.memory.OutOfMemoryError as exc:
            raise self._memory_error(exc, f"allocating an array of shape {shape} {dtype}") from None
        return self._track(array)

    def to_device(self, array: Any) -> Any:
        """Copy a NumPy array (or anything array-like) to this GPU; counts h2d bytes.

        A CuPy array already on this device is returned as is (no copy).
        """
        cp = self._cp
        if is_gpu_array(array) and int(array.device.id) == self.index:
            return array
        direction = "d2d" if is_gpu_array(array) else "h2d"
        try:
            with cp.cuda.Device(self.index):
                out = cp.asarray(array)
                if direction == "d2d":
                    out = out.copy() if out is array else out
                # finished before we return: work the caller then runs on another stream
                # (run() uses its own) must see the copied data
                cp.cuda.get_current_stream().synchronize()
        except cp.cuda.memory.OutOfMemoryError as exc:
            nbytes = getattr(array, "nbytes", "?")
            raise self._memory_error(exc, f"copying {nbytes} bytes to the GPU") from None
        _transfer_bytes.labels(direction).inc(int(out.nbytes))
        return self._track(out)

    def to_host(self, array: Any) -> Any:
        """Copy a CuPy array to a NumPy array; counts d2h bytes. NumPy input is returned as is."""
        if not is_gpu_array(array):
            return array
        out = self._cp.asnumpy(array)
        _transfer_bytes.labels("d2h").inc(int(out.nbytes))
        return out

    # ------------------------------------------------------------ bounded work
    def run(self, fn: Callable[..., Any], *args: Any, timeout_ms: int | None = None, op: str | None = None,
            **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on this GPU, finished and synchronised within the timeout.

        The work runs on a fresh stream in a worker thread with this device
        current; the stream is synchronised before the result is returned, so
        the result is complete. The stream is a blocking one on purpose: it
        orders after work on the legacy default stream, where arrays the
        caller made with plain CuPy calls were written. CuPy arrays in the result are accounted.
        Raises :class:`DeviceTimeoutError` past ``timeout_ms`` (default the
        accelerator's, from NOODLE_SYNTAX_FIXER_GPU_TIMEOUT) and
        :class:`DeviceMemoryError` when the memory limit refuses an allocation.
        """
        limit = self.timeout_ms if timeout_ms is None else timeout_ms
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("timeout_ms", limit, "an integer >= 1 (ms)", "argument")
        name = op or getattr(fn, "__name__", "gpu work")
        cp = self._cp

        def call() -> Any:
            with cp.cuda.Device(self.index):
                stream = cp.cuda.Stream(non_blocking=False)
                with stream:
                    result = fn(*args, **kwargs)
                stream.synchronize()
            return result

        try:
            result = run_bounded(call, limit, name, self.device_id)
        except cp.cuda.memory.OutOfMemoryError as exc:
            raise self._memory_error(exc, f"GPU op {name!r}") from None
        for array in _cupy_arrays(result):
            self._track(array)
        return result

    def synchronize(self) -> None:
        """Wait for all work on this device (every stream) to finish."""
        with self._cp.cuda.Device(self.index) as dev:
            dev.synchronize()

    def free_cached(self) -> None:
        """Return the pool's cached, unused blocks on this device to the driver."""
        with self._cp.cuda.Device(self.index):
            self._cp.get_default_memory_pool().free_all_blocks()

    def close(self) -> None:
        """Restore the pool limit that was in force before this accelerator set its own."""
        with self._cp.cuda.Device(self.index):
            self._cp.get_default_memory_pool().set_limit(size=self._previous_limit)

    def __enter__(self) -> GPUAccelerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GPUAccelerator({self.device_id} {self.name!r}, limit={self.memory_limit_bytes // MB} MB, "
                f"timeout={self.timeout_ms} ms)")


# ---------------------------------------------------------------- process-wide instances
_instances: dict[int, GPUAccelerator] = {}
_default_index: int | None = None
_instances_lock = threading.Lock()


def _clear_instances() -> None:
    global _default_index
    with _instances_lock:
        _instances.clear()
        _default_index = None


detect.on_refresh(_clear_instances)


def get_accelerator(index: int | None = None) -> GPUAccelerator:
    """The process-wide accelerator of GPU ``index`` (None: the least loaded GPU, chosen once).

    Built with the settings' limit, fraction and timeout on first use. Raises
    :class:`DeviceUnavailableError` where no GPU is usable.

    Example (on a GPU machine)::

        acc = get_accelerator()
        y = acc.run(cupy.matmul, a, b)
    """
    global _default_index
    if index is None:
        index = _default_index
    acc = _instances.get(index) if index is not None else None
    if acc is not None:
        return acc
    with _instances_lock:
        if index is None:
            if _default_index is None:
                _default_index = _resolve_index(None)
            index = _default_index
        acc = _instances.get(index)
        if acc is None:
            acc = GPUAccelerator(index)
            _instances[index] = acc
        return acc
