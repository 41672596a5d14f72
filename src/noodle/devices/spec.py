"""Device strings and where an array lives, cheap enough to call on every op.

Why a cache of parsed strings: every eager op takes ``device=...`` and the
per-op budget is a few microseconds, so a repeat of a string that parsed
before is one dict lookup. Only successful parses are cached, and
:func:`noodle.devices.refresh` clears them (the answer depends on the GPU count).
"""

from __future__ import annotations

from typing import Any

from noodle.devices import detect
from noodle.errors import DeviceError, DeviceUnavailableError

ALLOWED = "'auto', 'cpu', 'gpu', 'cuda' or 'cuda:N' (N = GPU index, e.g. 'cuda:0')"

_PARSED: dict[str, tuple[str, int | None]] = {}


def _clear() -> None:
    _PARSED.clear()


detect.on_refresh(_clear)


def is_gpu_array(x: Any) -> bool:
    """True when ``x`` is a CuPy array; never imports CuPy.

    Example::

        >>> import numpy as np
        >>> is_gpu_array(np.zeros(3))
        False
    """
    return type(x).__module__.startswith("cupy")


def array_device(x: Any) -> str:
    """Where ``x`` lives: ``'cuda:N'`` for a CuPy array, ``'cpu'`` for anything else.

    Example::

        >>> import numpy as np
        >>> array_device(np.ones(2))
        'cpu'
    """
    if type(x).__module__.startswith("cupy"):
        return f"cuda:{gpu_index(x)}"
    return "cpu"


def gpu_index(x: Any) -> int:
    """The CUDA device index of a CuPy array (0 when it cannot be read)."""
    try:
        return int(x.device.id)
    except Exception:
        return 0


def _unavailable(spec: str, reason: str) -> DeviceUnavailableError:
    if "NOODLE_DISABLE_GPU" in reason:
        fix = "unset NOODLE_DISABLE_GPU"
    elif "GPU_ACCELERATION" in reason:
        fix = "set NOODLE_SYNTAX_FIXER_GPU_ACCELERATION=true"
    else:
        fix = f"on a machine with an NVIDIA GPU, install its driver and run {detect.GPU_EXTRA_HINT}"
    return DeviceUnavailableError(
        f"device={spec!r} asks for a GPU but none is usable: {reason}. "
        f"Use device='cpu' or device='auto' (which falls back to the CPU), or {fix}."
    )


def _parse_slow(spec: Any) -> tuple[str, int | None]:
    if spec is None:
        return ("auto", None)
    if not isinstance(spec, str):
        raise DeviceError(f"device must be a string, got {type(spec).__name__} {spec!r}; allowed: {ALLOWED}")
    text = spec.strip().lower()
    if text in ("auto", "cpu"):
        result: tuple[str, int | None] = (text, None)
    elif text in ("gpu", "cuda"):
        if detect.gpu_count() == 0:
            raise _unavailable(spec, detect.gpu_unavailable_reason() or "no CUDA GPU")
        result = ("cuda", None)
    elif text.startswith(("cuda:", "gpu:")):
        digits = text.partition(":")[2]
        if not digits.isdigit():
            raise DeviceError(f"device {spec!r} is not understood: the index after ':' must be a "
                              f"non-negative integer; allowed: {ALLOWED}")
        index = int(digits)
        count = detect.gpu_count()
        if count == 0:
            raise _unavailable(spec, detect.gpu_unavailable_reason() or "no CUDA GPU")
        if index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count))
            raise DeviceUnavailableError(
                f"device={spec!r} does not exist: noodle can use {count} CUDA GPU(s) ({have}). "
                f"Pick one of those, or device='gpu' for the least loaded one."
            )
        result = ("cuda", index)
    else:
        raise DeviceError(f"device {spec!r} is not understood; allowed: {ALLOWED}")
    _PARSED[spec] = result
    return result


def parse_device(spec: Any) -> tuple[str, int | None]:
    """Parse a device string into ``(kind, index)``.

    ``'cpu'`` -> ``('cpu', None)``; ``'auto'`` (or None) -> ``('auto', None)``;
    ``'gpu'``/``'cuda'`` -> ``('cuda', None)`` (the caller picks the GPU);
    ``'cuda:N'`` -> ``('cuda', N)``. A string outside these raises
    :class:`~noodle.errors.DeviceError` listing what is allowed; a GPU that is
    not usable raises :class:`~noodle.errors.DeviceUnavailableError` saying why.

    Example::

        >>> parse_device("cpu")
        ('cpu', None)
        >>> parse_device("auto")
        ('auto', None)
    """
    if spec.__class__ is str:
        hit = _PARSED.get(spec)
        if hit is not None:
            return hit
    return _parse_slow(spec)
