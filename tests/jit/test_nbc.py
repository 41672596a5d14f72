"""NBC: round trips, and the reader against truncated, corrupted and hostile bytes (fuzzed)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noodle import nbc
from noodle.errors import NBCFormatError
from noodle.nbc.format import _digest
from noodle.passes import optimize
from noodle.trace import trace


def _programs():
    x = np.ones((3, 4))
    return [
        trace(lambda a, b, c, d, e: a * b + c * d - 0.5 * np.exp(-e), (np.ones(8),) * 5),
        optimize(trace(lambda x, w, b: np.maximum(x @ w + b, 0.0).sum(axis=1, keepdims=True),
                       (x, np.ones((4, 2)), np.ones(2)))),
        trace(lambda a: (a.T.reshape(2, 6).astype(np.float32) * np.arange(6, dtype=np.float32)).mean(axis=0),
              (x,)),
    ]


PROGRAMS = _programs()
VALID = [nbc.dumps(p) for p in PROGRAMS]


@pytest.mark.parametrize("prog", PROGRAMS)
def test_round_trip_is_exact_and_deterministic(prog):
    data = nbc.dumps(prog)
    back = nbc.loads(data)
    assert back.nodes == prog.nodes and back.outputs == prog.outputs
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(back.consts, prog.consts, strict=True))
    assert nbc.dumps(back) == data


def test_version_and_magic_are_checked():
    data = bytearray(VALID[0])
    data[0:4] = b"XXXX"
    with pytest.raises(NBCFormatError, match="magic"):
        nbc.loads(bytes(data))
    data = bytearray(VALID[0])
    data[4:6] = struct.pack("<H", 99)
    with pytest.raises(NBCFormatError, match="version"):
        nbc.loads(bytes(data))


def _reseal(body: bytes) -> bytes:
    """A hostile writer recomputes the digest: validation must not rely on it."""
    return body + _digest(body)


def test_hostile_sizes_are_rejected_without_allocating():
    body = VALID[0][:-16]
    # claim 2**32-1 nodes
    hostile = body[:20] + struct.pack("<I", 0xFFFFFFFF) + body[24:]
    with pytest.raises(NBCFormatError):
        nbc.loads(_reseal(hostile))
    # a constant claiming a 2**40-element shape
    prog = trace(lambda a: a * 2.0, (np.ones(2),))
    body = nbc.dumps(prog)[:-16]
    at = 24  # first constant: dtype u8, ndim u8, dims...
    assert body[at + 1] == 0  # 0-d scalar
    huge = body[:at] + struct.pack("<BBQ", body[at], 1, 1 << 40) + body[at + 2:]
    with pytest.raises(NBCFormatError, match="bytes"):
        nbc.loads(_reseal(huge))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data):
    with pytest.raises(NBCFormatError):
        nbc.loads(data)


@settings(max_examples=1500, deadline=None)
@given(which=st.integers(0, len(VALID) - 1), pos=st.integers(0, 10**6), bit=st.integers(0, 7),
       reseal=st.booleans())
def test_bit_flips_are_rejected_or_still_valid(which, pos, bit, reseal):
    body = bytearray(VALID[which][:-16])
    body[pos % len(body)] ^= 1 << bit
    data = _reseal(bytes(body)) if reseal else bytes(body) + VALID[which][-16:]
    try:
        prog = nbc.loads(data)
    except NBCFormatError:
        return
    assert reseal, "a flipped bit under the original digest must be caught"
    nbc.dumps(prog)  # whatever was accepted is a valid, re-encodable program


@settings(max_examples=500, deadline=None)
@given(which=st.integers(0, len(VALID) - 1), cut=st.integers(0, 10**6), reseal=st.booleans())
def test_truncation_is_rejected(which, cut, reseal):
    data = VALID[which]
    body = data[:-16]
    chopped = _reseal(body[:cut % len(body)]) if reseal else data[:cut % len(data)]
    with pytest.raises(NBCFormatError):
        nbc.loads(chopped)


def test_no_pickle_anywhere_in_the_format():
    import inspect

    import noodle.nbc.format as fmt

    source = inspect.getsource(fmt)
    assert "pickle" not in source.replace("No pickle", "") and "eval(" not in source
