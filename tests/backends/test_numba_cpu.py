"""The Numba CPU backend against NumPy on hand-built specs.

Tolerances (documented in numba_cpu's docstring): elementwise results match
NumPy to rounding (float64 rtol 1e-12, float32 rtol 1e-5: ``exp`` may differ by
an ulp or two between NumPy's SIMD loop and libm); integer results exactly;
float sums use chunked partials instead of NumPy's pairwise sum, within
1e-12 (float64) / 1e-6 (float32, accumulated in float64) of ``sum(|x|)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from backend_specs import bias_relu, chain, matmul_bias_relu, sum_abc

from noodle.backends import numba_cpu
from noodle.backends.reference import evaluate
from noodle.backends.registry import available_backends, get_backend
from noodle.backends.spec import Instr, KernelSpec, MatmulSpec, Reduce
from noodle.backends.split_reduce import SplitReduceKernel
from noodle.errors import CompileError, DTypeError, ShapeError

RTOL = {"float64": 1e-12, "float32": 1e-5}


def _data(shape, dtype, rng, positive=False):
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(shape).astype(dtype)
        return np.abs(x) + 0.1 if positive else x
    if dtype == "bool":
        return rng.random(shape) > 0.5
    return rng.integers(-50, 50, shape).astype(dtype)


def _check(backend, spec: KernelSpec, *xs) -> tuple:
    kernel = backend.compile_kernel(spec)
    got = kernel(*xs)
    ref = evaluate(spec, *xs)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape and g.dtype == r.dtype, (g.shape, g.dtype, r.shape, r.dtype)
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, r, rtol=RTOL[str(g.dtype)], atol=RTOL[str(g.dtype)])
        else:
            np.testing.assert_array_equal(g, r)
    return got


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [16, 1000, 200_003])
def test_chain_matches_numpy(numba_backend, dtype, n) -> None:
    rng = np.random.default_rng(n)
    xs = [_data(n, dtype, rng) for _ in range(5)]
    (out,) = _check(numba_backend, chain(n, dtype), *xs)
    a, b, c, d, e = xs
    np.testing.assert_allclose(out, a * b + c * d - 0.5 * np.exp(-e), rtol=RTOL[dtype], atol=RTOL[dtype])


def test_large_chain_uses_numpy_simd_stages(numba_backend) -> None:
    kernel = numba_backend.compile_kernel(chain(200_003))
    assert kernel.plan.mode == "stages"
    # exp runs as a NumPy ufunc on blocks between stages (the one-block driver calls it too), never
    # as a scalar expression in Numba code
    calls = [ln for ln in kernel.source_path.read_text().splitlines() if "np.exp(" in ln]
    assert calls and all(ln.strip().startswith("np.exp(") and "out=" in ln for ln in calls)


def test_broadcasting_row_column_and_scalar(numba_backend) -> None:
    rng = np.random.default_rng(1)
    spec = KernelSpec(
        inputs=(("float64", (64, 1)), ("float32", (1, 48)), ("float64", ())),
        consts=(("float64", 2.0),),
        body=(Instr("multiply", (0, 1), "float64"), Instr("add", (4, 2), "float64"),
              Instr("multiply", (5, 3), "float64"), Instr("sqrt", (6,), "float64")),
        outputs=(6, 7), shape=(64, 48))
    _check(numba_backend, spec, _data((64, 1), "float64", rng), _data((1, 48), "float32", rng),
           np.float64(0.25))


@pytest.fixture
def parallel_from_100k():
    """Kernels built in the test launch threads from 1e5 elements (the default threshold is a
    measured speed setting; these tests are about the parallel variant's results)."""
    from noodle.backends import numba_threads

    numba_threads.set_parallel_min(100_000)
    yield
    numba_threads.set_parallel_min(None)


def test_broadcast_bias_large_runs_parallel_rows(numba_backend, parallel_from_100k) -> None:
    rng = np.random.default_rng(2)
    spec = bias_relu(600, 400)
    k = numba_backend.compile_kernel(spec)
    assert k.plan.mode == "rows" and k._par is not None
    _check(numba_backend, spec, _data((600, 400), "float64", rng), _data(400, "float64", rng))


def test_int64_ops_and_comparisons(numba_backend) -> None:
    rng = np.random.default_rng(3)
    i8 = "int64"
    spec = KernelSpec(
        inputs=((i8, (50, 30)), (i8, (30,)), ("float64", (50, 30))),
        consts=((i8, 3),),
        body=(Instr("multiply", (0, 3), i8), Instr("maximum", (4, 1), i8), Instr("abs", (5,), i8),
              Instr("greater", (6, 2), "bool"), Instr("where", (7, 6, 2), "float64"),
              Instr("astype", (8,), i8, (("dtype", "int64"),)), Instr("divide", (0, 1), "float64"),
              Instr("power", (1, 3), i8)),
        outputs=(6, 7, 9, 10, 11), shape=(50, 30))
    b = _data(30, i8, rng)
    b[b == 0] = 7
    _check(numba_backend, spec, _data((50, 30), i8, rng), b, _data((50, 30), "float64", rng) * 40)


def test_nan_propagates_through_maximum_and_max(numba_backend) -> None:
    x = np.array([1.0, np.nan, 3.0, -2.0] * 25)
    y = np.zeros(100)
    spec = KernelSpec((("float64", (100,)), ("float64", (100,))), (), (Instr("maximum", (1, 0), "float64"),),
                      (2,), (100,), reduce=Reduce("max", 2, None, False, "float64", ()))
    out, mx = _check(numba_backend, spec, x, y)
    assert np.isnan(mx) and np.isnan(out[1]) and out[3] == 0.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1000, 300_001])
