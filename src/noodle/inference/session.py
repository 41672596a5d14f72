"""ONNX Runtime sessions: loading a model, choosing the device, and the input contract.

Why one module: the engine, the optimizer and the benchmarks all need the same
answers to "is this an ONNX model", "which execution provider serves
``device=...``" and "does this input fit the model", and they must raise the
same clear :mod:`noodle.errors` exceptions. ONNX Runtime is imported here,
lazily, so ``import noodle.inference`` stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from noodle import devices as _devices
from noodle.errors import DeviceUnavailableError, InferenceInputError, ModelLoadError

# ONNX Runtime's type strings for the tensor element types a model may declare.
_ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}

GPU_EXTRA_HINT = ("pip install 'noodle[gpu]' (it installs onnxruntime-gpu in place of onnxruntime; "
                  "the two cannot be installed side by side)")


def ort() -> Any:
    """The ``onnxruntime`` module, imported on first use (a clear error when it is missing)."""
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the inference extra is installed in CI
        raise ModelLoadError("the inference engine needs ONNX Runtime: pip install 'noodle[inference]'") from exc
    return onnxruntime


def model_bytes(model: Any) -> bytes:
    """The serialized model from a path (str/Path) or bytes; anything else is a ModelLoadError."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read the ONNX model file {str(path)!r}: {exc}. "
                                 "Pass the path of an existing .onnx file, or the model's bytes.") from exc
    elif hasattr(model, "SerializeToString"):
        data = model.SerializeToString()    # an onnx.ModelProto in memory
    else:
        raise ModelLoadError(f"model must be a path (str or Path) or the bytes of an ONNX model, "
                             f"got {type(model).__name__}.")
    if not data:
        raise ModelLoadError("the model is empty (0 bytes); pass the bytes or path of an ONNX model.")
    return data


@dataclass(frozen=True)
class Placement:
    """Where a session runs: ``kind`` is ``'cpu'`` or ``'cuda'``; ``index`` the GPU (None on the CPU)."""

    kind: str
    index: int | None = None

    @property
    def name(self) -> str:
        """``'cpu'`` or ``'cuda:N'``: the spelling metrics and ``explain()`` use."""
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index or 0}"


def cuda_provider_available() -> bool:
    """True when this ONNX Runtime build has the CUDA execution provider (``onnxruntime-gpu``)."""
    return "CUDAExecutionProvider" in ort().get_available_providers()


def resolve_device(device: Any) -> Placement:
    """Map ``device=`` to a placement with noodle's rules: ``'auto'`` takes a GPU only when one is
    usable *and* ONNX Runtime can drive it; an explicit GPU without one raises DeviceUnavailableError."""
    kind, index = _devices.parse_device(device)   # DeviceError / DeviceUnavailableError for bad or absent GPUs
    if kind == "cpu":
        return Placement("cpu")
    if kind == "auto":
        if _devices.gpu_count() > 0 and cuda_provider_available():
            return Placement("cuda", 0)
        return Placement("cpu")
    if not cuda_provider_available():
        raise DeviceUnavailableError(
            f"device={device!r} asks for a GPU, and one is present, but this ONNX Runtime build has no CUDA "
            f"execution provider (providers: {', '.join(ort().get_available_providers())}). "
            f"Use device='cpu' or 'auto', or {GPU_EXTRA_HINT}.")
    return Placement("cuda", index if index is not None else 0)


def make_session(data: bytes, placement: Placement, *, intra_op_threads: int = 0) -> Any:
    """An ORT session for ``data`` on ``placement``; a model ORT cannot load is a ModelLoadError.

    Why ``intra_op_threads=0`` by default: ORT then sizes its pool to the cores,
    which is what one engine serving one model wants; the benchmarks pass 1 to
    compare variants without thread noise.
    """
    rt = ort()
    opts = rt.SessionOptions()
    opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    opts.log_severity_level = 3
    # ORT's pool threads spin after each run by default: on a machine with few cores the spinning
    # takes the CPU from the threads that submit and collect requests (measured here: the batched
    # serving path ran at a third of its throughput with spinning on)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if placement.kind == "cuda":
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": placement.index or 0}),
                                "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    try:
        return rt.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph types
        raise ModelLoadError(f"ONNX Runtime cannot load this model ({type(exc).__name__}: {exc}). "
                             "Pass a valid ONNX model (a .onnx file or its bytes), e.g. one exported "
                             "with skl2onnx or torch.onnx.") from exc


