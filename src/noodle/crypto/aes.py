"""Authenticated AES-256-GCM encryption of whole matrices, as self-describing blobs.

Why a blob format at all: decrypting must give back the same dtype and shape,
and an attacker who can edit the stored dtype or shape must not be able to
make ``float64`` data come back as ``int8`` unnoticed; so dtype and shape sit
in a header that GCM authenticates together with the caller's ``aad``.

Blob layout (all integers big-endian)::

    offset  size  field
    0       8     magic  b"NDAESGCM"
    8       1     format version, 1
    9       4     header length n (uint32)
    13      n     header: UTF-8 JSON {"dtype":"<f8","shape":[2,3]} (NumPy dtype.str, C-order shape)
    13+n    12    nonce (96 bits, fresh from os.urandom for every call)
    25+n    L     ciphertext of the array's raw C-order bytes (L = itemsize * prod(shape))
    25+n+L  16    GCM tag

The associated data is everything before the nonce followed by the caller's
``aad`` (``blob[:13+n] + aad``; the prefix carries its own length, so the
split is unambiguous). Any AES-GCM implementation can therefore open a blob::

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    n = int.from_bytes(blob[9:13], "big")
    p = 13 + n
    raw = AESGCM(key).decrypt(blob[p:p + 12], blob[p + 12:], blob[:p] + aad)
    header = json.loads(blob[13:p])
    arr = np.frombuffer(raw, header["dtype"]).reshape(header["shape"])

Why streaming: the ciphertext is written by OpenSSL straight into the bytes
object that is returned (and plaintext straight into the returned array), in
chunks, so a 512 MB matrix costs one output buffer and no copies; the one-shot
``AESGCM`` API would allocate its result and a second copy to prepend the
header. Decryption checks the tag before returning anything: on a mismatch
the output buffer is wiped and dropped.

Where it runs is decided by :func:`noodle.crypto.placement.decide`
(``aes_gcm_encrypt`` / ``aes_gcm_decrypt``); the GPU path
(:mod:`noodle.crypto._aes_cuda`) produces the same bytes.

Example::

    import os, numpy as np, noodle as nd
    key = os.urandom(32)
    blob = nd.crypto.aes_matrix_encrypt(np.eye(3), key, aad=b"patient-17")
    back = nd.crypto.aes_matrix_decrypt(blob, key, aad=b"patient-17")
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import re
import struct
import sys
import threading
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from noodle.crypto.placement import decide
from noodle.devices import is_gpu_array
from noodle.errors import CryptoValueError, DeviceUnavailableError, DTypeError, IntegrityError

MAGIC = b"NDAESGCM"
VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
CHUNK_BYTES = 2 << 20           # streaming chunk: large enough to amortise the call, small enough for L2/L3
MAX_HEADER_BYTES = 4096
MAX_GCM_BYTES = (2**32 - 2) * 16  # SP 800-38D: at most 2^32 - 2 blocks per (key, nonce)
_PREFIX = struct.Struct(">8sBI")
_DTYPE_RE = re.compile(r"^[<>|][biufc][0-9]{1,2}$")
_KINDS = "biufc"
_KEY_HELP = ("AES-256-GCM needs a 32-byte key. Make one with os.urandom(32) or "
             "cryptography.hazmat.primitives.ciphers.aead.AESGCM.generate_key(bit_length=256), "
             "and store it apart from the data.")
_AUTH_FAILED = ("AES-GCM authentication failed: the blob was altered or truncated, or the key or aad differs "
                "from the ones it was encrypted with; no data was returned.")


def _new_nonce() -> bytes:
    """A fresh 96-bit nonce. Private so no caller can reuse one; tests monkeypatch it to compare paths."""
    return os.urandom(NONCE_BYTES)


# ----------------------------------------------------------------------------- uninitialised bytes
_HUGE_MIN = 4 << 20
_HUGE_PAGE = 2 << 20


def _libc_madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
        fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_MADVISE = _libc_madvise()


def _hugepage_advice() -> Any:
    """A function (address, length) asking Linux for transparent huge pages, or None.

    Why: filling a fresh 64 MB buffer costs 16k page faults (about 25 ms here,
    as long as the encryption itself); with 2 MB pages it is about 9 ms. NumPy
    does the same for its large arrays (so decryption output already has it).
    Only advice: where it is refused nothing changes.
    """
    madvise = _MADVISE
    if madvise is None:
        return None
    madv_hugepage = 14

    def advise(addr: int, n: int) -> None:
        start = (addr + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = (addr + n) & ~(_HUGE_PAGE - 1)
        if end > start:
            madvise(start, end - start, madv_hugepage)

    return advise


def _bytes_writer() -> Any:
    """A function n -> (bytes of length n, writable memoryview of its storage), or None.

    Why: the contract returns ``bytes``, and ``bytes(bytearray)`` would copy the
    whole blob once more (about 70 ms for 64 MB here). CPython's
    ``PyBytes_FromStringAndSize(NULL, n)`` is the C API's own way to allocate a
    bytes object and fill it before anyone else sees it; this does that from
    Python. Checked once at import; elsewhere (PyPy) the copy is used.
    """
    if sys.implementation.name != "cpython":
        return None
    try:
        alloc = ctypes.pythonapi.PyBytes_FromStringAndSize
        alloc.restype = ctypes.py_object
        alloc.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
        offset = bytes.__basicsize__ - 1          # start of ob_sval
        huge = _hugepage_advice()

        def make(n: int) -> tuple[bytes, memoryview]:
            blob = alloc(None, n)
            if n == 0:
                return blob, memoryview(bytearray(0))
            addr = id(blob) + offset
            if huge is not None and n >= _HUGE_MIN:
                huge(addr, n)
            return blob, memoryview((ctypes.c_char * n).from_address(addr)).cast("B")

        probe, view = make(16)
        view[:] = b"noodle-aes-probe"
        ok = probe == b"noodle-aes-probe" and hash(probe) == hash(b"noodle-aes-probe")
        view.release()
        return make if ok else None
    except Exception:  # no ctypes.pythonapi, another layout: fall back to a copy
        return None


_MAKE_BYTES = _bytes_writer()


# ----------------------------------------------------------------------------- argument checks
def _check_key(key: Any) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise CryptoValueError(f"key must be bytes, got {type(key).__name__}. {_KEY_HELP}")
    key = bytes(key)
    if len(key) != KEY_BYTES:
        raise CryptoValueError(f"key is {len(key)} bytes long. {_KEY_HELP}")
    return key


def _check_aad(aad: Any) -> bytes:
    if not isinstance(aad, bytes | bytearray | memoryview):
        raise CryptoValueError(f"aad must be bytes (associated data that is authenticated but not encrypted), "
                               f"got {type(aad).__name__}; encode text with .encode().")
    return bytes(aad)


def _as_array(matrix: Any) -> tuple[Any, bool]:
    """(NumPy or CuPy array, on_gpu) of a NumPy array or scalar, a CuPy array or a noodle Matrix (no copy)."""
    data = np.asarray(matrix) if isinstance(matrix, np.generic) else matrix
    if not isinstance(data, np.ndarray) and not is_gpu_array(data):
        from noodle.array.matrix import Matrix

        if not isinstance(matrix, Matrix):
            raise DTypeError(f"aes_matrix_encrypt takes a NumPy array or a noodle Matrix, got "
                             f"{type(matrix).__name__}; wrap it with np.asarray(...) first.")
        data = matrix.data
    dt = np.dtype(data.dtype)
    if dt.kind not in _KINDS or dt.fields is not None or dt.subdtype is not None:
        raise DTypeError(f"aes_matrix_encrypt: dtype {dt} cannot be encrypted; expected bool, integer, float "
                         f"or complex data (object, string, structured, void and datetime arrays have no "
                         f"portable raw bytes). Convert with .astype(...) first.")
    return data, is_gpu_array(data)


def _prefix(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    # what json.dumps(..., separators=(",", ":"), sort_keys=True) writes, without its cost per call
    dims = ",".join(str(int(d)) for d in shape)
    header = f'{{"dtype":"{dtype.str}","shape":[{dims}]}}'.encode()
    return _PREFIX.pack(MAGIC, VERSION, len(header)) + header


def _parse(blob: memoryview) -> tuple[int, np.dtype, tuple[int, ...]]:
    """(prefix length, dtype, shape) of a blob, or IntegrityError naming what is wrong."""
    size = len(blob)
    if size < _PREFIX.size:
        raise IntegrityError(f"blob is {size} bytes, shorter than the {_PREFIX.size}-byte prefix of a noodle "
                             f"AES-GCM blob; it was truncated or is not one.")
    magic, version, hlen = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise IntegrityError(f"blob starts with {bytes(magic)!r}, expected the magic {MAGIC!r}: it is not a "
                             f"noodle AES-GCM blob (made by aes_matrix_encrypt) or its start was altered.")
    if version != VERSION:
        raise IntegrityError(f"blob has format version {version}; this noodle reads version {VERSION}. "
                             f"Decrypt it with the noodle that wrote it, or the blob was altered.")
    p = _PREFIX.size + hlen
    if hlen > MAX_HEADER_BYTES or p + NONCE_BYTES + TAG_BYTES > size:
        raise IntegrityError(f"blob header length {hlen} does not fit a {size}-byte blob; it was truncated or "
                             f"altered.")
    try:
        header = json.loads(bytes(blob[_PREFIX.size:p]).decode("utf-8"))
        dstr, shape = header["dtype"], header["shape"]
        if (set(header) != {"dtype", "shape"} or not isinstance(dstr, str) or not _DTYPE_RE.match(dstr)
                or not isinstance(shape, list) or len(shape) > 64
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise ValueError("bad fields")
        dtype = np.dtype(dstr)
        if dtype.kind not in _KINDS:
            raise ValueError("bad dtype")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise IntegrityError("blob header is not a valid noodle AES-GCM header (dtype and shape); the blob "
                             "was altered or is not from aes_matrix_encrypt.") from None
    nbytes = dtype.itemsize * math.prod(shape)
    ct_len = size - p - NONCE_BYTES - TAG_BYTES
    if nbytes != ct_len:
        raise IntegrityError(f"blob header describes {nbytes} bytes of data but the blob holds {ct_len}; it "
                             f"was truncated, extended or altered.")
    return p, dtype, tuple(shape)


# ----------------------------------------------------------------------------- encrypt
def aes_matrix_encrypt(matrix: Any, key: bytes, *, aad: bytes = b"", device: str = "auto") -> bytes:
    """Encrypt and authenticate ``matrix`` (NumPy array or noodle Matrix) with AES-256-GCM.

    The result is a blob (see the module docstring for its layout) that
    :func:`aes_matrix_decrypt` turns back into an array of the same dtype and
    shape, and that plain ``cryptography`` AESGCM can open. ``aad`` is bound to
    the blob without being stored: the same ``aad`` is needed to decrypt.
    """
    key = _check_key(key)
    aad = _check_aad(aad)
    data, on_gpu = _as_array(matrix)
    dtype = np.dtype(data.dtype)
    n = int(data.nbytes)
    if n > MAX_GCM_BYTES:
        raise CryptoValueError(f"matrix is {n} bytes; one AES-GCM message holds at most {MAX_GCM_BYTES} bytes. "
                               f"Encrypt it in parts (e.g. row blocks), each with its own call.")
    choice = decide("aes_gcm_encrypt", elements=int(data.size), nbytes=n, on_gpu=on_gpu, device=device)
    prefix = _prefix(dtype, tuple(data.shape))
    nonce = _new_nonce()
    p = len(prefix)
    total = p + NONCE_BYTES + n + TAG_BYTES
    if _MAKE_BYTES is not None:
        blob, view = _MAKE_BYTES(total)
    else:
        buf = bytearray(total)
        blob, view = None, memoryview(buf)
    views = [view]
    try:
        view[:p] = prefix
        view[p:p + NONCE_BYTES] = nonce
        ct_view = view[p + NONCE_BYTES:p + NONCE_BYTES + n]
        views.append(ct_view)
        ad = prefix + aad
        tag = None
        if choice.device == "gpu":
            tag = _encrypt_gpu(data, key, nonce, ad, ct_view, explicit=device != "auto")
        if tag is None:
            tag = _encrypt_cpu(data, key, nonce, ad, ct_view)
        view[total - TAG_BYTES:] = tag
    finally:
        _release(views)     # no writable view may outlive the bytes object it points into
    return blob if blob is not None else bytes(buf)


def _release(views: list[memoryview]) -> None:
    for v in reversed(views):
        with contextlib.suppress(BufferError):
            v.release()


def _host_u8(data: Any) -> np.ndarray:
    """The array's raw C-order bytes as a flat uint8 NumPy view (a copy only if not C-contiguous or on a GPU)."""
    if not isinstance(data, np.ndarray):
        from noodle.array import dispatch

        data = dispatch.to_host(data)
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)