def test_sum_of_chain(numba_backend, dtype, n) -> None:
    rng = np.random.default_rng(4)
    a, b, c = (_data(n, dtype, rng) for _ in range(3))
    k = numba_backend.compile_kernel(sum_abc(n, dtype))
    (total,) = k(a, b, c)
    assert isinstance(total, np.generic) and total.dtype == np.dtype(dtype)
    scale = np.sum(np.abs(a.astype("f8") * b + c))
    assert abs(float(total) - float(np.sum(a * b + c))) <= (1e-12 if dtype == "float64" else 1e-6) * scale


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axes,keepdims", [((0,), False), ((1,), True), ((0, 2), False), ((0, 2), True),
                                           (None, True), ((2,), False)])
def test_axis_reductions(numba_backend, op, axes, keepdims) -> None:
    rng = np.random.default_rng(5)
    shape = (6, 7, 8)
    x = _data(shape, "float64", rng)
    bias = _data((7, 1), "float64", rng)  # broadcast input inside a reduction
    full = np.zeros(shape).sum(axis=axes, keepdims=keepdims).shape
    spec = KernelSpec((("float64", shape), ("float64", (7, 1))), (), (Instr("add", (0, 1), "float64"),),
                      (), shape, reduce=Reduce(op, 2, axes, keepdims, "float64", full))
    _check(numba_backend, spec, x, bias)


def test_large_axis_reduction_parallel_with_output(numba_backend, parallel_from_100k) -> None:
    rng = np.random.default_rng(6)
    shape = (400, 300)
    spec = KernelSpec((("float32", shape), ("float32", (300,))), (), (Instr("multiply", (0, 1), "float32"),),
                      (2,), shape, reduce=Reduce("sum", 2, (1,), False, "float32", (400,)))
    k = numba_backend.compile_kernel(spec)
    # a reduction over some axes: the kernel makes the values (in parallel), the defined-order
    # reduction sums them (noodle.ir.reduction), so the bits are the interpreter's
    assert isinstance(k, SplitReduceKernel) and k.values.plan.mode == "rows" and k.values._par is not None
    _check(numba_backend, spec, _data(shape, "float32", rng), _data(300, "float32", rng))