@dataclass(frozen=True)
class TensorSpec:
    """One declared model input or output: name, NumPy dtype and shape (an int per fixed axis, None otherwise)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None

    @classmethod
    def from_ort(cls, arg: Any) -> TensorSpec:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise ModelLoadError(f"model tensor {arg.name!r} has type {arg.type}, which the engine does not "
                                 f"serve (it serves tensors of {', '.join(sorted(_ORT_DTYPES))}).")
        shape = None if arg.shape is None else tuple(d if isinstance(d, int) else None for d in arg.shape)
        return cls(arg.name, dtype, shape)

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("N" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name}: {self.dtype.name}{dims}"


def check_inputs(x: Any, specs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """``x`` as a name -> contiguous array dict that fits ``specs``, or an InferenceInputError saying what
    is wrong and what was expected. Never casts: a float64 array for a float32 input is an error, not a
    silent rounding."""
    expected = ", ".join(s.describe() for s in specs)
    if isinstance(x, np.ndarray):
        if len(specs) != 1:
            raise InferenceInputError(f"the model has {len(specs)} inputs ({expected}); pass a dict "
                                      "mapping each input name to an array, not one array.")
        feeds = {specs[0].name: x}
    elif isinstance(x, dict):
        feeds = dict(x)
        names = {s.name for s in specs}
        unknown = sorted(set(feeds) - names)
        missing = sorted(names - set(feeds))
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown input name(s) {unknown}")
            if missing:
                parts.append(f"missing input(s) {missing}")
            raise InferenceInputError(f"{' and '.join(parts)}; the model's inputs are: {expected}.")
    else:
        raise InferenceInputError(f"inputs must be a NumPy array (single-input model) or a dict of name -> "
                                  f"array, got {type(x).__name__}; the model's inputs are: {expected}.")
    rows = None
    for spec in specs:
        arr = feeds[spec.name]
        if not isinstance(arr, np.ndarray):
            raise InferenceInputError(f"input {spec.name!r} must be a NumPy array, got {type(arr).__name__}; "
                                      f"expected {spec.describe()} (use np.asarray(..., dtype=np.{spec.dtype.name})).")
        if arr.dtype != spec.dtype:
            raise InferenceInputError(f"input {spec.name!r} has dtype {arr.dtype.name}, the model expects "
                                      f"{spec.dtype.name} ({spec.describe()}); convert it explicitly, e.g. "
                                      f"x.astype(np.{spec.dtype.name}), if that conversion is what you mean.")
        if spec.shape is not None:
            if arr.ndim != len(spec.shape):
                raise InferenceInputError(f"input {spec.name!r} has rank {arr.ndim} (shape {arr.shape}), the "
                                          f"model expects rank {len(spec.shape)} ({spec.describe()}).")
            for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
                if want is not None and got != want:
                    raise InferenceInputError(f"input {spec.name!r} has {got} on axis {axis} (shape {arr.shape}), "
                                              f"the model expects {want} ({spec.describe()}).")
        if arr.ndim == 0:
            raise InferenceInputError(f"input {spec.name!r} is a scalar; the engine needs a batch axis "
                                      f"(axis 0), expected {spec.describe()}.")
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            raise InferenceInputError(f"inputs disagree on the batch size (axis 0): {spec.name!r} has "
                                      f"{arr.shape[0]} rows, another input has {rows}.")
        feeds[spec.name] = np.ascontiguousarray(arr)
    return feeds
