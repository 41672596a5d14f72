"""Safe value encoding for every tier that leaves the process (Redis, snapshots, the store).

Why not pickle: unpickling bytes from Redis, a file or a socket runs whatever
code the bytes name, so one hostile or corrupted entry would be code execution.
Here arrays travel as a small header (dtype string, shape) plus their raw bytes
and everything else as msgpack; decoding builds only NumPy arrays and plain
data, never calls anything named by the payload.

Format: ``b"ND\\x01"`` then one msgpack object. Arrays (anywhere inside lists,
tuples and dicts) are msgpack extension type 1: a 4-byte little-endian header
length, a msgpack ``[dtype, shape]`` header, then the C-order bytes. Tuples
(2), NumPy scalars (3: a 0-d array), sets (4) and frozensets (5) are extension
types so that every value comes back with its own type; anything else is
refused with CacheEncodingError rather than changed.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from noodle.errors import CacheEncodingError

MAGIC = b"ND\x01"
_EXT_ARRAY = 1
_EXT_TUPLE = 2
_EXT_SCALAR = 3     # a NumPy scalar (np.float32(1.5) comes back as np.float32, not float)
_EXT_SET = 4
_EXT_FROZENSET = 5
_ALLOWED_KINDS = frozenset("biufcmMSU")  # no 'O' (objects: pickle) and no 'V' (raw/structured)
_DTYPES: dict[str, np.dtype] = {}  # dtype strings already checked (np.dtype() parsing costs ~1 µs)


class DecodeError(Exception):
    """Internal: the bytes are not a valid noodle payload (callers turn it into a miss)."""


def _array_to_ext(arr: np.ndarray) -> msgpack.ExtType:
    if arr.dtype.kind not in _ALLOWED_KINDS:
        raise CacheEncodingError(
            f"cannot encode an array of dtype {arr.dtype} safely: object and structured dtypes would "
            f"need pickle. Convert it to a numeric or string dtype first."
        )
    header = msgpack.packb([arr.dtype.str, list(arr.shape)])
    data = np.ascontiguousarray(arr).tobytes()
    return msgpack.ExtType(_EXT_ARRAY, len(header).to_bytes(4, "little") + header + data)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _array_to_ext(obj)
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise CacheEncodingError(f"cannot encode a NumPy scalar of dtype {obj.dtype} safely.")
        return msgpack.ExtType(_EXT_SCALAR, _array_to_ext(np.asarray(obj)).data)
    if isinstance(obj, (set, frozenset)):
        code = _EXT_FROZENSET if isinstance(obj, frozenset) else _EXT_SET
        return msgpack.ExtType(code, _pack(list(obj)))
    raise CacheEncodingError(
        f"cannot encode a value of type {type(obj).__name__} safely (no pickle): use arrays, numbers, "
        f"strings, bytes, None, and lists/tuples/dicts of those."
    )


def _pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)
    except CacheEncodingError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CacheEncodingError(f"cannot encode value safely: {exc}") from None


def _checked_dtype(name: str, kinds: frozenset[str]) -> np.dtype:
    """The dtype a payload names, if it is one we decode (``kinds``); DecodeError otherwise.

    Why one helper: both framings must apply the same refusals, and the cache of
    parsed dtypes is shared, so the kind check runs on every lookup (a dtype
    cached by one framing must not slip past the stricter rule of the other).
    """
    dtype = _DTYPES.get(name)
    if dtype is None:
        try:
            dtype = np.dtype(name)
        except (TypeError, ValueError):
            raise DecodeError(f"bad dtype {name!r}") from None
        if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.hasobject:
            raise DecodeError(f"refused dtype {dtype}")
        if len(_DTYPES) < 256:
            _DTYPES[name] = dtype
    if dtype.kind not in kinds:
        raise DecodeError(f"refused dtype {dtype}")
    return dtype


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_ARRAY:
        if len(data) < 4:
            raise DecodeError("truncated array header")
        offset = 4 + int.from_bytes(data[:4], "little")
        if offset > len(data):
            raise DecodeError("truncated array header")
        header = msgpack.unpackb(data[4:offset], raw=False)
        if (not isinstance(header, list) or len(header) != 2 or not isinstance(header[0], str)
                or not isinstance(header[1], list)):
            raise DecodeError("bad array header")
        dtype = _checked_dtype(header[0], _ALLOWED_KINDS)
        shape = tuple(int(n) for n in header[1])
        if any(n < 0 for n in shape):
            raise DecodeError("negative dimension")
        count = math.prod(shape)
        body = memoryview(data)[offset:]
        if count * dtype.itemsize != len(body):
            raise DecodeError("array size does not match its header")
        # frombuffer over immutable bytes is read-only; copy so callers get a normal array.
        return np.frombuffer(body, dtype=dtype, count=count).reshape(shape).copy()
    if code == _EXT_SCALAR:
        arr = _ext_hook(_EXT_ARRAY, data)
        if arr.shape != ():
            raise DecodeError("bad NumPy scalar payload")
        return arr[()]
    if code in (_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET):
        inner = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        if not isinstance(inner, list):
            raise DecodeError("bad tuple/set payload")
        if code == _EXT_TUPLE:
            return tuple(inner)
        try:
            return set(inner) if code == _EXT_SET else frozenset(inner)
        except TypeError:
            raise DecodeError("unhashable set member") from None
    raise DecodeError(f"unknown extension type {code}")


def encode(value: Any) -> bytes:
    """Bytes for ``value`` in the safe format; raises :class:`CacheEncodingError` if impossible."""
    return MAGIC + _pack(value)


def decode(data: bytes) -> Any:
    """The value encoded in ``data``; raises :class:`DecodeError` for anything else (never executes code)."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or bytes(data[:3]) != MAGIC:
        raise DecodeError("missing noodle header (not written by noodle, or another format)")
    try:
        return msgpack.unpackb(memoryview(data)[3:], ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several types for garbage; all mean "not ours"
        raise DecodeError(f"corrupt payload: {type(exc).__name__}: {exc}") from None


ENTRY_ARRAY_MAGIC = b"ND\x02"   # a shared-tier entry whose value is one numeric array
_NUMERIC_KINDS = frozenset("biufc")


def encode_entry(expires_ms: int, tags: list[str], value: Any) -> bytes:
    """A shared-tier entry ``[expires_ms, tags, value]`` in the safe format.

    Why a second framing: for the common case of one numeric array, the raw bytes
    follow a small length-prefixed msgpack header instead of sitting inside a msgpack
    extension, so decoding reads them with a single copy (an 8 KB array read from Redis
    spent more time in msgpack's extra copy than in the cache's own logic).
    """
    if (isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC_KINDS
            and value.dtype.fields is None and not value.dtype.hasobject):
        header = msgpack.packb([int(expires_ms), list(tags), value.dtype.str, list(value.shape)],
                               use_bin_type=True)
        return (ENTRY_ARRAY_MAGIC + len(header).to_bytes(4, "little") + header
                + np.ascontiguousarray(value).tobytes())
    return encode([int(expires_ms), list(tags), value])


def decode_entry(data: bytes) -> Any:
    """The ``[expires_ms, tags, value]`` list from :func:`encode_entry`; DecodeError for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or bytes(data[:3]) != ENTRY_ARRAY_MAGIC:
        return decode(data)
    view = memoryview(data)
    if len(view) < 7:
        raise DecodeError("truncated array entry")
    hlen = int.from_bytes(view[3:7], "little")
    if 7 + hlen > len(view):
        raise DecodeError("truncated array entry header")
    try:
        header = msgpack.unpackb(view[7:7 + hlen], raw=False)
    except Exception as exc:  # garbage of any kind is "not ours"
        raise DecodeError(f"corrupt array entry header: {type(exc).__name__}") from None
    if (not isinstance(header, list) or len(header) != 4 or not isinstance(header[0], int)
            or not isinstance(header[1], list) or not isinstance(header[2], str)
            or not isinstance(header[3], list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in header[3])):
        raise DecodeError("bad array entry header")
    dtype = _checked_dtype(header[2], _NUMERIC_KINDS)
    shape = tuple(header[3])
    count = math.prod(shape)
    body = view[7 + hlen:]
    if count * dtype.itemsize != len(body):
        raise DecodeError("array size does not match its header")
    # Copied (the body sits at an unaligned offset of the payload) and read-only: the value may be kept
    # in the local tier and returned to every later caller, so nobody may write into it.
    value = np.frombuffer(body, dtype=dtype, count=count).reshape(shape).copy()
    value.flags.writeable = False
    return [header[0], header[1], value]


def nbytes_of(value: Any) -> int:
    """A cheap size estimate in bytes, used for the ``max_bytes`` bound (arrays count ``nbytes``)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    if isinstance(value, (bytes, bytearray, str)):
        return len(value) + 49
    if isinstance(value, (list, tuple)):
        head = sum(nbytes_of(v) for v in value[:64])  # sample the first 64 items, scale up
        return 56 + 8 * len(value) + (head * len(value) // 64 if len(value) > 64 else head)
    if isinstance(value, dict):
        return 232 + sum(nbytes_of(k) + nbytes_of(v) for k, v in list(value.items())[:64])
    return 32


__all__ = ["ENTRY_ARRAY_MAGIC", "MAGIC", "DecodeError", "decode", "decode_entry", "encode", "encode_entry",
           "nbytes_of"]
