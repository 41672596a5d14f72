"""AES-256-GCM on a CUDA GPU: CTR keystream with shared-memory T-tables and a parallel GHASH.

Why a hand-written kernel and not a library: CuPy has no AES, and the GPU is
worth using only when the whole of GCM runs there; a GPU CTR with a host GHASH
would be limited by the host GHASH. The output is byte-identical to OpenSSL's
(``noodle.crypto.aes`` builds the same blob around it), so a blob encrypted on
the GPU decrypts with plain ``cryptography`` and the other way round.

How the work is split:

* Host (Python): the AES-256 key expansion (60 round-key words), the hash key
  ``H = E(K, 0^128)`` and ``E(K, J0)`` (through OpenSSL in CTR mode: no ECB
  anywhere), the powers ``H^(2^i)`` by repeated squaring and, for each power a
  kernel multiplies by, a 4-bit Shoup table (16 + 16 64-bit words).
* ``noodle_aes256_ctr_xor``: one thread per 16-byte block (grid-stride). The
  counter block is ``J0[0:12] || BE32(ctr0 + i mod 2^32)`` (GCM's inc32), the
  14 rounds use the four T-tables copied into shared memory, and the last round
  takes its S-box bytes from ``Te0``. The keystream is XORed into the data.
* ``noodle_ghash_level``: GHASH is linear, so ``sum_j X_j K^(n-1-j)`` is split
  over ``B`` threads per CUDA block, each doing Horner over ``L`` blocks spaced
  ``B`` apart (coalesced loads) with key ``K^B``; a shared-memory tree then
  combines neighbours as ``left * K^(2^s) + right``. Every multiplier is a power
  ``K^(2^i)``, so one list of squarings serves all levels. Each CUDA block
  writes one 16-byte partial; the partials are the input of the next level with
  key ``K^(L*B)``, until one block is left. Zero blocks are *prepended* so that
  every level is a whole number of CUDA blocks (leading zeros do not change a
  Horner sum). The result ``F = sum_j X_j H^(m-1-j)`` over AAD||C is finished
  on the host: ``S = H*F``, ``GHASH = (S xor len_block) * H``, ``tag = E(K,J0) xor GHASH``.

:func:`emulate_gcm_encrypt` / :func:`emulate_gcm_decrypt` run exactly this
algorithm in NumPy (vectorised over the kernel's threads, the same tables, the
same plan of levels and padding), so machines without a GPU verify it against
OpenSSL; :func:`cuda_source` returns the kernel text that tests compile with
``nvcc``.

Caveat: T-table AES has key- and data-dependent shared-memory access patterns
(bank conflicts), a timing side channel that AES-NI on the CPU does not have.
"""

from __future__ import annotations

import functools
import hmac
import threading
from typing import Any

import numpy as np

from noodle.errors import DeviceUnavailableError, IntegrityError

CTR_KERNEL = "noodle_aes256_ctr_xor"
GHASH_KERNEL = "noodle_ghash_level"
GHASH_L = 16        # blocks per thread in a GHASH level (a power of two)
GHASH_B = 256       # threads per CUDA block in a GHASH level (a power of two)
CTR_THREADS = 256
_M64 = (1 << 64) - 1
_R = 0xE1 << 120    # GCM's reduction constant in its bit-reflected order
# Shoup's reduction table for a 4-bit shift (as in mbedTLS' gcm.c)
LAST4 = (0x0000, 0x1C20, 0x3840, 0x2460, 0x7080, 0x6CA0, 0x48C0, 0x54E0,
         0xE100, 0xFD20, 0xD940, 0xC560, 0x9180, 0x8DA0, 0xA9C0, 0xB5E0)


# ----------------------------------------------------------------------------- AES tables
def _xtime(b: int) -> int:
    b <<= 1
    return (b ^ 0x11B) if b & 0x100 else b


def _make_sbox() -> tuple[int, ...]:
    """The AES S-box from its definition (inverse in GF(2^8), then the affine map): computed, not typed in."""
    def rotl8(x: int, s: int) -> int:
        return ((x << s) | (x >> (8 - s))) & 0xFF

    sbox = [0] * 256
    p = q = 1
    while True:
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)    # p *= 3
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:                                            # q /= 3
            q ^= 0x09
        sbox[p] = q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4) ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    return tuple(sbox)


SBOX = _make_sbox()


def _rotr32(x: int, s: int) -> int:
    return ((x >> s) | (x << (32 - s))) & 0xFFFFFFFF


