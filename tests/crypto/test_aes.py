"""AES-256-GCM matrix blobs on the CPU: standard vectors, round trips, interop with plain AESGCM, tampering."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import noodle as nd
from noodle.crypto import aes
from noodle.errors import CryptoValueError, DeviceUnavailableError, DTypeError, IntegrityError

KEY = bytes(range(0xA0, 0xC0))      # recognisable, to check it never shows up in messages

# NIST AES-256-GCM vectors: McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", revised
# 2005 (the GCM spec submitted to NIST for SP 800-38D), Appendix B, test cases 13-18.
# Fields: key, iv, plaintext, aad, ciphertext, tag (hex).
_K2 = "feffe9928665731c6d6a8f9467308308" * 2
_P = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
_A = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
NIST_256 = {
    13: ("00" * 32, "00" * 12, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"),
    14: ("00" * 32, "00" * 12, "00" * 16, "", "cea7403d4d606b6e074ec5d3baf39d18",
         "d0d1c8a799996bf0265b98b5d48ab919"),
    15: (_K2, "cafebabefacedbaddecaf888", _P, "",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
         "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
         "b094dac5d93471bdec1a502270e3cc6c"),
    16: (_K2, "cafebabefacedbaddecaf888", _P[:120], _A,
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
         "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
         "76fc6ece0f4e1768cddf8853bb2d551b"),
    17: (_K2, "cafebabefacedbad", _P[:120], _A,
         "c3762df1ca787d32ae47c13bf19844cbaf1ae14d0b976afac52ff7d79bba9de0"
         "feb582d33934a4f0954cc2363bc73f7862ac430e64abe499f47c9b1f",
         "3a337dbf46a792c45e454913fe2ea8f2"),
    18: (_K2, "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
              "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b", _P[:120], _A,
         "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf4"
         "0fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f",
         "a44a8266ee1c8eb0c8b5d4cf5ae9f19a"),
}


def _vector(case: int) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(x) for x in NIST_256[case])


def _split(blob: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(prefix length, nonce, ciphertext, tag) by the documented layout."""
    n = int.from_bytes(blob[9:13], "big")
    p = 13 + n
    return p, blob[p:p + 12], blob[p + 12:-16], blob[-16:]


# ----------------------------------------------------------------------------- the primitive
@pytest.mark.parametrize("case", [13, 14, 15, 16])
@pytest.mark.parametrize("chunk", [aes.CHUNK_BYTES, 16, 7])
def test_nist_vectors_on_the_streamed_cpu_path(case: int, chunk: int, monkeypatch) -> None:
    key, iv, pt, aad, ct, tag = _vector(case)
    monkeypatch.setattr(aes, "CHUNK_BYTES", chunk)
    out = bytearray(len(pt))
    assert aes._encrypt_cpu(np.frombuffer(pt, np.uint8), key, iv, aad, memoryview(out)) == tag
    assert bytes(out) == ct
    back = np.empty(len(ct), np.uint8)
    aes._decrypt_cpu(memoryview(ct), key, iv, aad, tag, back)
    assert back.tobytes() == pt


@pytest.mark.parametrize("case", sorted(NIST_256))
def test_nist_vectors_agree_with_plain_aesgcm(case: int) -> None:
    """The typed-in vectors themselves are right (17 and 18 use non-96-bit IVs, which blobs never do)."""
    key, iv, pt, aad, ct, tag = _vector(case)
    assert AESGCM(key).encrypt(iv, pt, aad) == ct + tag


def test_failed_tag_wipes_the_output_buffer() -> None:
    key, iv, pt, aad, ct, tag = _vector(15)
    out = np.empty(len(ct), np.uint8)
    with pytest.raises(IntegrityError):
        aes._decrypt_cpu(memoryview(ct), key, iv, aad, bytes(16), out)
    assert not out.any()


# ----------------------------------------------------------------------------- round trips
_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
           np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
           np.dtype(">i4"), np.dtype(">f8"), np.dtype("<c16")]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(_DTYPES),
       shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
       aad=st.binary(max_size=40), data=st.data())
