"""The n-gram language model that ranks repairs: load it in milliseconds, score symbols in microseconds.

Why an n-gram model and this file format: ``noodle fix`` answers from a fresh
process in well under half a second and the repair engine scores thousands of
candidate windows per fix, so loading must be a few reads (no NumPy, no
unpickling: the artifact is data, never code) and a lookup must be a handful
of integer operations. The model is interpolated modified Kneser-Ney (Chen &
Goodman), pruned by count and renormalized (SRILM's way), stored in backoff
form: for each kept n-gram its interpolated log-probability and, when it is a
context, its backoff weight. ``P(w | h)`` is the stored value of the longest
kept ``h' w`` plus the backoff weights of the longer contexts that are kept.
It is a real distribution: over the whole vocabulary it sums to 1.

An n-gram's key is its symbol ids packed into one integer (``bits`` bits per id,
the first id highest; ``order * bits <= 64``). Keys of different orders never
collide because id 0 is never a symbol. A table stores a 31-bit fingerprint of
each key, not the key: with ``h = key * MIX``, the key's home slot is ``h % P``
(P the table's prime) and its fingerprint ``(h >> 32) & 0xFFFFFFFF | 1``; the
trainer refuses (and retries with another P) a table in which two keys' probe
runs would meet the same fingerprint, so every kept n-gram is found exactly,
and an absent one is mistaken for a kept one with probability about 2**-31 per
probe (a few in a billion lookups: a slightly wrong score, never a crash).
Log-probabilities are stored as ``uint16`` multiples of -1/2048 (0 to -32) and
backoffs as ``int16`` multiples of 1/1024, so the model is half the size of
float32 at a cost below a thousandth in probability.

The artifact (``data/lm.bin``, little-endian)::

    magic  b"NOODLELM"
    header 10 x uint32: format version, order, bits, vocabulary size V (ids 1..V-1; 0 is unused),
           mid-table slots, top-table slots, unk id, name id, bos id, eos id;
           2 x uint64: the mid and top tables' primes P
    vocabulary: uint32 byte length, then the symbols as UTF-8, one per line, id order from 1
    unigrams: float32 log P(w) and float32 backoff, V each (index = id)
    mid table (orders 2 .. order-1): uint32 fingerprints, uint16 log-probs, int16 backoffs
    top table (the highest order): uint32 fingerprints, uint16 log-probs

Each table is open addressing with linear probing and no wrap-around: the
arrays run past P far enough that every probe run ends on an empty slot
(fingerprint 0). Log-probabilities are natural logarithms.

Example::

    from noodle.fixer.lexer import lex, symbols
    from noodle.fixer.lm import load_default
    lm = load_default()
    ids = lm.ids(symbols(lex("print(len(x))\\n"), lm.vocab))
    print(lm.score_ids(ids), lm.perplexity(ids))
"""

from __future__ import annotations

import functools
import math
import os
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

from noodle.errors import NoodleError

__all__ = [
    "BO_SCALE", "FORMAT_VERSION", "LP_SCALE", "MAGIC", "MIX", "NGramLM", "default_path", "fingerprint",
    "load_default",
]

MAGIC = b"NOODLELM"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<10I2Q")
LP_SCALE = -1.0 / 2048          # stored uint16 * LP_SCALE = log-probability
BO_SCALE = 1.0 / 1024           # stored int16 * BO_SCALE = backoff (log)
#: Keys are scattered over a table by ``key * MIX % P`` (P prime): packed ids are far from random, and
#: ``key % P`` alone piles neighbouring n-grams into long probe runs.
MIX = 0x9E3779B97F4A7C15
# os.path, not pathlib, on the load path: pathlib's import alone costs a fresh process ~4 ms
_DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "lm.bin")


def fingerprint(key: int) -> tuple[int, int]:
    """(h, fingerprint) of a packed key: the home slot is ``h % P`` (what the lookups inline)."""
    h = key * MIX
    return h, ((h >> 32) & 0xFFFFFFFF) | 1