def _make_te() -> np.ndarray:
    """Te0..Te3 of the classic 32-bit T-table AES (rijndael-alg-fst): Te0[x] = S[x]*(02,01,01,03)."""
    te0 = []
    for x in range(256):
        s = SBOX[x]
        s2 = _xtime(s)
        te0.append((s2 << 24) | (s << 16) | (s << 8) | (s2 ^ s))
    return np.array([[_rotr32(v, 8 * k) for v in te0] for k in range(4)], dtype=np.uint32)


TE = _make_te()
_SB_FROM_TE0 = (TE[0] >> np.uint32(8)) & np.uint32(0xFF)   # what the kernel's last round reads


def expand_key(key: bytes) -> np.ndarray:
    """AES-256 key expansion (FIPS-197 5.2): 60 big-endian round-key words, done on the host."""
    if len(key) != 32:
        raise ValueError("AES-256 needs a 32-byte key")
    w = [int.from_bytes(key[4 * i:4 * i + 4], "big") for i in range(8)]
    rcon = 1
    for i in range(8, 60):
        t = w[i - 1]
        if i % 8 == 0:
            t = ((t << 8) | (t >> 24)) & 0xFFFFFFFF
            t = (SBOX[t >> 24] << 24) | (SBOX[(t >> 16) & 0xFF] << 16) | (SBOX[(t >> 8) & 0xFF] << 8) | SBOX[t & 0xFF]
            t ^= rcon << 24
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            t = (SBOX[t >> 24] << 24) | (SBOX[(t >> 16) & 0xFF] << 16) | (SBOX[(t >> 8) & 0xFF] << 8) | SBOX[t & 0xFF]
        w.append(w[i - 8] ^ t)
    return np.array(w, dtype=np.uint32)


