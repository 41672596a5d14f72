"""Paillier over integer matrices: round trips, homomorphic arithmetic against NumPy, errors, and
interoperability with python-paillier (phe) on the same key."""

from __future__ import annotations

import functools
import math
import os
import random

import numpy as np
import phe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noodle.crypto import paillier
from noodle.crypto.paillier import EncryptedMatrix, PrivateKey, PublicKey, generate_keypair
from noodle.errors import CryptoError, CryptoValueError, DeviceUnavailableError, DTypeError, ShapeError


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def other_keys() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(1024)


@pytest.fixture(scope="module")
def small_keys() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(256, rng=random.Random(7))


def objects(values: list[int], shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape or (len(values),))


def encrypters(keys: tuple[PublicKey, PrivateKey]) -> list:
    """Every way to encrypt: public and private key, DJN fixed-base (default) and exact randomizers."""
    pub, priv = keys
    return [pub.encrypt, priv.encrypt, functools.partial(pub.encrypt, randomizer="exact"),
            functools.partial(priv.encrypt, randomizer="exact")]


# ----------------------------------------------------------------------------- keys
def test_keypair_shape_and_determinism() -> None:
    pub, priv = generate_keypair(512, rng=random.Random(1))
    assert pub.bits == 512 and pub.n == priv.p * priv.q and priv.p != priv.q
    assert pub.g == pub.n + 1 and pub.nsquare == pub.n**2
    assert math.gcd(pub.n, (priv.p - 1) * (priv.q - 1)) == 1
    assert priv.p.bit_length() == 256 and priv.q.bit_length() == 256
    again, _ = generate_keypair(512, rng=random.Random(1))
    assert again == pub and hash(again) == hash(pub)
    assert generate_keypair(511)[0].bits == 511
    with pytest.raises(CryptoValueError, match="bits must be an integer >= 128"):
        generate_keypair(64)


def test_reprs_hide_private_material(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    enc = pub.encrypt(np.arange(3))
    for text in (repr(pub), repr(priv), str(priv), repr(enc)):
        for secret in (priv.p, priv.q):
            assert str(secret) not in text and hex(secret)[2:] not in text and f"{secret:x}"[:16] not in text
    assert "fingerprint=" in repr(priv) and "bits=1024" in repr(priv)
    assert repr(enc).startswith("EncryptedMatrix(shape=(3,)")


def test_private_key_validation(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    with pytest.raises(CryptoValueError, match="distinct factors"):
        PrivateKey(pub, priv.p, priv.q + 2)
    with pytest.raises(CryptoValueError, match="PublicKey"):
        PrivateKey(pub.n, priv.p, priv.q)  # type: ignore[arg-type]
    with pytest.raises(CryptoValueError, match="odd integer"):
        PublicKey(2**200)
    assert PrivateKey(pub, priv.q, priv.p) == priv


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 2, 3), (0, 3)])
def test_round_trip_shapes_and_dtypes(keys: tuple[PublicKey, PrivateKey], shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape) + len(shape))
    for dtype in (np.int64, np.int32, np.uint16, np.int8):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        for enc in encrypters(keys):
            out = keys[1].decrypt(enc(x))
            assert out.dtype == np.int64 and out.shape == x.shape
            np.testing.assert_array_equal(out, x.astype(np.int64))


