"""Run work on a GPU under noodle's memory limit and timeout, or fall back to the CPU.

On a machine with a CUDA GPU and ``pip install 'noodle[gpu]'`` this moves two
matrices to the least loaded GPU, multiplies them there within the timeout
(NOODLE_SYNTAX_FIXER_GPU_TIMEOUT) and memory limit
(NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT / _FRACTION), and prints the accounting.
Anywhere else it shows the reason and computes on the CPU: the answer is the same.

Run: python examples/devices_accelerator.py
"""

from __future__ import annotations

import numpy as np

from noodle.devices import get_accelerator
from noodle.errors import DeviceMemoryError, DeviceTimeoutError, DeviceUnavailableError


def matmul_anywhere(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, str]:
    """``a @ b`` on the GPU when one is usable and the work fits its limits, else on the CPU."""
    try:
        acc = get_accelerator()
    except DeviceUnavailableError as exc:
        return a @ b, f"cpu (no GPU: {exc})"
    try:
        da, db = acc.to_device(a), acc.to_device(b)
        out = acc.run(lambda x, y: x @ y, da, db, op="matmul")
        print("accounting:", acc.memory_stats())
        return acc.to_host(out), acc.device_id
    except (DeviceTimeoutError, DeviceMemoryError) as exc:
        return a @ b, f"cpu (GPU refused: {exc})"


def main() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((512, 256)), rng.standard_normal((256, 128))
    result, where = matmul_anywhere(a, b)
    print("computed on:", where)
    print("max |difference| from NumPy:", float(np.abs(result - a @ b).max()))


if __name__ == "__main__":
    main()
