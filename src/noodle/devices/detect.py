"""What compute devices this process can use, and why a backend is missing.

Why probe in this order (settings, driver library, CuPy, runtime): each step is
cheaper than the next and each failure gives the user a precise reason. On a
CPU-only machine ``gpu_count()`` costs one ``ctypes`` load attempt the first
time and never imports CuPy; after that it is a module-global read.

Nothing here raises at import or call: every probe is guarded and turns a
failure into a ``BackendStatus(available=False, reason=...)``.

Only :mod:`noodle.config`, :mod:`noodle.errors` and :mod:`noodle.metrics` are
imported from noodle (leaves); CuPy, NVML (``pynvml`` from nvidia-ml-py) and
pyopencl are optional and imported lazily.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import platform
import sys
import threading
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from noodle.config import get_settings

GPU_EXTRA_HINT = "pip install 'noodle[gpu]'"


@dataclass(frozen=True)
class BackendStatus:
    """Whether one accelerator backend can be used here, and the reason if not.

    Example::

        >>> from noodle.devices import backend_status
        >>> st = backend_status()["metal"]
        >>> st.available, st.reason          # on Linux: (False, 'not macOS')
    """

    available: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class DeviceInfo:
    """One compute device: the CPU (``kind='cpu'``) or a CUDA GPU (``kind='cuda'``).

    Fields a probe could not read are ``None`` (e.g. utilization without NVML).
    Memory sizes are bytes. ``memory_available`` is free memory (for a GPU: free
    device memory as the driver reports it).

    Example::

        >>> from noodle.devices import devices
        >>> cpu = devices()[0]
        >>> cpu.kind, cpu.cores_logical, cpu.memory_total > 0
    """

    kind: str
    index: int | None
    name: str
    cores_logical: int | None = None
    cores_physical: int | None = None
    memory_total: int | None = None
    memory_available: int | None = None
    compute_capability: str | None = None
    utilization_percent: float | None = None
    multiprocessors: int | None = None

    @property
    def id(self) -> str:
        """The device string noodle accepts for it: ``'cpu'`` or ``'cuda:N'``."""
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{self.index}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (with ``id``) for JSON output and reports."""
        data = asdict(self)
        data["id"] = self.id
        return data


# ---------------------------------------------------------------- caches
# Module globals, cleared by refresh(). gpu_count() reads _GPU_COUNT without a lock.
_lock = threading.RLock()
_GPU_COUNT: int | None = None
_CUDA_PROBE: tuple[int, str, ModuleType | None] | None = None
_BACKENDS: dict[str, BackendStatus] | None = None
_NVML: tuple[ModuleType | None, str] | None = None
_refresh_hooks: list[Any] = []


def refresh() -> None:
    """Forget every cached probe (device count, CuPy import, backend status).

    Tests call this after ``noodle.config.reload(env)``; the next call probes
    again and reads the new settings.
    """
    global _GPU_COUNT, _CUDA_PROBE, _BACKENDS, _NVML
    with _lock:
        _GPU_COUNT = None
        _CUDA_PROBE = None
        _BACKENDS = None
        _NVML = None
    for hook in list(_refresh_hooks):  # outside _lock: hooks take their own locks
        hook()


def on_refresh(hook: Any) -> None:
    """Register a callable run by :func:`refresh` (other device modules clear their caches)."""
    _refresh_hooks.append(hook)


# ---------------------------------------------------------------- CUDA
def _cuda_driver_names() -> tuple[str, ...]:
    if sys.platform == "win32":
        return ("nvcuda.dll",)
    return ("libcuda.so.1", "libcuda.so")


def _load_any(names: tuple[str, ...]) -> str | None:
    """Return the first library name that loads, else None (never raises)."""
    for name in names:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


def _probe_cuda() -> tuple[int, str, ModuleType | None]:
    """(device count, reason, cupy module or None), ignoring settings. Never raises."""
    if sys.platform == "darwin":
        return 0, "CUDA is not supported on macOS", None
    reasons: list[str] = []
    driver = _load_any(_cuda_driver_names())
    if driver is None:
        reasons.append(f"no CUDA driver ({_cuda_driver_names()[0]} not found)")
    try:
        cupy_installed = importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        cupy_installed = False
    if not cupy_installed:
        reasons.append(f"cupy not installed ({GPU_EXTRA_HINT})")
    if reasons:
        return 0, "; ".join(reasons), None
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # a broken CuPy install must not break noodle
        return 0, f"cupy failed to import: {type(exc).__name__}: {exc}", None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no device, driver too old, ...
        return 0, f"CUDA runtime error: {exc}", None
    if count <= 0:
        return 0, "no CUDA device found (driver loaded, 0 devices visible; check CUDA_VISIBLE_DEVICES)", None
    backend = "ROCm/HIP" if getattr(cupy.cuda.runtime, "is_hip", False) else "CUDA"
    return count, f"{count} {backend} device(s) via CuPy {getattr(cupy, '__version__', '?')}", cupy


