"""Devices: what is there (CPU, CUDA GPUs, other backends), device strings, and the GPU accelerator.

The placement engine and the eager ops use this package to learn how many GPUs
they may use (:func:`gpu_count`, a cached module-global read), to parse
``device=`` arguments (:func:`parse_device`), to tell where an array lives
(:func:`array_device`, :func:`is_gpu_array`, neither imports CuPy) and to run
work on a GPU under noodle's memory limit and timeout
(:class:`GPUAccelerator`, :func:`get_accelerator`).

Nothing here imports CuPy, NVML or pyopencl at ``import noodle``: they load on
the first probe, and a missing one is a reason in :func:`backend_status`, never
an exception.

Example::

    import noodle
    from noodle.devices import backend_status, gpu_count
    for d in noodle.devices():
        print(d.id, d.name, d.memory_total)
    print(gpu_count(), backend_status()["cuda"].reason)
"""

import sys
import types

from noodle.devices.accelerator import (
    GPUAccelerator,
    effective_limit_bytes,
    get_accelerator,
    pick_least_loaded,
    run_bounded,
)
from noodle.devices.detect import (
    BackendStatus,
    DeviceInfo,
    backend_status,
    cpu_threads,
    cupy_module,
    devices,
    gpu_count,
    gpu_infos,
    gpu_unavailable_reason,
    refresh,
)
from noodle.devices.spec import ALLOWED, array_device, gpu_index, is_gpu_array, parse_device

__all__ = [
    "ALLOWED",
    "BackendStatus",
    "DeviceInfo",
    "GPUAccelerator",
    "array_device",
    "backend_status",
    "cpu_threads",
    "cupy_module",
    "devices",
    "effective_limit_bytes",
    "get_accelerator",
    "gpu_count",
    "gpu_index",
    "gpu_infos",
    "gpu_unavailable_reason",
    "is_gpu_array",
    "parse_device",
    "pick_least_loaded",
    "refresh",
    "run_bounded",
]


class _CallableModule(types.ModuleType):
    """``nd.devices()`` lists the devices, and ``noodle.devices`` is also this package.

    Why: ``import noodle`` is lazy, so the package may be imported (binding
    ``noodle.devices`` to the module) before anyone asks for the function; a
    callable module makes both spellings work in any import order.
    """

    def __call__(self) -> list[DeviceInfo]:
        return devices()


sys.modules[__name__].__class__ = _CallableModule