def test_round_trip_keeps_dtype_shape_and_bits(dtype, shape, aad, data) -> None:
    arr = data.draw(hnp.arrays(np.dtype(dtype), shape))
    blob = aes.aes_matrix_encrypt(arr, KEY, aad=aad)
    assert type(blob) is bytes
    back = aes.aes_matrix_decrypt(blob, KEY, aad=aad)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()
    assert back.flags.c_contiguous and back.flags.writeable
    back[...] = 0       # writable and not a view of the blob
    assert aes.aes_matrix_decrypt(blob, KEY, aad=aad).tobytes() == arr.tobytes()


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (5, 7)])
def test_zero_d_and_empty_shapes(shape) -> None:
    arr = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + 0.5
    back = nd.crypto.aes_matrix_decrypt(nd.crypto.aes_matrix_encrypt(arr, KEY), KEY)
    assert isinstance(back, np.ndarray) and back.shape == shape and back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


def test_non_contiguous_input_is_encrypted_in_c_order() -> None:
    base = np.arange(60, dtype=np.int32).reshape(6, 10)
    for arr in (base.T, base[:, ::3], base[1::2]):
        back = aes.aes_matrix_decrypt(aes.aes_matrix_encrypt(arr, KEY), KEY)
        np.testing.assert_array_equal(back, arr)
        assert back.flags.c_contiguous


def test_matrix_objects_are_accepted() -> None:
    m = nd.Matrix(np.arange(12.0).reshape(3, 4))
    back = aes.aes_matrix_decrypt(aes.aes_matrix_encrypt(m, KEY), KEY)
    np.testing.assert_array_equal(back, m.numpy())