@pytest.mark.parametrize("op", ["sum", "max"])
def test_large_outer_axis_reduction_matches_the_reference_bit_for_bit(numba_backend, op) -> None:
    """``(x * w).sum(axis=0)``: the values in parallel, then the defined-order reduction."""
    rng = np.random.default_rng(13)
    shape = (500, 3000)
    spec = KernelSpec((("float64", shape), ("float64", (500, 1))), (), (Instr("multiply", (0, 1), "float64"),),
                      (2,), shape, reduce=Reduce(op, 2, (0,), True, "float64", (1, 3000)))
    k = numba_backend.compile_kernel(spec)
    assert isinstance(k, SplitReduceKernel) and k.values._par is not None
    x, w = _data(shape, "float64", rng), _data((500, 1), "float64", rng)
    _check(numba_backend, spec, x, w)
    assert k(x, w)[-1].tobytes() == evaluate(spec, x, w)[-1].tobytes()


def test_integer_reductions_are_exact(numba_backend) -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(-(2 ** 40), 2 ** 40, 200_000)
    for op in ("sum", "max", "min"):
        spec = KernelSpec((("int64", (200_000,)),), (), (), (), (200_000,),
                          reduce=Reduce(op, 0, None, False, "int64", ()))
        (r,) = numba_backend.compile_kernel(spec)(x)
        assert r == getattr(np, op)(x)


def test_stages_with_reduction_and_broadcast_constant(numba_backend) -> None:
    rng = np.random.default_rng(8)
    n = 100_000
    spec = KernelSpec((("float64", (n,)), ("float64", ())), (),
                      (Instr("log", (0,), "float64"), Instr("multiply", (2, 1), "float64"),
                       Instr("tanh", (3,), "float64")),
                      (4,), (n,), reduce=Reduce("sum", 4, None, False, "float64", ()))
    k = numba_backend.compile_kernel(spec)
    assert k.plan.mode == "stages"
    x = _data(n, "float64", rng, positive=True)
    out, total = k(x, np.float64(0.5))
    np.testing.assert_allclose(out, np.tanh(np.log(x) * 0.5), rtol=1e-12)
    assert abs(total - np.tanh(np.log(x) * 0.5).sum()) < 1e-9 * n


