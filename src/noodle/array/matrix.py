"""``Matrix``: an array that remembers where it lives and stays there.

Why a wrapper at all, when the ops accept raw arrays: the seed's API is
``Matrix.add/multiply(other, device='auto') -> Matrix``, and a Matrix makes the
"no round trip per op" rule visible: results of GPU work stay on the GPU as
CuPy arrays; only ``.numpy()`` (or ``.to('cpu')``) brings data to the host.

    >>> import numpy as np, noodle as nd
    >>> a = nd.Matrix(np.eye(2))
    >>> (a @ a + a).numpy()
    array([[2., 0.],
           [0., 2.]])
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from noodle.array import dispatch as _d
from noodle.array import ops as _ops
from noodle.errors import DTypeError, RegionError

_devices = importlib.import_module("noodle.devices")  # the module, not the nd.devices() function


class Matrix:
    """A NumPy or CuPy array with placement-aware arithmetic."""

    __slots__ = ("_noodle_data",)
    __array_priority__ = 1000   # so ndarray @ Matrix defers to Matrix.__rmatmul__

    def __init__(self, data: Any, *, allocator: Any = None) -> None:
        """Wrap ``data`` (no copy), or, with ``allocator=`` (a region from ``noodle.region()``), copy
        it into that region's memory and register the Matrix with the region.

        Why the copy: a region ends its memory and objects together; data that
        stayed on the heap would not follow the region's lifetime.

            >>> import numpy as np, noodle as nd
            >>> with nd.region() as alloc:
            ...     m = nd.Matrix(np.ones((2, 2)), allocator=alloc)
            ...     float(m.numpy().sum())
            4.0
        """
        if isinstance(data, Matrix):
            data = data._noodle_data
        elif not (isinstance(data, np.ndarray) or _devices.is_gpu_array(data)):
            try:
                data = np.asarray(data)
            except (TypeError, ValueError) as exc:
                raise DTypeError(f"Matrix: cannot make an array from {type(data).__name__} ({exc})") from None
        if data.dtype.kind not in "biufc":
            raise DTypeError(f"Matrix: dtype {data.dtype} is not numeric; expected bool, integer, float "
                             f"or complex data")
        if allocator is not None:
            if not hasattr(allocator, "asarray") or not hasattr(allocator, "create"):
                raise RegionError(f"Matrix: allocator must be a region (from noodle.region() or "
                                  f"RegionManager().create_region()), got {type(allocator).__name__}")
            self._noodle_data = allocator.asarray(data)
            allocator.create(self)
            return
        self._noodle_data = data

    # where it lives ---------------------------------------------------------
    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``."""
        return _devices.array_device(self._noodle_data)

    @property
    def data(self) -> Any:
        """The underlying NumPy or CuPy array (no copy)."""
        return self._noodle_data

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._noodle_data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._noodle_data.dtype)

    def to(self, device: str) -> Matrix:
        """A Matrix on ``device`` (``'cpu'``, ``'gpu'`` or ``'cuda:N'``); itself if already there."""
        kind, index = _devices.parse_device(device)
        data = self._noodle_data
        if kind in ("cpu", "auto"):
            return Matrix(_d.to_host(data)) if _devices.is_gpu_array(data) else self
        moved = _d.to_gpu(data, index or 0)
        return self if moved is data else Matrix(moved)

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array on the host (copies from the GPU if needed)."""
        return self.to("cpu")._noodle_data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    # arithmetic --------------------------------------------------------------
    def add(self, other: Any, device: str = "auto") -> Matrix:
        """``self + other`` placed by ``device``."""
        return Matrix(_ops.add(self._noodle_data, _raw(other), device=device))

    def subtract(self, other: Any, device: str = "auto") -> Matrix:
        """``self - other`` placed by ``device``."""
        return Matrix(_ops.subtract(self._noodle_data, _raw(other), device=device))

    def multiply(self, other: Any, device: str = "auto") -> Matrix:
        """Elementwise ``self * other`` placed by ``device``."""
        return Matrix(_ops.multiply(self._noodle_data, _raw(other), device=device))

    def matmul(self, other: Any, device: str = "auto") -> Matrix:
        """Matrix product ``self @ other`` placed by ``device``."""
        return Matrix(_ops.matmul(self._noodle_data, _raw(other), device=device))

    def __add__(self, other: Any) -> Matrix:
        return self.add(other)

    def __radd__(self, other: Any) -> Matrix:
        return Matrix(_ops.add(_raw(other), self._noodle_data))

    def __sub__(self, other: Any) -> Matrix:
        return self.subtract(other)

    def __rsub__(self, other: Any) -> Matrix:
        return Matrix(_ops.subtract(_raw(other), self._noodle_data))

    def __mul__(self, other: Any) -> Matrix:
        return self.multiply(other)

    def __rmul__(self, other: Any) -> Matrix:
        return Matrix(_ops.multiply(_raw(other), self._noodle_data))

    def __truediv__(self, other: Any) -> Matrix:
        return Matrix(_ops.divide(self._noodle_data, _raw(other)))

    def __pow__(self, other: Any) -> Matrix:
        return Matrix(_ops.power(self._noodle_data, _raw(other)))

    def __rpow__(self, other: Any) -> Matrix:
        return Matrix(_ops.power(_raw(other), self._noodle_data))

    def __matmul__(self, other: Any) -> Matrix:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> Matrix:
        return Matrix(_ops.matmul(_raw(other), self._noodle_data))

    def __neg__(self) -> Matrix:
        return Matrix(_ops.negative(self._noodle_data))

    def __repr__(self) -> str:
        return f"Matrix(shape={self.shape}, dtype={self.dtype}, device={self.device!r})"


_raw = _d.unwrap
