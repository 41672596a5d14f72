"""The 64-bit modular kernels against Python's ``a * b % m`` and ``pow``: Numba on the CPU, the CUDA
source compiled by nvcc (no GPU needed) and its device functions run as host C++, and, on a GPU, the
CUDA kernels against the CPU bit for bit."""

from __future__ import annotations

import platform
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noodle.crypto import _mod64_cpu as cpu
from noodle.crypto import _mod64_cuda as cuda

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
CXX = shutil.which("g++") or shutil.which("c++")
U64 = 1 << 64

EDGE_MODULI = [1, 2, 3, 4, 6, 12, 2**31 - 1, 2**32, 2**61 - 1, 2**62 - 57, 2**62, 2**63 - 25, 2**63 - 1,
               2**63, 2**63 + 1, 2**63 + 2**40, 3 << 62, U64 - 59, U64 - 2, U64 - 1]


def _bits(values: list[int], signed: bool) -> np.ndarray:
    """uint64 bits of ``values`` (int64 two's complement when ``signed``)."""
    return np.array(values, np.int64 if signed else np.uint64).view(np.uint64).reshape(-1)


def _u(values: list[int]) -> np.ndarray:
    return np.array(values, np.uint64).reshape(-1)


def _edge_values(m: int, signed: bool) -> list[int]:
    lo, hi = (-(2**63), 2**63 - 1) if signed else (0, U64 - 1)
    vals = {0, 1, 2, m - 1, m, m + 1, 2 * m - 1, hi, hi - 1, lo, 2**32 - 1, 2**32, 2**62}
    if signed:
        vals |= {-1, -2, -m, -m - 1, -m + 1, 1 - 2**63}
    return sorted(v for v in vals if lo <= v <= hi)


def _random_modulus(rng: random.Random, signed: bool) -> int:
    top = 2**63 - 1 if signed else U64 - 1
    kind = rng.randrange(5)
    if kind == 0:
        m = rng.randrange(1, top + 1)
    elif kind == 1:
        m = rng.randrange(1, 1000)
    elif kind == 2:
        m = (rng.randrange(1, top + 1) >> rng.randrange(0, 63)) << rng.randrange(0, 20)   # even
    elif kind == 3:
        m = 2 ** rng.randrange(0, 64)
    else:
        m = top - rng.randrange(0, 1000)
    return min(max(m, 1), top)


def _random_value(rng: random.Random, m: int, signed: bool) -> int:
    lo, hi = (-(2**63), 2**63 - 1) if signed else (0, U64 - 1)
    v = rng.choice([rng.randrange(lo, hi + 1), rng.randrange(0, m) if m > 1 else 0, m - 1, m, m + 1, -m, -1,
                    hi, lo, rng.randrange(-1000, 1000)])
    return min(max(v, lo), hi)


# ------------------------------------------------------------------------------ CPU kernels
@pytest.mark.parametrize("signed", [False, True])
def test_edge_values_every_modulus(signed: bool) -> None:
    """Every edge value against every edge modulus (scalar-modulus kernels), and the same pairs with
    per-element moduli; exponents include 0, 1, 2, the top bit and all ones."""
    for m in EDGE_MODULI:
        if signed and m >= 2**63:
            continue
        vals = _edge_values(m, signed)
        pairs = [(a, b) for a in vals for b in vals]
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        n = len(pairs)
        exps = [0, 1, 2, 3, 63, 64, 2**32 + 1, 2**63 - 1, 2**63, U64 - 1]
        e = [exps[i % len(exps)] for i in range(n)]
        for mm in (_u([m]), _u([m] * n)):
            got = cpu.modmul(_bits(a, signed), signed, _bits(b, signed), signed, mm, n).tolist()
            assert got == [x * y % m for x, y in zip(a, b)], m
            want = [pow(x, y, m) for x, y in zip(a, e)]
            for ct in (False, True):
                got = cpu.modpow(_bits(a, signed), signed, _u(e), mm, n=n, constant_time=ct).tolist()
                assert got == want, (m, ct)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_elements_match_python(data: st.DataObject) -> None:
    signed = data.draw(st.booleans())
    top = 2**63 - 1 if signed else U64 - 1
    lo = -(2**63) if signed else 0
    ms = data.draw(st.lists(st.one_of(st.integers(1, top), st.integers(1, 64), st.sampled_from(EDGE_MODULI)
                                      .filter(lambda v: v <= top)), min_size=1, max_size=12))
    n = len(ms)
    vals = st.one_of(st.integers(lo, top), st.sampled_from([0, 1, top, lo]))
    a = data.draw(st.lists(vals, min_size=n, max_size=n))
    b = data.draw(st.lists(vals, min_size=n, max_size=n))
    e = data.draw(st.lists(st.one_of(st.integers(0, U64 - 1), st.integers(0, 70)), min_size=n, max_size=n))
    scalar = data.draw(st.booleans())
    if scalar:
        ms = [ms[0]] * n
    mm = _u(ms[:1] if scalar else ms)
    assert cpu.modmul(_bits(a, signed), signed, _bits(b, signed), signed, mm, n).tolist() == [
        x * y % m for x, y, m in zip(a, b, ms)]
    want = [pow(x, y, m) for x, y, m in zip(a, e, ms)]
    for ct in (False, True):
        assert cpu.modpow(_bits(a, signed), signed, _u(e), mm, n=n, constant_time=ct).tolist() == want