@pytest.mark.parametrize("shape,bshape", [((400, 300), (300,)), ((300, 401), (300, 1)), ((3, 40_001), (40_001,))])
def test_broadcast_transcendentals_run_in_stages(numba_backend, shape, bshape) -> None:
    """``tanh(x + b) * 0.5 + exp(b)`` with ``b`` broadcast: row-walking stages, ``exp`` of a
    broadcast input copied to scratch before the ufunc."""
    rng = np.random.default_rng(14)
    f8 = "float64"
    spec = KernelSpec(((f8, shape), (f8, bshape)), ((f8, 0.5),),
                      (Instr("add", (0, 1), f8), Instr("tanh", (3,), f8), Instr("multiply", (4, 2), f8),
                       Instr("exp", (1,), f8), Instr("add", (5, 6), f8)), (7,), shape,
                      reduce=Reduce("max", 7, None, False, f8, ()))
    k = numba_backend.compile_kernel(spec)
    # an N-d full reduction: a staged values kernel, then the defined-order reduction
    assert k.plan.mode == "split" and k.values.plan.mode == "stages"
    x, b = _data(shape, f8, rng), _data(bshape, f8, rng)
    out, mx = _check(numba_backend, spec, x, b)
    np.testing.assert_allclose(out, np.tanh(x + b) * 0.5 + np.exp(b), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matmul_bias_relu_epilogue_in_place(numba_backend, dtype) -> None:
    rng = np.random.default_rng(9)
    m, k, n = 300, 200, 400
    x, w, b = _data((m, k), dtype, rng), _data((k, n), dtype, rng), _data(n, dtype, rng)
    kernel = numba_backend.compile_matmul(matmul_bias_relu(m, k, n, dtype))
    (out,) = kernel(x, w, b)
    assert out.dtype == np.dtype(dtype) and out.shape == (m, n)
    np.testing.assert_allclose(out, np.maximum(x @ w + b, 0), rtol=1e-4 if dtype == "float32" else 1e-10,
                               atol=1e-4 if dtype == "float32" else 1e-10)


def test_matmul_tanh_epilogue_in_place_stages(numba_backend) -> None:
    f8, m = "float64", 400
    ep = KernelSpec(((f8, (m, m)), (f8, (m,))), (), (Instr("add", (0, 1), f8), Instr("tanh", (2,), f8)),
                    (3,), (m, m))
    k = numba_backend.compile_matmul(MatmulSpec((f8, (m, m)), (f8, (m, m)), f8, (m, m), ep))
    assert k.epilogue.plan.mode == "stages"
    rng = np.random.default_rng(15)
    x, w, b = _data((m, m), f8, rng), _data((m, m), f8, rng), _data(m, f8, rng)
    np.testing.assert_allclose(k(x, w, b)[0], np.tanh(x @ w + b), rtol=1e-12, atol=1e-12)


def test_matmul_without_epilogue_and_bad_operands(numba_backend) -> None:
    spec = MatmulSpec(("float64", (3, 4)), ("float64", (4, 5)), "float64", (3, 5))
    kernel = numba_backend.compile_matmul(spec)
    a, b = np.ones((3, 4)), np.ones((4, 5))
    np.testing.assert_array_equal(kernel(a, b)[0], a @ b)
    with pytest.raises(ShapeError, match="compiled for"):
        kernel(np.ones((4, 3)), b)
    with pytest.raises(DTypeError, match="operand b is float32"):
        kernel(a, b.astype(np.float32))
    with pytest.raises(ShapeError, match="epilogue"):
        numba_backend.compile_matmul(MatmulSpec(("float64", (3, 4)), ("float64", (4, 5)), "float64", (3, 5),
                                                epilogue=bias_relu(5, 3)))


def test_wrong_inputs_are_named(numba_backend) -> None:
    k = numba_backend.compile_kernel(chain(16))
    xs = [np.ones(16)] * 5
    with pytest.raises(DTypeError, match="input 2 has dtype float32"):
        k(xs[0], xs[1], np.ones(16, "float32"), xs[3], xs[4])
    with pytest.raises(ShapeError, match=r"input 0 has shape \(17,\)"):
        k(np.ones(17), *xs[1:])
    with pytest.raises(ShapeError, match="expects 5 inputs"):
        k(*xs[:4])


def test_bad_specs_are_refused(numba_backend) -> None:
    with pytest.raises(CompileError, match="reads value 9"):
        numba_backend.compile_kernel(KernelSpec((("float64", (4,)),), (), (Instr("exp", (9,), "float64"),),
                                                (1,), (4,)))
    with pytest.raises(DTypeError, match="complex128"):
        numba_backend.compile_kernel(KernelSpec((("complex128", (4,)),), (), (), (0,), (4,)))


def test_non_contiguous_and_zero_size_inputs(numba_backend) -> None:
    rng = np.random.default_rng(10)
    spec = bias_relu(20, 10)
    x = _data((10, 20), "float64", rng).T  # a transposed (non-contiguous) view
    _check(numba_backend, spec, x, _data(10, "float64", rng))
    empty = KernelSpec((("float64", (0, 3)),), (), (Instr("exp", (0,), "float64"),), (1,), (0, 3),
                       reduce=Reduce("sum", 1, None, False, "float64", ()))
    out, s = numba_backend.compile_kernel(empty)(np.ones((0, 3)))
    assert out.shape == (0, 3) and s == 0.0


def test_outputs_reuse_dropped_buffers(numba_backend) -> None:
    n = 100_000
    k = numba_backend.compile_kernel(chain(n))
    xs = [np.ones(n)] * 5
    first = k(*xs)[0]
    addr = first.ctypes.data
    second = k(*xs)[0]
    assert second.ctypes.data != addr  # the first result is still held: never overwritten
    np.testing.assert_array_equal(first, second)
    del first
    third = k(*xs)[0]
    assert third.ctypes.data == addr


def test_concurrent_parallel_launches_from_threads(numba_backend) -> None:
    """The workqueue layer aborts on concurrent parallel launches: the lock must prevent it."""
    rng = np.random.default_rng(11)
    n = 150_000
    spec = sum_abc(n)
    k = numba_backend.compile_kernel(spec)
    data = [[_data(n, "float64", rng) for _ in range(3)] for _ in range(4)]
    expect = [float(np.sum(a * b + c)) for a, b, c in data]
    errors: list[str] = []

    def worker(i: int) -> None:
        for _ in range(20):
            (r,) = k(*data[i])
            if abs(float(r) - expect[i]) > 1e-9 * n:
                errors.append(f"thread {i}: {r} != {expect[i]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_concurrent_stage_kernels_from_threads(numba_backend) -> None:
    """Block-parallel (stages) kernels called from several threads share the worker pool safely."""
    n = 150_001
    k = numba_backend.compile_kernel(chain(n))
    assert k.plan.mode == "stages"
    rng = np.random.default_rng(12)
    data = [[_data(n, "float64", rng) for _ in range(5)] for _ in range(3)]
    expect = [_chain(*xs) for xs in data]
    errors: list[str] = []

    def worker(i: int) -> None:
        for _ in range(10):
            (out,) = k(*data[i])
            if not np.allclose(out, expect[i], rtol=1e-12, atol=1e-12):
                errors.append(f"thread {i}: wrong result")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _chain(a, b, c, d, e):
    return a * b + c * d - 0.5 * np.exp(-e)


def test_registry_and_availability() -> None:
    assert "numba" in available_backends()
    assert get_backend("numba") is get_backend("numba")
    ok, why = get_backend("cuda").available()
    assert isinstance(ok, bool) and (ok or why)
    with pytest.raises(CompileError, match="known backends: numba, cuda"):
        get_backend("tpu")


_SUBPROCESS = textwrap.dedent("""
    import sys, time, json
    t0 = time.perf_counter()
    sys.path.insert(0, {specs_dir!r})
    import numpy as np
    from backend_specs import chain
    from noodle.backends.numba_cpu import NumbaBackend
    backend = NumbaBackend(cache_dir={cache!r})
    k = backend.compile_kernel(chain(1000))
    (out,) = k(*[np.full(1000, 2.0)] * 5)
    print(json.dumps({{"from_cache": k.from_cache, "value": float(out[0]),
                       "seconds": time.perf_counter() - t0}}))
""")


def test_second_process_loads_kernel_from_disk_cache(tmp_path: Path) -> None:
    import json

    code = _SUBPROCESS.format(specs_dir=str(Path(__file__).parent), cache=str(tmp_path))
    env = dict(os.environ)
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    expect = 2 * 2 + 2 * 2 - 0.5 * np.exp(-2.0)
    assert runs[0]["from_cache"] is False and runs[1]["from_cache"] is True
    assert runs[0]["value"] == pytest.approx(expect) and runs[1]["value"] == pytest.approx(expect)
    sources = list((tmp_path).glob("k_*.py"))
    text = sources[0].read_text() if len(sources) == 1 else ""
    assert "def k_ser" in text or "def s1(" in text, text   # a loop kernel, or the stages of one
    assert any(p.suffix == ".nbi" for p in (tmp_path / "__pycache__").iterdir())


def test_kernel_dir_follows_settings() -> None:
    assert numba_cpu.kernel_dir().name == "kernels"


def test_unwritable_cache_dir_falls_back_to_tmp(tmp_path: Path) -> None:
    from noodle.backends.numba_cpu import NumbaBackend

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")  # a file where the cache directory should be: mkdir fails
    kernel = NumbaBackend(cache_dir=blocked / "kernels").compile_kernel(chain(8))
    assert kernel.source_path.parent != blocked / "kernels" and kernel.source_path.exists()
    (out,) = kernel(*[np.ones(8)] * 5)
    assert out[0] == pytest.approx(2 - 0.5 * np.exp(-1.0))


def test_forked_child_can_run_block_kernels(numba_backend) -> None:
    n = 150_001
    k = numba_backend.compile_kernel(chain(n))
    xs = [np.full(n, 0.5)] * 5
    k(*xs)  # the parent's worker threads exist now
    pid = os.fork()
    if pid == 0:  # child: must not wait forever on the parent's (absent) threads
        try:
            (out,) = k(*xs)
            os._exit(0 if abs(out[-1] - (0.5 - 0.5 * np.exp(-0.5))) < 1e-12 else 1)
        except BaseException:
            os._exit(2)
    deadline = __import__("time").monotonic() + 60
    while __import__("time").monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        __import__("time").sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung running a block-parallel kernel")


def test_prewarm_imports_numba_once() -> None:
    from noodle.backends.numba_prewarm import prewarm

    t = prewarm()
    t.join(timeout=60)
    assert not t.is_alive() and "numba" in sys.modules and "noodle.backends.numba_cpu" in sys.modules
    assert prewarm() is t


def test_decorating_does_not_wait_for_numba() -> None:
    """``@nd.jit`` starts Numba's import in the background and returns: in a fresh process,
    neither numba nor the Numba backend is imported when the decorator returns."""
    code = ("import sys, noodle as nd\n"
            "f = nd.jit(lambda a: a * 2.0)\n"
            "print(int('noodle.backends.numba_cpu' in sys.modules and 'numba.np.arraymath' in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "0", out.stdout + out.stderr


@pytest.mark.parametrize(("shape", "bshape", "axes"), [
    ((3, 1, 5), (5,), (0,)), ((3, 1, 5), (3, 1, 5), (0, 2)), ((4, 6), (6,), None),
    ((2, 3, 4), (2, 3, 4), (1,)), ((7, 1), (7, 1), (1,)), ((300, 300), (300,), None),
])
def test_mean_divides_by_the_reduced_element_count(numba_backend, shape, bshape, axes) -> None:
    # the count comes from the collapsed layout (size-1 dims dropped, neighbours merged): it must
    # still be the product of the original reduced axes, in every loop shape including stages
    nd = len(shape)
    kept = [s for d, s in enumerate(shape) if axes is not None and d not in axes]
    body = (Instr("add", (0, 1), "float64"), Instr("exp", (2,), "float64"))
    spec = KernelSpec((("float64", shape), ("float64", bshape)), (), body, (), shape,
                      reduce=Reduce("mean", 3, axes, False, "float64", tuple(kept)))
    rng = np.random.default_rng(nd)
    a, b = rng.random(shape), rng.random(bshape)
    got = numba_backend.compile_kernel(spec)(a, b)[-1]
    np.testing.assert_allclose(got, np.exp(a + b).mean(axis=axes), rtol=1e-12)


@pytest.mark.parametrize("n", [16, 20_000, 100_000])
def test_a_staged_kernel_refuses_a_wrong_dtype_on_an_input_only_numpy_reads(numba_backend, n) -> None:
    """exp(x): x is read by NumPy's ufunc only (no Numba dispatcher checks it); a float32 array
    where float64 was compiled must be refused, not computed with."""
    spec = KernelSpec((("float64", (n,)),), (), (Instr("exp", (0,), "float64"),), (1,), (n,))
    k = numba_backend.compile_kernel(spec)
    assert k.plan.mode == "stages"
    x = np.linspace(-1, 1, n)
    assert k(x)[0].tobytes() == np.exp(x).tobytes()
    with pytest.raises(DTypeError, match="float32"):
        k(x.astype(np.float32))


def test_a_zero_d_operand_takes_the_direct_path_as_a_numpy_scalar_or_a_0d_array() -> None:
    """A CG step's ``x + alpha * p``: alpha arrives as a NumPy scalar or a 0-d array."""
    from noodle.errors import NoodleError
    from noodle.exec.interpreter import run_program
    from noodle.jit.lower import kernel_spec
    from noodle.passes import optimize, units
    from noodle.trace import trace

    x, p = np.linspace(-1, 1, 800), np.linspace(2, 3, 800)
    alpha = np.float64(0.37)
    prog = optimize(trace(lambda x, alpha, p: x + alpha * p, (x, np.asarray(alpha), p)))
    (unit,) = [u for u in units(prog) if u.group is not None]
    spec, _ins, _outs = kernel_spec(prog, unit)
    kernel = get_backend("numba").compile_kernel(spec)
    assert kernel._direct and kernel._scalars
    want = run_program(prog, (x, np.asarray(alpha), p))[0]
    assert all(prog.nodes[v].op == "input" for v in _ins)

    def call(a):   # the kernel's operands in its own order, alpha given as ``a``
        args = (x, a, p)
        return kernel(*[args[prog.nodes[v].attr("index")] for v in _ins])

    for a in (alpha, np.asarray(alpha), np.asarray([alpha])):
        (got,) = call(a)
        assert np.array_equal(got, want)
    with pytest.raises(NoodleError, match="shape"):
        call(np.ones(2))
    with pytest.raises(NoodleError, match="dtype|float32"):
        call(np.float32(0.37))


def _sum_sq_diff_with_output(n: int, dt: str) -> KernelSpec:
    """``d = a - b`` as an output and ``sum(d * d)``: a chunk-mode float sum that also stores."""
    s = (n,)
    body = (Instr("subtract", (0, 1), dt), Instr("multiply", (2, 2), dt))
    return KernelSpec(((dt, s), (dt, s)), (), body, (2,), s, reduce=Reduce("sum", 3, None, False, dt, ()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [5, 8, 4096 * 2 + 13, 300_001])
@pytest.mark.parametrize("parallel_min", [0, None, 10**9])
def test_chunk_sums_in_both_forms_give_the_defined_order_bit_for_bit(kernel_cache, dtype, n, parallel_min) -> None:
    """The float sum of a chunk-mode kernel is written two ways (unrolled on every thread for
    float64, a small buffer in pieces otherwise); both must give the interpreter's bits, with
    the chunk tails (n not a multiple of 8 or of a chunk) and the stored output. A backend of
    its own: a kernel reads the parallel threshold when it is built, and is kept per spec."""
    from noodle.backends import numba_threads
    from noodle.backends.numba_cpu import NumbaBackend
    from noodle.memory.pool import BufferPool

    numba_backend = NumbaBackend(pool=BufferPool(max_bytes=1 << 28), cache_dir=kernel_cache)

    rng = np.random.default_rng(n)
    # magnitudes over twelve decades: a float sum of them rounds differently in any other order
    # (float32 squares of similar size would add exactly in float64, in every order)
    a, b = ((_data(n, dtype, rng) * 10 ** rng.uniform(-6, 6, n)).astype(dtype) for _ in range(2))
    spec = _sum_sq_diff_with_output(n, dtype)
    numba_threads.set_parallel_min(parallel_min)
    try:
        got = numba_backend.compile_kernel(spec)(a, b)
    finally:
        numba_threads.set_parallel_min(None)
    ref = evaluate(spec, a, b)
    assert np.asarray(got[0]).tobytes() == np.asarray(ref[0]).tobytes()
    assert np.asarray(got[1]).tobytes() == np.asarray(ref[1]).tobytes(), (got[1], ref[1])
    # a sum of -0.0 values is -0.0 only if every lane starts from -0.0 (reviewed: the squares
    # above are +0.0 whatever the start, so the values here are the differences themselves)
    d = "float64" if dtype == "float64" else "float32"
    diff = KernelSpec(((d, (n,)), (d, (n,))), (), (Instr("subtract", (0, 1), d),), (), (n,),
                      reduce=Reduce("sum", 2, None, False, d, ()))
    numba_threads.set_parallel_min(parallel_min)
    try:
        (total,) = numba_backend.compile_kernel(diff)(np.full(n, -0.0, dtype), np.zeros(n, dtype))
    finally:
        numba_threads.set_parallel_min(None)
    assert np.signbit(total) and total == 0
