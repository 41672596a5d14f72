"""The GPU AES-256-GCM algorithm: its CUDA source compiles with nvcc (no GPU needed), its NumPy emulation
equals OpenSSL on the GCM spec vectors and random inputs, and on a GPU the kernels equal the CPU byte for byte."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_aes import NIST_256, _vector

from noodle.crypto import _aes_cuda as g
from noodle.crypto import aes
from noodle.errors import IntegrityError

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
KEY = bytes(range(32))


# ----------------------------------------------------------------------------- the CUDA source
@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("lanes,threads", [(g.GHASH_L, g.GHASH_B), (2, 4)])
def test_cuda_source_compiles_with_nvcc(tmp_path: Path, lanes: int, threads: int) -> None:
    cu = tmp_path / "aes.cu"
    cu.write_text(g.cuda_source(lanes, threads))
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_90", "-std=c++14", str(cu), "-o", str(tmp_path / "aes.ptx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ptx = (tmp_path / "aes.ptx").read_text()
    assert f".entry {g.CTR_KERNEL}(" in ptx and f".entry {g.GHASH_KERNEL}(" in ptx


def test_cuda_source_carries_no_key_material_and_no_ecb() -> None:
    src = g.cuda_source()
    assert "ECB" not in src and "__constant__" not in src      # round keys are per-call arguments
    assert f"0x{int(g.TE[0][1]):08x}u" in src and "__shared__ u32 te0[256]" in src
    with pytest.raises(ValueError):
        g.cuda_source(3, 256)


# ----------------------------------------------------------------------------- building blocks
def test_sbox_and_key_expansion_match_fips_197() -> None:
    assert (g.SBOX[0x00], g.SBOX[0x01], g.SBOX[0x53], g.SBOX[0xFF]) == (0x63, 0x7C, 0xED, 0x16)
    assert sorted(g.SBOX) == list(range(256))
    # FIPS-197 Appendix A.3 (AES-256 key expansion) and C.3 (AES-256 cipher example)
    w = g.expand_key(bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"))
    assert (int(w[8]), int(w[9]), int(w[59])) == (0x9BA35411, 0x8E6925AF, 0x706C631E)
    assert g.emulate_aes_block(bytes(range(32)), bytes.fromhex("00112233445566778899aabbccddeeff")) == \
        bytes.fromhex("8ea2b7ca516745bfeafc49904b496089")


def test_t_table_rounds_equal_openssl_on_random_blocks() -> None:
    rng = random.Random(5)
    for _ in range(20):
        key, block = rng.randbytes(32), rng.randbytes(16)
        assert g.emulate_aes_block(key, block) == g._block_via_ctr(key, block)


def test_shoup_table_multiply_equals_the_bitwise_definition() -> None:
    rng = random.Random(7)
    xs = [rng.getrandbits(128) for _ in range(64)] + [0, 1, 1 << 127, (1 << 128) - 1]
    for k in (rng.getrandbits(128), 1 << 127, 1, (1 << 128) - 1):
        xh = np.array([x >> 64 for x in xs], np.uint64)
        xl = np.array([x & (2**64 - 1) for x in xs], np.uint64)
        zh, zl = g._emulate_gf_mul(xh, xl, g.shoup_table(k))
        assert [(int(h) << 64) | int(lo) for h, lo in zip(zh, zl)] == [g.gf_mul(x, k) for x in xs]
    assert g.gf_mul(1 << 127, 0x1234) == 0x1234     # 1 << 127 is GCM's "1"


def test_ctr_counter_is_a_32_bit_big_endian_increment_that_wraps() -> None:
    key = bytes(range(32))
    rk = g.expand_key(key)
    j0 = bytes(range(12)) + (0xFFFFFFFD).to_bytes(4, "big")
    stream = g._emulate_ctr(rk, j0, bytes(16 * 5))
    want = b"".join(g._block_via_ctr(key, j0[:12] + ((0xFFFFFFFE + i) % 2**32).to_bytes(4, "big"))
                    for i in range(5))
    assert stream == want


@pytest.mark.parametrize("blocks", [1, 7, 8, 9, 100, 4096, 4097, 10**6])
@pytest.mark.parametrize("lanes,threads", [(16, 256), (2, 4)])
def test_ghash_plan_covers_every_block_once(blocks: int, lanes: int, threads: int) -> None:
    plan = g.ghash_plan(blocks, lanes, threads)
    assert plan[-1][0] == 1
    n = blocks
    for nb, pad, _ in plan:
        assert nb * lanes * threads == n + pad and 0 <= pad < lanes * threads
        n = nb
    assert [e for _, _, e in plan] == [i * (lanes.bit_length() + threads.bit_length() - 2) for i in range(len(plan))]


# ----------------------------------------------------------------------------- the emulated GPU algorithm
@pytest.mark.parametrize("case", sorted(NIST_256))
@pytest.mark.parametrize("lanes,threads", [(g.GHASH_L, g.GHASH_B), (2, 2), (1, 4)])
def test_emulation_on_gcm_spec_vectors(case: int, lanes: int, threads: int) -> None:
    key, iv, pt, aad, ct, tag = _vector(case)
    assert g.emulate_gcm_encrypt(key, iv, pt, aad, lanes=lanes, threads=threads) == (ct, tag)
    assert g.emulate_gcm_decrypt(key, iv, ct, tag, aad, lanes=lanes, threads=threads) == pt


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pt=st.binary(max_size=700), aad=st.binary(max_size=90), key=st.binary(min_size=32, max_size=32),
       iv=st.binary(min_size=12, max_size=12), shape=st.sampled_from([(16, 256), (2, 4), (4, 2), (1, 2)]))
def test_emulation_equals_openssl_on_random_inputs(pt, aad, key, iv, shape) -> None:
    lanes, threads = shape
    ct, tag = g.emulate_gcm_encrypt(key, iv, pt, aad, lanes=lanes, threads=threads)
    assert ct + tag == AESGCM(key).encrypt(iv, pt, aad)


def test_emulation_with_several_ghash_levels_and_the_default_shape() -> None:
    rng = random.Random(11)
    for n, a in ((70_000, 100), (16 * 4096 * 2 + 5, 13)):      # > one CUDA block of GHASH: two levels
        key, iv, pt, aad = rng.randbytes(32), rng.randbytes(12), rng.randbytes(n), rng.randbytes(a)
        assert len(g.ghash_plan(-(-n // 16) + -(-a // 16))) == 2
        ct, tag = g.emulate_gcm_encrypt(key, iv, pt, aad)
        assert ct + tag == AESGCM(key).encrypt(iv, pt, aad)


def test_emulated_decrypt_refuses_tampering() -> None:
    key, iv, pt, aad, ct, tag = _vector(16)
    for bad_ct, bad_tag, bad_aad in ((bytes([ct[0] ^ 1]) + ct[1:], tag, aad), (ct, bytes(16), aad),
                                     (ct, tag, aad + b"!"), (ct[:-1], tag, aad)):
        with pytest.raises(IntegrityError):
            g.emulate_gcm_decrypt(key, iv, bad_ct, bad_tag, bad_aad, lanes=2, threads=4)


def test_emulation_rebuilds_a_whole_cpu_blob(monkeypatch) -> None:
    """What the GPU path writes into a blob (ciphertext and tag over header+aad) equals the CPU blob."""
    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x07" * 12)
    arr = np.random.default_rng(3).standard_normal((33, 5)).astype(np.float32)
    blob = aes.aes_matrix_encrypt(arr, KEY, aad=b"meta", device="cpu")
    prefix = aes._prefix(arr.dtype, arr.shape)
    ct, tag = g.emulate_gcm_encrypt(KEY, b"\x07" * 12, arr.tobytes(), prefix + b"meta")
    assert blob == prefix + b"\x07" * 12 + ct + tag


class _FakeDeviceArray(np.ndarray):
    """A NumPy array dressed as a CuPy one: enough of CuPy's surface for the host driver."""

    @property
    def data(self):  # type: ignore[override]
        return type("Ptr", (), {"ptr": self.ctypes.data})()

    def get(self, out=None):
        host = np.asarray(self).copy()
        if out is None:
            return host
        assert out.flags.c_contiguous and out.shape == host.shape and out.dtype == host.dtype
        np.copyto(out, host)
        return out