def test_broadcast_operands_and_parallel_launch() -> None:
    """Length-1 operands broadcast (stride 0) against full ones, at sizes that take the parallel path;
    with the launch lock held the serial variant gives the same bits."""
    rng = random.Random(7)
    n = 6000
    a = [rng.randrange(U64) for _ in range(n)]
    e = [rng.randrange(U64) for _ in range(n)]
    ms = [_random_modulus(rng, False) for _ in range(n)]
    for m_list, mm in (([2**61 - 1] * n, _u([2**61 - 1])), ([12] * n, _u([12])), (ms, _u(ms))):
        want_pow = [pow(x, y, m) for x, y, m in zip(a, e, m_list)]
        want_scalar_base = [pow(3, y, m) for y, m in zip(e, m_list)]
        want_scalar_exp = [pow(x, 65537, m) for x, m in zip(a, m_list)]
        for ct in (False, True):
            assert cpu.modpow(_u(a), False, _u(e), mm, n=n, constant_time=ct).tolist() == want_pow
            assert cpu.modpow(_u([3]), False, _u(e), mm, n=n, constant_time=ct).tolist() == want_scalar_base
            assert cpu.modpow(_u(a), False, _u([65537]), mm, n=n, constant_time=ct).tolist() == want_scalar_exp
        big = 40000
        aa = [a[i % n] for i in range(big)]
        mb = mm if mm.shape[0] == 1 else _u([m_list[i % n] for i in range(big)])
        want = [x * 12345 % m_list[i % n] for i, x in enumerate(aa)]
        assert cpu.modmul(_u(aa), False, _u([12345]), False, mb, big).tolist() == want
    from noodle.backends import numba_cpu

    with numba_cpu._par_lock:
        assert cpu.modpow(_u(a), False, _u(e), _u(ms), n=n).tolist() == [pow(x, y, m) for x, y, m in zip(a, e, ms)]


def test_inverse_where_negative() -> None:
    rng = random.Random(3)
    for signed in (False, True):
        ms = [_random_modulus(rng, signed) for _ in range(400)] + [1, 1, 2, 9, 9]
        n = len(ms)
        xs = [_random_value(rng, m, signed) for m in ms[:-5]] + [0, 5, 3, 6, 4]
        es = [rng.choice([-1, -2, 5, -(2**63), 0]) for _ in range(n)]
        inv, ok = cpu.invert_where_negative(_bits(xs, signed), signed, np.array(es, np.int64), _u(ms), n)
        for i in range(n):
            if es[i] >= 0:
                assert int(inv[i]) == xs[i] % ms[i] and ok[i] == 1
                continue
            try:
                want = pow(xs[i], -1, ms[i])
            except ValueError:
                assert ok[i] == 0, (xs[i], ms[i])
            else:
                assert ok[i] == 1 and int(inv[i]) == want, (xs[i], ms[i])


def test_zero_elements() -> None:
    empty = np.empty(0, np.uint64)
    assert cpu.modmul(empty, False, empty, False, empty, 0).shape == (0,)
    assert cpu.modpow(empty, False, empty, empty, n=0, constant_time=True).shape == (0,)


