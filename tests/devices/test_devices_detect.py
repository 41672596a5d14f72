"""Detection: the CPU is always listed, every backend reports a reason, settings turn GPUs off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from noodle.devices import (
    BackendStatus,
    DeviceInfo,
    backend_status,
    cupy_module,
    detect,
    devices,
    gpu_count,
    gpu_infos,
    gpu_unavailable_reason,
    refresh,
)


def test_cpu_is_listed_first_with_cores_and_memory() -> None:
    found = devices()
    cpu = found[0]
    assert isinstance(cpu, DeviceInfo)
    assert cpu.kind == "cpu" and cpu.id == "cpu" and cpu.index is None
    assert cpu.name
    assert cpu.cores_logical == os.cpu_count()
    assert cpu.memory_total > 0 and 0 < cpu.memory_available <= cpu.memory_total
    assert all(d.kind == "cuda" for d in found[1:])
    as_dict = cpu.to_dict()
    assert as_dict["id"] == "cpu" and as_dict["memory_total"] == cpu.memory_total


def test_device_info_is_frozen() -> None:
    with pytest.raises(AttributeError):
        devices()[0].name = "other"  # type: ignore[misc]


def test_every_backend_reports_availability_and_a_reason() -> None:
    status = backend_status()
    assert set(status) == {"cuda", "rocm", "opencl", "metal"}
    for name, st in status.items():
        assert isinstance(st, BackendStatus), name
        assert isinstance(st.available, bool)
        assert st.reason, f"{name} has no reason"
        assert st.to_dict() == {"available": st.available, "reason": st.reason}
    if sys.platform != "darwin":
        assert status["metal"] == BackendStatus(False, "not macOS")


def test_gpu_count_agrees_with_cuda_status_and_devices() -> None:
    cuda = backend_status()["cuda"]
    n = gpu_count()
    if cuda.available:
        assert n == len(devices()) - 1 == len(gpu_infos())
        assert cupy_module() is not None
        assert gpu_unavailable_reason() is None
    else:
        assert n == 0 and len(devices()) == 1 and gpu_infos() == []
        assert cupy_module() is None
        assert gpu_unavailable_reason() == cuda.reason


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this machine has an NVIDIA driver")
def test_no_gpu_here_means_zero_with_a_reason_naming_what_is_missing() -> None:
    assert gpu_count() == 0
    reason = backend_status()["cuda"].reason
    assert "libcuda" in reason or "cupy" in reason or "CUDA" in reason


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NOODLE_DISABLE_GPU": "true"}, "NOODLE_DISABLE_GPU"),
        ({"NOODLE_SYNTAX_FIXER_GPU_ACCELERATION": "false"}, "NOODLE_SYNTAX_FIXER_GPU_ACCELERATION"),
    ],
)
def test_settings_turn_gpu_use_off(settings_env, env: dict[str, str], needle: str) -> None:
    settings_env(**env)
    assert gpu_count() == 0
    assert gpu_infos() == []
    assert needle in (gpu_unavailable_reason() or "")


def test_gpu_count_is_cached_until_refresh(settings_env) -> None:
    settings_env()
    first = gpu_count()
    assert detect._GPU_COUNT == first
    settings_env(NOODLE_DISABLE_GPU="true")  # reload + refresh
    assert detect._GPU_COUNT is None
    assert gpu_count() == 0 and detect._GPU_COUNT == 0
    refresh()
    assert detect._GPU_COUNT is None and detect._BACKENDS is None


def _run_isolated(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)


def test_broken_optional_packages_never_raise(tmp_path: Path) -> None:
    """A pyopencl / pynvml that blow up on import become reasons, not exceptions."""
    for name in ("pyopencl", "pynvml"):
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(f"raise RuntimeError('{name} is broken on purpose')\n")
    proc = _run_isolated(tmp_path, """
        import noodle
        from noodle.devices import backend_status, devices, gpu_count
        st = backend_status()
        print(st["opencl"].available, st["opencl"].reason)
        print(len(devices()) - 1 == gpu_count())
    """)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("False") and "broken on purpose" in first
    assert second == "True"


def test_import_noodle_does_not_import_gpu_libraries(tmp_path: Path) -> None:
    proc = _run_isolated(tmp_path, """
        import sys, noodle
        print(sorted(m for m in ("cupy", "pynvml", "pyopencl") if m in sys.modules))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
