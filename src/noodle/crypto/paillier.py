"""Paillier encryption of integer matrices: elementwise, batched, additively homomorphic.

Why batched: a Paillier encryption is one big modular power (the randomizer
``r^n mod n^2``) plus cheap arithmetic, so a matrix of them is a batch of
powmods with one shared exponent and modulus: the case
:mod:`noodle.crypto._bigint_cpu` spreads over the cores and the GPU kernels
take in one launch. Everything else (encoding, the ``(1 + m n)`` factor,
homomorphic adds) is a list comprehension over mpz, microseconds an element.

The scheme is textbook Paillier with ``g = n + 1``, so ciphertexts are
interchangeable with python-paillier (``phe``) and other ``g = n + 1``
implementations::

    enc(m) = (1 + m n) * r^n mod n^2,   r uniform in [1, n)
    dec(c) = L(c^lambda mod n^2) * mu mod n,  computed by CRT over p^2 and q^2

Plaintexts are integers in ``(-n/2, n/2)``: negative values are encoded as
``m mod n`` and decoded back to signed. Homomorphic results wrap modulo
``n`` silently (a sum that leaves the range decodes to the wrong sign), as in
any Paillier; keep ``|values|`` well below ``n/2``.

Two ways to make the randomizer, with the same distribution:

* :meth:`PublicKey.encrypt` (anyone): ``r^n mod n^2``, a 4096-bit-modulus,
  2048-bit-exponent powmod for a 2048-bit key.
* :meth:`PrivateKey.encrypt` (the key owner): ``rho_p = x^p mod p^2`` and
  ``rho_q = y^q mod q^2`` for uniform ``x`` in ``[1, p)``, ``y`` in ``[1, q)``,
  joined by CRT: two 2048-bit-modulus, 1024-bit-exponent powmods, ~3.6x less
  work. Why it is the same distribution: ``r^n mod p^2`` only depends on the
  Teichmüller part of ``r`` (the ``1 + p t`` part has order ``p``, which
  divides ``n``), and with ``gcd(n, p - 1) = 1`` it is a uniform element of
  the order-``(p - 1)`` subgroup of ``Z*_{p^2}`` for uniform ``r``; so is
  ``x^p mod p^2`` for uniform ``x``, and CRT makes the ``p`` and ``q`` parts
  independent, as they are for ``r``.

On the CPU the default randomizer is Damgård-Jurik-Nielsen's (``randomizer='djn'``;
DJN, "A generalization of Paillier's public-key system with applications to
electronic voting", IJIS 2010, §4.2): ``h_s^alpha mod n^2`` with ``h_s = h^n``
for a fixed random ``h = -x^2 mod n`` and ``alpha`` uniform of ``ceil(k/2)``
bits (k = bits of n). ``h_s`` is fixed per key, so a fixed-base table (windows
of 8 bits, ~16 MB for a 2048-bit key, built once on first use in ~0.1 s) turns
each randomizer into ~128 multiplications mod ``n^2`` instead of a
2048-bit-exponent powmod: ~13x less work than ``r^n``, and a batch of 512 or
more is split over the cores by forked processes (gmpy2 keeps the GIL while
it multiplies; results come back through a shared mapping, never pickled). What it costs: the
randomizer is an ``n``-th residue of ``h^alpha``, not of a uniform ``r``, and
semantic security then rests on DCR *and* on ``h^alpha`` with a half-length
``alpha`` being indistinguishable from a uniform element of its group (the
short-exponent assumption DJN argue for). ``randomizer='exact'`` uses ``r^n``
(``PublicKey``) or its CRT form (``PrivateKey``) for the textbook assumption
alone; a GPU batch always uses the exact form. Ciphertexts are valid
``g = n + 1`` Paillier ciphertexts either way (python-paillier decrypts them).

Measured against python-paillier (2048-bit key, same n, same run): phe
encrypts in ~8.3 ms an element, 96% of it the ``r^n`` powmod; the exact
randomizer is 1.0x (public key) and 3.6x (private key, CRT) phe on one core;
see ``noodle bench crypto`` for the DJN figure. A ciphertext add is ~6.2 µs
against phe's ~7.8 µs.

Results of homomorphic operations are not re-randomized (``enc * 0`` is the
ciphertext 1, which shows); call :meth:`EncryptedMatrix.rerandomize` before
handing a result to someone who must not learn such things.

Example::

    import numpy as np
    from noodle.crypto import paillier
    pub, priv = paillier.generate_keypair(2048)
    a = pub.encrypt(np.arange(6).reshape(2, 3))
    total = a + a * 3 + 10
    priv.decrypt(total)          # array([[10, 14, 18], [22, 26, 30]])
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import random
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from noodle.crypto import _bigint_cpu
from noodle.crypto.placement import decide
from noodle.errors import CryptoError, CryptoValueError, DTypeError, ShapeError

MIN_BITS = 128
_NOT_INVERTIBLE = ("a ciphertext shares a factor with n, so it is not a valid Paillier ciphertext under this "
                   "key; check where it came from.")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# ------------------------------------------------------------------------------ batched big-int ops
def _objects(values: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A list of Python ints as an object array of ``shape`` (np.array would pick int64)."""
    if isinstance(values, np.ndarray):
        return values.reshape(shape)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def _repeat(value: int, shape: tuple[int, ...]) -> np.ndarray:
    """One Python int in every element (one object repeated: the backends' shared-operand case)."""
    out = np.empty(shape, dtype=object)
    out[...] = np.broadcast_to(np.array(value, dtype=object), shape)
    return out


