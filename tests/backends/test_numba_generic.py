"""One Numba kernel for every length: the generated code reads its sizes at run time.

A function called with many lengths must compile at most twice (a module per layout class,
plus its parallel variant on first use), give the interpreter's bits at every length (0, 1,
around the reduction's CHUNK and LANES), and the serial and parallel paths must agree bit
for bit wherever the threshold between them is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import noodle as nd
from noodle import metrics
from noodle.backends import numba_threads
from noodle.backends.numba_cpu import NumbaBackend
from noodle.backends.numba_expf import verified as expf_verified
from noodle.backends.reference import evaluate
from noodle.backends.spec import Instr, KernelSpec, Reduce
from noodle.devices.detect import cpu_threads
from noodle.errors import ConfigError
from noodle.ir.reduction import CHUNK, LANES
from noodle.memory.pool import BufferPool

# 50 lengths: tiny ones, every remainder modulo LANES, the chunk edges, several chunks, and
# (with the threshold lowered below) lengths that take the parallel variant
LENGTHS = sorted({0, 1, 2, 3, *range(5, 5 + LANES), 15, 16, 17, 31, 33, 100, 255, 257, 1000,
                  CHUNK - 1, CHUNK, CHUNK + 1, CHUNK + LANES - 1, 2 * CHUNK - 3, 2 * CHUNK, 2 * CHUNK + 5,
                  3 * CHUNK + 1, 5000, 9 * CHUNK - 1, 9 * CHUNK + 3, 20_000, 33_333, 40_000, 50_001,
                  65_536, 70_001, 80_000, 99_999, 100_001, 123_457, 4, 23, 64, 65, 511, 513, 2048, 3001})
assert len(LENGTHS) == 50


def _compiles() -> float:
    counter = metrics.registry.get("noodle_jit_kernel_compiles_total")
    return counter.value("numba", "compiled") + counter.value("numba", "disk")


def _bits(x: object) -> bytes:
    a = np.asarray(x)
    return a.dtype.str.encode() + a.tobytes()


@pytest.fixture
def backend(tmp_path):
    return NumbaBackend(pool=BufferPool(max_bytes=1 << 28), cache_dir=tmp_path)


@pytest.fixture
def parallel_from_10k():
    numba_threads.set_parallel_min(10_000)
    yield
    numba_threads.set_parallel_min(None)


def sq_sum(n: int, dtype: str) -> KernelSpec:
    """``sum((a - b) ** 2)`` after strength reduction: a float sum of a product."""
    return KernelSpec(((dtype, (n,)), (dtype, (n,))), (),
                      (Instr("subtract", (0, 1), dtype), Instr("multiply", (2, 2), dtype)), (), (n,),
                      Reduce("sum", 3, None, False, dtype, ()))


def staged(n: int, dtype: str) -> KernelSpec:
    """``d = a - b*s`` (s a size-1 input), ``e = exp(d) * d``: an output and a sum, through NumPy's exp."""
    return KernelSpec(((dtype, (n,)), (dtype, (n,)), (dtype, (1,))), (),
                      (Instr("multiply", (1, 2), dtype), Instr("subtract", (0, 3), dtype),
                       Instr("exp", (4,), dtype), Instr("multiply", (5, 4), dtype)), (6,), (n,),
                      Reduce("sum", 6, None, False, dtype, ()))


def rows(m: int, n: int) -> KernelSpec:
    """A matrix plus a row vector, times a column: the N-d layout with broadcast strides."""
    return KernelSpec((("float64", (m, n)), ("float32", (n,)), ("float64", (m, 1))), (("float64", 0.5),),
                      (Instr("add", (0, 1), "float64"), Instr("multiply", (4, 2), "float64"),
                       Instr("maximum", (5, 3), "float64")), (6,), (m, n))


def _inputs(spec: KernelSpec, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(shape).astype(dtype) for dtype, shape in spec.inputs]


@pytest.mark.parametrize("make", [sq_sum, staged])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fifty_lengths_one_module_and_the_interpreters_bits(backend, parallel_from_10k, make, dtype) -> None:
    rng = np.random.default_rng(len(LENGTHS))
    before = _compiles()
    for n in LENGTHS:
        spec = make(n, dtype)
        xs = _inputs(spec, rng)
        got = backend.compile_kernel(spec)(*xs)
        want = evaluate(spec, *xs)
        assert [_bits(g) for g in got] == [_bits(w) for w in want], (make.__name__, dtype, n)
    # staged: at length 1 the size-1 input is as long as the others (another layout class);
    # sq_sum: one module and its parallel variant, compiled on first use
    assert backend.module_count() == (1 if make is sq_sum else 2)
    # float32 exp inline (numba_expf): ``staged`` is then a one-pass sum with a parallel variant
    inline = make is staged and dtype == "float32" and expf_verified()
    assert _compiles() - before <= (3 if inline else 2)