def test_scalar_constants() -> None:
    for m in EDGE_MODULI:
        q, qinv, r1, r2, k, mask = cpu.scalar_constants(m)
        assert q * 2**k == m and q % 2 == 1 and q * qinv % U64 == 1
        assert r1 == U64 % q and r2 == U64 * U64 % q and mask == 2**k - 1


def _conditional_jumps(fn, *args) -> int:
    """Conditional jumps in the compiled body of ``fn`` (x86-64 only; the CPython wrapper excluded)."""
    fn(*args)
    asm = fn.inspect_asm(fn.signatures[0])
    body = asm.split(".Lfunc_end0")[0]
    return len(re.findall(r"^\s+j(?!mp\b)[a-z]+\s", body, flags=re.M))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86-64 assembly")
def test_ladder_has_no_data_dependent_branches() -> None:
    """The ladder compiles to straight-line code plus its loop; the binary path (which branches on the
    exponent's bits, by design) shows that the check can see branches."""
    from numba import njit, uint64

    @njit
    def ladder(x, fx, e, q, qinv, r1, r2, mask):
        return cpu._ladder_one(x, fx, e, q, qinv, r1, r2, mask)

    @njit
    def binary(x, fx, e, q, qinv, r1, r2, k, mask):
        return cpu._pow_one(x, fx, e, q, qinv, r1, r2, k, mask)

    c = [uint64(v) for v in cpu.scalar_constants(2**61 - 1)]
    u = uint64(5)
    assert _conditional_jumps(ladder, u, u, u, c[0], c[1], c[2], c[3], c[5]) <= 1
    assert _conditional_jumps(binary, u, u, u, *c) > 1


# ------------------------------------------------------------------------------ CUDA source, no GPU
@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
def test_cuda_source_compiles_with_nvcc(tmp_path: Path) -> None:
    cu = tmp_path / "mod64.cu"
    cu.write_text(cuda.cuda_source())
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", "-std=c++14", str(cu), "-o", str(tmp_path / "k.ptx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ptx = (tmp_path / "k.ptx").read_text()
    for name in cuda.KERNELS:
        assert f".entry {name}(" in ptx
    # the ladder kernel branches only on its loops (predicated selects instead of data branches)
    ladder = ptx.split(".entry nd_mod64_ladder_sm(")[1].split(".entry")[0]
    assert len(re.findall(r"@%p\d+ bra", ladder)) <= 3


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
def test_nvcc_rejects_a_broken_source(tmp_path: Path) -> None:
    cu = tmp_path / "bad.cu"
    cu.write_text(cuda.cuda_source().replace("nd_redc(nd_mulhi(a, b)", "nd_redc(nd_mulhi(a, b, 1)", 1))
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", str(cu), "-o", str(tmp_path / "b.ptx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0


_HARNESS = r"""
#include <cstdio>
#include <cstring>
int main() {
    char op[8];
    unsigned long long a, fa, b, fb, m;
    while (std::scanf("%7s %llu %llu %llu %llu %llu", op, &a, &fa, &b, &fb, &m) == 6) {
        if (!std::strcmp(op, "const")) {
            nd_mod64 c = nd_constants(m);
            std::printf("%llu %llu %llu %llu %d %llu\n", c.q, c.qinv, c.r1, c.r2, c.k, c.mask);
            continue;
        }
        nd_mod64 c = nd_constants(m);
        if (!std::strcmp(op, "mul")) std::printf("%llu\n", nd_mul_one(a, fa, b, fb, c));
        else if (!std::strcmp(op, "pow")) std::printf("%llu\n", nd_pow_one(a, fa, b, c));
        else if (!std::strcmp(op, "lad")) std::printf("%llu\n", nd_ladder_one(a, fa, b, c));
        else if (!std::strcmp(op, "red")) std::printf("%llu\n", nd_reduce(a, fa, m));
        else { int ok; unsigned long long v = nd_inv_one(a, fa, m, &ok); std::printf("%llu %d\n", v, ok); }
    }
    return 0;
}
"""