def _powmod(base: list[Any], exp: int | list[int], m: int, device: str) -> list[int]:
    """``pow(b, e, m)`` for every ``b`` in ``base`` (``0 <= b < m``), placed like noodle's modpow."""
    n = len(base)
    if n == 0:
        return []
    shape = (n,)
    exps = _repeat(exp, shape) if isinstance(exp, int) else _objects(exp, shape)
    ebits = exp.bit_length() if isinstance(exp, int) else max(e.bit_length() for e in exp)
    decision = decide("modpow", elements=n, bits=m.bit_length(), exp_bits=ebits, device=device)
    b = _objects(base, shape)
    if decision.device == "gpu":
        from noodle.crypto import _bigint_cuda

        return _bigint_cuda.modpow(b, exps, _repeat(m, shape)).tolist()
    return _bigint_cpu.modpow(b, exps, _repeat(m, shape)).tolist()


def _random_below(bound: int, count: int, rng: random.Random | None) -> list[int]:
    """``count`` uniform integers in ``[1, bound)``: bulk random bytes, exact rejection sampling."""
    bits = (bound - 1).bit_length()
    width = (bits + 7) // 8
    mask = (1 << bits) - 1
    out: list[int] = []
    while len(out) < count:
        need = count - len(out)
        want = 2 * need + 8  # under half are rejected: keys' p, q and n have their top bits set
        data = rng.randbytes(want * width) if rng is not None else os.urandom(want * width)
        for i in range(0, len(data), width):
            v = int.from_bytes(data[i:i + width], "little") & mask
            if 0 < v < bound:
                out.append(v)
                if len(out) == count:
                    break
    return out


# ------------------------------------------------------------------------------ keys
def _fingerprint(n: int) -> str:
    return hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).hexdigest()[:12]