class _FakeCupy:
    """CuPy whose RawModule runs the NumPy emulation of each kernel, launch arguments exactly as passed."""

    uint8 = np.uint8
    launches: list[str] = []

    class cuda:  # noqa: N801 - mirrors cupy.cuda
        class Device:
            id = 0
            attributes = {"MultiProcessorCount": 132}

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

    @staticmethod
    def asarray(x):
        return np.asarray(x).view(_FakeDeviceArray)

    ascontiguousarray = staticmethod(lambda x: np.ascontiguousarray(x).view(_FakeDeviceArray))
    empty = staticmethod(lambda n, dtype: np.empty(n, dtype).view(_FakeDeviceArray))
    zeros = staticmethod(lambda n, dtype: np.zeros(n, dtype).view(_FakeDeviceArray))

    class RawModule:
        def __init__(self, code, options=()):
            assert code == g.cuda_source()

        def get_function(self, name):
            def ctr(grid, block, args):
                src, dst, n, rk, j0, j1, j2, ctr0 = args
                assert block == (g.CTR_THREADS,) and all(isinstance(v, np.uint32) for v in (j0, j1, j2, ctr0))
                assert src.data.ptr % 16 == 0 and dst.data.ptr % 16 == 0
                jb = b"".join(int(w).to_bytes(4, "big") for w in (j0, j1, j2, (int(ctr0) - 1) % 2**32))
                dst[:int(n)] = np.frombuffer(g._emulate_ctr(np.asarray(rk), jb, np.asarray(src)[:int(n)].tobytes()),
                                             np.uint8)
                _FakeCupy.launches.append("ctr")

            def ghash(grid, block, args):
                a, a_len, c, c_len, pad, tables, out = args
                assert block == (g.GHASH_B,) and len(grid) == 1
                q = g.GHASH_B.bit_length() - 1
                res = g._emulate_ghash_level(np.asarray(a)[:int(a_len)].tobytes(), np.asarray(c)[:int(c_len)].tobytes(),
                                             int(pad), grid[0], np.asarray(tables).reshape(q + 1, 2, 16),
                                             g.GHASH_L, g.GHASH_B)
                out[:] = np.frombuffer(res, np.uint8)
                _FakeCupy.launches.append("ghash")

            return {g.CTR_KERNEL: ctr, g.GHASH_KERNEL: ghash}[name]


