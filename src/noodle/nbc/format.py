"""NBC: the versioned binary form of a NIR program, and its hostile-input-proof reader.

Layout (little endian)::

    magic   b"NBC1"                       4 bytes
    version u16, flags u16 (0)
    n_inputs u32, n_consts u32, n_nodes u32, n_outputs u32
    constants  n_consts x { dtype u8, ndim u8, dims u64*ndim, raw bytes (C order) }
    nodes      n_nodes  x { opcode u16, dtype u8, ndim u8, dims u64*ndim,
                            nargs u8, args u32*nargs, nattrs u8, attrs }
    outputs    u32 * n_outputs
    meta       u8 (bit 0: the function returned a single array, not a tuple)
    digest     16 bytes: blake2b-128 of everything before it

An attribute is ``key`` (u8 length + ASCII) and a tagged value: 0 None,
1 bool (u8), 2 int (i64), 3 str (u8 length + ASCII), 4 tuple of ints (u8 count
+ i64 each), 5 a sub-program (a loop's cond or body: u32 length + a complete
NBC program, read by the same strict reader; nesting is bounded by the
verifier). Opcodes are the op table's ``code`` column; a variadic op
(concatenate, while_loop) takes 1 to 255 operands.

Why so strict a reader: NBC files travel (kernel caches, other processes), so
``loads`` treats every byte as hostile. Every count and size is checked
against the bytes that remain *before* anything is allocated, every opcode,
operand, dtype and attribute is validated, and the result goes through the
NIR verifier (which re-derives every shape and dtype). No pickle, no eval.
The digest catches accidental corruption; it is not a signature.

Example::

    >>> import numpy as np
    >>> from noodle.trace import trace
    >>> prog = trace(lambda a: a * 2.0, (np.ones(3),))
    >>> data = dumps(prog)
    >>> loads(data).nodes == prog.nodes
    True
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np

from noodle.errors import IRVerifyError, NBCFormatError, NBCResourceError
from noodle.ir.graph import DTYPES, MAX_NDIM, Node, Program, SubProgram
from noodle.ir.ops import BY_CODE, OPS, VARIADIC
from noodle.ir.verify import MAX_DIM, MAX_ELEMENTS, MAX_LOOP_DEPTH, verify  # limits checked early

MAGIC = b"NBC1"
VERSION = 1
DIGEST_BYTES = 16
MAX_NODES = 1_000_000   # the format's hard cap; NOODLE_NBC_MAX_NODES may only lower it
MAX_CONST_BYTES = 1 << 30
MAX_ATTR_NAME = 32
_DTYPE_CODE = {name: i for i, name in enumerate(DTYPES)}
_HEADER = struct.Struct("<4sHHIIII")


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def dumps(program: Program) -> bytes:
    """Encode ``program`` (verified first) as NBC bytes; deterministic for equal programs."""
    verify(program)
    out = bytearray(_HEADER.pack(MAGIC, VERSION, 0, program.n_inputs, len(program.consts),
                                 len(program.nodes), len(program.outputs)))
    for c in program.consts:
        out += struct.pack("<BB", _DTYPE_CODE[c.dtype.name], c.ndim)
        out += struct.pack(f"<{c.ndim}Q", *c.shape)
        out += np.ascontiguousarray(c).astype(c.dtype.newbyteorder("<"), copy=False).tobytes()
    for node in program.nodes:
        out += struct.pack("<HBB", OPS[node.op].code, _DTYPE_CODE[node.dtype], len(node.shape))
        out += struct.pack(f"<{len(node.shape)}Q", *node.shape)
        out += struct.pack(f"<B{len(node.args)}I", len(node.args), *node.args)
        out += struct.pack("<B", len(node.attrs))
        for key, value in node.attrs:
            out += _pack_str(key)
            out += _pack_value(value)
    out += struct.pack(f"<{len(program.outputs)}I", *program.outputs)
    out += struct.pack("<B", 1 if program.meta.get("single_output", True) else 0)
    out += _digest(bytes(out))
    return bytes(out)


def _pack_str(s: str) -> bytes:
    raw = s.encode("ascii")
    return struct.pack("<B", len(raw)) + raw


def _pack_value(v: Any) -> bytes:
    if v is None:
        return b"\x00"
    if isinstance(v, bool):
        return struct.pack("<BB", 1, int(v))
    if isinstance(v, int):
        return struct.pack("<Bq", 2, v)
    if isinstance(v, str):
        return b"\x03" + _pack_str(v)
    if isinstance(v, tuple):
        return struct.pack(f"<BB{len(v)}q", 4, len(v), *v)
    if isinstance(v, SubProgram):
        raw = dumps(v.program)
        return struct.pack("<BI", 5, len(raw)) + raw
    raise NBCFormatError(f"attribute value {v!r} cannot be encoded")


_STRUCTS: dict[str, struct.Struct] = {}


def _struct(fmt: str) -> struct.Struct:
    st = _STRUCTS.get(fmt)
    if st is None:
        st = _STRUCTS[fmt] = struct.Struct(fmt)
    return st


class _Reader:
    """Bounds-checked cursor: every read names what was being read when bytes ran out.

    Reads unpack in place (``unpack_from``, compiled formats): a program may hold up to
    ``NOODLE_NBC_MAX_NODES`` instructions, so the per-read cost is what bounds ``loads``.
    """

    def __init__(self, data: bytes, depth: int = 0) -> None:
        self.data = data
        self.size = len(data)
        self.pos = 0
        self.depth = depth   # how many loop sub-programs this one is nested in

    def remaining(self) -> int:
        return self.size - self.pos

    def _truncated(self, n: int, what: str) -> NBCFormatError:
        return NBCFormatError(f"NBC truncated: {what} needs {n} bytes at offset {self.pos}, "
                              f"{self.remaining()} remain")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.remaining():
            raise self._truncated(n, what)
        view = memoryview(self.data)[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        st = _struct(fmt)
        end = self.pos + st.size
        if end > self.size:
            raise self._truncated(st.size, what)
        out = st.unpack_from(self.data, self.pos)
        self.pos = end
        return out

    def string(self, what: str) -> str:
        (n,) = self.unpack("<B", what)
        raw = bytes(self.take(n, what))
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise NBCFormatError(f"{what} is not ASCII") from None
        return text

    def dtype(self, what: str) -> str:
        (code,) = self.unpack("<B", what)
        if code >= len(DTYPES):
            raise NBCFormatError(f"{what}: unknown dtype code {code}")
        return DTYPES[code]

    def shape(self, what: str, ndim: int | None = None) -> tuple[int, ...]:
        """Dimensions (the count read first unless the caller already read it), span-checked."""
        if ndim is None:
            (ndim,) = self.unpack("<B", what)
        if ndim > MAX_NDIM:
            raise NBCFormatError(f"{what}: {ndim} dimensions (at most {MAX_NDIM})")
        dims = self.unpack(f"<{ndim}Q", what)
        span = 1
        for d in dims:
            if d > MAX_DIM:
                raise NBCFormatError(f"{what}: dimension {d} is too large")
            span *= max(d, 1)
        if span > MAX_ELEMENTS:   # NumPy refuses such shapes even when one dimension is 0
            raise NBCFormatError(f"{what}: shape {dims} spans more than {MAX_ELEMENTS} elements")
        return dims

    def value(self, what: str) -> Any:
        (tag,) = self.unpack("<B", what)
        if tag == 0:
            return None
        if tag == 1:
            (b,) = self.unpack("<B", what)
            if b > 1:
                raise NBCFormatError(f"{what}: bool byte {b}")
            return bool(b)
        if tag == 2:
            return int(self.unpack("<q", what)[0])
        if tag == 3:
            return self.string(what)
        if tag == 4:
            (n,) = self.unpack("<B", what)
            if n > MAX_NDIM:
                raise NBCFormatError(f"{what}: tuple of {n} entries (at most {MAX_NDIM})")
            return tuple(int(x) for x in self.unpack(f"<{n}q", what))
        if tag == 5:
            (n,) = self.unpack("<I", what)
            if n > self.remaining():
                raise NBCFormatError(f"{what}: sub-program of {n} bytes, only {self.remaining()} remain")
            if self.depth >= MAX_LOOP_DEPTH:
                raise NBCFormatError(f"{what}: loops nested more than {MAX_LOOP_DEPTH} deep")
            return SubProgram(_loads(bytes(self.take(n, what)), verified=False, depth=self.depth + 1))
        raise NBCFormatError(f"{what}: unknown attribute tag {tag}")


def _check_node_count(n_nodes: int) -> int:
    """Refuse more instructions than ``NOODLE_NBC_MAX_NODES`` before decoding any; returns the limit.

    Why: decoding and verifying cost time per instruction (about 4 s per million here), so the
    count a hostile header declares bounds how long ``loads`` can be kept busy.
    """
    from noodle.config import get_settings  # noqa: PLC0415  (read at load time, tests change it)

    limit = min(int(get_settings().nbc_max_nodes), MAX_NODES)
    if n_nodes > limit:
        raise NBCResourceError(
            f"NBC program has {n_nodes:,} instructions, more than the {limit:,} allowed "
            f"(NOODLE_NBC_MAX_NODES={limit}); it is refused before decoding. If you trust it, raise "
            f"NOODLE_NBC_MAX_NODES (at most {MAX_NODES:,}).")
    return limit


def loads(data: bytes) -> Program:
    """Decode and fully validate NBC bytes.

    Raises :class:`NBCFormatError` on anything malformed, and :class:`NBCResourceError` when a
    well-formed program has more instructions than ``NOODLE_NBC_MAX_NODES``.
    """
    return _loads(data, verified=True)


def _loads(data: bytes, verified: bool, depth: int = 0) -> Program:
    """:func:`loads`; a loop's sub-program is decoded with ``verified=False`` (the outer program's
    verification checks it, with the nesting bound, once the whole program is read)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise NBCFormatError(f"NBC must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size + 1 + DIGEST_BYTES:
        raise NBCFormatError(f"NBC too short ({len(data)} bytes); not an NBC program")
    body, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    r = _Reader(body, depth)
    magic, version, flags, n_inputs, n_consts, n_nodes, n_outputs = r.unpack(_HEADER.format, "header")
    if magic != MAGIC:
        raise NBCFormatError(f"bad magic {bytes(magic)!r}: not an NBC program (expected {MAGIC!r})")
    if version != VERSION:
        raise NBCFormatError(f"NBC version {version} is not supported (this noodle reads {VERSION}); "
                             "re-create the bytecode with this version")
    if flags != 0:
        raise NBCFormatError(f"unknown NBC flags {flags:#x}")
    if not hmac_equal(_digest(body), digest):
        raise NBCFormatError("NBC digest mismatch: the bytes are corrupted")
    # each constant takes >= 2 bytes, each node >= 6, each output 4: bound counts by what remains
    if n_consts * 2 > r.remaining() or n_nodes * 6 > r.remaining() or n_nodes > MAX_NODES:
        raise NBCFormatError(f"NBC declares {n_consts} constants and {n_nodes} nodes, more than "
                             f"{r.remaining()} bytes can hold")
    max_nodes = _check_node_count(n_nodes)
    # a program may return one value several times, so outputs are bounded by the bytes and the
    # node limit, not by the number of nodes
    if n_outputs * 4 > r.remaining() or n_outputs > max_nodes or n_inputs > n_nodes:
        raise NBCFormatError(f"NBC declares {n_outputs} outputs / {n_inputs} inputs for {n_nodes} nodes")
    consts: list[np.ndarray] = []
    total = 0
    for i in range(n_consts):
        what = f"constant {i}"
        dtype = r.dtype(what)
        shape = r.shape(what)
        count = 1
        for d in shape:
            count *= d
        nbytes = count * np.dtype(dtype).itemsize
        total += nbytes
        if nbytes > r.remaining() or total > MAX_CONST_BYTES:
            raise NBCFormatError(f"{what} declares {nbytes} bytes, only {r.remaining()} remain")
        raw = r.take(nbytes, what)
        consts.append(np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
                      .reshape(shape).copy())
    nodes = _read_nodes(r, n_nodes)
    outputs = tuple(int(o) for o in r.unpack(f"<{n_outputs}I", "outputs"))
    (meta,) = r.unpack("<B", "meta")
    if meta > 1:
        raise NBCFormatError(f"unknown meta bits {meta:#x}")
    if r.remaining():
        raise NBCFormatError(f"{r.remaining()} unexpected trailing bytes after the program")
    program = Program(nodes, consts, outputs, n_inputs, {"single_output": bool(meta & 1)})
    if not verified:
        return program
    try:
        verify(program)
    except IRVerifyError as exc:
        raise NBCFormatError(f"NBC program is invalid: {exc}") from None
    return program


def _read_nodes(r: _Reader, n_nodes: int) -> list[Node]:
    """Decode ``n_nodes`` instructions (opcode, type, SSA operands, attributes), each validated.

    The cyclic garbage collector is paused meanwhile: a million new tuples would otherwise
    trigger hundreds of full collections, which made decoding superlinear.
    """
    import gc

    paused = gc.isenabled()
    gc.disable()
    try:
        return [_read_node(r, i) for i in range(n_nodes)]
    finally:
        if paused:
            gc.enable()


def _read_node(r: _Reader, i: int) -> Node:
    what = f"node {i}"
    code, dtype_code, ndim = r.unpack("<HBB", what)
    row = BY_CODE.get(code)
    if row is None:
        raise NBCFormatError(f"{what}: unknown opcode {code}")
    if dtype_code >= len(DTYPES):
        raise NBCFormatError(f"{what}: unknown dtype code {dtype_code}")
    shape = r.shape(what, ndim)
    (nargs,) = r.unpack("<B", what)
    if nargs != row.arity and not (row.arity == VARIADIC and nargs >= 1):
        raise NBCFormatError(f"{what}: {row.name} takes {row.arity} operands, NBC gives {nargs}")
    args = r.unpack(f"<{nargs}I", what) if nargs else ()
    for a in args:
        if a >= i:
            raise NBCFormatError(f"{what}: operand %{a} is not an earlier value")
    (nattrs,) = r.unpack("<B", what)
    if nattrs > 4:
        raise NBCFormatError(f"{what}: {nattrs} attributes (at most 4)")
    attrs = []
    for _ in range(nattrs):
        key = r.string(f"{what} attribute name")
        if not key or len(key) > MAX_ATTR_NAME:
            raise NBCFormatError(f"{what}: bad attribute name {key!r}")
        attrs.append((key, r.value(f"{what} attribute {key}")))
    return Node(row.name, args, shape, DTYPES[dtype_code], tuple(attrs))


def hmac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (the digest is not secret, but there is no reason to leak)."""
    import hmac

    return hmac.compare_digest(a, b)


def program_hash(data: bytes) -> str:
    """Stable content hash of NBC bytes (the compiled-program cache key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


__all__ = ["MAGIC", "VERSION", "dumps", "loads", "program_hash"]