def test_streaming_over_many_chunks_matches_one_shot(monkeypatch) -> None:
    monkeypatch.setattr(aes, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x01" * 12)
    arr = np.random.default_rng(0).standard_normal(3001)
    blob = aes.aes_matrix_encrypt(arr, KEY, aad=b"x")
    p, nonce, ct, tag = _split(blob)
    assert ct + tag == AESGCM(KEY).encrypt(nonce, arr.tobytes(), blob[:p] + b"x")
    np.testing.assert_array_equal(aes.aes_matrix_decrypt(blob, KEY, aad=b"x"), arr)


def test_copying_fallback_gives_the_same_bytes(monkeypatch) -> None:
    monkeypatch.setattr(aes, "_new_nonce", lambda: b"\x02" * 12)
    arr = np.arange(100, dtype=np.uint16)
    fast = aes.aes_matrix_encrypt(arr, KEY)
    monkeypatch.setattr(aes, "_MAKE_BYTES", None)
    slow = aes.aes_matrix_encrypt(arr, KEY)
    assert type(slow) is bytes and slow == fast
    assert aes._MAKE_BYTES is None or aes._bytes_writer() is not None


def test_blob_layout_is_as_documented() -> None:
    arr = np.zeros((2, 3), dtype="<f4")
    blob = aes.aes_matrix_encrypt(arr, KEY)
    assert blob[:8] == aes.MAGIC and blob[8] == aes.VERSION
    p, nonce, ct, tag = _split(blob)
    assert blob[13:p] == json.dumps({"dtype": "<f4", "shape": [2, 3]}, separators=(",", ":")).encode()
    assert len(nonce) == 12 and len(ct) == arr.nbytes and len(tag) == 16


# ----------------------------------------------------------------------------- interop
def test_plain_aesgcm_opens_our_blob() -> None:
    arr = np.random.default_rng(1).integers(-1000, 1000, (4, 5)).astype(np.int64)
    blob = aes.aes_matrix_encrypt(arr, KEY, aad=b"ctx")
    p, nonce, ct, tag = _split(blob)
    raw = AESGCM(KEY).decrypt(nonce, ct + tag, blob[:p] + b"ctx")
    header = json.loads(blob[13:p])
    np.testing.assert_array_equal(np.frombuffer(raw, header["dtype"]).reshape(header["shape"]), arr)


def test_a_blob_built_by_hand_with_aesgcm_decrypts_with_ours() -> None:
    arr = np.linspace(0, 1, 7, dtype=np.float32).reshape(7, 1)
    header = json.dumps({"dtype": arr.dtype.str, "shape": list(arr.shape)}).encode()
    prefix = b"NDAESGCM" + bytes([1]) + len(header).to_bytes(4, "big") + header
    nonce = os.urandom(12)
    blob = prefix + nonce + AESGCM(KEY).encrypt(nonce, arr.tobytes(), prefix + b"abc")
    np.testing.assert_array_equal(aes.aes_matrix_decrypt(blob, KEY, aad=b"abc"), arr)
    assert aes.aes_matrix_decrypt(bytearray(blob), KEY, aad=b"abc").shape == (7, 1)
    assert aes.aes_matrix_decrypt(memoryview(blob), KEY, aad=b"abc").shape == (7, 1)
    strided = memoryview(bytes(b for x in blob for b in (x, 0)))[::2]     # any bytes-like layout
    assert aes.aes_matrix_decrypt(strided, KEY, aad=b"abc").shape == (7, 1)


# ----------------------------------------------------------------------------- tampering and wrong inputs
def test_every_flipped_bit_is_detected() -> None:
    blob = aes.aes_matrix_encrypt(np.arange(6, dtype=np.int16).reshape(2, 3), KEY, aad=b"a")
    for i in range(len(blob)):
        for bit in range(8):
            bad = bytearray(blob)
            bad[i] ^= 1 << bit
            with pytest.raises(IntegrityError):
                aes.aes_matrix_decrypt(bytes(bad), KEY, aad=b"a")


def test_truncation_extension_wrong_key_and_aad_are_detected() -> None:
    blob = aes.aes_matrix_encrypt(np.arange(10.0), KEY, aad=b"a")
    for cut in range(len(blob)):
        with pytest.raises(IntegrityError):
            aes.aes_matrix_decrypt(blob[:cut], KEY, aad=b"a")
    for bad, key, aad in ((blob + b"\x00", KEY, b"a"), (blob, os.urandom(32), b"a"), (blob, KEY, b""),
                          (blob, KEY, b"b"), (blob, KEY, b"a\x00")):
        with pytest.raises(IntegrityError) as info:
            aes.aes_matrix_decrypt(bad, key, aad=aad)
        assert info.value.__cause__ is None      # InvalidTag is translated, never chained
        assert info.value.__context__ is None or info.value.__suppress_context__


def test_not_our_blob_names_what_is_wrong() -> None:
    blob = aes.aes_matrix_encrypt(np.ones(3), KEY)
    with pytest.raises(IntegrityError, match="magic"):
        aes.aes_matrix_decrypt(b"PK\x03\x04" + blob[4:], KEY)
    with pytest.raises(IntegrityError, match="version 2"):
        aes.aes_matrix_decrypt(blob[:8] + b"\x02" + blob[9:], KEY)
    with pytest.raises(IntegrityError, match="shorter"):
        aes.aes_matrix_decrypt(b"NDAES", KEY)
    with pytest.raises(IntegrityError, match="bytes from aes_matrix_encrypt"):
        aes.aes_matrix_decrypt("not bytes", KEY)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [
    b'{"dtype":"|O8","shape":[1]}', b'{"dtype":"<f8","shape":[-1]}', b'{"dtype":"<f8","shape":[true]}',
    b'{"dtype":"<f8"}', b'not json', b'{"dtype":"<f8","shape":[3]}', b'{"dtype":"f8,i4","shape":[1]}',
    b'{"dtype":"<f8","shape":[1],"x":1}', b'\xff\xfe'])
def test_a_validly_tagged_but_bad_header_is_refused(header: bytes) -> None:
    """Even a blob made with the right key must describe its own bytes (16 here) before anything is allocated."""
    prefix = b"NDAESGCM\x01" + len(header).to_bytes(4, "big") + header
    nonce = os.urandom(12)
    blob = prefix + nonce + AESGCM(KEY).encrypt(nonce, bytes(16), prefix)
    with pytest.raises(IntegrityError):
        aes.aes_matrix_decrypt(blob, KEY)