@pytest.fixture
def fake_gpu(monkeypatch):
    from noodle.crypto import placement
    from noodle.devices import detect

    monkeypatch.setattr(detect, "cupy_module", lambda: _FakeCupy)
    monkeypatch.setattr(placement, "gpu_usable", lambda: (True, ""))
    monkeypatch.setattr(g, "_MODULES", {})
    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x0c" * 12)
    _FakeCupy.launches = []
    return _FakeCupy


@pytest.mark.parametrize("arr", [np.arange(0, dtype=np.uint8), np.array(2.5), np.arange(7, dtype=">f8"),
                                 np.arange(40, dtype=np.int16).reshape(5, 8).T,
                                 np.frombuffer(random.Random(2).randbytes(16 * 4096 * 2 + 21), np.uint8)])
def test_gpu_host_driver_with_emulated_kernels_gives_the_cpu_blob(fake_gpu, arr) -> None:
    """The host side of the GPU path (uploads, launch arguments, GHASH levels, tag, copies into the blob)
    run against kernels emulated in NumPy: the blob and the decryption equal the CPU's."""
    cpu = aes.aes_matrix_encrypt(arr, KEY, aad=b"m", device="cpu")
    gpu = aes.aes_matrix_encrypt(arr, KEY, aad=b"m", device="gpu")
    assert gpu == cpu and "ghash" in fake_gpu.launches
    assert ("ctr" in fake_gpu.launches) == (arr.nbytes > 0)
    back = aes.aes_matrix_decrypt(cpu, KEY, aad=b"m", device="gpu")
    assert back.dtype == arr.dtype and back.shape == arr.shape and back.tobytes() == arr.tobytes()
    fake_gpu.launches.clear()
    bad = bytearray(cpu)
    bad[-17] ^= 1
    with pytest.raises(IntegrityError):
        aes.aes_matrix_decrypt(bytes(bad), KEY, aad=b"m", device="gpu")
    assert "ctr" not in fake_gpu.launches          # no plaintext is made before the tag matches