@pytest.mark.skipif(CXX is None, reason="no C++ compiler on this machine")
def test_cuda_device_functions_match_python_on_the_host(tmp_path: Path) -> None:
    """The CUDA device functions, compiled as host C++ (``__umul64hi`` becomes an ``__int128`` product),
    against Python on edge and random values: the GPU arithmetic is checked without a GPU."""
    src = tmp_path / "host.cpp"
    src.write_text(cuda.device_functions_source() + _HARNESS)
    exe = tmp_path / "host"
    proc = subprocess.run([CXX, "-O2", "-std=c++14", str(src), "-o", str(exe)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rng = random.Random(11)
    cases: list[tuple[str, int, int, int, int, int]] = []
    expect: list[str] = []
    for i in range(3000):
        signed = i % 2 == 1
        m = EDGE_MODULI[i % len(EDGE_MODULI)] if i < 200 else _random_modulus(rng, signed)
        if signed and m >= 2**63:
            m >>= 1
        a, b = _random_value(rng, m, signed), _random_value(rng, m, signed)
        e = rng.choice([0, 1, 2, rng.randrange(U64), rng.randrange(100), U64 - 1])
        f = int(signed)
        cases += [("mul", a % U64, f, b % U64, f, m), ("pow", a % U64, f, e, 0, m), ("lad", a % U64, f, e, 0, m),
                  ("red", a % U64, f, 0, 0, m), ("inv", a % U64, f, 0, 0, m)]
        expect += [str(a * b % m), str(pow(a, e, m)), str(pow(a, e, m)), str(a % m)]
        try:
            expect.append(f"{pow(a, -1, m)} 1")
        except ValueError:
            expect.append("0 0")
    for m in EDGE_MODULI:
        q, qinv, r1, r2, k, mask = cpu.scalar_constants(m)
        cases.append(("const", 0, 0, 0, 0, m))
        expect.append(f"{q} {qinv} {r1} {r2} {k} {mask}")
    stdin = "\n".join(" ".join(str(v) for v in c) for c in cases) + "\n"
    run = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = run.stdout.splitlines()
    assert len(got) == len(expect)
    bad = [(c, g, w) for c, g, w in zip(cases, got, expect) if g != w]
    assert not bad, bad[:5]


def test_cuda_available_says_why_not() -> None:
    ok, why = cuda.available()
    assert isinstance(ok, bool) and (ok or why)


# ------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("signed", [False, True])
def test_gpu_kernels_match_cpu_bit_for_bit(signed: bool) -> None:
    import cupy as cp

    rng = random.Random(5 + signed)
    n = 20000
    ms = [_random_modulus(rng, signed) for _ in range(n)]
    a = [_random_value(rng, m, signed) for m in ms]
    b = [_random_value(rng, m, signed) for m in ms]
    e = [rng.choice([0, 1, rng.randrange(U64), rng.randrange(100)]) for _ in range(n)]
    ab, bb, eb = _bits(a, signed), _bits(b, signed), _u(e)
    for mm in (_u(ms), _u([ms[0]]), _u([2**61 - 1]), _u([12])):
        want = cpu.modmul(ab, signed, bb, signed, mm, n)
        got = cuda.modmul(cp.asarray(ab), signed, bb, signed, mm, n)
        np.testing.assert_array_equal(cp.asnumpy(got), want)
        for ct in (False, True):
            want = cpu.modpow(ab, signed, eb, mm, n=n, constant_time=ct)
            got = cuda.modpow(ab, signed, cp.asarray(eb), mm, n=n, constant_time=ct)
            np.testing.assert_array_equal(cp.asnumpy(got), want)
        want = cpu.modpow(_bits(a[:1], signed), signed, eb, mm, n=n)
        got = cuda.modpow(_bits(a[:1], signed), signed, eb, mm, n=n)
        np.testing.assert_array_equal(cp.asnumpy(got), want)
    es = np.array([rng.choice([-1, -3, 4]) for _ in range(n)], np.int64)
    inv_c, ok_c = cpu.invert_where_negative(ab, signed, es, _u(ms), n)
    inv_g, ok_g = cuda.invert_where_negative(ab, signed, es, _u(ms), n)
    np.testing.assert_array_equal(cp.asnumpy(ok_g), ok_c)
    np.testing.assert_array_equal(cp.asnumpy(inv_g)[ok_c == 1], inv_c[ok_c == 1])