def test_round_trip_extremes_negative_and_object_values(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    top = pub.max_int
    vals = [0, 1, -1, top, -top, 2**63, -(2**63) - 1, 2**63 - 1, -(2**63), 12345678901234567890123]
    for enc in encrypters(keys):
        out = priv.decrypt(enc(objects(vals, (2, 5))))
        assert out.dtype == object and out.shape == (2, 5)
        assert out.reshape(-1).tolist() == vals
        assert all(type(v) is int for v in out.reshape(-1).tolist())
    assert priv.decrypt(pub.encrypt(np.array([-(2**63), 2**63 - 1]))).dtype == np.int64
    assert priv.decrypt(pub.encrypt(7)).shape == () and int(priv.decrypt(pub.encrypt(-7))) == -7
    assert priv.decrypt(pub.encrypt([[1, -2], [3, -4]])).tolist() == [[1, -2], [3, -4]]
    assert priv.decrypt(pub.encrypt(np.array([True, False]))).tolist() == [1, 0]


def test_encryption_is_randomized_and_randomizers_are_nth_residues(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    lam = math.lcm(priv.p - 1, priv.q - 1)
    for enc in encrypters(keys):
        zeros = enc(np.zeros(16, dtype=np.int64)).ciphertexts.tolist()
        assert len(set(zeros)) == 16
        # an encryption of 0 is r^n, whose lambda-th power is 1 mod n^2 (an encryption of m != 0 is not)
        assert all(pow(c, lam, pub.nsquare) == 1 for c in zeros)
        ones = enc(np.ones(4, dtype=np.int64)).ciphertexts.tolist()
        assert all(pow(c, lam, pub.nsquare) != 1 for c in ones)
    a = priv.encrypt(np.arange(8), rng=random.Random(3)).ciphertexts.tolist()
    b = priv.encrypt(np.arange(8), rng=random.Random(3)).ciphertexts.tolist()
    assert a == b  # a seeded rng reproduces ciphertexts (tests only)


# ----------------------------------------------------------------------------- homomorphic arithmetic
def test_add_encrypted_and_plaintext_against_numpy(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    rng = np.random.default_rng(5)
    x = rng.integers(-(10**12), 10**12, (4, 5))
    y = rng.integers(-(10**12), 10**12, (4, 5))
    row = rng.integers(-100, 100, (5,))
    ex, ey, er = pub.encrypt(x), priv.encrypt(y), pub.encrypt(row)
    np.testing.assert_array_equal(priv.decrypt(ex + ey), x + y)
    np.testing.assert_array_equal(priv.decrypt(ex - ey), x - y)
    np.testing.assert_array_equal(priv.decrypt(ex + er), x + row)       # broadcasting
    np.testing.assert_array_equal(priv.decrypt(er + ex), row + x)
    np.testing.assert_array_equal(priv.decrypt(ex + 17), x + 17)
    np.testing.assert_array_equal(priv.decrypt(17 + ex), 17 + x)
    np.testing.assert_array_equal(priv.decrypt(ex + y), x + y)
    np.testing.assert_array_equal(priv.decrypt(y + ex), y + x)         # NumPy on the left defers to us
    np.testing.assert_array_equal(priv.decrypt(ex - row), x - row)
    np.testing.assert_array_equal(priv.decrypt(row - ex), row - x)
    np.testing.assert_array_equal(priv.decrypt(5 - ex), 5 - x)
    np.testing.assert_array_equal(priv.decrypt(-ex), -x)
    big = objects([pub.max_int - 5] * 20, (4, 5))
    assert priv.decrypt(ex * 0 + big).tolist() == big.tolist()


def test_scalar_multiply_against_numpy(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    rng = np.random.default_rng(6)
    x = rng.integers(-(10**6), 10**6, (3, 4))
    k = rng.integers(-1000, 1000, (3, 4))
    ex = pub.encrypt(x)
    for scalar in (0, 1, -1, 3, -7, 2**40):
        np.testing.assert_array_equal(priv.decrypt(ex * scalar), x * scalar)
        np.testing.assert_array_equal(priv.decrypt(scalar * ex), scalar * x)
    np.testing.assert_array_equal(priv.decrypt(ex * k), x * k)
    np.testing.assert_array_equal(priv.decrypt(k * ex), k * x)
    np.testing.assert_array_equal(priv.decrypt(ex * k[0]), x * k[0])
    np.testing.assert_array_equal(priv.decrypt(ex * 3 + ex * -2 - ex), x * 0)
    huge = 2**500 + 3
    got = priv.decrypt(pub.encrypt(np.array([2, -3])) * huge)
    assert got.tolist() == [2 * huge, -3 * huge] and got.dtype == object


def test_rerandomize_and_indexing(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    x = np.arange(12).reshape(3, 4) - 6
    ex = priv.encrypt(x)
    fresh = ex.rerandomize()
    assert set(fresh.ciphertexts.reshape(-1).tolist()).isdisjoint(ex.ciphertexts.reshape(-1).tolist())
    np.testing.assert_array_equal(priv.decrypt(fresh), x)
    zero = ex * 0
    assert set(zero.ciphertexts.reshape(-1).tolist()) == {1}       # what rerandomize is for
    assert 1 not in set(zero.rerandomize().ciphertexts.reshape(-1).tolist())
    np.testing.assert_array_equal(priv.decrypt(ex[1]), x[1])
    np.testing.assert_array_equal(priv.decrypt(ex[:, 2]), x[:, 2])
    assert priv.decrypt(ex[2, 3]).shape == () and int(priv.decrypt(ex[2, 3])) == x[2, 3]
    assert len(ex) == 3 and ex.shape == (3, 4) and ex.ndim == 2 and ex.size == 12
    assert not ex.ciphertexts.flags.writeable
    with pytest.raises(ValueError):
        ex.ciphertexts[0, 0] = 5


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_homomorphic_ops_hypothesis(small_keys: tuple[PublicKey, PrivateKey], data: st.DataObject) -> None:
    pub, priv = small_keys
    bound = 2**100
    shape = data.draw(st.sampled_from([(), (3,), (2, 3)]))
    size = math.prod(shape)
    ints = st.integers(-bound, bound)
    a = objects([data.draw(ints) for _ in range(size)], shape)
    b = objects([data.draw(ints) for _ in range(size)], shape)
    k = data.draw(st.integers(-(2**60), 2**60))
    ea, eb = pub.encrypt(a), priv.encrypt(b)
    assert priv.decrypt(ea + eb).reshape(-1).tolist() == (a + b).reshape(-1).tolist()
    assert priv.decrypt(ea * k + b).reshape(-1).tolist() == (a * k + b).reshape(-1).tolist()
    assert priv.decrypt(eb - ea).reshape(-1).tolist() == (b - a).reshape(-1).tolist()


# ----------------------------------------------------------------------------- errors
def test_mismatched_keys_and_shapes_raise(keys: tuple[PublicKey, PrivateKey],
                                          other_keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    a = pub.encrypt(np.ones((2, 3), dtype=np.int64))
    b = other_keys[0].encrypt(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(CryptoValueError, match="different keys.*re-encrypt"):
        a + b
    with pytest.raises(CryptoValueError, match="different keys"):
        a - b
    with pytest.raises(CryptoValueError, match="encrypted under .* decrypt it with that key"):
        priv.decrypt(b)
    with pytest.raises(ShapeError, match=r"shapes \(2, 3\) and \(3, 2\).*broadcast"):
        a + pub.encrypt(np.ones((3, 2), dtype=np.int64))
    with pytest.raises(ShapeError, match="broadcast"):
        a + np.ones(4, dtype=np.int64)
    with pytest.raises(ShapeError, match="broadcast"):
        a * np.ones((5, 1), dtype=np.int64)
    with pytest.raises(CryptoError, match="additively homomorphic"):
        a * a
    with pytest.raises(CryptoError, match="truth value"):
        bool(a)
    with pytest.raises(CryptoValueError, match="expects an EncryptedMatrix"):
        priv.decrypt(np.ones(3))  # type: ignore[arg-type]


def test_bad_plaintexts_raise(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, _ = keys
    with pytest.raises(DTypeError, match="integer arrays, got dtype float64.*fixed point"):
        pub.encrypt(np.array([1.5, 2.0]))
    with pytest.raises(DTypeError, match="integers, found float"):
        pub.encrypt(objects([1, 2.5]))  # type: ignore[list-item]
    with pytest.raises(DTypeError):
        pub.encrypt(np.array(["a"]))
    with pytest.raises(CryptoValueError, match=r"outside the plaintext range \(-n/2, n/2\).*larger key"):
        pub.encrypt(objects([0, pub.max_int + 1]))
    with pytest.raises(CryptoValueError, match="outside the plaintext range"):
        pub.encrypt(-pub.max_int - 1)
    enc = pub.encrypt(np.arange(2))
    with pytest.raises(CryptoValueError, match="outside the plaintext range"):
        enc + objects([pub.n, 0])
    with pytest.raises(CryptoValueError, match="outside the plaintext range"):
        enc * pub.n
    with pytest.raises(DTypeError):
        enc * 0.5
    with pytest.raises(CryptoValueError, match="ciphertext must be in"):
        EncryptedMatrix(pub, [0])
    with pytest.raises(CryptoValueError, match="ciphertext must be in"):
        EncryptedMatrix(pub, [pub.nsquare])
    with pytest.raises(CryptoValueError, match="valid Paillier"):
        -EncryptedMatrix(pub, [keys[1].p])


def test_smallest_key_takes_every_int64() -> None:
    pub, priv = generate_keypair(128, rng=random.Random(11))
    x = np.array([np.iinfo(np.int64).min, -1, np.iinfo(np.int64).max])
    np.testing.assert_array_equal(priv.decrypt(pub.encrypt(x)), x)
    u = np.array([np.iinfo(np.uint64).max], dtype=np.uint64)
    assert priv.decrypt(pub.encrypt(u)).tolist() == [2**64 - 1]


def test_explicit_devices(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    x = np.arange(4)
    np.testing.assert_array_equal(priv.decrypt(pub.encrypt(x, device="cpu"), device="cpu"), x)
    from noodle.crypto.placement import gpu_usable

    if not gpu_usable()[0]:
        with pytest.raises(DeviceUnavailableError, match="GPU"):
            pub.encrypt(x, device="gpu")


# ----------------------------------------------------------------------------- python-paillier interop
def test_interop_with_phe(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    ppub = phe.PaillierPublicKey(pub.n)
    ppriv = phe.PaillierPrivateKey(ppub, priv.p, priv.q)
    x = np.array([[3, -4], [0, 2**40]])
    ours = priv.encrypt(x)
    # our ciphertexts decrypt with phe (raw plaintexts are m mod n)
    assert [ppriv.raw_decrypt(c) for c in ours.ciphertexts.reshape(-1).tolist()] == [
        v % pub.n for v in x.reshape(-1).tolist()]
    # phe's ciphertexts decrypt with ours, and homomorphic ops agree across libraries
    theirs = [ppub.raw_encrypt(v % pub.n) for v in x.reshape(-1).tolist()]
    m = EncryptedMatrix(pub, objects(theirs, (2, 2)))
    np.testing.assert_array_equal(priv.decrypt(m), x)
    np.testing.assert_array_equal(priv.decrypt(m + ours), 2 * x)
    summed = [phe.EncryptedNumber(ppub, a) + phe.EncryptedNumber(ppub, b) for a, b in
              zip(ours.ciphertexts.reshape(-1).tolist(), theirs, strict=True)]
    assert [ppriv.decrypt(e) for e in summed] == (2 * x).reshape(-1).tolist()
    scaled = phe.EncryptedNumber(ppub, int(ours.ciphertexts[1, 1])) * -3
    assert priv.decrypt(EncryptedMatrix(pub, [scaled.ciphertext(be_secure=False)])).tolist() == [-3 * 2**40]


def test_default_key_size_with_phe_round_trip() -> None:
    pub, priv = generate_keypair()
    assert pub.bits == 2048
    ppub = phe.PaillierPublicKey(pub.n)
    ppriv = phe.PaillierPrivateKey(ppub, priv.p, priv.q)
    x = np.array([-(2**61), 17, 2**61])
    enc = priv.encrypt(x)
    np.testing.assert_array_equal(priv.decrypt(enc + pub.encrypt(x)), 2 * x)
    assert [ppriv.raw_decrypt(c) for c in enc.ciphertexts.tolist()] == [v % pub.n for v in x.tolist()]


def test_module_is_reachable_lazily() -> None:
    import noodle.crypto as crypto

    assert crypto.paillier is paillier


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_gpu_encryption_matches_cpu_byte_for_byte(keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = keys
    x = np.arange(-50, 50).reshape(10, 10)
    for enc in encrypters(keys):
        cpu = enc(x, rng=random.Random(9), device="cpu").ciphertexts
        gpu = enc(x, rng=random.Random(9), device="gpu").ciphertexts
        assert cpu.tolist() == gpu.tolist()
    e = pub.encrypt(x)
    np.testing.assert_array_equal(priv.decrypt(e, device="gpu"), priv.decrypt(e, device="cpu"))


def test_djn_randomizers_decrypt_everywhere_and_bad_names_are_refused(keys: tuple[PublicKey, PrivateKey]) -> None:
    """The fixed-base (DJN) ciphertexts are plain g = n + 1 Paillier ciphertexts: phe decrypts them."""
    pub, priv = keys
    values = np.array([0, 1, -1, 123456789, -(2**40)], dtype=np.int64)
    enc = pub.encrypt(values)
    ppub = phe.PaillierPublicKey(pub.n)
    ppriv = phe.PaillierPrivateKey(ppub, priv.p, priv.q)
    assert [ppriv.decrypt(phe.EncryptedNumber(ppub, int(c))) for c in enc.ciphertexts.tolist()] == values.tolist()
    assert np.array_equal(priv.decrypt(enc + enc * 2), values * 3)
    with pytest.raises(CryptoValueError, match="randomizer"):
        pub.encrypt(values, randomizer="fast")


def test_forked_batches_give_the_same_results_and_survive_a_failing_child() -> None:
    """Large DJN batches are split over forked processes (results through a shared mapping, never pickled);
    a child that fails has its share computed by the parent."""
    from noodle.crypto.paillier import _forked

    items = list(range(1000))
    parent = os.getpid()

    def square(xs: list[int]) -> list[int]:
        return [x * x for x in xs]

    def fails_in_children(xs: list[int]) -> list[int]:
        if os.getpid() != parent:
            raise RuntimeError("a child failing")
        return [x + 1 for x in xs]

    assert [int(v) for v in _forked(square, items, 3, 8)] == [x * x for x in items]
    assert [int(v) for v in _forked(fails_in_children, items, 3, 8)] == [x + 1 for x in items]


def test_a_batch_large_enough_to_fork_round_trips(small_keys: tuple[PublicKey, PrivateKey]) -> None:
    pub, priv = small_keys
    values = np.arange(-700, 700, dtype=np.int64)
    assert np.array_equal(priv.decrypt(pub.encrypt(values)), values)