def test_gpu_host_driver_takes_device_arrays(fake_gpu) -> None:
    host = np.arange(100, dtype=np.float32)
    dev = _FakeCupy.asarray(np.concatenate([np.zeros(1, np.uint8), host.view(np.uint8)]))[1:]   # misaligned
    assert g.available() == (True, "")
    out = bytearray(host.nbytes)
    tag = g.encrypt_into(dev, KEY, b"\x0c" * 12, b"ad", memoryview(out))
    assert bytes(out) + tag == AESGCM(KEY).encrypt(b"\x0c" * 12, host.tobytes(), b"ad")


def test_available_says_why_not() -> None:
    ok, why = g.available()
    assert isinstance(ok, bool) and (ok or why)


# ----------------------------------------------------------------------------- on a GPU
SIZES = [0, 1, 15, 16, 17, 4095, 65536, 16 * 4096 * 3 + 9, 5 << 20]


@pytest.mark.gpu
@pytest.mark.parametrize("nbytes", SIZES)
def test_gpu_blob_is_the_cpu_blob_byte_for_byte(nbytes: int, monkeypatch) -> None:
    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x09" * 12)
    arr = np.frombuffer(np.random.default_rng(nbytes).bytes(nbytes), np.uint8)
    for aad in (b"", b"a" * 33):
        cpu = aes.aes_matrix_encrypt(arr, KEY, aad=aad, device="cpu")
        gpu = aes.aes_matrix_encrypt(arr, KEY, aad=aad, device="gpu")
        assert gpu == cpu
        assert aes.aes_matrix_decrypt(cpu, KEY, aad=aad, device="gpu").tobytes() == arr.tobytes()
        bad = bytearray(cpu)
        bad[-1 - (nbytes > 0) * 20] ^= 4
        with pytest.raises(IntegrityError):
            aes.aes_matrix_decrypt(bytes(bad), KEY, aad=aad, device="gpu")


@pytest.mark.gpu
def test_gpu_takes_cupy_arrays_and_gpu_matrices(monkeypatch) -> None:
    import cupy as cp

    import noodle as nd

    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x0a" * 12)
    host = np.random.default_rng(1).standard_normal((257, 129))
    want = aes.aes_matrix_encrypt(host, KEY, device="cpu")
    dev = cp.asarray(host)
    assert aes.aes_matrix_encrypt(dev, KEY, device="gpu") == want
    assert aes.aes_matrix_encrypt(dev, KEY, device="cpu") == want
    assert aes.aes_matrix_encrypt(nd.Matrix(dev), KEY) == want
    odd = cp.asarray(np.arange(1001, dtype=np.uint8))[1:]        # not 16-byte aligned
    assert aes.aes_matrix_encrypt(odd, KEY, device="gpu") == aes.aes_matrix_encrypt(odd.get(), KEY, device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("arr", [np.array(3.5), np.arange(7, dtype=">f8"), np.array([True, False, True]),
                                 np.arange(12, dtype=np.complex64).reshape(3, 4).T, np.zeros((0, 3))])
def test_gpu_keeps_raw_bytes_of_every_dtype(arr, monkeypatch) -> None:
    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x0b" * 12)
    blob = aes.aes_matrix_encrypt(arr, KEY, device="gpu")
    assert blob == aes.aes_matrix_encrypt(arr, KEY, device="cpu")
    back = aes.aes_matrix_decrypt(blob, KEY, device="gpu")
    assert back.dtype == arr.dtype and back.shape == arr.shape and back.tobytes() == arr.tobytes()