@pytest.mark.parametrize("key", [b"", b"k" * 16, b"k" * 24, b"k" * 31, b"k" * 33, "k" * 32, 12345, None])
def test_bad_keys_say_how_to_make_one(key) -> None:
    for call in (lambda: aes.aes_matrix_encrypt(np.ones(2), key),
                 lambda: aes.aes_matrix_decrypt(b"x" * 64, key)):
        with pytest.raises(CryptoValueError, match="32-byte key") as info:
            call()
        assert "os.urandom(32)" in str(info.value) and "generate_key(bit_length=256)" in str(info.value)
        if isinstance(key, bytes) and key:
            assert key.decode() not in str(info.value)


@pytest.mark.parametrize("arr", [np.array([object(), 1], dtype=object), np.array(["ab"]), np.array([b"ab"]),
                                 np.zeros(2, dtype="i4,f8"), np.zeros(2, dtype="V8"),
                                 np.array(["2020-01-01"], dtype="datetime64[D]")])
def test_unsupported_dtypes_are_refused(arr) -> None:
    with pytest.raises(DTypeError, match="cannot be encrypted"):
        aes.aes_matrix_encrypt(arr, KEY)


def test_other_inputs_are_refused_clearly() -> None:
    with pytest.raises(DTypeError, match="np.asarray"):
        aes.aes_matrix_encrypt([1, 2, 3], KEY)
    with pytest.raises(CryptoValueError, match="aad must be bytes"):
        aes.aes_matrix_encrypt(np.ones(2), KEY, aad="text")  # type: ignore[arg-type]
    with pytest.raises(CryptoValueError, match="device"):
        aes.aes_matrix_encrypt(np.ones(2), KEY, device="tpu")


def test_every_call_uses_a_fresh_nonce() -> None:
    arr = np.zeros(32)
    blobs = [aes.aes_matrix_encrypt(arr, KEY) for _ in range(20)]
    assert len({_split(b)[1] for b in blobs}) == 20
    assert len(set(blobs)) == 20


def test_keys_never_appear_in_messages() -> None:
    blob = aes.aes_matrix_encrypt(np.ones(4), KEY)
    other = bytes(range(0x40, 0x60))
    texts = []
    for bad_blob, key in ((blob, other), (blob[:-1], KEY), (blob[:20], KEY), (b"?" * 40, KEY)):
        with pytest.raises(IntegrityError) as info:
            aes.aes_matrix_decrypt(bad_blob, key)
        texts.append(str(info.value) + repr(info.value))
    for key in (KEY[:31], KEY + b"\x00"):
        with pytest.raises(CryptoValueError) as info:
            aes.aes_matrix_encrypt(np.ones(4), key)
        texts.append(str(info.value) + repr(info.value))
    for text in texts:
        for k in (KEY, other):
            assert k.hex() not in text and repr(k)[2:-1] not in text and k[:8].hex() not in text


def test_gpu_without_a_gpu_is_refused() -> None:
    from noodle.crypto import _aes_cuda

    if _aes_cuda.available()[0]:
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(DeviceUnavailableError):
        aes.aes_matrix_encrypt(np.ones(3), KEY, device="gpu")
    blob = aes.aes_matrix_encrypt(np.ones(3), KEY, device="cpu")
    with pytest.raises(DeviceUnavailableError):
        aes.aes_matrix_decrypt(blob, KEY, device="gpu")
    np.testing.assert_array_equal(aes.aes_matrix_decrypt(blob, KEY, device="auto"), np.ones(3))


def test_no_ecb_mode_anywhere() -> None:
    import inspect

    from noodle.crypto import _aes_cuda

    for module in (aes, _aes_cuda):
        assert "ECB(" not in inspect.getsource(module)


def test_the_no_copy_bytes_writer_is_in_use_on_cpython():
    """The blob is written in place into the bytes object it returns (a copy of 64 MB costs ~70 ms):
    on CPython the writer must have passed its import-time probe."""
    import sys

    from noodle.crypto import aes

    if sys.implementation.name == "cpython":
        assert aes._MAKE_BYTES is not None
