"""Safe encoding, memoization and warming snapshots."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from noodle.cache import CacheManager, codec, memoize
from noodle.errors import CacheEncodingError, CacheError


@pytest.mark.parametrize("value", [
    np.arange(12, dtype=np.float32).reshape(3, 4), np.array([], dtype=np.int64).reshape(0, 5),
    np.array(["ab", "c"]), np.array([1 + 2j]), np.arange(10)[::3], np.float64(2.5),
    {"a": [1, 2.5, None, "s", b"raw"], "b": (1, np.ones(2))}, (np.zeros(1), 3), 7, None,
])
def test_round_trip(value):
    out = codec.decode(codec.encode(value))
    if isinstance(value, np.ndarray):
        assert out.dtype == value.dtype and out.shape == value.shape and np.array_equal(out, value)
        out[...] = out  # decoded arrays are writeable copies
    elif isinstance(value, dict):
        assert out["a"] == value["a"] and out["b"][0] == 1 and np.array_equal(out["b"][1], np.ones(2))
    elif isinstance(value, tuple):
        assert isinstance(out, tuple) and np.array_equal(out[0], value[0]) and out[1] == 3
    else:
        assert out == value


def test_object_dtype_and_arbitrary_objects_are_refused():
    with pytest.raises(CacheEncodingError, match="object"):
        codec.encode(np.array([object()], dtype=object))
    with pytest.raises(CacheEncodingError, match="type"):
        codec.encode({"x": object()})


@pytest.mark.parametrize("blob", [b"", b"garbage", codec.MAGIC + b"\xc1", codec.MAGIC + b"\xd4\x01\x00",
                                  codec.encode(np.arange(4))[:-3]])
def test_garbage_raises_decode_error_only(blob):
    with pytest.raises(codec.DecodeError):
        codec.decode(blob)


@pytest.mark.parametrize("arr", [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones((2, 0, 3)),
                                 np.array(7, dtype=np.int64), np.arange(5, dtype=np.complex128)[::2]])
def test_array_entries_round_trip_read_only(arr):
    """Shared-tier arrays come back read-only (the local tier shares them between callers) and aligned."""
    data = codec.encode_entry(123, ["t"], arr)
    assert data.startswith(codec.ENTRY_ARRAY_MAGIC)
    expires, tags, value = codec.decode_entry(data)
    assert (expires, tags) == (123, ["t"])
    assert value.dtype == arr.dtype and value.shape == arr.shape
    assert not value.flags.writeable and value.flags.aligned
    np.testing.assert_array_equal(value, arr)


def test_non_array_entries_use_the_general_format():
    data = codec.encode_entry(0, [], {"a": (1, 2)})
    assert data.startswith(codec.MAGIC)
    assert codec.decode_entry(data) == [0, [], {"a": (1, 2)}]


@pytest.mark.parametrize("cut", [3, 6, 9, 20, -1])
def test_truncated_or_bent_array_entries_are_decode_errors(cut):
    good = codec.encode_entry(0, [], np.arange(10.0))
    with pytest.raises(codec.DecodeError):
        codec.decode_entry(good[:cut])
    hlen = int.from_bytes(good[3:7], "little")
    bent = good[:3] + (hlen + 10_000).to_bytes(4, "little") + good[7:]   # header length past the end
    with pytest.raises(codec.DecodeError):
        codec.decode_entry(bent)
    import msgpack

    for header in ([0, [], "O", [2]], [0, [], "<f8", [-1]], [0, [], "<f8", [3]], "nonsense"):
        h = msgpack.packb(header)
        blob = codec.ENTRY_ARRAY_MAGIC + len(h).to_bytes(4, "little") + h + np.arange(2.0).tobytes()
        with pytest.raises(codec.DecodeError):
            codec.decode_entry(blob)


@pytest.mark.parametrize("dtype", ["<U2", "<M8[ns]", "|S2", "bogus"])
def test_array_entry_refuses_non_numeric_dtypes_even_once_parsed_elsewhere(dtype):
    """The array-entry framing takes numbers only, also for dtypes the general format already decoded."""
    import msgpack

    if dtype != "bogus":
        codec.decode(codec.encode(np.zeros(1, dtype=dtype)))  # parses (and caches) the dtype
    header = msgpack.packb([0, [], dtype, [1]], use_bin_type=True)
    payload = codec.ENTRY_ARRAY_MAGIC + len(header).to_bytes(4, "little") + header + bytes(8)
    with pytest.raises(codec.DecodeError, match="dtype"):
        codec.decode_entry(payload)


def test_memoize_hashes_content_and_freezes_results():
    calls = []
    cache = CacheManager(policy="lru", max_entries=100, snapshot=False, redis_url=None)

    @memoize(cache=cache, tags=("m",))
    def f(x, scale=1.0):
        calls.append(1)
        return x * scale

    a = np.arange(1000.0)
    r1 = f(a, scale=2.0)
    r2 = f(a.copy(), scale=2.0)  # a different object, same content: a hit
    assert len(calls) == 1 and np.array_equal(r1, r2)
    with pytest.raises(ValueError):
        r2[0] = 5  # cached arrays are read-only
    f(a.astype(np.float32), scale=2.0)  # other dtype: other key
    f(a, scale=3.0)
    f(a.reshape(10, 100), scale=2.0)
    assert len(calls) == 4
    cache.invalidate(tag="m")
    f(a, scale=2.0)
    assert len(calls) == 5
    with pytest.raises(CacheError, match="memoize"):
        f(object())


def test_memoize_concurrent_first_calls_compute_once():
    calls = []
    gate = threading.Event()
    cache = CacheManager(policy="adaptive", max_entries=100, snapshot=False, redis_url=None)

    @memoize(cache=cache)
    def slow(x):
        calls.append(1)
        gate.wait(1.0)
        return x.sum()

    x = np.ones(100)
    threads = [threading.Thread(target=slow, args=(x,)) for _ in range(6)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_warm_and_snapshot_round_trip(tmp_path):
    c = CacheManager(policy="lru", max_entries=100, snapshot=True, namespace="warmtest", redis_url=None)
    assert c.warm(lambda k: np.full(3, k), range(5)) == 5
    assert c.warm(lambda k: np.full(3, k), range(7)) == 2  # only the missing ones
    c.set("t", "text", ttl=0)
    c.close()  # writes the snapshot
    assert c.snapshot_path().is_file()
    d = CacheManager(policy="lru", max_entries=100, snapshot=True, namespace="warmtest", redis_url=None)
    assert np.array_equal(d.get(3), np.full(3, 3)) and d.get("t") == "text"
    assert d.stats()["hits"] == 2


def test_snapshot_skips_values_it_cannot_encode_and_keeps_the_rest():
    c = CacheManager(policy="lru", max_entries=10, snapshot=False, namespace="mixedsnap", redis_url=None)
    c.set("ok", np.arange(3))
    c.set("obj", object())  # fine in the local tier, but has no safe encoding
    c.set("also", "text")
    assert c.save_snapshot() == 2
    d = CacheManager(policy="lru", max_entries=10, snapshot=True, namespace="mixedsnap", redis_url=None)
    assert np.array_equal(d.get("ok"), np.arange(3)) and d.get("also") == "text"
    assert d.get("obj", "absent") == "absent"
    d.close()


def test_corrupt_snapshot_is_ignored():
    c = CacheManager(policy="lru", max_entries=10, snapshot=True, namespace="corrupt", redis_url=None)
    path = c.snapshot_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    import pickle

    path.write_bytes(pickle.dumps({"entries": []}))
    d = CacheManager(policy="lru", max_entries=10, snapshot=True, namespace="corrupt", redis_url=None)
    assert len(d) == 0 and d.stats()["decode_errors"] == 1