def test_rows_of_many_shapes_share_one_module(backend) -> None:
    rng = np.random.default_rng(3)
    for m, n in [(2, 2), (2, 3), (3, 2), (7, 9), (64, 48), (5, CHUNK + 1), (300, 301)]:
        spec = rows(m, n)
        xs = _inputs(spec, rng)
        (got,) = backend.compile_kernel(spec)(*xs)
        assert _bits(got) == _bits(evaluate(spec, *xs)[0]), (m, n)
    assert backend.module_count() == 1


def test_a_wrong_length_is_refused_by_the_shared_module(backend) -> None:
    k = backend.compile_kernel(sq_sum(100, "float64"))
    backend.compile_kernel(sq_sum(50, "float64"))          # the same module, other sizes
    with pytest.raises(Exception, match="shape|size"):
        k(np.ones(50), np.ones(50))
    assert float(k(np.ones(100), np.zeros(100))[0]) == 100.0


@pytest.mark.parametrize("make", [sq_sum, staged])
def test_serial_and_parallel_paths_agree_bit_for_bit(tmp_path, make) -> None:
    results: dict[int, list] = {}
    for threshold in (0, 10 ** 9):       # always parallel, never parallel
        numba_threads.set_parallel_min(threshold)
        try:
            be = NumbaBackend(pool=BufferPool(max_bytes=1 << 28), cache_dir=tmp_path)
            for n in (1, CHUNK - 1, CHUNK + 1, 9 * CHUNK + 3, 123_457):
                spec = make(n, "float64")
                k = be.compile_kernel(spec)
                assert k._parallel == (threshold == 0 and cpu_threads() > 1)
                xs = _inputs(spec, np.random.default_rng(n))
                results.setdefault(n, []).append([_bits(r) for r in k(*xs)])
        finally:
            numba_threads.set_parallel_min(None)
    for n, (par, ser) in results.items():
        assert par == ser, n


def test_the_threshold_is_a_checked_setting(monkeypatch) -> None:
    monkeypatch.setenv("NOODLE_NUMBA_PARALLEL_MIN", "5000")
    assert numba_threads.parallel_min() == 5000
    monkeypatch.setenv("NOODLE_NUMBA_PARALLEL_MIN", "lots")
    with pytest.raises(ConfigError, match="NOODLE_NUMBA_PARALLEL_MIN"):
        numba_threads.parallel_min()
    monkeypatch.delenv("NOODLE_NUMBA_PARALLEL_MIN")
    assert numba_threads.parallel_min() == numba_threads.DEFAULT_PARALLEL_MIN
    with pytest.raises(ConfigError):
        numba_threads.set_parallel_min(-1)


def test_a_small_kernel_never_launches_threads(backend) -> None:
    k = backend.compile_kernel(sq_sum(1000, "float64"))
    assert not k._parallel and k._par is None and k._direct


def test_a_jitted_function_called_with_fifty_lengths_compiles_at_most_twice(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NOODLE_CACHE_DIR", str(tmp_path))   # a private disk cache: real compiles

    def body(a, b):
        return ((a - b) ** 2 * 0.25).sum()

    sq, ref = nd.jit(body, backend="numba"), nd.jit(body, backend="interpret")
    rng = np.random.default_rng(50)
    before = _compiles()
    for n in LENGTHS:
        a, b = rng.standard_normal(n), rng.standard_normal(n)
        want = ref(a, b)
        sq.compile(a, b)
        assert _bits(sq(a, b)) == _bits(want), n
    assert _compiles() - before <= 2


def test_another_process_loads_the_class_from_the_disk_cache(tmp_path) -> None:
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        from test_numba_generic import sq_sum
        from noodle.backends.numba_cpu import NumbaBackend
        k = NumbaBackend(cache_dir={str(tmp_path)!r}).compile_kernel(sq_sum(int(sys.argv[1]), "float64"))
        x = np.arange(float(sys.argv[1]))
        print(int(k.from_cache), float(k(x, x * 0.5)[0]))
    """)
    runs = [subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True, timeout=300)
            for n in (1000, 777)]
    outs = [r.stdout.split() for r in runs]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    assert outs[0][0] == "0" and outs[1][0] == "1"      # the second length: no compile
    x = np.arange(777.0)
    assert float(outs[1][1]) == pytest.approx(float(((x - x * 0.5) ** 2).sum()), rel=1e-12)
