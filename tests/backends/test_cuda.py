"""CUDA backend: every generated kernel source compiles with nvcc (no GPU needed); runtime tests need a GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from backend_specs import bias_relu, chain, matmul_bias_relu, sum_abc

from noodle.backends.cuda_codegen import c_literal, cuda_source, kernel_name, launch_shape
from noodle.backends.reference import evaluate
from noodle.backends.spec import Instr, KernelSpec, Reduce
from noodle.errors import CompileError, DTypeError

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


def _specs() -> list[tuple[KernelSpec, bool]]:
    i8 = "int64"
    specs: list[tuple[KernelSpec, bool]] = [
        (chain(1000, "float64"), False),
        (chain(1000, "float32"), False),
        (sum_abc(1 << 20, "float64"), False),
        (sum_abc(1 << 20, "float32"), False),
        (bias_relu(64, 48), True),
        (bias_relu(64, 48, "float32"), True),
        (KernelSpec(
            inputs=((i8, (50, 30)), (i8, (30,)), ("float64", (50, 30))), consts=((i8, 3),),
            body=(Instr("multiply", (0, 3), i8), Instr("maximum", (4, 1), i8), Instr("abs", (5,), i8),
                  Instr("greater", (6, 2), "bool"), Instr("where", (7, 6, 2), "float64"),
                  Instr("astype", (8,), i8), Instr("divide", (0, 1), "float64"), Instr("power", (1, 3), i8)),
            outputs=(6, 7, 9, 10, 11), shape=(50, 30)), False),
        (KernelSpec((("float32", (64, 1)), ("float64", (1, 48)), ("float64", ())),
                    (("float64", float("inf")), ("float32", float("nan"))),
                    (Instr("multiply", (0, 1), "float64"), Instr("minimum", (5, 3), "float64"),
                     Instr("sin", (6,), "float64"), Instr("cos", (7,), "float64"), Instr("log", (0,), "float32"),
                     Instr("tanh", (9,), "float32"), Instr("sqrt", (2,), "float64"),
                     Instr("maximum", (10, 4), "float32"), Instr("negative", (12,), "float32")),
                    (8, 11, 13), (64, 48)), False),
    ]
    for op in ("sum", "mean", "max", "min"):
        for axes, keep in (((0,), False), ((1, 2), True), (None, False)):
            shape = (6, 7, 8)
            rshape = np.zeros(shape).sum(axis=axes, keepdims=keep).shape
            specs.append((KernelSpec((("float32", shape), (i8, (7, 1))), (),
                                     (Instr("add", (0, 1), "float64"),), (2,), shape,
                                     reduce=Reduce(op, 2, axes, keep, "float64", rshape)), False))
        specs.append((KernelSpec(((i8, (100,)),), (), (), (), (100,),
                                 reduce=Reduce(op, 0, None, False, "float64" if op == "mean" else i8, ())), False))
    return specs


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
def test_every_generated_kernel_compiles_with_nvcc(tmp_path: Path) -> None:
    specs = _specs()
    sources = [cuda_source(s, inplace=inplace) for s, inplace in specs]
    names = {kernel_name(s) for s, _ in specs}
    assert len(names) == len(specs)
    cu = tmp_path / "kernels.cu"
    cu.write_text("\n".join(sources))
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", "-std=c++14", str(cu), "-o", str(tmp_path / "k.ptx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ptx = (tmp_path / "k.ptx").read_text()
    for name in names:
        assert f".entry {name}(" in ptx


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
def test_nvcc_rejects_a_broken_source(tmp_path: Path) -> None:
    """The compile check above can fail: a corrupted kernel does not pass it."""
    cu = tmp_path / "bad.cu"
    cu.write_text(cuda_source(chain(10)).replace("v12", "v99", 1))
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", str(cu), "-o", str(tmp_path / "b.ptx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0


def test_source_shape_of_kernels() -> None:
    src = cuda_source(bias_relu(64, 48))
    assert "x * 0LL" not in src and "__restrict__" in src
    assert "__restrict__" not in cuda_source(bias_relu(64, 48), inplace=True)
    red = cuda_source(sum_abc(1 << 20))
    assert "__shared__ double sh[256]" in red and "partials[blockIdx.x]" in red
    assert launch_shape(sum_abc(1 << 20), 132)[0] <= 132 * 8
    assert c_literal("float32", float("inf")) == "__int_as_float(0x7f800000)"
    with pytest.raises(DTypeError):
        cuda_source(KernelSpec((("complex64", (4,)),), (), (), (0,), (4,)))
    with pytest.raises(CompileError):
        cuda_source(KernelSpec((("float64", (4,)),), (), (Instr("fft", (0,), "float64"),), (1,), (4,)))


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("index", range(len(_specs())))
def test_gpu_kernels_match_numpy(index: int) -> None:
    import cupy as cp

    from noodle.backends.cuda_gpu import CudaBackend

    spec, _ = _specs()[index]
    rng = np.random.default_rng(index)
    xs = []
    for d, s in spec.inputs:
        x = rng.standard_normal(s) if d.startswith("float") else rng.integers(-50, 50, s)
        xs.append(np.abs(np.asarray(x)).astype(d) + (1 if d.startswith("float") else 0))
    got = CudaBackend().compile_kernel(spec)(*xs)
    ref = evaluate(spec, *xs)
    for g, r in zip(got, ref, strict=True):
        g, r = cp.asnumpy(g), np.asarray(r)
        assert g.shape == r.shape and g.dtype == r.dtype
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, r, rtol=1e-5 if g.dtype == np.float32 else 1e-10, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, r)


@pytest.mark.gpu
def test_gpu_matmul_bias_relu() -> None:
    import cupy as cp

    from noodle.backends.cuda_gpu import CudaBackend

    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 400)), rng.standard_normal(400)
    (out,) = CudaBackend().compile_matmul(matmul_bias_relu(300, 200, 400))(x, w, b)
    np.testing.assert_allclose(cp.asnumpy(out), np.maximum(x @ w + b, 0), rtol=1e-10, atol=1e-10)
