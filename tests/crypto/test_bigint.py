"""Big-integer modmul/modpow backends against Python's ``pow`` and ``a * b % m``.

The GPU kernel cannot run without a GPU, so its algorithm is checked three ways here: every
limb count compiles with nvcc; the same C source built for the host with one thread per number
runs against ``pow``; and a NumPy emulation of the group algorithm (32-bit limbs, the same
shuffles, carry and borrow rounds) runs with the real threads-per-number against ``pow``.
"""

from __future__ import annotations

import ctypes
import secrets
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noodle.crypto import _bigint_cpu as cpu
from noodle.crypto import _bigint_cuda as cuda
from noodle.errors import CryptoValueError, DeviceUnavailableError, ShapeError

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
CXX = shutil.which("g++") or shutil.which("clang++")
SIZES = (1024, 2048, 4096)


def obj(values: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An object array of Python ints (np.array would pick int64 for small values)."""
    flat = list(np.asarray(values, dtype=object).reshape(-1)) if not isinstance(values, list) else values
    out = np.empty(len(flat), dtype=object)
    out[:] = [int(v) for v in flat]
    return out.reshape(shape if shape is not None else (len(flat),))


def full(value: int, n: int) -> np.ndarray:
    """``n`` copies of one Python int (the broadcast case the backends look for)."""
    out = np.empty(n, dtype=object)
    out[...] = np.broadcast_to(np.array(value, dtype=object), (n,))
    return out


def rand_mod(bits: int, odd: bool = True) -> int:
    m = secrets.randbits(bits) | (1 << (bits - 1))
    return m | 1 if odd else m & ~1


def edge_bases(m: int) -> list[int]:
    vals = [0, 1, m - 1, 2 % m, (m - 1) // 2] + [(1 << k) % m for k in (31, 32, 63, 64, 1023, 2047)]
    return vals + [secrets.randbelow(m) for _ in range(4)]


def both(base: np.ndarray, exp: np.ndarray, m: np.ndarray) -> list[int]:
    """Plain and constant-time results, which must agree; returns the plain one."""
    plain = cpu.modpow(base, exp, m)
    ct = cpu.modpow(base, exp, m, constant_time=True)
    assert plain.dtype == object and ct.dtype == object
    assert plain.tolist() == ct.tolist()
    return plain.tolist()


# ----------------------------------------------------------------------------- CPU (gmpy2)
@pytest.mark.parametrize("bits", SIZES)
@pytest.mark.parametrize("odd", [True, False])
def test_cpu_modpow_edges(bits: int, odd: bool) -> None:
    m = rand_mod(bits, odd)
    bases = edge_bases(m)
    small = [0, 1, 2, 3, 65537]
    big = [m - 1, secrets.randbits(bits), secrets.randbits(3 * bits)]
    pairs = [(x, y) for x in bases for y in small] + [(x, y) for x in bases[:4] for y in big]
    b, e = obj([x for x, _ in pairs]), obj([y for _, y in pairs])
    got = cpu.modpow(b, e, full(m, b.size)).tolist()
    assert got == [pow(x, y, m) for x, y in pairs]
    assert all(type(v) is int for v in got)
    sub = slice(0, None, 5)  # the even-modulus ladder is slow: constant time on a sample
    assert cpu.modpow(b[sub], e[sub], full(m, b[sub].size), constant_time=True).tolist() == got[sub]


@pytest.mark.parametrize("bits", SIZES)
def test_cpu_modmul_edges(bits: int) -> None:
    for m in (rand_mod(bits), rand_mod(bits, odd=False)):
        vals = edge_bases(m)
        a = obj([x for x in vals for _ in vals])
        b = obj([y for _ in vals for y in vals])
        got = cpu.modmul(a, b, full(m, a.size)).tolist()
        assert got == [x * y % m for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        assert all(type(v) is int for v in got)


def test_cpu_modulus_one_exponent_zero_and_huge_exponent() -> None:
    assert both(obj([0, 0]), obj([0, 5]), obj([1, 1])) == [0, 0]
    assert both(obj([0, 5, 6]), obj([0, 0, 0]), obj([7, 7, 8])) == [1, 1, 1]
    m = rand_mod(2048)
    e = secrets.randbits(40000)
    b = secrets.randbelow(m)
    assert cpu.modpow(obj([b]), obj([e]), obj([m])).tolist() == [pow(b, e, m)]
    assert cpu.modpow(obj([b]), obj([e]), obj([m]), constant_time=True).tolist() == [pow(b, e, m)]
    assert cpu.modpow(obj([0]), obj([0]), obj([1])).tolist() == [0]


def test_cpu_shapes_zero_d_two_d_and_empty() -> None:
    m = rand_mod(1024)
    b, e = secrets.randbelow(m), secrets.randbits(1024)
    zero_d = cpu.modpow(np.array(b, dtype=object), np.array(e, dtype=object), np.array(m, dtype=object))
    assert zero_d.shape == () and zero_d[()] == pow(b, e, m)
    prod = cpu.modmul(np.array(b, dtype=object), np.array(e % m, dtype=object), np.array(m, dtype=object))
    assert prod.shape == () and prod[()] == b * (e % m) % m
    vals = [secrets.randbelow(m) for _ in range(12)]
    b2 = obj(vals, (3, 4))
    e2 = np.empty((3, 4), dtype=object)
    e2[...] = np.broadcast_to(np.array(65537, dtype=object), (3, 4))
    m2 = np.empty((3, 4), dtype=object)
    m2[...] = np.broadcast_to(np.array(m, dtype=object), (3, 4))
    got = cpu.modpow(b2, e2, m2)
    assert got.shape == (3, 4) and got.dtype == object
    assert got.tolist() == [[pow(v, 65537, m) for v in vals[r * 4:r * 4 + 4]] for r in range(3)]
    assert cpu.modmul(b2, b2, m2).tolist() == [[v * v % m for v in vals[r * 4:r * 4 + 4]] for r in range(3)]
    empty = np.empty((0, 3), dtype=object)
    assert cpu.modpow(empty, empty, empty).shape == (0, 3)
    assert cpu.modmul(empty, empty, empty).shape == (0, 3)
    with pytest.raises(ShapeError, match="broadcast"):
        cpu.modpow(obj([1, 2]), obj([1]), obj([5]))


def test_cpu_threaded_batches_mixed_moduli_and_exponents() -> None:
    """Batches big enough for the worker threads, in each sharing pattern."""
    n = 8
    mods = [rand_mod(2048, odd=i % 3 != 0) for i in range(n)]
    bases = [secrets.randbelow(m) for m in mods]
    exps = [secrets.randbits(2048) for _ in range(n)]
    want = [pow(b, e, m) for b, e, m in zip(bases, exps, mods, strict=True)]
    assert cpu.modpow(obj(bases), obj(exps), obj(mods)).tolist() == want
    m = mods[1]
    bs = [b % m for b in bases]
    assert cpu.modpow(obj(bs), full(exps[0], n), full(m, n)).tolist() == [pow(b, exps[0], m) for b in bs]
    assert cpu.modpow(full(bs[0], n), obj(exps), full(m, n)).tolist() == [pow(bs[0], e, m) for e in exps]
    assert cpu.modpow(obj(bs), obj(exps), full(m, n), constant_time=True).tolist() == [
        pow(b, e, m) for b, e in zip(bs, exps, strict=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 2**300), st.data())
def test_cpu_matches_pow_hypothesis(m: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 5))
    b = [data.draw(st.integers(0, m - 1)) for _ in range(n)]
    e = [data.draw(st.integers(0, 2**400)) for _ in range(n)]
    assert both(obj(b), obj(e), full(m, n)) == [pow(x, y, m) for x, y in zip(b, e, strict=True)]
    assert cpu.modmul(obj(b), obj(b[::-1]), full(m, n)).tolist() == [
        x * y % m for x, y in zip(b, b[::-1], strict=True)]


# ----------------------------------------------------------------------------- GPU host-side pieces
def test_plans_limbs_and_constants() -> None:
    assert cuda.plan(1) == (16, 4) and cuda.plan(1024) == (32, 4) and cuda.plan(1025) == (64, 8)
    assert cuda.plan(4096) == (128, 16) and cuda.plan(cuda.MAX_BITS + 1) is None
    vals = [0, 1, 2**32 - 1, 2**32, 2**2047 + 12345, 2**2048 - 1]
    words = cuda.to_limbs(vals, 64)
    assert words.dtype == np.uint32 and words.shape == (6, 64) and words[3, 1] == 1
    assert cuda.from_limbs(words) == vals
    for m in (1, 3, rand_mod(1024), rand_mod(4096)):
        limbs = cuda.plan(m.bit_length())[0]
        r2, ninv = cuda.montgomery_constants(m, limbs)
        assert r2 == pow(2, 64 * limbs, m) and (m * ninv + 1) % 2**32 == 0
    with pytest.raises(CryptoValueError, match="power of two"):
        cuda.cuda_source(64, 3)
    with pytest.raises(CryptoValueError, match="limb counts"):
        cuda.cuda_source(48)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
def test_every_limb_count_compiles_with_nvcc(tmp_path: Path) -> None:
    procs = []
    for _, limbs, _ in cuda.PLANS:
        cu = tmp_path / f"bigint{limbs}.cu"
        cu.write_text(cuda.cuda_source(limbs))
        procs.append((limbs, subprocess.Popen(
            [NVCC, "--ptx", "-arch=sm_90", "-std=c++14", str(cu), "-o", str(tmp_path / f"b{limbs}.ptx")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for limbs, proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
        ptx = (tmp_path / f"b{limbs}.ptx").read_text()
        for name in cuda.kernel_names(limbs):
            assert f".entry {name}(" in ptx


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
def test_nvcc_rejects_a_broken_bigint_source(tmp_path: Path) -> None:
    """The compile check above can fail."""
    cu = tmp_path / "bad.cu"
    cu.write_text(cuda.cuda_source(32).replace("nb_u32 acc[L];", "nb_u32 acc[L]", 1))
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", str(cu), "-o", str(tmp_path / "bad.ptx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0


# ----------------------------------------------------------------------------- the C source on the host
_P, _LL, _I = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int


def _host_launcher(lib: ctypes.CDLL, limbs: int):  # noqa: ANN202 - a test helper
    modpow_name, modmul_name = cuda.kernel_names(limbs, 1)

    def launch(b: cuda.Batch) -> np.ndarray:
        assert b.limbs == limbs
        out = np.zeros((b.count, b.limbs), np.uint32)
        x, y, mod, r2, ninv = (np.ascontiguousarray(a) for a in (b.x, b.y, b.mod, b.r2, b.ninv))

        def ptr(a: np.ndarray) -> ctypes.c_void_p:
            return a.ctypes.data_as(_P)

        ms = _LL(0 if b.mod.shape[0] == 1 and b.count != 1 else 1)
        if b.op == "modpow":
            getattr(lib, modpow_name)(ptr(x), _LL(b.stride(b.x, b.limbs)), ptr(y), _LL(b.stride(b.y, b.y_words)),
                                      _I(b.y_words), ptr(mod), ptr(r2), ptr(ninv), ms, ptr(out), _LL(b.count),
                                      _I(int(b.constant_time)))
        else:
            getattr(lib, modmul_name)(ptr(x), _LL(b.stride(b.x, b.limbs)), ptr(y), _LL(b.stride(b.y, b.limbs)),
                                      ptr(mod), ptr(r2), ptr(ninv), ms, ptr(out), _LL(b.count))
        return out

    return launch


@pytest.fixture(scope="module")
def host_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, ctypes.CDLL]:
    if CXX is None:
        pytest.skip("no C++ compiler on this machine")
    d = tmp_path_factory.mktemp("bigint_host")
    libs = {}
    for bits in SIZES:
        limbs = cuda.plan(bits)[0]
        src, so = d / f"h{limbs}.cpp", d / f"h{limbs}.so"
        src.write_text(cuda.cuda_source(limbs, 1))
        proc = subprocess.run([CXX, "-O2", "-shared", "-fPIC", "-x", "c++", "-DNOODLE_BIGINT_HOST", "-Wall",
                               "-Werror", "-Wno-unknown-pragmas", str(src), "-o", str(so)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        libs[limbs] = ctypes.CDLL(str(so))
    return libs


@pytest.mark.parametrize("bits", SIZES)
def test_host_build_of_the_kernel_source_matches_pow(bits: int, host_libs: dict[int, ctypes.CDLL]) -> None:
    limbs = cuda.plan(bits)[0]
    launch = _host_launcher(host_libs[limbs], limbs)
    m = rand_mod(bits)
    bases = edge_bases(m)[:8]
    full_exps = 3 if bits == 4096 else 8  # the host build is one slow thread: fewer full exponents
    exps = [0, 1, 2, 2**32, 2**32 - 1] + [secrets.randbits(bits) for _ in range(full_exps)]
    b = obj([x for x in bases for _ in exps][: 8 * len(exps)])
    e = obj([y for _ in bases for y in exps])
    sel = slice(0, None, 5) if bits == 4096 else slice(None)
    b, e = b[sel], e[sel]
    got = cuda.run("modpow", (b, e, full(m, b.size)), launch=launch).tolist()
    assert got == [pow(x, y, m) for x, y in zip(b.tolist(), e.tolist(), strict=True)]
    a2 = obj(edge_bases(m))
    c2 = obj(edge_bases(m)[::-1])
    assert cuda.run("modmul", (a2, c2, full(m, a2.size)), launch=launch).tolist() == [
        x * y % m for x, y in zip(a2.tolist(), c2.tolist(), strict=True)]
    # per-element moduli of mixed sizes (1 and 3 included), constant time, stride-0 exponent
    mods = [1, 3, m] + [rand_mod(bits - 7 * i) for i in range(3)]
    bs = [secrets.randbelow(x) for x in mods]
    ex = secrets.randbits(200)
    got = cuda.run("modpow", (obj(bs), full(ex, 6), obj(mods)), constant_time=True, launch=launch).tolist()
    assert got == [pow(x, ex, y) for x, y in zip(bs, mods, strict=True)]


# ----------------------------------------------------------------------------- NumPy emulation, real groups
M32, S32, ONE = np.uint64(0xFFFFFFFF), np.uint64(32), np.uint64(1)


def emu_mont_mul(a: np.ndarray, b: np.ndarray, n: np.ndarray, ninv: np.ndarray, tpi: int) -> np.ndarray:
    """nb_mont_mul for ``k`` numbers at once, lane by lane: (k, limbs) uint64 arrays of 32-bit limbs,
    lane t holding limbs t*L .. t*L+L-1; every shuffle is an explicit index move."""
    k, limbs = a.shape
    L = limbs // tpi
    A, B, N = (x.reshape(k, tpi, L) for x in (a, b, n))
    acc = np.zeros((k, tpi, L), np.uint64)
    hi = np.zeros((k, tpi), np.uint64)
    for src in range(tpi):
        for kk in range(L):
            bi = B[:, src, kk][:, None]                       # __shfl_sync(b[k], src)
            c = np.zeros((k, tpi), np.uint64)
            for j in range(L):
                t = A[:, :, j] * bi + acc[:, :, j] + c
                acc[:, :, j], c = t & M32, t >> S32
            hi += c
            q = ((acc[:, 0, 0] * ninv) & M32)[:, None]        # lane 0's acc[0] * ninv, broadcast
            c = np.zeros((k, tpi), np.uint64)
            for j in range(L):
                t = N[:, :, j] * q + acc[:, :, j] + c
                acc[:, :, j], c = t & M32, t >> S32
            hi += c
            nxt = np.zeros((k, tpi), np.uint64)
            nxt[:, :-1] = acc[:, 1:, 0]                       # __shfl_down_sync; the top lane gets 0
            acc[:, :, :-1] = acc[:, :, 1:].copy()
            s = hi + nxt
            acc[:, :, -1], hi = s & M32, s >> S32
    assert int(hi.max(initial=0)) < 5                         # the bound the kernel relies on
    ovf = np.zeros(k, np.uint64)
    for _ in range(tpi):                                      # carry rounds
        up = np.zeros((k, tpi), np.uint64)
        up[:, 1:] = hi[:, :-1]
        ovf += hi[:, -1]
        c = up
        for j in range(L):
            t = acc[:, :, j] + c
            acc[:, :, j], c = t & M32, t >> S32
        hi = c
    ovf += hi[:, -1]
    d = np.empty_like(acc)
    br = np.zeros((k, tpi), np.uint64)
    for j in range(L):
        t = acc[:, :, j] - N[:, :, j] - br                    # wraps like the kernel's u64
        d[:, :, j], br = t & M32, (t >> S32) & ONE
    bout = np.zeros(k, np.uint64)
    borrow = br
    for _ in range(tpi):                                      # borrow rounds
        b2 = np.zeros((k, tpi), np.uint64)
        b2[:, 1:] = borrow[:, :-1]
        bout += borrow[:, -1]
        for j in range(L):
            t = d[:, :, j] - b2
            d[:, :, j], b2 = t & M32, (t >> S32) & ONE
        borrow = b2
    bout += borrow[:, -1]
    assert int(ovf.max(initial=0)) <= 1 and int(bout.max(initial=0)) <= 1
    use_d = (ovf != 0) | (bout == 0)
    return np.where(use_d[:, None, None], d, acc).reshape(k, limbs)


def emu_modpow(x: np.ndarray, ew: np.ndarray, n: np.ndarray, r2: np.ndarray, ninv: np.ndarray, tpi: int,
               ct: bool) -> np.ndarray:
    """nb_modpow: Montgomery table of 16, fixed 4-bit windows from the top word."""
    k, limbs = x.shape
    one = np.zeros((k, limbs), np.uint64)
    one[:, 0] = 1

    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return emu_mont_mul(a, b, n, ninv, tpi)

    table = [mul(r2, one), mul(x, r2)]
    for _ in range(2, 16):
        table.append(mul(table[-1], table[1]))
    tab = np.stack(table)
    acc = tab[0].copy()
    rows = np.arange(k)
    for w in range(ew.shape[1] - 1, -1, -1):
        word = ew[:, w]
        for s in range(28, -1, -4):
            for _ in range(4):
                acc = mul(acc, acc)
            nib = (word >> np.uint64(s)) & np.uint64(15)
            if ct:
                sel = np.zeros((k, limbs), np.uint64)
                for e in range(16):
                    sel |= tab[e] & np.where(nib == e, M32, np.uint64(0))[:, None]
            else:
                sel = tab[nib.astype(np.intp), rows]
            acc = mul(acc, sel)
    return mul(acc, one)


def emu_launch(b: cuda.Batch) -> np.ndarray:
    def rows(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a.astype(np.uint64), (b.count, a.shape[1])).copy()

    x, y, mod, r2 = rows(b.x), rows(b.y), rows(b.mod), rows(b.r2)
    ninv = np.broadcast_to(b.ninv.astype(np.uint64), (b.count,)).copy()
    if b.op == "modpow":
        out = emu_modpow(x, y, mod, r2, ninv, b.tpi, b.constant_time)
    else:
        out = emu_mont_mul(emu_mont_mul(x, y, mod, ninv, b.tpi), r2, mod, ninv, b.tpi)
    return out.astype(np.uint32)


@pytest.mark.parametrize("bits", SIZES)
def test_emulated_group_montgomery_multiply(bits: int) -> None:
    limbs, tpi = cuda.plan(bits)
    for m in (rand_mod(bits), (1 << bits) - 1, (1 << (bits - 1)) + 1, 3):
        vals = [v % m for v in edge_bases(m)] + [secrets.randbelow(m) for _ in range(6)]
        a, b = obj(vals), obj(vals[::-1])
        got = cuda.run("modmul", (a, b, full(m, a.size)), launch=emu_launch).tolist()
        assert got == [x * y % m for x, y in zip(vals, vals[::-1], strict=True)]


def test_emulated_group_other_group_sizes() -> None:
    """The same algorithm with 1, 2 and 32 lanes per number (L from 64 down to 2 limbs)."""
    m = rand_mod(2048)
    vals = edge_bases(m)
    r2, ninv = cuda.montgomery_constants(m, 64)
    for tpi in (1, 2, 32):
        a = cuda.to_limbs(vals, 64).astype(np.uint64)
        b = cuda.to_limbs(vals[::-1], 64).astype(np.uint64)
        n = np.broadcast_to(cuda.to_limbs([m], 64).astype(np.uint64), a.shape).copy()
        nv = np.full(len(vals), ninv, np.uint64)
        t = emu_mont_mul(a, b, n, nv, tpi)
        out = emu_mont_mul(t, np.broadcast_to(cuda.to_limbs([r2], 64).astype(np.uint64), a.shape).copy(),
                           n, nv, tpi)
        assert cuda.from_limbs(out.astype(np.uint32)) == [x * y % m for x, y in zip(vals, vals[::-1],
                                                                                     strict=True)]


def test_emulated_group_modpow_full_1024_bit_exponents() -> None:
    m = rand_mod(1024)
    bases = [0, 1, m - 1, secrets.randbelow(m)]
    exps = [secrets.randbits(1024), 0, (1 << 1024) - 1, m - 1]
    got = cuda.run("modpow", (obj(bases), obj(exps), full(m, 4)), launch=emu_launch).tolist()
    assert got == [pow(b, e, m) for b, e in zip(bases, exps, strict=True)]


@pytest.mark.parametrize("bits", SIZES)
def test_emulated_group_modpow_and_fallbacks(bits: int) -> None:
    m_odd, m_even = rand_mod(bits), rand_mod(bits, odd=False)
    mods = [m_odd, m_even, m_odd, 1, m_odd, m_even]
    bases = [secrets.randbelow(m) for m in mods]
    bases[2] = m_odd - 1
    exps = [secrets.randbits(40), 7, 0, 5, (1 << 64) - 1, 2**40 + 3]
    for ct in (False, True):
        got = cuda.run("modpow", (obj(bases), obj(exps), obj(mods)), constant_time=ct,
                       launch=emu_launch).tolist()
        assert got == [pow(b, e, m) for b, e, m in zip(bases, exps, mods, strict=True)]


def test_run_sends_only_odd_moduli_within_the_limit_to_the_launcher() -> None:
    seen: list[int] = []

    def spy(b: cuda.Batch) -> np.ndarray:
        seen.append(b.count)
        return emu_launch(b)

    big = rand_mod(cuda.MAX_BITS + 64)
    mods = [8, big, 15, 2**64]
    bases = [3, big - 2, 14, 5]
    got = cuda.run("modpow", (obj(bases), obj([5, 3, 2, 7]), obj(mods)), launch=spy).tolist()
    assert got == [pow(b, e, m) for b, e, m in zip(bases, [5, 3, 2, 7], mods, strict=True)]
    assert seen == [1]
    assert cuda.run("modmul", (obj([3]), obj([5]), obj([8])), launch=spy).tolist() == [7]
    assert seen == [1]


def test_gpu_entry_points_without_a_gpu_raise_or_fall_back() -> None:
    ok, why = cuda.available()
    if ok:
        pytest.skip("a GPU is usable here")
    assert why
    with pytest.raises(DeviceUnavailableError, match="need a CUDA GPU"):
        cuda.modpow(obj([3]), obj([5]), obj([7]))
    with pytest.raises(DeviceUnavailableError):
        cuda.modmul(obj([3]), obj([5]), obj([7]))
    # even moduli never reach the kernels: the CPU answers
    assert cuda.modpow(obj([3]), obj([5]), obj([8])).tolist() == [3]


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("bits", SIZES)
def test_gpu_matches_cpu_byte_for_byte(bits: int) -> None:
    assert cuda.available()[0]
    n = 300
    m = rand_mod(bits)
    bases = obj([secrets.randbelow(m) for _ in range(n)])
    exps = obj([secrets.randbits(bits) for _ in range(n)])
    mm = full(m, n)
    for ct in (False, True):
        gpu = cuda.modpow(bases, exps, mm, constant_time=ct)
        ref = cpu.modpow(bases, exps, mm)
        assert gpu.dtype == object and [v.to_bytes(bits // 8, "big") for v in gpu.tolist()] == [
            v.to_bytes(bits // 8, "big") for v in ref.tolist()]
    shared_e = full(65537, n)
    assert cuda.modpow(bases, shared_e, mm).tolist() == cpu.modpow(bases, shared_e, mm).tolist()
    other = obj([secrets.randbelow(m) for _ in range(n)])
    assert cuda.modmul(bases, other, mm).tolist() == cpu.modmul(bases, other, mm).tolist()


@pytest.mark.gpu
def test_gpu_shapes_edges_and_even_moduli() -> None:
    m = rand_mod(2048)
    vals = edge_bases(m)
    b = obj(vals[:12], (3, 4))
    e = np.empty((3, 4), dtype=object)
    e[...] = np.broadcast_to(np.array(secrets.randbits(3000), dtype=object), (3, 4))
    mm = np.empty((3, 4), dtype=object)
    mm[...] = np.broadcast_to(np.array(m, dtype=object), (3, 4))
    assert cuda.modpow(b, e, mm).tolist() == cpu.modpow(b, e, mm).tolist()
    z = cuda.modpow(np.array(5, dtype=object), np.array(0, dtype=object), np.array(1, dtype=object))
    assert z.shape == () and z[()] == 0
    mods = [rand_mod(1024, odd=i % 2 == 0) for i in range(10)]
    bs = obj([secrets.randbelow(x) for x in mods])
    es = obj([secrets.randbits(1024) for _ in mods])
    assert cuda.modpow(bs, es, obj(mods)).tolist() == cpu.modpow(bs, es, obj(mods)).tolist()