class PublicKey:
    """A Paillier public key (``n``; ``g = n + 1``). Anyone holding it can encrypt and compute on
    ciphertexts."""

    __slots__ = ("_djn", "_n_mpz", "_nsq_mpz", "max_int", "n", "nsquare")

    def __init__(self, n: int) -> None:
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or int(n).bit_length() < MIN_BITS or not int(n) & 1:
            raise CryptoValueError(f"a Paillier modulus n must be an odd integer of at least {MIN_BITS} bits, "
                                   f"got {_short(n)}. Use generate_keypair() or the n of an existing key.")
        self.n = int(n)
        self.nsquare = self.n * self.n
        self.max_int = (self.n - 1) // 2  # plaintexts are in [-max_int, max_int]
        self._n_mpz = mpz(self.n)
        self._nsq_mpz = mpz(self.nsquare)
        self._djn: _FixedBase | None = None

    @property
    def g(self) -> int:
        return self.n + 1

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("paillier", self.n))

    def __repr__(self) -> str:
        return f"PublicKey(bits={self.bits}, fingerprint={_fingerprint(self.n)})"

    def encrypt(self, matrix: Any, *, rng: random.Random | None = None, device: str = "auto",
                randomizer: str = "djn") -> EncryptedMatrix:
        """Encrypt an integer array (any shape) elementwise with fresh randomizers.

        ``rng``: where randomness comes from (default: the OS, ``os.urandom``); a seeded
        ``random.Random`` makes tests reproducible and encryption insecure. ``device``: where
        the batch runs ('auto', 'cpu', 'gpu'). ``randomizer``: 'djn' (fixed-base, ~25x less
        work on a CPU; see the module docstring for its assumption) or 'exact' (``r^n``)."""
        values = _plaintext(matrix, self, "encrypt")
        rho = self._randomizers(values.size, rng, device, randomizer)
        return EncryptedMatrix._wrap(self, _times_one_plus_mn(self, rho, values.ravel().tolist(), values.shape))

    def _randomizers(self, count: int, rng: random.Random | None, device: str, randomizer: str = "djn") -> list[Any]:
        if _use_djn(randomizer, count, self, device):
            return self._fixed_base(rng).randomizers(count, rng)
        return _powmod(_random_below(self.n, count, rng), self.n, self.nsquare, device)

    def _fixed_base(self, rng: random.Random | None) -> _FixedBase:
        if self._djn is None:
            self._djn = _FixedBase(self, rng)
        return self._djn


