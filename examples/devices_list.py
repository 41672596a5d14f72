"""What can noodle compute on here, and if not on a GPU, why not?

Run: python examples/devices_list.py   (or: noodle devices)
"""

from __future__ import annotations

import numpy as np

from noodle.devices import (
    array_device,
    backend_status,
    devices,
    gpu_count,
    gpu_unavailable_reason,
    is_gpu_array,
    parse_device,
)
from noodle.errors import DeviceError


def main() -> None:
    for d in devices():
        total = f"{d.memory_total / 1024**3:.1f} GiB" if d.memory_total else "?"
        extra = f"cc {d.compute_capability}" if d.kind == "cuda" else f"{d.cores_logical} cores"
        print(f"{d.id:8} {d.name:40} {total:>10}  {extra}")
    for name, st in backend_status().items():
        print(f"{name:7} {'yes' if st.available else 'no':4} {st.reason}")
    print("GPUs noodle may use:", gpu_count(), "" if gpu_count() else f"({gpu_unavailable_reason()})")

    x = np.arange(6.0)
    print("numpy array lives on", array_device(x), "| is a GPU array:", is_gpu_array(x))
    print("parse_device('cpu') ->", parse_device("cpu"), "| parse_device('auto') ->", parse_device("auto"))
    for spec in ("gpu", "tpu"):
        try:
            print(f"parse_device({spec!r}) ->", parse_device(spec))
        except DeviceError as exc:
            print(f"parse_device({spec!r}) raised {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