def _cuda_probe() -> tuple[int, str, ModuleType | None]:
    global _CUDA_PROBE
    probe = _CUDA_PROBE
    if probe is None:
        with _lock:
            if _CUDA_PROBE is None:
                _CUDA_PROBE = _probe_cuda()
            probe = _CUDA_PROBE
    return probe


def cupy_module() -> ModuleType | None:
    """The imported ``cupy`` module when CuPy works and sees a GPU, else None (cached).

    This ignores the GPU settings on purpose: noodle must still be able to read
    a CuPy array the user hands it (e.g. to copy it to the host) when GPU
    placement is turned off. :func:`gpu_count` is what applies the settings.

    Example::

        >>> cp = cupy_module()
        >>> cp is None or hasattr(cp, "ndarray")
        True
    """
    return _cuda_probe()[2]


def gpu_unavailable_reason() -> str | None:
    """Why :func:`gpu_count` is 0 (settings first, then the probe), or None when GPUs are usable."""
    settings = get_settings()
    if settings.disable_gpu:
        return "GPU use is turned off by NOODLE_DISABLE_GPU=true"
    if not settings.gpu_acceleration:
        return "GPU use is turned off by NOODLE_SYNTAX_FIXER_GPU_ACCELERATION=false"
    count, reason, _ = _cuda_probe()
    return None if count > 0 else reason


def _compute_gpu_count() -> int:
    global _GPU_COUNT
    with _lock:
        if _GPU_COUNT is None:
            settings = get_settings()
            _GPU_COUNT = _cuda_probe()[0] if settings.gpu_allowed else 0
        return _GPU_COUNT


def gpu_count() -> int:
    """Number of CUDA GPUs noodle may use: 0 when turned off by settings or none is usable.

    Cached after the first call (the placement engine calls this on every op);
    :func:`refresh` clears it.

    Example::

        >>> from noodle.devices import gpu_count
        >>> gpu_count() >= 0
        True
    """
    count = _GPU_COUNT
    if count is None:
        count = _compute_gpu_count()
    return count


# ---------------------------------------------------------------- NVML
def _nvml() -> tuple[ModuleType | None, str]:
    """(pynvml initialised, '') or (None, reason). Cached; never raises."""
    global _NVML
    if _NVML is not None:
        return _NVML
    with _lock:
        if _NVML is None:
            try:
                pynvml = importlib.import_module("pynvml")
            except Exception:
                _NVML = (None, "nvidia-ml-py not installed")
            else:
                try:
                    pynvml.nvmlInit()
                    _NVML = (pynvml, "")
                except Exception as exc:  # NVMLError_LibraryNotFound, driver not loaded, ...
                    _NVML = (None, f"NVML unavailable: {exc}")
        return _NVML


def _nvml_handle(pynvml: ModuleType, cupy: ModuleType, index: int) -> Any:
    """NVML handle of CUDA device ``index``, matched by PCI bus id.

    Why not ``nvmlDeviceGetHandleByIndex(index)``: NVML numbers devices in PCI
    order while CUDA (by default) numbers them fastest first and honours
    CUDA_VISIBLE_DEVICES, so the indices can differ.
    """
    try:
        bus_id = cupy.cuda.Device(index).pci_bus_id
        return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
    except Exception:
        return pynvml.nvmlDeviceGetHandleByIndex(index)