class PrivateKey:
    """A Paillier private key: the factors ``p``, ``q`` of the public ``n``. Its repr shows only
    the public key's fingerprint."""

    __slots__ = ("_hp", "_hq", "_p", "_p2", "_p2_mpz", "_p_inv_q", "_q", "_q2", "_q2_inv_p2", "_q2_mpz",
                 "public_key")

    def __init__(self, public_key: PublicKey, p: int, q: int) -> None:
        if not isinstance(public_key, PublicKey):
            raise CryptoValueError(f"PrivateKey needs the PublicKey it belongs to, got {type(public_key).__name__}.")
        p, q = int(p), int(q)
        n = public_key.n
        if p * q != n or p == q or min(p, q) < 3:
            raise CryptoValueError("p and q are not two distinct factors of the public key's n; pass the "
                                   "primes the key was made from.")
        if not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise CryptoValueError("p or q is not prime; pass the primes the key was made from.")
        if math.gcd(n, (p - 1) * (q - 1)) != 1:
            raise CryptoValueError("gcd(n, (p - 1)(q - 1)) != 1, so this n is not a Paillier modulus; "
                                   "generate primes of equal length (generate_keypair does).")
        self.public_key = public_key
        self._p, self._q = p, q
        self._p2, self._q2 = p * p, q * q
        self._p2_mpz, self._q2_mpz = mpz(self._p2), mpz(self._q2)
        self._p_inv_q = pow(p, -1, q)
        self._q2_inv_p2 = pow(self._q2, -1, self._p2)
        # h_p = L_p(g^(p-1) mod p^2)^-1 mod p, the CRT form of mu (as in python-paillier)
        self._hp = pow((pow(n + 1, p - 1, self._p2) - 1) // p, -1, p)
        self._hq = pow((pow(n + 1, q - 1, self._q2) - 1) // q, -1, q)

    @property
    def p(self) -> int:
        return self._p

    @property
    def q(self) -> int:
        return self._q

    def __repr__(self) -> str:
        return f"PrivateKey(for {self.public_key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and {other._p, other._q} == {self._p, self._q}

    def __hash__(self) -> int:
        return hash(("paillier-private", self.public_key.n))

    def encrypt(self, matrix: Any, *, rng: random.Random | None = None, device: str = "auto",
                randomizer: str = "djn") -> EncryptedMatrix:
        """Encrypt like :meth:`PublicKey.encrypt`; with ``randomizer='exact'`` each randomizer is made
        from ``x^p mod p^2`` and ``y^q mod q^2`` by CRT: ~3.6x less powmod work than ``r^n``, for
        the key owner only (see the module docstring for why the distribution is the same)."""
        pub = self.public_key
        values = _plaintext(matrix, pub, "encrypt")
        if _use_djn(randomizer, values.size, pub, device):
            rho = pub._fixed_base(rng).randomizers(values.size, rng)
        else:
            rho = self._randomizers(values.size, rng, device)
        return EncryptedMatrix._wrap(pub, _times_one_plus_mn(pub, rho, values.ravel().tolist(), values.shape))

    def _randomizers(self, count: int, rng: random.Random | None, device: str) -> list[int]:
        p, q = self._p, self._q
        rp = _powmod(_random_below(p, count, rng), p, self._p2, device)
        rq = _powmod(_random_below(q, count, rng), q, self._q2, device)
        q2, p2, inv = self._q2_mpz, self._p2_mpz, mpz(self._q2_inv_p2)
        return [int(b + q2 * ((a - b) * inv % p2)) for a, b in zip(rp, map(mpz, rq), strict=True)]

    def decrypt(self, encrypted: EncryptedMatrix, *, device: str = "auto") -> np.ndarray:
        """The plaintext integers, as int64 when every value fits, else as Python ints (object).

        Raises CryptoValueError for a matrix encrypted under another key."""
        if not isinstance(encrypted, EncryptedMatrix):
            raise CryptoValueError(f"decrypt expects an EncryptedMatrix, got {type(encrypted).__name__}; "
                                   "encrypt with PublicKey.encrypt first.")
        if encrypted.public_key != self.public_key:
            raise CryptoValueError(f"this matrix was encrypted under {encrypted.public_key!r}, not under "
                                   f"{self.public_key!r}; decrypt it with that key's PrivateKey.")
        cs = encrypted._c.ravel().tolist()
        mp = self._half(cs, self._p, self._p2_mpz, self._hp, device)
        mq = self._half(cs, self._q, self._q2_mpz, self._hq, device)
        p, q, pinv, n, top = mpz(self._p), mpz(self._q), mpz(self._p_inv_q), self.public_key.n, self.public_key.max_int
        vals = [int(a + p * ((b - a) * pinv % q)) for a, b in zip(mp, mq, strict=True)]
        signed = [v - n if v > top else v for v in vals]
        shape = encrypted.shape
        if not signed or (min(signed) >= _INT64_MIN and max(signed) <= _INT64_MAX):
            return np.array(signed, dtype=np.int64).reshape(shape)
        return _objects(signed, shape)

    @staticmethod
    def _half(cs: list[int], prime: int, sq: Any, h: int, device: str) -> list[Any]:
        """``L(c^(prime-1) mod prime^2) * h mod prime`` for every ciphertext."""
        reduced = [int(gmpy2.f_mod(c, sq)) for c in cs]
        x = _powmod(reduced, prime - 1, int(sq), device)
        pm, hm = mpz(prime), mpz(h)
        return [(mpz(v) - 1) // pm * hm % pm for v in x]


def generate_keypair(bits: int = 2048, *, rng: random.Random | None = None) -> tuple[PublicKey, PrivateKey]:
    """A fresh Paillier key pair with an ``n`` of exactly ``bits`` bits.

    Primes: ``gmpy2.next_prime`` after a random odd number with its top two bits set (so
    ``p * q`` has exactly ``bits`` bits), re-checked with a strong BPSW test; ``p != q``,
    ``|p - q|`` far above ``n^(1/4)`` (Fermat's method), ``gcd(n, (p-1)(q-1)) = 1``.
    ``rng``: default the OS (``secrets``); a seeded ``random.Random`` is for reproducible tests
    only. 2048 bits takes about a second; ``bits`` below 2048 is not secure today."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < MIN_BITS:
        raise CryptoValueError(f"bits must be an integer >= {MIN_BITS}, got {bits!r}; 2048 or more for real use.")
    half_p, half_q = bits // 2, bits - bits // 2
    while True:
        p, q = _prime(half_p, rng), _prime(half_q, rng)
        n = p * q
        if p == q or abs(p - q).bit_length() <= min(half_p, half_q) // 2 + 1 or n.bit_length() != bits:
            continue
        if math.gcd(n, (p - 1) * (q - 1)) != 1:
            continue
        public = PublicKey(n)
        return public, PrivateKey(public, p, q)


def _prime(bits: int, rng: random.Random | None) -> int:
    while True:
        x = rng.getrandbits(bits) if rng is not None else int.from_bytes(os.urandom((bits + 7) // 8), "big")
        x = (x & ((1 << bits) - 1)) | (3 << (bits - 2)) | 1
        p = gmpy2.next_prime(x)
        if p.bit_length() == bits and gmpy2.is_strong_bpsw_prp(p):
            return int(p)


# ------------------------------------------------------------------------------ DJN randomizers
_RANDOMIZERS = ("djn", "exact")
_WINDOW = 8


def _use_djn(randomizer: str, count: int, key: PublicKey, device: str) -> bool:
    """Whether this batch takes the fixed-base randomizer: asked for, and the powmods would not run
    on a GPU (where the exact batch is the fast one)."""
    if randomizer not in _RANDOMIZERS:
        raise CryptoValueError(f"randomizer must be 'djn' or 'exact', got {randomizer!r}.")
    if randomizer == "exact" or count == 0:
        return False
    bits = key.bits
    return decide("modpow", elements=count, bits=2 * bits, exp_bits=bits, device=device).device == "cpu"


class _FixedBase:
    """``h_s^alpha mod n^2`` for random ``alpha`` of ``ceil(k/2)`` bits, by a fixed-base window table.

    ``table[i][d] = h_s^(d * 2^(8 i)) mod n^2``, so ``h_s^alpha`` is the product of one entry per
    byte of ``alpha``: ~k/16 multiplications mod ``n^2`` and no squarings."""

    __slots__ = ("alpha_bits", "nsquare", "table")

    def __init__(self, key: PublicKey, rng: random.Random | None) -> None:
        n, n2 = key._n_mpz, key._nsq_mpz
        (x,) = _random_below(key.n, 1, rng)
        while math.gcd(x, key.n) != 1:  # (never, for a real key)
            (x,) = _random_below(key.n, 1, rng)
        h = n - mpz(x) * x % n                               # -x^2 mod n
        base = gmpy2.powmod(h, n, n2)                        # h_s = h^n mod n^2
        self.alpha_bits = (key.bits + 1) // 2
        self.nsquare = n2
        self.table: list[list[Any]] = []
        for _ in range(-(-self.alpha_bits // _WINDOW)):
            row = [mpz(1), base]
            for _ in range(2, 1 << _WINDOW):
                row.append(row[-1] * base % n2)
            self.table.append(row)
            base = row[-1] * base % n2                       # h_s^(2^(8(i+1)))

    def randomizers(self, count: int, rng: random.Random | None) -> list[Any]:
        """``count`` randomizers; a large batch is split over the cores (see :func:`_forked`)."""
        alphas = _random_below(1 << self.alpha_bits, count, rng)
        workers = min(_bigint_cpu.n_threads(), 8)
        if count < _FORK_MIN or workers < 2 or not hasattr(os, "fork"):
            return self._powers(alphas)
        return _forked(self._powers, alphas, workers, (self.nsquare.bit_length() + 7) // 8)

    def _powers(self, alphas: list[int]) -> list[Any]:
        n2, table = self.nsquare, self.table
        width = len(table)
        out = []
        for alpha in alphas:
            acc = None
            for row, d in zip(table, alpha.to_bytes(width, "little")):
                if d:
                    acc = row[d] if acc is None else acc * row[d] % n2
            out.append(acc if acc is not None else mpz(1))
        return out


_FORK_MIN = 512


def _forked(compute: Any, items: list[int], workers: int, width: int) -> list[Any]:
    """``compute(items)`` split over ``workers`` processes forked from this one.

    Why processes: gmpy2 keeps the GIL through a multiplication, so threads do not run the
    table products in parallel. Why fork and a shared mapping: the children inherit the
    table (16 MB) without copying it and write their results as fixed-width big-endian
    integers into an anonymous shared mapping; nothing is pickled in either direction. A
    child that fails (or is killed) has its share computed here instead, so the result never
    depends on the children.
    """
    count = len(items)
    step = -(-count // workers)
    spans = [(lo, min(lo + step, count)) for lo in range(0, count, step)]
    buf = mmap.mmap(-1, count * width)
    children: list[tuple[int, tuple[int, int]]] = []
    try:
        for lo, hi in spans[1:]:
            pid = os.fork()
            if pid == 0:  # the child: compute, write, leave without running any cleanup of the parent's
                status = 1
                try:
                    for i, v in enumerate(compute(items[lo:hi]), lo):
                        buf[i * width:(i + 1) * width] = int(v).to_bytes(width, "big")
                    status = 0
                finally:
                    os._exit(status)
            children.append((pid, (lo, hi)))
        lo, hi = spans[0]
        out: list[Any] = list(compute(items[lo:hi]))
        for pid, (clo, chi) in children:
            _, status = os.waitpid(pid, 0)
            if status == 0:
                out.extend(mpz(int.from_bytes(buf[i * width:(i + 1) * width], "big")) for i in range(clo, chi))
            else:
                out.extend(compute(items[clo:chi]))
        return out
    finally:
        for pid, _ in children:  # an exception above: no child is left behind
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        buf.close()


# ------------------------------------------------------------------------------ plaintexts
def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:28] + "..." + text[-20:]


def _plaintext(x: Any, key: PublicKey, what: str) -> np.ndarray:
    """``x`` as an object array of Python ints within ``[-max_int, max_int]``."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x) if not isinstance(x, int) else None
    if arr is None:  # a Python int (np.asarray would turn a huge one into an object array anyway)
        arr = np.array(int(x), dtype=object)
    kind = arr.dtype.kind
    if kind in "iub":  # every (u)int64 fits: keys have >= MIN_BITS = 128 bits, max_int >= 2^126
        return arr.astype(np.int64 if kind == "b" else arr.dtype).astype(object)
    if kind == "O":
        flat = arr.reshape(-1).tolist()
        out = []
        for v in flat:
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise DTypeError(f"Paillier {what} takes integers, found {type(v).__name__} {_short(v)} in an "
                                 "object array; scale floats to fixed point first (e.g. round(x * 2**16)).")
            out.append(int(v))
        limit = key.max_int
        for v in out:
            if v < -limit or v > limit:
                raise _range_error(v, key, what)
        return _objects(out, arr.shape)
    raise DTypeError(f"Paillier {what} takes integer arrays, got dtype {arr.dtype}; scale floats to fixed point "
                     "first (e.g. np.round(x * 2**16).astype(np.int64)) and divide after decrypting.")


def _range_error(v: int, key: PublicKey, what: str) -> CryptoValueError:
    return CryptoValueError(
        f"Paillier {what}: the value {_short(v)} is outside the plaintext range (-n/2, n/2) of this "
        f"{key.bits}-bit key (|value| <= about 2^{key.max_int.bit_length() - 1}); use a larger key or smaller values.")


def _times_one_plus_mn(key: PublicKey, cs: list[int], values: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """``c * (1 + m n) mod n^2`` elementwise, as ``c + n * (m c mod n)`` (the product's ``m n c``
    term is ``n`` times ``m c mod n`` modulo ``n^2``): one small multiply, one reduction mod ``n``
    and one 2048x2048-bit multiply, no 4096-bit reduction."""
    n, n2 = key._n_mpz, key._nsq_mpz
    out = []
    for c, m in zip(map(mpz, cs), values, strict=True):
        if m:
            s = c + n * (c * m % n)
            out.append(int(s - n2 if s >= n2 else s))
        else:
            out.append(int(c))
    return _objects(out, shape)


# ------------------------------------------------------------------------------ ciphertexts
class EncryptedMatrix:
    """Paillier ciphertexts of an integer array, with the elementwise operations Paillier has:
    ``+``/``-`` with another EncryptedMatrix (same key) or with plaintext integers, ``*`` by
    plaintext integers, unary ``-``. Shapes broadcast as in NumPy. NumPy arrays on the left
    (``np_array + enc``) work: NumPy defers to these methods."""

    __slots__ = ("_c", "public_key")
    __array_ufunc__ = None  # make NumPy return NotImplemented, so Python calls our reflected methods

    def __init__(self, public_key: PublicKey, ciphertexts: Any) -> None:
        """Wrap existing ciphertexts (Python ints in ``(0, n^2)``, e.g. from python-paillier's
        ``ciphertext(be_secure=False)``) for ``public_key``."""
        if not isinstance(public_key, PublicKey):
            raise CryptoValueError(f"EncryptedMatrix needs a PublicKey, got {type(public_key).__name__}.")
        arr = np.asarray(ciphertexts, dtype=object)
        flat = [int(v) for v in arr.reshape(-1).tolist()]
        for v in flat:
            if not 0 < v < public_key.nsquare:
                raise CryptoValueError(f"a ciphertext must be in (0, n^2) for {public_key!r}; got {_short(v)}. "
                                       "Pass ciphertexts made under this key.")
        self.public_key = public_key
        self._c = _frozen(_objects(flat, arr.shape))

    @classmethod
    def _wrap(cls, key: PublicKey, c: np.ndarray) -> EncryptedMatrix:
        self = cls.__new__(cls)
        self.public_key = key
        self._c = _frozen(c)
        return self

    # -- array-like surface
    @property
    def shape(self) -> tuple[int, ...]:
        return self._c.shape

    @property
    def ndim(self) -> int:
        return self._c.ndim

    @property
    def size(self) -> int:
        return self._c.size

    @property
    def ciphertexts(self) -> np.ndarray:
        """The ciphertexts as a read-only object array of Python ints."""
        return self._c

    def __len__(self) -> int:
        if not self._c.ndim:
            raise TypeError("len() of a 0-d EncryptedMatrix")
        return self._c.shape[0]

    def __getitem__(self, index: Any) -> EncryptedMatrix:
        part = self._c[index]
        return EncryptedMatrix._wrap(self.public_key, part if isinstance(part, np.ndarray)
                                     else np.array(part, dtype=object))

    def __repr__(self) -> str:
        return f"EncryptedMatrix(shape={self.shape}, key={self.public_key!r})"

    def __bool__(self) -> bool:
        raise CryptoError("the truth value of an EncryptedMatrix is unknown without decrypting it.")

    # -- homomorphic operations
    def __add__(self, other: Any) -> EncryptedMatrix:
        key = self.public_key
        if isinstance(other, EncryptedMatrix):
            self._same_key(other, "add")
            a, b = _broadcast(self._c, other._c, "add")
            return EncryptedMatrix._wrap(key, _modmul(a, b, key.nsquare))
        values = _plaintext(other, key, "add")
        a, v = _broadcast(self._c, values, "add")
        return EncryptedMatrix._wrap(key, _times_one_plus_mn(key, a.reshape(-1).tolist(), v.reshape(-1).tolist(),
                                                             a.shape))

    __radd__ = __add__

    def __neg__(self) -> EncryptedMatrix:
        n2 = self.public_key._nsq_mpz
        try:
            inv = [int(gmpy2.invert(c, n2)) for c in self._c.reshape(-1).tolist()]
        except ZeroDivisionError:
            raise CryptoValueError(_NOT_INVERTIBLE) from None
        return EncryptedMatrix._wrap(self.public_key, _objects(inv, self.shape))

    def __sub__(self, other: Any) -> EncryptedMatrix:
        if isinstance(other, EncryptedMatrix):
            self._same_key(other, "subtract")
            return self + (-other)
        return self + _negated(_plaintext(other, self.public_key, "subtract"))

    def __rsub__(self, other: Any) -> EncryptedMatrix:
        return (-self) + other

    def __mul__(self, other: Any) -> EncryptedMatrix:
        if isinstance(other, EncryptedMatrix):
            raise CryptoError("Paillier is additively homomorphic: an EncryptedMatrix can be multiplied by "
                              "plaintext integers, not by another EncryptedMatrix; decrypt one operand first.")
        key = self.public_key
        values = _plaintext(other, key, "multiply")
        c, k = _broadcast(self._c, values, "multiply")
        cs, ks = c.reshape(-1).tolist(), k.reshape(-1).tolist()
        if any(v < 0 for v in ks):  # c^-|k|: invert the ciphertext (30 µs) rather than raise to k mod n
            n2 = key._nsq_mpz
            try:
                cs = [int(gmpy2.invert(x, n2)) if v < 0 else x for x, v in zip(cs, ks, strict=True)]
            except ZeroDivisionError:
                raise CryptoValueError(_NOT_INVERTIBLE) from None
            ks = [abs(v) for v in ks]
        shared = ks[0] if ks and ks.count(ks[0]) == len(ks) else None
        out = _powmod(cs, shared if shared is not None else ks, key.nsquare, "auto")
        return EncryptedMatrix._wrap(key, _objects(out, c.shape))

    __rmul__ = __mul__

    def rerandomize(self, *, rng: random.Random | None = None, device: str = "auto") -> EncryptedMatrix:
        """The same plaintexts under fresh randomness (each ciphertext times a new ``r^n``), so a
        result no longer shows how it was computed (e.g. ``enc * 0`` is the ciphertext 1)."""
        key = self.public_key
        rho = key._randomizers(self.size, rng, device)
        return EncryptedMatrix._wrap(key, _modmul(self._c, _objects(rho, self.shape), key.nsquare))

    def _same_key(self, other: EncryptedMatrix, what: str) -> None:
        if other.public_key != self.public_key:
            raise CryptoValueError(f"cannot {what} matrices encrypted under different keys ({self.public_key!r} "
                                   f"and {other.public_key!r}); decrypt one and re-encrypt it under the other key.")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _negated(values: np.ndarray) -> np.ndarray:
    return _objects([-v for v in values.reshape(-1).tolist()], values.shape)


def _broadcast(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ShapeError(f"cannot {what} shapes {a.shape} and {b.shape}: they do not broadcast (NumPy rules); "
                         "reshape one operand or use matching shapes.") from None
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    if b.shape != shape:
        b = np.broadcast_to(b, shape)
    return a, b


def _modmul(a: np.ndarray, b: np.ndarray, m: int) -> np.ndarray:
    shape = a.shape
    decision = decide("modmul", elements=a.size, bits=m.bit_length(), exp_bits=1)
    mm = _repeat(m, shape)
    if decision.device == "gpu":
        from noodle.crypto import _bigint_cuda

        return _bigint_cuda.modmul(a, b, mm)
    return _bigint_cpu.modmul(a, b, mm)


__all__ = ["EncryptedMatrix", "PrivateKey", "PublicKey", "generate_keypair"]