def _encrypt_cpu(data: Any, key: bytes, nonce: bytes, ad: bytes, out: memoryview) -> bytes:
    src = _host_u8(data)
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(ad)
    n = src.size
    ahead = _prefault(out) if n >= _PREFAULT_MIN else None
    try:
        for o in range(0, n, CHUNK_BYTES):
            k = min(CHUNK_BYTES, n - o)
            enc.update_into(src[o:o + k], out[o:o + k])
    finally:
        if ahead is not None:
            ahead.join()
    enc.finalize()
    return enc.tag


_PREFAULT_MIN = 16 << 20
_MADV_POPULATE_WRITE = 23   # Linux >= 5.14: fault pages in (zero-filled) without touching present ones


def _prefault(out: memoryview) -> threading.Thread | None:
    """Fault the output's fresh pages in on another core while OpenSSL encrypts the first chunks.

    Why: a fresh 64 MB output costs the kernel ~4 ms of page faults and zeroing, a quarter of
    the encryption; ``MADV_POPULATE_WRITE`` does that work ahead of the writer (ctypes drops
    the GIL during the call). It never changes the contents of a page already written, so the
    race with the encryptor is harmless; the thread is joined before the buffer is returned.
    """
    madvise = _MADVISE
    if madvise is None:
        return None
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(out))
    except (TypeError, ValueError):
        return None
    n = out.nbytes

    def run() -> None:
        start = (addr + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = addr + n
        step = 4 << 20
        for a in range(start, end, step):
            if madvise(a, min(step, end - a) & ~4095, _MADV_POPULATE_WRITE) != 0:
                return  # not supported here (older kernel): the writer faults the pages itself

    thread = threading.Thread(target=run, name="noodle-aes-prefault", daemon=True)
    thread.start()
    return thread




def _encrypt_gpu(data: Any, key: bytes, nonce: bytes, ad: bytes, out: memoryview, *,
                 explicit: bool) -> bytes | None:
    """The GPU path; None (use the CPU) when 'auto' chose the GPU but its kernels cannot run."""
    from noodle.crypto import _aes_cuda

    try:
        return _aes_cuda.encrypt_into(data, key, nonce, ad, out)
    except DeviceUnavailableError:
        if explicit:
            raise
        return None


# ----------------------------------------------------------------------------- decrypt
def aes_matrix_decrypt(blob: bytes, key: bytes, *, aad: bytes = b"", device: str = "auto") -> np.ndarray:
    """Authenticate and decrypt a blob made by :func:`aes_matrix_encrypt` (or by hand, see the module
    docstring) into a new writable C-contiguous NumPy array of the original dtype and shape.

    Any change to the blob, a wrong key or a different ``aad`` raises
    :class:`noodle.errors.IntegrityError`, and no plaintext is returned.
    """
    key = _check_key(key)
    aad = _check_aad(aad)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise IntegrityError(f"blob must be bytes from aes_matrix_encrypt, got {type(blob).__name__}.")
    view = memoryview(blob)
    if view.ndim != 1 or view.format != "B" or not view.c_contiguous:
        view = memoryview(view.tobytes())
    try:
        p, dtype, shape = _parse(view)
        nonce = bytes(view[p:p + NONCE_BYTES])
        size = len(view)
        ct = view[p + NONCE_BYTES:size - TAG_BYTES]
        tag = bytes(view[size - TAG_BYTES:])
        ad = bytes(view[:p]) + aad
        out = np.empty(shape, dtype=dtype)
        out_u8 = out.reshape(-1).view(np.uint8)
        choice = decide("aes_gcm_decrypt", elements=int(out.size), nbytes=len(ct), on_gpu=False, device=device)
        done = False
        if choice.device == "gpu":
            done = _decrypt_gpu(ct, key, nonce, ad, tag, out_u8, explicit=device != "auto")
        if not done:
            _decrypt_cpu(ct, key, nonce, ad, tag, out_u8)
        ct.release()
    finally:
        view.release()
    return out


def _decrypt_cpu(ct: memoryview, key: bytes, nonce: bytes, ad: bytes, tag: bytes, out: np.ndarray) -> None:
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(ad)
    n = len(ct)
    for o in range(0, n, CHUNK_BYTES):
        k = min(CHUNK_BYTES, n - o)
        dec.update_into(ct[o:o + k], out[o:o + k])
    try:
        dec.finalize()
    except InvalidTag:
        out.fill(0)       # the unauthenticated plaintext never leaves this function
        raise IntegrityError(_AUTH_FAILED) from None


def _decrypt_gpu(ct: memoryview, key: bytes, nonce: bytes, ad: bytes, tag: bytes, out: np.ndarray, *,
                 explicit: bool) -> bool:
    from noodle.crypto import _aes_cuda

    try:
        _aes_cuda.decrypt_into(ct, key, nonce, ad, tag, out)
    except DeviceUnavailableError:
        if explicit:
            raise
        return False
    return True


__all__ = ["MAGIC", "VERSION", "aes_matrix_decrypt", "aes_matrix_encrypt"]
