"""NBC: round trips, and the reader against truncated, corrupted and hostile bytes (fuzzed)."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import noodle as nd
from noodle import config, nbc
from noodle.errors import NBCFormatError, NoodleError
from noodle.ir.ops import BY_CODE as _BY_CODE
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


def test_program_returning_one_value_twice_round_trips():
    """More outputs than nodes is valid: a program may return the same value several times."""
    prog = optimize(trace(lambda a: (a.astype(np.float32),) * 3, (np.ones(4),)))
    assert len(prog.outputs) > len(prog.nodes)
    back = nbc.loads(nbc.dumps(prog))
    assert back.outputs == prog.outputs and back.nodes == prog.nodes


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
    _run_zero_filled(data, prog)


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


_OPCODES = sorted(_BY_CODE) + [0, 3, 999]
_ATTR_NAMES = ["index", "axis", "keepdims", "shape", "axes", "dtype", "group", "zz"]


@st.composite
def _attr(draw):
    key = draw(st.sampled_from(_ATTR_NAMES)).encode()
    tag = draw(st.integers(0, 5))
    if tag == 0:
        val = b""
    elif tag == 1:
        val = struct.pack("<B", draw(st.integers(0, 2)))
    elif tag == 2:
        val = struct.pack("<q", draw(st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 8)))
    elif tag == 3:
        val = _pstr(draw(st.sampled_from(["float64", "int64", "bool", "complex128", "", "x" * 40])))
    elif tag == 4:
        items = draw(st.lists(st.integers(-3, 8) | st.integers(-(2**62), 2**62), max_size=6))
        val = struct.pack(f"<B{len(items)}q", len(items), *items)
    else:
        val = b"\xff"
    return struct.pack("<B", len(key)) + key + struct.pack("<B", tag) + val


def _pstr(s: str) -> bytes:
    return struct.pack("<B", len(s)) + s.encode()


@st.composite
def _structured_nbc(draw):
    """Well-formed framing with hostile field values: reaches the deep validation paths."""
    n_nodes = draw(st.integers(1, 6))
    n_inputs = draw(st.integers(0, 2))
    consts = b""
    n_consts = draw(st.integers(0, 2))
    for _ in range(n_consts):
        dims = draw(st.lists(st.integers(0, 3) | st.integers(0, 2**41), max_size=3))
        code = draw(st.integers(0, 12))
        exact = int(np.prod(dims, dtype=object)) * (8 if code > 10 or code in (4, 8, 10) else 4)
        blob = draw(st.binary(max_size=24) | st.binary(min_size=exact, max_size=exact)) if exact <= 64 else b""
        consts += struct.pack(f"<BB{len(dims)}Q", code, len(dims), *dims) + blob
    nodes = b""
    for i in range(n_nodes):
        dims = draw(st.lists(st.integers(0, 5) | st.integers(0, 2**41), max_size=3))
        opcode = 1 if i < n_inputs else draw(st.sampled_from(_OPCODES))
        if i < n_inputs:
            attrs_in = [struct.pack("<B", 5) + b"index" + struct.pack("<Bq", 2, i)]
        arity = max(_BY_CODE[opcode].arity, 1) if opcode in _BY_CODE else 1  # variadic: -1
        earlier = st.integers(0, max(i - 1, 0))
        args = draw(st.lists(earlier, min_size=arity, max_size=arity) | st.lists(st.integers(0, i + 1), max_size=3))
        attrs = attrs_in if i < n_inputs else draw(st.lists(_attr(), max_size=3))
        nodes += struct.pack(f"<HBB{len(dims)}Q", opcode, draw(st.integers(0, 12)), len(dims), *dims)
        nodes += struct.pack(f"<B{len(args)}I", len(args), *args) + struct.pack("<B", len(attrs)) + b"".join(attrs)
    outs = draw(st.lists(st.integers(0, n_nodes), min_size=0, max_size=2))
    body = struct.pack("<4sHHIIII", b"NBC1", 1, 0, n_inputs, n_consts, n_nodes, len(outs))
    body += consts + nodes + struct.pack(f"<{len(outs)}I", *outs) + struct.pack("<B", draw(st.integers(0, 2)))
    return _reseal(body)


@settings(max_examples=800, deadline=None)
@given(_structured_nbc())
def test_structured_hostile_programs_are_rejected_cleanly(data):
    try:
        prog = nbc.loads(data)
    except NBCFormatError:
        return
    assert nbc.loads(nbc.dumps(prog)).nodes == prog.nodes
    _run_zero_filled(data, prog)


_FUZZ_LIMITS = {"NOODLE_EXEC_MAX_BYTES": str(64 * 2**20), "NOODLE_EXEC_MAX_ELEMENTS": str(10**7)}


def _run_zero_filled(data: bytes, prog) -> None:
    """Whatever ``loads`` accepts runs under (small) limits on zero-filled inputs of its declared
    types, or fails with a noodle error: never a bare NumPy/Python exception, never a hang."""
    types = prog.input_types()
    if sum(int(np.prod(s, dtype=object)) * np.dtype(d).itemsize for s, d in types) > 2**20:
        return  # inputs are the caller's memory; a fuzzer's 2**41-element input is not ours to make
    config.reload({**os.environ, **_FUZZ_LIMITS})
    try:
        nd.Executor(backend="interpret").execute(data, *(np.zeros(s, d) for s, d in types), use_jit=False)
    except NoodleError:
        pass
    finally:
        config.reload()