# ----------------------------------------------------------------------------- GF(2^128)
def gf_mul(x: int, y: int) -> int:
    """x*y in GCM's field (SP 800-38D Algorithm 1; bit 0 is the integer's most significant bit)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def shoup_table(k: int) -> np.ndarray:
    """(2, 16) uint64: HH and HL of the 4-bit table for multiplying by ``k`` (mbedTLS' gcm_gen_table)."""
    hh, hl = [0] * 16, [0] * 16
    vh, vl = k >> 64, k & _M64
    hh[8], hl[8] = vh, vl
    i = 4
    while i > 0:
        t = 0xE1000000 if vl & 1 else 0
        vl = ((vh << 63) & _M64) | (vl >> 1)
        vh = (vh >> 1) ^ (t << 32)
        hh[i], hl[i] = vh, vl
        i >>= 1
    i = 2
    while i <= 8:
        for j in range(1, i):
            hh[i + j] = hh[i] ^ hh[j]
            hl[i + j] = hl[i] ^ hl[j]
        i *= 2
    return np.array([hh, hl], dtype=np.uint64)


def ghash_plan(blocks: int, lanes: int = GHASH_L, threads: int = GHASH_B) -> list[tuple[int, int, int]]:
    """Levels of the parallel GHASH for ``blocks`` 16-byte blocks: (CUDA blocks, zero blocks prepended, e)
    where the level's key is ``H^(2^e)``."""
    p, q = lanes.bit_length() - 1, threads.bit_length() - 1
    levels, e = [], 0
    per = lanes * threads
    while True:
        nb = -(-blocks // per)
        levels.append((nb, nb * per - blocks, e))
        if nb <= 1:
            return levels
        blocks, e = nb, e + p + q


def powers_of_two(h: int, count: int) -> list[int]:
    """[H^(2^0), H^(2^1), ...]: the only multipliers the parallel GHASH uses."""
    out = [h]
    while len(out) < count:
        out.append(gf_mul(out[-1], out[-1]))
    return out


def level_tables(pows: list[int], e: int, threads: int = GHASH_B) -> np.ndarray:
    """(q+1, 2, 16) uint64: table k multiplies by H^(2^(e+k)); k < q for the tree, k = q for Horner (K^B)."""
    q = threads.bit_length() - 1
    return np.stack([shoup_table(pows[e + k]) for k in range(q + 1)])


def _needed_powers(plan: list[tuple[int, int, int]], threads: int) -> int:
    return plan[-1][2] + threads.bit_length()


def _j0(h: int, iv: bytes) -> bytes:
    """The pre-counter block: IV || 0^31 || 1 for a 96-bit IV, else GHASH_H(IV padded || [len]_64)."""
    if len(iv) == 12:
        return iv + b"\x00\x00\x00\x01"
    y = 0
    padded = iv + bytes(-len(iv) % 16) + bytes(8) + (8 * len(iv)).to_bytes(8, "big")
    for i in range(0, len(padded), 16):
        y = gf_mul(y ^ int.from_bytes(padded[i:i + 16], "big"), h)
    return y.to_bytes(16, "big")


def _finish(f: int, h: int, ad_len: int, ct_len: int, ej0: bytes) -> bytes:
    """Tag from the parallel sum F = sum X_j H^(m-1-j): GHASH = (H*F xor lengths) * H, xor E(K, J0)."""
    s = gf_mul(h, f)
    g = gf_mul(s ^ (((8 * ad_len) << 64) | (8 * ct_len)), h)
    return (g ^ int.from_bytes(ej0, "big")).to_bytes(16, "big")


# ----------------------------------------------------------------------------- CUDA source
def _c_array(name: str, ctype: str, values: Any, per_line: int = 8, fmt: str = "0x{:08x}u") -> str:
    vals = [fmt.format(int(v)) for v in values]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return f"__device__ const {ctype} {name}[{len(vals)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


@functools.lru_cache(maxsize=8)
def cuda_source(lanes: int = GHASH_L, threads: int = GHASH_B) -> str:
    """The CUDA C text of both kernels (no key material in it: round keys and tables are arguments)."""
    if lanes < 1 or lanes & (lanes - 1) or threads < 2 or threads & (threads - 1) or threads > 1024:
        raise ValueError("lanes and threads must be powers of two (threads 2..1024)")
    q = threads.bit_length() - 1
    tables = "".join(_c_array(f"NOODLE_TE{k}", "unsigned int", TE[k]) for k in range(4))
    last4 = _c_array("NOODLE_LAST4", "unsigned short", LAST4, 8, "0x{:04x}")
    return f"""// noodle AES-256-GCM kernels (generated by noodle.crypto._aes_cuda; see its docstring)
typedef unsigned int u32;
typedef unsigned long long u64;
#define NOODLE_GHASH_L {lanes}
#define NOODLE_GHASH_B {threads}
#define NOODLE_GHASH_Q {q}

{tables}
{last4}
__device__ __forceinline__ u32 noodle_bswap32(u32 x) {{ return __byte_perm(x, 0u, 0x0123u); }}

extern "C" __global__ void {CTR_KERNEL}(const unsigned char* in, unsigned char* out, long long nbytes,
                                         const u32* round_keys, u32 j0, u32 j1, u32 j2, u32 ctr0)
{{
    __shared__ u32 te0[256], te1[256], te2[256], te3[256];
    __shared__ u32 rk[60];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {{
        te0[i] = NOODLE_TE0[i]; te1[i] = NOODLE_TE1[i]; te2[i] = NOODLE_TE2[i]; te3[i] = NOODLE_TE3[i];
    }}
    for (int i = threadIdx.x; i < 60; i += blockDim.x) rk[i] = round_keys[i];
    __syncthreads();
    const long long nblocks = (nbytes + 15) / 16;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < nblocks; b += step) {{
        u32 s0 = j0 ^ rk[0], s1 = j1 ^ rk[1], s2 = j2 ^ rk[2], s3 = (ctr0 + (u32)b) ^ rk[3];
        u32 t0, t1, t2, t3;
#pragma unroll
        for (int r = 1; r < 14; ++r) {{
            t0 = te0[s0 >> 24] ^ te1[(s1 >> 16) & 0xff] ^ te2[(s2 >> 8) & 0xff] ^ te3[s3 & 0xff] ^ rk[4 * r];
            t1 = te0[s1 >> 24] ^ te1[(s2 >> 16) & 0xff] ^ te2[(s3 >> 8) & 0xff] ^ te3[s0 & 0xff] ^ rk[4 * r + 1];
            t2 = te0[s2 >> 24] ^ te1[(s3 >> 16) & 0xff] ^ te2[(s0 >> 8) & 0xff] ^ te3[s1 & 0xff] ^ rk[4 * r + 2];
            t3 = te0[s3 >> 24] ^ te1[(s0 >> 16) & 0xff] ^ te2[(s1 >> 8) & 0xff] ^ te3[s2 & 0xff] ^ rk[4 * r + 3];
            s0 = t0; s1 = t1; s2 = t2; s3 = t3;
        }}
#define NOODLE_SB(x) ((te0[(x)] >> 8) & 0xffu)
        const u32 k0 = (NOODLE_SB(s0 >> 24) << 24) ^ (NOODLE_SB((s1 >> 16) & 0xff) << 16)
                     ^ (NOODLE_SB((s2 >> 8) & 0xff) << 8) ^ NOODLE_SB(s3 & 0xff) ^ rk[56];
        const u32 k1 = (NOODLE_SB(s1 >> 24) << 24) ^ (NOODLE_SB((s2 >> 16) & 0xff) << 16)
                     ^ (NOODLE_SB((s3 >> 8) & 0xff) << 8) ^ NOODLE_SB(s0 & 0xff) ^ rk[57];
        const u32 k2 = (NOODLE_SB(s2 >> 24) << 24) ^ (NOODLE_SB((s3 >> 16) & 0xff) << 16)
                     ^ (NOODLE_SB((s0 >> 8) & 0xff) << 8) ^ NOODLE_SB(s1 & 0xff) ^ rk[58];
        const u32 k3 = (NOODLE_SB(s3 >> 24) << 24) ^ (NOODLE_SB((s0 >> 16) & 0xff) << 16)
                     ^ (NOODLE_SB((s1 >> 8) & 0xff) << 8) ^ NOODLE_SB(s2 & 0xff) ^ rk[59];
#undef NOODLE_SB
        const long long off = b * 16;
        if (off + 16 <= nbytes) {{   // both buffers are 16-byte aligned (the host checks)
            uint4 v = *reinterpret_cast<const uint4*>(in + off);
            v.x ^= noodle_bswap32(k0); v.y ^= noodle_bswap32(k1);
            v.z ^= noodle_bswap32(k2); v.w ^= noodle_bswap32(k3);
            *reinterpret_cast<uint4*>(out + off) = v;
        }} else {{
            for (int i = 0; off + i < nbytes; ++i) {{
                const u32 w = i < 4 ? k0 : (i < 8 ? k1 : (i < 12 ? k2 : k3));
                out[off + i] = in[off + i] ^ (unsigned char)(w >> (24 - 8 * (i & 3)));
            }}
        }}
    }}
}}

// z = z * K with Shoup's 4-bit table of K (hh/hl) and the reduction table last4 (mbedTLS gcm_mult)
__device__ __forceinline__ void noodle_gf_mul(u64& xh_io, u64& xl_io, const u64* hh, const u64* hl,
                                              const unsigned short* last4)
{{
    const u64 xh = xh_io, xl = xl_io;
    u32 lo = (u32)(xl & 0xf);
    u64 zh = hh[lo], zl = hl[lo];
#pragma unroll
    for (int i = 15; i >= 0; --i) {{
        const u32 byte = i < 8 ? (u32)(xh >> (56 - 8 * i)) & 0xffu : (u32)(xl >> (120 - 8 * i)) & 0xffu;
        lo = byte & 0xf;
        const u32 hi = byte >> 4;
        u32 rem;
        if (i != 15) {{
            rem = (u32)(zl & 0xf);
            zl = (zh << 60) | (zl >> 4);
            zh = (zh >> 4) ^ ((u64)last4[rem] << 48);
            zh ^= hh[lo]; zl ^= hl[lo];
        }}
        rem = (u32)(zl & 0xf);
        zl = (zh << 60) | (zl >> 4);
        zh = (zh >> 4) ^ ((u64)last4[rem] << 48);
        zh ^= hh[hi]; zl ^= hl[hi];
    }}
    xh_io = zh; xl_io = zl;
}}

__device__ __forceinline__ void noodle_load_block(const unsigned char* p, long long len, long long j,
                                                  u64& h, u64& l)
{{
    const long long off = j * 16;
    if (off + 16 <= len) {{
        const uint4 v = *reinterpret_cast<const uint4*>(p + off);
        h = ((u64)noodle_bswap32(v.x) << 32) | noodle_bswap32(v.y);
        l = ((u64)noodle_bswap32(v.z) << 32) | noodle_bswap32(v.w);
    }} else {{
        h = 0; l = 0;
        for (int i = 0; off + i < len; ++i) {{
            const u64 byte = p[off + i];
            if (i < 8) h |= byte << (56 - 8 * i); else l |= byte << (120 - 8 * i);
        }}
    }}
}}

// One level: CUDA block b reduces virtual blocks [b*L*B, (b+1)*L*B) of (pad zeros || a || c),
// a and c each zero-padded to whole 16-byte blocks, to sum_u X_u K^(L*B-1-u), written big-endian to out[16*b].
// tables: NOODLE_GHASH_Q+1 Shoup tables (hh[16], hl[16]); table k multiplies by K^(2^k).
extern "C" __global__ void {GHASH_KERNEL}(const unsigned char* a, long long a_len,
                                           const unsigned char* c, long long c_len,
                                           long long pad, const u64* tables, unsigned char* out)
{{
    __shared__ u64 tab[(NOODLE_GHASH_Q + 1) * 32];
    __shared__ unsigned short last4[16];
    __shared__ u64 acc_h[NOODLE_GHASH_B], acc_l[NOODLE_GHASH_B];
    const int t = threadIdx.x;
    for (int i = t; i < (NOODLE_GHASH_Q + 1) * 32; i += NOODLE_GHASH_B) tab[i] = tables[i];
    if (t < 16) last4[t] = NOODLE_LAST4[t];
    __syncthreads();
    const long long a_blocks = (a_len + 15) / 16;
    const long long base = (long long)blockIdx.x * NOODLE_GHASH_L * NOODLE_GHASH_B;
    const u64* kb_h = tab + NOODLE_GHASH_Q * 32;      // K^B: the Horner key of one thread
    const u64* kb_l = kb_h + 16;
    u64 zh = 0, zl = 0;
    for (int i = 0; i < NOODLE_GHASH_L; ++i) {{
        const long long j = base + (long long)i * NOODLE_GHASH_B + t - pad;
        u64 xh = 0, xl = 0;
        if (j >= 0) {{
            if (j < a_blocks) noodle_load_block(a, a_len, j, xh, xl);
            else noodle_load_block(c, c_len, j - a_blocks, xh, xl);
        }}
        noodle_gf_mul(zh, zl, kb_h, kb_l, last4);
        zh ^= xh; zl ^= xl;
    }}
    acc_h[t] = zh; acc_l[t] = zl;
    for (int s = 0; s < NOODLE_GHASH_Q; ++s) {{
        __syncthreads();
        const int stride = 1 << s;
        if ((t & (2 * stride - 1)) == 0) {{
            u64 h = acc_h[t], l = acc_l[t];
            noodle_gf_mul(h, l, tab + s * 32, tab + s * 32 + 16, last4);
            acc_h[t] = h ^ acc_h[t + stride];
            acc_l[t] = l ^ acc_l[t + stride];
        }}
    }}
    if (t == 0) {{
        unsigned char* o = out + 16 * (long long)blockIdx.x;
        for (int i = 0; i < 8; ++i) {{
            o[i] = (unsigned char)(acc_h[0] >> (56 - 8 * i));
            o[8 + i] = (unsigned char)(acc_l[0] >> (56 - 8 * i));
        }}
    }}
}}
"""


# ----------------------------------------------------------------------------- NumPy emulation
def _emulate_aes(rk: np.ndarray, s0: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                 s3: np.ndarray) -> tuple[np.ndarray, ...]:
    """The kernel's 14 T-table rounds on uint32 column words, vectorised over blocks."""
    te0, te1, te2, te3 = TE
    m8 = np.uint32(0xFF)
    s0, s1, s2, s3 = s0 ^ rk[0], s1 ^ rk[1], s2 ^ rk[2], s3 ^ rk[3]
    for r in range(1, 14):
        t0 = te0[s0 >> 24] ^ te1[(s1 >> 16) & m8] ^ te2[(s2 >> 8) & m8] ^ te3[s3 & m8] ^ rk[4 * r]
        t1 = te0[s1 >> 24] ^ te1[(s2 >> 16) & m8] ^ te2[(s3 >> 8) & m8] ^ te3[s0 & m8] ^ rk[4 * r + 1]
        t2 = te0[s2 >> 24] ^ te1[(s3 >> 16) & m8] ^ te2[(s0 >> 8) & m8] ^ te3[s1 & m8] ^ rk[4 * r + 2]
        t3 = te0[s3 >> 24] ^ te1[(s0 >> 16) & m8] ^ te2[(s1 >> 8) & m8] ^ te3[s2 & m8] ^ rk[4 * r + 3]
        s0, s1, s2, s3 = t0, t1, t2, t3
    sb = _SB_FROM_TE0

    def last(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, k: np.uint32) -> np.ndarray:
        return ((sb[a >> 24] << 24) ^ (sb[(b >> 16) & m8] << 16) ^ (sb[(c >> 8) & m8] << 8)
                ^ sb[d & m8] ^ k)

    return (last(s0, s1, s2, s3, rk[56]), last(s1, s2, s3, s0, rk[57]),
            last(s2, s3, s0, s1, rk[58]), last(s3, s0, s1, s2, rk[59]))


def emulate_aes_block(key: bytes, block: bytes) -> bytes:
    """E(K, block) by the kernel's T-table rounds (used to check the tables and the key expansion)."""
    words = np.frombuffer(block, dtype=">u4").astype(np.uint32)
    out = _emulate_aes(expand_key(key), *(words[i:i + 1] for i in range(4)))
    return np.array([w[0] for w in out], dtype=">u4").tobytes()


def _emulate_ctr(rk: np.ndarray, j0: bytes, data: bytes) -> bytes:
    """The CTR kernel: block i uses J0[0:12] || BE32(J0[12:16] + 1 + i mod 2^32)."""
    n = len(data)
    nblocks = -(-n // 16)
    if nblocks == 0:
        return b""
    jw = np.frombuffer(j0, dtype=">u4").astype(np.uint32)
    ctr0 = np.uint32((int(jw[3]) + 1) & 0xFFFFFFFF)
    ones = np.ones(nblocks, dtype=np.uint32)
    counters = ctr0 + np.arange(nblocks, dtype=np.uint32)    # wraps mod 2^32 like the kernel's u32 add
    ks = _emulate_aes(rk, ones * jw[0], ones * jw[1], ones * jw[2], counters)
    stream = np.stack(ks, axis=1).astype(">u4").tobytes()[:n]
    return (np.frombuffer(data, np.uint8) ^ np.frombuffer(stream, np.uint8)).tobytes()


def _emulate_gf_mul(xh: np.ndarray, xl: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """noodle_gf_mul on uint64 arrays (one element per emulated thread)."""
    hh, hl = table[0], table[1]
    last4 = np.array(LAST4, dtype=np.uint64)
    f, s4, s60, s48, ff = (np.uint64(v) for v in (0xF, 4, 60, 48, 0xFF))
    zh, zl = hh[xl & f], hl[xl & f]
    for i in range(15, -1, -1):
        byte = (xh >> np.uint64(56 - 8 * i)) & ff if i < 8 else (xl >> np.uint64(120 - 8 * i)) & ff
        lo, hi = byte & f, byte >> s4
        if i != 15:
            rem = zl & f
            zl = (zh << s60) | (zl >> s4)
            zh = (zh >> s4) ^ (last4[rem] << s48)
            zh, zl = zh ^ hh[lo], zl ^ hl[lo]
        rem = zl & f
        zl = (zh << s60) | (zl >> s4)
        zh = (zh >> s4) ^ (last4[rem] << s48)
        zh, zl = zh ^ hh[hi], zl ^ hl[hi]
    return zh, zl


def _blocks_u64(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    padded = data + bytes(-len(data) % 16)
    words = np.frombuffer(padded, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return words[:, 0].copy(), words[:, 1].copy()


def _emulate_ghash_level(a: bytes, c: bytes, pad: int, nb: int, tables: np.ndarray, lanes: int,
                         threads: int) -> bytes:
    """noodle_ghash_level over all nb CUDA blocks at once: thread arrays of shape (nb, B)."""
    q = threads.bit_length() - 1
    ah, al = _blocks_u64(a)
    ch, cl = _blocks_u64(c)
    vh = np.zeros(nb * lanes * threads, dtype=np.uint64)
    vl = np.zeros_like(vh)
    real = len(ah) + len(ch)
    vh[pad:pad + real] = np.concatenate([ah, ch])
    vl[pad:pad + real] = np.concatenate([al, cl])
    vh, vl = vh.reshape(nb, lanes, threads), vl.reshape(nb, lanes, threads)   # v = b*L*B + i*B + t
    zh = np.zeros((nb, threads), dtype=np.uint64)
    zl = np.zeros_like(zh)
    for i in range(lanes):
        zh, zl = _emulate_gf_mul(zh, zl, tables[q])
        zh, zl = zh ^ vh[:, i, :], zl ^ vl[:, i, :]
    for s in range(q):
        stride = 1 << s
        left = np.arange(0, threads, 2 * stride)
        h, lo = _emulate_gf_mul(zh[:, left], zl[:, left], tables[s])
        zh[:, left] = h ^ zh[:, left + stride]
        zl[:, left] = lo ^ zl[:, left + stride]
    return np.stack([zh[:, 0], zl[:, 0]], axis=1).astype(">u8").tobytes()


def _emulate_tag(key: bytes, j0: bytes, ad: bytes, ct: bytes, lanes: int, threads: int) -> bytes:
    h = int.from_bytes(emulate_aes_block(key, bytes(16)), "big")
    ej0 = emulate_aes_block(key, j0)
    m = -(-len(ad) // 16) + -(-len(ct) // 16)
    f = 0
    if m:
        plan = ghash_plan(m, lanes, threads)
        pows = powers_of_two(h, _needed_powers(plan, threads))
        a, c = ad, ct
        for nb, pad, e in plan:
            c = _emulate_ghash_level(a, c, pad, nb, level_tables(pows, e, threads), lanes, threads)
            a = b""
        f = int.from_bytes(c, "big")
    return _finish(f, h, len(ad), len(ct), ej0)


def emulate_gcm_encrypt(key: bytes, iv: bytes, plaintext: bytes, aad: bytes = b"", *,
                        lanes: int = GHASH_L, threads: int = GHASH_B) -> tuple[bytes, bytes]:
    """(ciphertext, tag) computed by the GPU algorithm in NumPy; small ``lanes``/``threads`` give several
    GHASH levels on small inputs."""
    h = int.from_bytes(emulate_aes_block(key, bytes(16)), "big")
    j0 = _j0(h, iv)
    ct = _emulate_ctr(expand_key(key), j0, plaintext)
    return ct, _emulate_tag(key, j0, aad, ct, lanes, threads)


def emulate_gcm_decrypt(key: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes = b"", *,
                        lanes: int = GHASH_L, threads: int = GHASH_B) -> bytes:
    """Plaintext by the GPU algorithm in NumPy; the tag is checked before any plaintext is made."""
    h = int.from_bytes(emulate_aes_block(key, bytes(16)), "big")
    j0 = _j0(h, iv)
    if not hmac.compare_digest(_emulate_tag(key, j0, aad, ciphertext, lanes, threads), tag):
        raise IntegrityError("AES-GCM authentication failed (emulated GPU path).")
    return _emulate_ctr(expand_key(key), j0, ciphertext)


# ----------------------------------------------------------------------------- running on a GPU
_LOCK = threading.Lock()
_MODULES: dict[int, tuple[Any, Any]] = {}


def available() -> tuple[bool, str]:
    """(True, '') when the AES-GCM kernels can run here, else (False, why not)."""
    from noodle.crypto.placement import gpu_usable
    from noodle.devices import detect

    ok, why = gpu_usable()
    if not ok:
        return False, why
    if detect.cupy_module() is None:
        return False, "CuPy is not usable"
    return True, ""


def _cupy() -> Any:
    from noodle.devices import detect

    cp = detect.cupy_module()
    if cp is None:
        raise DeviceUnavailableError("AES-GCM on the GPU needs CuPy and a CUDA GPU; neither is usable here. "
                                     "Use device='cpu' or 'auto'.")
    return cp


def _kernels(cp: Any) -> tuple[Any, Any]:
    dev = int(cp.cuda.Device().id)
    with _LOCK:
        fns = _MODULES.get(dev)
        if fns is None:
            try:
                module = cp.RawModule(code=cuda_source(), options=("-std=c++14",))
                fns = (module.get_function(CTR_KERNEL), module.get_function(GHASH_KERNEL))
            except Exception as exc:
                raise DeviceUnavailableError(f"NVRTC could not compile the AES-GCM kernels ({exc}); "
                                             "use device='cpu'.") from exc
            _MODULES[dev] = fns
    return fns


def _device_u8(cp: Any, data: Any) -> Any:
    """A 16-byte aligned, contiguous uint8 view (or copy) of ``data``'s raw C-order bytes on the current GPU.

    Host arrays travel as their raw bytes: CuPy has no non-native byte order and would convert a '>f8'
    array, changing the bytes that are encrypted.
    """
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    arr = cp.ascontiguousarray(cp.asarray(data))
    u8 = arr.reshape(-1).view(cp.uint8)
    if u8.size and u8.data.ptr % 16:
        u8 = u8.copy()
    return u8


def _block_via_ctr(key: bytes, block: bytes) -> bytes:
    """E(K, block) through OpenSSL's CTR mode on one zero block (no ECB mode anywhere)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.CTR(block)).encryptor()
    return enc.update(bytes(16)) + enc.finalize()


def _ctr(cp: Any, src: Any, dst: Any, rk_dev: Any, j0: bytes) -> None:
    n = int(src.size)
    if n == 0:
        return
    ctr_fn, _ = _kernels(cp)
    jw = [int.from_bytes(j0[i:i + 4], "big") for i in range(0, 16, 4)]
    blocks = -(-n // 16)
    sms = int(cp.cuda.Device().attributes.get("MultiProcessorCount", 132))
    grid = max(1, min(-(-blocks // CTR_THREADS), sms * 16))
    ctr_fn((grid,), (CTR_THREADS,), (src, dst, np.int64(n), rk_dev, np.uint32(jw[0]), np.uint32(jw[1]),
                                     np.uint32(jw[2]), np.uint32((jw[3] + 1) & 0xFFFFFFFF)))


def _tag(cp: Any, key: bytes, j0: bytes, ad: bytes, ct_dev: Any) -> bytes:
    _, ghash_fn = _kernels(cp)
    h = int.from_bytes(_block_via_ctr(key, bytes(16)), "big")
    ej0 = _block_via_ctr(key, j0)
    n = int(ct_dev.size)
    m = -(-len(ad) // 16) + -(-n // 16)
    f = 0
    if m:
        plan = ghash_plan(m)
        pows = powers_of_two(h, _needed_powers(plan, GHASH_B))
        a_dev = cp.asarray(np.frombuffer(ad, dtype=np.uint8)) if ad else cp.zeros(16, dtype=cp.uint8)
        a_len, c_dev, c_len = len(ad), ct_dev, n
        for nb, pad, e in plan:
            tables = cp.asarray(level_tables(pows, e))
            out = cp.empty(16 * nb, dtype=cp.uint8)
            ghash_fn((nb,), (GHASH_B,), (a_dev, np.int64(a_len), c_dev, np.int64(c_len), np.int64(pad),
                                         tables, out))
            a_len, c_dev, c_len = 0, out, 16 * nb
        f = int.from_bytes(c_dev.get().tobytes(), "big")
    return _finish(f, h, len(ad), n, ej0)


def encrypt_into(data: Any, key: bytes, nonce: bytes, ad: bytes, out: Any) -> bytes:
    """Encrypt ``data`` (NumPy or CuPy, any dtype, C order) on the GPU, copy the ciphertext into the
    writable host buffer ``out`` (len = data's bytes), and return the 16-byte tag."""
    cp = _cupy()
    with _device_of(cp, data):
        src = _device_u8(cp, data)
        rk = expand_key(key)
        rk_dev = cp.asarray(rk)
        try:
            ct = cp.empty(int(src.size), dtype=cp.uint8)
            _ctr(cp, src, ct, rk_dev, nonce + b"\x00\x00\x00\x01")
            tag = _tag(cp, key, nonce + b"\x00\x00\x00\x01", ad, ct)
            if ct.size:
                ct.get(out=np.frombuffer(out, dtype=np.uint8))
        finally:
            rk_dev.fill(0)
            rk.fill(0)
    return tag


def decrypt_into(ct_host: Any, key: bytes, nonce: bytes, ad: bytes, tag: bytes, out: np.ndarray) -> None:
    """Check the tag over ``ct_host`` on the GPU, then (only if it matches) decrypt into ``out`` (uint8)."""
    cp = _cupy()
    ct = _device_u8(cp, np.frombuffer(ct_host, dtype=np.uint8))
    j0 = nonce + b"\x00\x00\x00\x01"
    if not hmac.compare_digest(_tag(cp, key, j0, ad, ct), bytes(tag)):
        raise IntegrityError("AES-GCM authentication failed: the blob was altered or truncated, or the key or "
                             "aad differs from the ones it was encrypted with; no data was returned.")
    rk = expand_key(key)
    rk_dev = cp.asarray(rk)
    try:
        pt = cp.empty(int(ct.size), dtype=cp.uint8)
        _ctr(cp, ct, pt, rk_dev, j0)
        if pt.size:
            pt.get(out=out)
    finally:
        rk_dev.fill(0)
        rk.fill(0)


def _device_of(cp: Any, data: Any) -> Any:
    dev = getattr(data, "device", None)
    if isinstance(dev, cp.cuda.Device):
        return dev
    return cp.cuda.Device()


__all__ = ["available", "cuda_source", "decrypt_into", "emulate_gcm_decrypt", "emulate_gcm_encrypt",
           "encrypt_into", "expand_key", "gf_mul"]