def default_path() -> Path:
    """Where the shipped artifact lives (``noodle/fixer/data/lm.bin``)."""
    from pathlib import Path

    return Path(_DEFAULT_FILE)


def _take(buf: memoryview, pos: int, typecode: str, count: int) -> tuple[array, int]:
    a = array(typecode)
    end = pos + a.itemsize * count
    if end > len(buf):
        raise _corrupt("it is truncated")
    a.frombytes(buf[pos:end])
    if sys.byteorder == "big":
        a.byteswap()
    return a, end


def _corrupt(why: str, path: os.PathLike[str] | str = "") -> NoodleError:
    where = f" {path}" if path else ""
    return NoodleError(
        f"the language model file{where} cannot be read: {why}. Reinstall noodle, or rebuild the model "
        f"with `python -m noodle.fixer.train`."
    )


class NGramLM:
    """A loaded model. Build one with :meth:`load` or :func:`load_default`; the trainer writes them.

    ``vocab`` is the set of identifiers the model kept as themselves (pass it to
    :func:`noodle.fixer.lexer.symbols`); ``symbols`` lists every symbol by id (``symbols[0]`` is a
    placeholder); ``index`` maps a symbol to its id; ``meta`` is the training metadata (``lm.json``,
    read on first use).
    """

    def __init__(self, order: int, bits: int, symbols: list[str], uni_lp: Sequence[float],
                 uni_bo: Sequence[float], mid: tuple[array, array, array, int],
                 top: tuple[array, array, int], meta_path: str | None = None) -> None:
        from noodle.fixer.lexer import BOS, EOS, KEYWORDS, NAME_SYM, fixed_symbols

        if order < 1 or order * bits > 64:
            raise _corrupt(f"order {order} with {bits}-bit ids does not fit 64-bit keys")
        if len(symbols) > 1 << bits or len(uni_lp) != len(symbols) or len(uni_bo) != len(symbols):
            raise _corrupt("its vocabulary and unigram tables disagree in size")
        self.order = order
        self.bits = bits
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols) if i}
        fixed = set(fixed_symbols())
        self.vocab = frozenset(s for s in symbols[1:] if s not in fixed and not s.startswith("<"))
        self._keywords = KEYWORDS
        try:
            self.unk_id = self.index["<unk>"]
            self.name_id = self.index[NAME_SYM]
            self.bos_id = self.index[BOS]
            self.eos_id = self.index[EOS]
        except KeyError as e:
            raise _corrupt(f"its vocabulary lacks {e.args[0]}") from None
        self._uni_lp = list(uni_lp)
        self._uni_bo = list(uni_bo)
        self._mid_fp, self._mid_lp, self._mid_bo, self._mid_mod = mid
        self._top_fp, self._top_lp, self._top_mod = top
        for fps, mod in ((self._mid_fp, self._mid_mod), (self._top_fp, self._top_mod)):
            if mod < 1 or len(fps) <= mod or fps[-1] != 0:
                raise _corrupt("a table does not end with an empty slot past its prime")
        self._meta_path = meta_path
        self._meta: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The training metadata next to the artifact (``lm.json``), or {} when there is none."""
        if self._meta is None:
            self._meta = {}
            if self._meta_path is not None and os.path.isfile(self._meta_path):
                import json

                with open(self._meta_path, encoding="utf-8") as f:
                    self._meta = json.load(f)
        return self._meta

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NGramLM:
        """Read an artifact written by :meth:`to_bytes` (plain reads into arrays; nothing is executed)."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise _corrupt(f"{e.strerror or e}", path) from e
        return cls.from_bytes(data, path, os.path.splitext(path)[0] + ".json")

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "", meta_path: str | None = None) -> NGramLM:
        """The model in ``data`` (the artifact's bytes)."""
        if data[:8] != MAGIC:
            raise _corrupt("it is not a noodle language model (bad magic)", where)
        buf = memoryview(data)
        if len(buf) < 8 + _HEADER.size + 4:
            raise _corrupt("it is truncated", where)
        (version, order, bits, nvocab, mid_slots, top_slots, unk, name, bos, eos, mid_mod,
         top_mod) = _HEADER.unpack_from(buf, 8)
        if version != FORMAT_VERSION:
            raise _corrupt(f"format version {version}, this noodle reads {FORMAT_VERSION}", where)
        pos = 8 + _HEADER.size
        (nbytes,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        try:
            symbols = ["<pad>"] + bytes(buf[pos:pos + nbytes]).decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise _corrupt("its vocabulary is not UTF-8", where) from None
        pos += nbytes
        if len(symbols) != nvocab:
            raise _corrupt(f"{len(symbols)} symbols where the header says {nvocab}", where)
        uni_lp, pos = _take(buf, pos, "f", nvocab)
        uni_bo, pos = _take(buf, pos, "f", nvocab)
        mid_fp, pos = _take(buf, pos, "I", mid_slots)
        mid_lp, pos = _take(buf, pos, "H", mid_slots)
        mid_bo, pos = _take(buf, pos, "h", mid_slots)
        top_fp, pos = _take(buf, pos, "I", top_slots)
        top_lp, pos = _take(buf, pos, "H", top_slots)
        if pos != len(buf):
            raise _corrupt("its sections do not add up to its length", where)
        model = cls(order, bits, symbols, uni_lp.tolist(), uni_bo.tolist(), (mid_fp, mid_lp, mid_bo, mid_mod),
                    (top_fp, top_lp, top_mod), meta_path)
        if (model.unk_id, model.name_id, model.bos_id, model.eos_id) != (unk, name, bos, eos):
            raise _corrupt("its special symbol ids do not match its vocabulary", where)
        return model

    def to_bytes(self) -> bytes:
        """The artifact's bytes (what :meth:`from_bytes` reads back)."""
        def le(a: array) -> bytes:
            if sys.byteorder == "big":
                a = array(a.typecode, a)
                a.byteswap()
            return a.tobytes()

        vocab = "\n".join(self.symbols[1:]).encode("utf-8")
        head = _HEADER.pack(FORMAT_VERSION, self.order, self.bits, len(self.symbols), len(self._mid_fp),
                            len(self._top_fp), self.unk_id, self.name_id, self.bos_id, self.eos_id,
                            self._mid_mod, self._top_mod)
        parts = [MAGIC, head, struct.pack("<I", len(vocab)), vocab,
                 le(array("f", self._uni_lp)), le(array("f", self._uni_bo)),
                 le(self._mid_fp), le(self._mid_lp), le(self._mid_bo), le(self._top_fp), le(self._top_lp)]
        return b"".join(parts)

    # -- scoring -------------------------------------------------------------------------------

    def ids(self, symbols: Sequence[str]) -> list[int]:
        """Symbol ids; an identifier the model did not keep is ``<NAME>``, anything else unknown ``<unk>``."""
        get = self.index.get
        out = []
        for s in symbols:
            i = get(s)
            if i is None:
                i = self.name_id if s.isidentifier() and s not in self._keywords else self.unk_id
            out.append(i)
        return out

    def id_of(self, symbol: str) -> int:
        """One symbol's id (as :meth:`ids`)."""
        i = self.index.get(symbol)
        if i is None:
            return self.name_id if symbol.isidentifier() and symbol not in self._keywords else self.unk_id
        return i

    def logprob(self, context_ids: Sequence[int], sym_id: int) -> float:
        """Natural log of P(sym | the last ``order - 1`` ids of ``context_ids``).

        Longest n-gram first: a hit ends the search (one probe when the whole n-gram is kept, the
        common case), a miss adds the context's backoff and tries one id less of context.
        """
        n = len(context_ids)
        m = self.order - 1
        if n < m:
            m = n
        if m <= 0:
            return self._uni_lp[sym_id]
        bits = self.bits
        mix = MIX
        keys = [0] * (m + 1)
        ckeys = [0] * (m + 1)
        key = sym_id
        ckey = 0
        shift = 0
        for k in range(1, m + 1):
            c = context_ids[n - k]
            ckey |= c << shift
            shift += bits
            key |= c << shift
            keys[k] = key
            ckeys[k] = ckey
        mid_fp, mid_lp, mid_bo, mid_mod = self._mid_fp, self._mid_lp, self._mid_bo, self._mid_mod
        acc = 0.0
        k = m
        if k == self.order - 1:                          # the highest order lives in its own table
            h = key * mix
            s = h % self._top_mod
            fp = ((h >> 32) & 0xFFFFFFFF) | 1
            top_fp = self._top_fp
            while True:
                f = top_fp[s]
                if f == fp:
                    return self._top_lp[s] * LP_SCALE
                if not f:
                    break
                s += 1
            if k == 1:
                acc = self._uni_bo[context_ids[n - 1]]
            else:
                h = ckey * mix
                s = h % mid_mod
                fp = ((h >> 32) & 0xFFFFFFFF) | 1
                while True:
                    f = mid_fp[s]
                    if f == fp:
                        acc = mid_bo[s] * BO_SCALE
                        break
                    if not f:
                        break
                    s += 1
            k -= 1
        while k >= 1:
            h = keys[k] * mix
            s = h % mid_mod
            fp = ((h >> 32) & 0xFFFFFFFF) | 1
            while True:
                f = mid_fp[s]
                if f == fp:
                    return mid_lp[s] * LP_SCALE + acc
                if not f:
                    break
                s += 1
            if k == 1:
                acc += self._uni_bo[context_ids[n - 1]]
            else:
                h = ckeys[k] * mix
                s = h % mid_mod
                fp = ((h >> 32) & 0xFFFFFFFF) | 1
                while True:
                    f = mid_fp[s]
                    if f == fp:
                        acc += mid_bo[s] * BO_SCALE
                        break
                    if not f:
                        break
                    s += 1
            k -= 1
        return self._uni_lp[sym_id] + acc

    def score_ids(self, ids: Sequence[int], start: int = 0, end: int | None = None) -> float:
        """Sum of log P(ids[i] | what precedes it) for i in [start, end); a leading ``<s>`` is given
        (probability 1). Scoring the edited positions and the ``order - 1`` after them compares two
        candidates exactly: the terms further on are the same for both."""
        n = len(ids)
        if end is None or end > n:
            end = n
        if start == 0 and n and ids[0] == self.bos_id:
            start = 1
        m = self.order - 1
        logprob = self.logprob
        total = 0.0
        for i in range(start, end):
            total += logprob(ids[i - m if i > m else 0:i], ids[i])
        return total

    def perplexity(self, ids: Sequence[int]) -> float:
        """exp(-mean log P) over the scored positions of ``ids`` (all but a leading ``<s>``)."""
        n = len(ids) - (1 if ids and ids[0] == self.bos_id else 0)
        if n <= 0:
            return 1.0
        return math.exp(-self.score_ids(ids) / n)

    def __repr__(self) -> str:
        return (f"NGramLM(order={self.order}, vocab={len(self.symbols) - 1}, mid={len(self._mid_fp)} slots, "
                f"top={len(self._top_fp)} slots)")


@functools.lru_cache(maxsize=1)
def load_default() -> NGramLM:
    """The model shipped with noodle (loaded once per process)."""
    path = _DEFAULT_FILE
    if not os.path.isfile(path):
        raise NoodleError(
            f"the syntax fixer's language model is missing ({path}). Reinstall noodle, or build it with "
            f"`python -m noodle.fixer.train`."
        )
    return NGramLM.load(path)