# ---------------------------------------------------------------- devices()
def cpu_threads() -> int:
    """CPU threads this process may use: its affinity mask where the OS has one (a container's or
    taskset's limit), else the machine's count. What thread pools should size themselves to."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_info() -> DeviceInfo:
    import psutil

    try:
        mem = psutil.virtual_memory()
        total, available = int(mem.total), int(mem.available)
    except Exception:
        total = available = None
    try:
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    return DeviceInfo(
        kind="cpu",
        index=None,
        name=_cpu_name(),
        cores_logical=psutil.cpu_count(logical=True) or os.cpu_count(),
        cores_physical=physical,
        memory_total=total,
        memory_available=available,
    )


def _gpu_info(cupy: ModuleType, index: int) -> DeviceInfo:
    """Everything readable about CUDA device ``index``; unreadable fields are None."""
    name, cc, total, free, util, sms = f"CUDA device {index}", None, None, None, None, None
    try:
        props = cupy.cuda.runtime.getDeviceProperties(index)
        raw = props.get("name", b"")
        name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        cc = f"{props['major']}.{props['minor']}"
        total = int(props["totalGlobalMem"])
        sms = int(props.get("multiProcessorCount", 0)) or None
    except Exception:
        pass
    pynvml, _ = _nvml()
    if pynvml is not None:
        try:
            handle = _nvml_handle(pynvml, cupy, index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            total, free = int(mem.total), int(mem.free)
            util = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            pass
    if free is None:  # no NVML: ask the runtime (creates a context on that device)
        try:
            with cupy.cuda.Device(index):
                free, total = (int(v) for v in cupy.cuda.runtime.memGetInfo())
        except Exception:
            pass
    return DeviceInfo(
        kind="cuda", index=index, name=name, memory_total=total, memory_available=free,
        compute_capability=cc, utilization_percent=util, multiprocessors=sms,
    )


def devices() -> list[DeviceInfo]:
    """Every compute device present: the CPU first, then each CUDA GPU CuPy can see.

    GPUs are listed even when settings turn GPU use off (this says what is
    there; :func:`gpu_count` says what noodle may use). Never raises.

    Example::

        >>> import noodle
        >>> [d.id for d in noodle.devices()]      # e.g. ['cpu'] or ['cpu', 'cuda:0']
    """
    found = [_cpu_info()]
    count, _, cupy = _cuda_probe()
    if cupy is not None:
        found.extend(_gpu_info(cupy, i) for i in range(count))
    return found


def gpu_infos() -> list[DeviceInfo]:
    """Only the CUDA GPUs noodle may use (empty when :func:`gpu_count` is 0)."""
    cupy = cupy_module()
    if gpu_count() == 0 or cupy is None:
        return []
    return [_gpu_info(cupy, i) for i in range(gpu_count())]


# ---------------------------------------------------------------- backends
def _rocm_status() -> BackendStatus:
    if sys.platform != "linux":
        return BackendStatus(False, "ROCm needs Linux")
    count, _, cupy = _cuda_probe()
    if cupy is not None and getattr(cupy.cuda.runtime, "is_hip", False):
        return BackendStatus(count > 0, f"{count} device(s) via a ROCm build of CuPy")
    lib = _load_any(("libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"))
    if lib is None:
        return BackendStatus(False, "no ROCm runtime (libamdhip64.so not found)")
    if not os.path.exists("/dev/kfd"):
        return BackendStatus(False, "ROCm runtime found but no AMD GPU (/dev/kfd missing)")
    return BackendStatus(False, "ROCm runtime found, but noodle computes on AMD GPUs only "
                                "through a ROCm build of CuPy, which is not installed")


def _opencl_status() -> BackendStatus:
    try:
        if importlib.util.find_spec("pyopencl") is None:
            return BackendStatus(False, "pyopencl not installed")
        cl = importlib.import_module("pyopencl")
        found = [d for p in cl.get_platforms() for d in p.get_devices()]
    except Exception as exc:  # no ICD loader, no platform, ...
        return BackendStatus(False, f"OpenCL unavailable: {type(exc).__name__}: {exc}")
    if not found:
        return BackendStatus(False, "pyopencl installed but no OpenCL device found")
    return BackendStatus(True, f"{len(found)} OpenCL device(s) (detected; noodle does not compute on OpenCL yet)")


def _metal_status() -> BackendStatus:
    if sys.platform != "darwin":
        return BackendStatus(False, "not macOS")
    if _load_any(("/System/Library/Frameworks/Metal.framework/Metal",)) is None:
        return BackendStatus(False, "Metal framework not found")
    return BackendStatus(True, "Metal framework present (detected; noodle does not compute on Metal yet)")


def _cuda_status() -> BackendStatus:
    count, reason, _ = _cuda_probe()
    return BackendStatus(count > 0, reason)


def _guarded(probe: Any) -> BackendStatus:
    try:
        return probe()
    except Exception as exc:  # belt and braces: status must never raise
        return BackendStatus(False, f"probe failed: {type(exc).__name__}: {exc}")


def backend_status() -> dict[str, BackendStatus]:
    """Availability of each accelerator backend with the reason: keys cuda, rocm, opencl, metal.

    Reports what the machine and installed packages allow, independent of
    settings (see :func:`gpu_unavailable_reason` for the settings). Cached;
    never raises.

    Example::

        >>> from noodle.devices import backend_status
        >>> for name, st in backend_status().items():
        ...     print(name, st.available, st.reason)
    """
    global _BACKENDS
    status = _BACKENDS
    if status is None:
        with _lock:
            if _BACKENDS is None:
                _BACKENDS = {
                    "cuda": _guarded(_cuda_status),
                    "rocm": _guarded(_rocm_status),
                    "opencl": _guarded(_opencl_status),
                    "metal": _guarded(_metal_status),
                }
            status = _BACKENDS
    return dict(status)
