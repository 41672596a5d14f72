"""Model variants built with ONNX Runtime's own tooling: dynamic INT8, static INT8, FP16.

Why only ORT's tools: quantization is easy to get subtly wrong (scales, zero
points, which ops are safe), and ORT's ``quantize_dynamic`` / ``quantize_static``
are what its kernels are written for. Whether a variant is *better* is never
assumed here: :mod:`noodle.inference.optimizer` measures speed and agreement
with FP32 on this machine (ORT's INT8 is 2-3x faster on CPUs with VNNI and
can be slower without it).

Every function takes and returns serialized model bytes; a failure is a
:class:`~noodle.errors.ModelLoadError` naming the variant.

Example::

    from noodle.inference.quantize import dynamic_int8
    small = dynamic_int8(open("model.onnx", "rb").read())
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from noodle.errors import ModelLoadError

VARIANTS = ("fp32", "int8_dynamic", "int8_static", "fp16")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs a root-logger warning per model ("consider pre-processing"); it is advice
    for hand-run scripts, noise for an optimizer that measures the result anyway."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


def _load(data: bytes):  # noqa: ANN202 - onnx.ModelProto, onnx imported lazily
    import onnx  # noqa: PLC0415

    try:
        return onnx.load_from_string(data)
    except Exception as exc:
        raise ModelLoadError(f"the model bytes are not an ONNX model ({exc}).") from exc


def dynamic_int8(data: bytes) -> bytes:
    """Weights in INT8, activations quantized per batch at run time (no calibration data needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    with _quiet(), tempfile.TemporaryDirectory(prefix="noodle-q-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(data)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        except Exception as exc:
            raise ModelLoadError(f"dynamic INT8 quantization failed: {type(exc).__name__}: {exc}") from exc
        return dst.read_bytes()


class _Reader:
    """Feeds calibration samples to ``quantize_static`` one batch at a time."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - only some calibrators call it
        pass


def static_int8(data: bytes, samples: Iterable[dict[str, np.ndarray]]) -> bytes:
    """Weights and activations in INT8 (QDQ format), activation ranges calibrated on ``samples``
    (name -> array feeds, e.g. slices of the inputs the model will serve)."""
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = list(samples)
    if not batches:
        raise ModelLoadError("static INT8 quantization needs calibration samples (name -> array feeds); got none.")
    with _quiet(), tempfile.TemporaryDirectory(prefix="noodle-q-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(data)
        try:
            quantize_static(src, dst, _Reader(batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"CalibTensorRangeSymmetric": False})
        except Exception as exc:
            raise ModelLoadError(f"static INT8 quantization failed: {type(exc).__name__}: {exc}") from exc
        return dst.read_bytes()


def to_fp16(data: bytes) -> bytes:
    """FP16 weights and compute, FP32 inputs and outputs kept (``keep_io_types``) so callers' arrays and
    the engine's input contract do not change. Meant for the CUDA provider; on the CPU ORT has few
    FP16 kernels and inserts casts."""
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

    model = _load(data)
    try:
        half = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ModelLoadError(f"FP16 conversion failed: {type(exc).__name__}: {exc}") from exc
    return half.SerializeToString()


def build(variant: str, data: bytes, samples: Iterable[dict[str, np.ndarray]] = ()) -> bytes:
    """The bytes of ``variant`` (one of :data:`VARIANTS`) of the FP32 model ``data``."""
    if variant == "fp32":
        return data
    if variant == "int8_dynamic":
        return dynamic_int8(data)
    if variant == "int8_static":
        return static_int8(data, samples)
    if variant == "fp16":
        return to_fp16(data)
    raise ModelLoadError(f"unknown model variant {variant!r}; known: {', '.join(VARIANTS)}")
