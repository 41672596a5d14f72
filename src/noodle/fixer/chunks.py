"""Large files: check a file piece by piece, repair only the pieces with errors, reassemble byte for byte.

Why pieces: compiling a 10 MB module in one call builds an AST of hundreds of MB (and CPython
takes minutes on some), and the repair engine's search is sized for a function, not a file.
A module is a sequence of top-level statements, and a concatenation of pieces that each
compile on their own, cut where a line starts at column 0 (never before ``elif``, ``else``,
``except``, ``finally`` or ``case``, never after a decorator), compiles as a whole. So:

1. **Cut cheaply.** Candidate cuts are lines that start at column 0 with code, found by one
   C-speed regular-expression search every ~16 KB (:data:`CHUNK_BYTES`), preferring a
   ``def``/``class``/``import``/decorator line after a blank line.
2. **Compile each piece** (``compile`` on the piece's bytes, plus the parser at
   ``target_version`` when one is given: what :func:`noodle.fixer.fix` calls "compiles"). A
   valid file is done here, read once and never written.
3. **Where a piece fails, scan it exactly**: a line scanner that tracks bracket depth, strings
   (triple-quoted ones across lines) and backslash continuations finds the real statement
   starts (a decorator joins what it decorates; ``elif``/``else``/``except``/``finally``/``case``
   join the statement before), running past the cheap cut when the cut was inside a string or
   brackets. An unclosed bracket is closed by force at the next column-0 line that can only be
   a statement (``def``, ``class``, ``import``, ``return``...), so one missing ``)`` does not
   swallow the rest of the file.
4. **Compile statement by statement** to find the failing ones; consecutive failing statements
   form one repair unit (a statement that lost its indentation takes the statement before it
   along, which is where the line belongs). A large failing statement is cut again at its
   column-0 ``def``/``class``/decorator lines, so an unterminated string that swallowed the
   code after it is repaired where it starts.
5. **Repair each unit** with :func:`noodle.fixer.fix` on its own text, then write the file as
   the original bytes with only those units replaced (encoding, BOM and line endings kept by
   :class:`noodle.fixer.files.SourceFile`).

What cannot be seen piece by piece: errors that exist only across statements, such as a
``from __future__`` import after other code when each piece compiles on its own. Such a file
is reported valid by the large-file path.

Example::

    from noodle.fixer.chunks import fix_large
    from noodle.fixer.files import FixerFileError, SourceFile
    out, result = fix_large(SourceFile.read("big.py"))
    print(result.kind, len(result.edits), out is SourceFile.read("big.py").data or "changed")
"""

from __future__ import annotations

import ast
import bisect
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from noodle.fixer.files import FixerFileError, SourceFile
from noodle.fixer.quiet import probe_warnings_silenced
from noodle.fixer.result import Candidate, Edit, FixResult, SyntaxErrorInfo

__all__ = ["LARGE_FILE_BYTES", "Unit", "check_large", "fix_large", "is_large", "statement_starts"]

#: files above this size take the piece-by-piece path (the engine gets the whole text below it)
LARGE_FILE_BYTES = 10 * 2**20
#: bytes per compile check: small pieces compile faster per byte (and bound the parser's memory)
CHUNK_BYTES = 16 * 1024
#: a failing statement larger than this is cut again at its column-0 def/class/decorator lines
SUBSPLIT_BYTES = 4 * 1024
#: a repair unit larger than this is reported, not handed to the engine (its search is sized for blocks)
MAX_UNIT_BYTES = 512 * 1024

# a line starting at column 0 with code (not a comment, a closer, or a clause of the statement before)
_CANDIDATE = re.compile(rb"(?:\r\n|\r|\n)(?![ \t\f\r\n#)\]}]|(?:elif|else|except|finally|case)\b)")
# the same after a blank line, on a line that is surely a statement start
_STRONG = re.compile(rb"(?:\r\n|\r|\n)[ \t\f]*(?:\r\n|\r|\n)(?=(?:def|class|async[ \t]+def|import|from)[ \t]|@)")
# column-0 lines a failing statement is cut again at
_SUBCUT = re.compile(rb"(?:\r\n|\r|\n)(?=(?:def|class|async[ \t]+def)[ \t]|@\w|(?:import|from)[ \t])")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_CODE_EVENT = re.compile(r"""[#'"()\[\]{}\\]""")
_STRING_END = {q: re.compile(r"\\.|\\$|" + re.escape(q)) for q in ("'", '"', "'''", '"""')}
_CONTINUES = re.compile(r"(?:elif|else|except|finally|case)\b")
# column-0 words that cannot occur inside brackets: an open bracket before them was never closed
_STATEMENT_ONLY = re.compile(
    r"(?:def|class|import|return|pass|raise|del|try|while|with|global|nonlocal|assert|break|continue"
    r"|elif|except|finally)\b|async\s+def\b|from\s+[\w.]+\s+import\b")
_DECORATED = re.compile(r"(?:def|class|async\s+def)\b")
_BYTES_SAFE = frozenset({"utf-8", "utf-8-sig", "ascii"})

FixFn = Callable[..., FixResult]


def is_large(size: int) -> bool:
    """Whether a file of ``size`` bytes takes the piece-by-piece path."""
    return size > LARGE_FILE_BYTES


def _count_lines(data: bytes, a: int, b: int) -> int:
    """Line endings in data[a:b] as CPython counts them (``\\r\\n``, ``\\r`` and ``\\n`` are one each)."""
    return data.count(b"\n", a, b) + data.count(b"\r", a, b) - data.count(b"\r\n", a, b)


class _Scanner:
    """Where a line leaves the tokenizer: bracket depth, an open string's quote, a backslash continuation."""

    __slots__ = ("depth", "quote", "cont")

    def __init__(self) -> None:
        self.depth = 0
        self.quote: str | None = None
        self.cont = False

    def clean(self) -> bool:
        """True between statements: no open bracket, string or continuation."""
        return self.depth == 0 and self.quote is None and not self.cont

    def feed(self, s: str) -> None:
        """Advance over one physical line (without its line ending)."""
        i, n = 0, len(s)
        self.cont = False
        while i < n:
            q = self.quote
            if q is not None:
                pat = _STRING_END[q]
                while True:
                    m = pat.search(s, i)
                    if m is None:
                        if len(q) == 1:      # a one-quote string ends with its line (the tokenizer's error)
                            self.quote = None
                        return
                    tok = m.group()
                    if tok == q:
                        self.quote = None
                        i = m.end()
                        break
                    if tok == "\\":          # backslash at the end of the line: the string goes on
                        return
                    i = m.end()
                continue
            m = _CODE_EVENT.search(s, i)
            if m is None:
                return
            c = m.group()
            i = m.end()
            if c == "#":
                return
            if c in "([{":
                self.depth += 1
            elif c in ")]}":
                if self.depth:
                    self.depth -= 1
            elif c == "\\":
                if i >= n:
                    self.cont = True
                    return
                i += 1
            elif s.startswith(c * 3, i - 1):
                self.quote = c * 3
                i += 2
            else:
                self.quote = c


def _decoder(encoding: str) -> Callable[[bytes], str]:
    enc = "utf-8" if encoding == "utf-8-sig" else encoding
    return lambda b: b.decode(enc, "replace")


def statement_starts(data: bytes, encoding: str = "utf-8", start: int = 0, stop: int | None = None,
                     until: int | None = None) -> tuple[list[int], int]:
    """Byte offsets of the top-level statements from ``start`` (itself a statement start), and where the scan ended.

    A statement starts at a column-0 line of code met with no bracket, string or
    continuation open, unless it continues the statement before (``elif``, ``else``,
    ``except``, ``finally``, ``case``) or follows a decorator. The scan stops at the first
    statement start at or after ``until`` (that offset is returned, not listed), else at
    ``stop`` (default: the end of the data).
    """
    stop = len(data) if stop is None else stop
    decode = _decoder(encoding)
    scan = _Scanner()
    starts = [start]
    decorated = False
    decorators: int | None = None   # inside an unclosed bracket: where a run of column-0 '@' lines began
    first = True
    for m in _LINE.finditer(data, start, stop):
        o = m.start()
        raw = m.group()
        text = decode(raw.rstrip(b"\r\n"))
        if first:
            first = False
            decorated = text.lstrip("\f").startswith("@")
        else:
            head = text.lstrip("\f")
            is_code = bool(head) and head[0] not in " \t#"
            at = -1
            if scan.clean():
                if is_code:
                    if not decorated and not _CONTINUES.match(head):
                        at = o
                    decorated = head.startswith("@")
            elif scan.quote is None and scan.depth and is_code:
                if head.startswith("@"):             # a decorator, or a matrix product going on
                    decorators = o if decorators is None else decorators
                elif _STATEMENT_ONLY.match(head):
                    scan.depth, scan.cont = 0, False     # the bracket before was never closed
                    if not _CONTINUES.match(head):
                        at = decorators if decorators is not None and _DECORATED.match(head) else o
                    decorated = False
                    decorators = None
                else:
                    decorators = None
            if at >= 0:
                decorators = None
                if until is not None and at >= until:
                    return starts, at
                starts.append(at)
        scan.feed(text)
    return starts, stop


class _Checker:
    """``compile`` on pieces of one file, the way :func:`noodle.fixer.fix` decides "it compiles"."""

    def __init__(self, encoding: str, filename: str, target_version: tuple[int, int] | None) -> None:
        self.encoding = encoding
        self.filename = filename
        self.feature = int(target_version[1]) if target_version is not None else -1
        self.compiled_bytes = 0

    def error(self, piece: bytes | memoryview, at_start: bool) -> SyntaxErrorInfo | None:
        """CPython's first error in the piece (lines relative to it), or None when it compiles."""
        src: bytes | str = bytes(piece)
        self.compiled_bytes += len(src)
        if self.encoding not in _BYTES_SAFE or (not at_start and b"coding" in src[:400]):
            enc = self.encoding if at_start or self.encoding != "utf-8-sig" else "utf-8"
            src = src.decode(enc, "replace")      # a piece has no cookie of its own (or a stray one)
        with probe_warnings_silenced():
            try:
                if self.feature >= 0:
                    compile(src, self.filename, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True,
                            _feature_version=self.feature)
                compile(src, self.filename, "exec", dont_inherit=True)
            except SyntaxError as e:
                return SyntaxErrorInfo(str(e.msg), int(e.lineno or 1), max(0, int(e.offset or 1) - 1),
                                       type(e).__name__)
            except (ValueError, RecursionError, MemoryError) as e:   # NUL bytes, absurd nesting
                return SyntaxErrorInfo(f"{type(e).__name__}: {e}", 1, 0, type(e).__name__)
        return None


def _outside_strings(data: bytes, pos: int, cut: int) -> bool:
    """Whether ``cut`` looks outside any triple-quoted string, ``pos`` being outside: an even count of each
    kind of triple quote between them (quotes in comments can fool it; the compile check catches that)."""
    return data.count(b'"""', pos, cut) % 2 == 0 and data.count(b"'''", pos, cut) % 2 == 0


def _next_cut(data: bytes, pos: int, n: int) -> int:
    """The next cheap cut at least CHUNK_BYTES after ``pos`` (``n`` when none)."""
    target = pos + CHUNK_BYTES
    if target >= n:
        return n
    end = min(n, target + 4 * CHUNK_BYTES)
    for m in _STRONG.finditer(data, target, end):
        if _outside_strings(data, pos, m.end()):
            return m.end()
    i = target
    fallback = -1
    while True:
        m = _CANDIDATE.search(data, i)
        if m is None or m.end() >= n:
            return n if fallback < 0 else fallback
        ls = max(data.rfind(b"\n", pos, m.start()), data.rfind(b"\r", pos, m.start())) + 1
        prev = data[ls:m.start()]
        if not prev.startswith(b"@") and not prev.endswith(b"\\"):
            if _outside_strings(data, pos, m.end()):
                return m.end()
            if fallback < 0:
                fallback = m.end()
            if m.end() > end:
                return fallback
        i = m.end()


@dataclass(frozen=True)
class Unit:
    """A run of failing top-level statements: bytes ``start:stop`` of the file, first ``line`` (1-based),
    and CPython's error for it (lines relative to the unit)."""

    start: int
    stop: int
    line: int
    error: SyntaxErrorInfo


class _Lines:
    """Line numbers of byte offsets, counted forward only (each byte counted once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.line = 1

    def at(self, offset: int) -> int:
        if offset < self.pos:   # rare (a unit widened backwards): count from the start again
            self.pos, self.line = 0, 1
        self.line += _count_lines(self.data, self.pos, offset)
        self.pos = offset
        return self.line


def check_large(sf: SourceFile, filename: str = "<string>",
                target_version: tuple[int, int] | None = None) -> Iterator[Unit]:
    """The repair units of a file, in order (none for a valid file); never compiles more than a piece at once."""
    data = sf.data
    n = len(data)
    checker = _Checker(sf.encoding, filename, target_version)
    view = memoryview(data)
    lines = _Lines(data)
    pos = 0
    while pos < n:
        cut = _next_cut(data, pos, n)
        if checker.error(view[pos:cut], pos == 0) is None:
            pos = cut
            continue
        starts, end = statement_starts(data, sf.encoding, pos, n, until=cut)
        whole_failed = end == cut
        if not whole_failed and end - pos <= 4 * CHUNK_BYTES:
            if checker.error(view[pos:end], pos == 0) is None:   # the cheap cut was inside a string or brackets
                pos = end
                continue
            whole_failed = True
        for a, b, err in _failing(starts + [end], checker, data, view, whole_failed):
            yield Unit(a, b, lines.at(a), err)
        pos = end


def _failing(bounds: list[int], checker: _Checker, data: bytes, view: memoryview,
             whole_failed: bool) -> list[tuple[int, int, SyntaxErrorInfo]]:
    """The failing statements among consecutive ``bounds`` as units (byte range and error), runs merged."""
    bad: list[tuple[int, int]] = []
    i = 0
    last = len(bounds) - 1
    while i < last:
        j = i + 1          # a group of statements up to ~2 KB, compiled at once
        while j < last and bounds[j] - bounds[i] < 2048:
            j += 1
        if checker.error(view[bounds[i]:bounds[j]], bounds[i] == 0) is not None:
            if j == i + 1:
                bad.extend(_subsplit(bounds[i], bounds[j], checker, data, view))
            else:
                for s in range(i, j):
                    if checker.error(view[bounds[s]:bounds[s + 1]], bounds[s] == 0) is not None:
                        bad.extend(_subsplit(bounds[s], bounds[s + 1], checker, data, view))
        i = j
    if not bad:
        if not whole_failed:
            return []
        bad = [(bounds[0], bounds[-1])]   # each statement compiles alone: the error is between them
    out: list[tuple[int, int, SyntaxErrorInfo]] = []
    for a, b in _merge(bad, bounds, checker, view):
        err = checker.error(view[a:b], a == 0)
        if err is not None:
            out.append((a, b, err))
    return out


def _subsplit(a: int, b: int, checker: _Checker, data: bytes, view: memoryview) -> list[tuple[int, int]]:
    """A failing statement, or, when it is large, its failing parts cut at column-0 def/class/decorator lines."""
    if b - a <= SUBSPLIT_BYTES:
        return [(a, b)]
    cuts = [a] + [m.end() for m in _SUBCUT.finditer(data, a, b) if m.end() < b] + [b]
    if len(cuts) == 2:
        return [(a, b)]
    out = [(x, y) for x, y in zip(cuts, cuts[1:]) if checker.error(view[x:y], x == 0) is not None]
    return out or [(a, b)]


def _merge(bad: list[tuple[int, int]], bounds: list[int], checker: _Checker,
           view: memoryview) -> list[tuple[int, int]]:
    """Adjacent failing ranges joined into units; two that compile together were one statement cut in two
    (both fine); an 'unexpected indent' takes the statement before it along (where the line belongs)."""
    units: list[tuple[int, int]] = []
    for a, b in bad:
        if units and units[-1][1] == a:
            pa = units[-1][0]
            if checker.error(view[pa:b], pa == 0) is None:
                units.pop()
                continue
            units[-1] = (pa, b)
        else:
            units.append((a, b))
    out: list[tuple[int, int]] = []
    for a, b in units:
        err = checker.error(view[a:b], a == 0)
        if err is not None and err.message == "unexpected indent":
            k = bisect.bisect_left(bounds, a)
            if k > 0 and (not out or out[-1][1] <= bounds[k - 1]):
                a = bounds[k - 1]
        if out and out[-1][1] >= a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def fix_large(sf: SourceFile, *, k: int = 5, filename: str = "<string>",
              target_version: tuple[int, int] | None = None,
              fix_fn: FixFn | None = None, with_source: bool = True) -> tuple[bytes, FixResult]:
    """Check ``sf`` piece by piece and repair only the failing units; returns (bytes to write, result).

    The bytes are ``sf.data`` itself when nothing was repaired. The result's edits and error
    are in file coordinates; its first candidate is the whole repaired file and the others are
    the units' alternatives (their ``source`` is the unit's text: the file would be k copies).
    When some units cannot be repaired the others still are: the result has ``changed`` set,
    ``parses`` unset and a note saying how many errors are left. ``with_source=False`` leaves
    the result's ``source`` (and its first candidate's) empty: the bytes are the output, and a
    10 MB file's text twice more is memory a caller writing bytes does not need.
    """
    if fix_fn is None:
        from noodle.fixer.repair import fix as fix_fn
    t0 = time.perf_counter()
    units = list(check_large(sf, filename, target_version))
    if not units:
        return sf.data, FixResult(sf.text if with_source else "", False, True, None, kind="valid",
                                  seconds=time.perf_counter() - t0, notes=("checked piece by piece (large file)",))
    view = memoryview(sf.data)
    parts: list[Any] = []
    edits: list[Edit] = []
    alts: list[Candidate] = []
    score = 0.0
    fixed = left = 0
    kinds: list[str] = []
    notes = ["checked piece by piece (large file)"]
    pos = 0
    for u in units:
        piece = sf.data[u.start:u.stop]
        usf = SourceFile.from_bytes(piece, filename, sf.encoding if u.start == 0 or sf.encoding != "utf-8-sig"
                                    else "utf-8")
        if u.stop - u.start > MAX_UNIT_BYTES:
            left += 1
            notes.append(f"line {u.line}: the failing region is {u.stop - u.start:,} bytes, too large to repair")
            continue
        res = fix_fn(usf.text, k=k, filename=filename, target_version=target_version)
        if not res.changed:
            left += 0 if res.parses else 1     # parses: the engine sees no error where the pieces did
            continue
        try:
            new = usf.encode(res.source) if res.parses else None
        except FixerFileError as exc:       # the repair inserts what the file's encoding cannot hold
            notes.append(f"line {u.line}: {exc}")
            new = None
        if new is None:
            left += 1
            continue
        parts.append(view[pos:u.start])
        parts.append(new)
        pos = u.stop
        fixed += 1
        kinds.append(res.kind)
        shift = u.line - 1
        edits.extend(Edit(e.line + shift, e.col, e.old, e.new) for e in res.edits)
        score += res.candidates[0].score if res.candidates else 0.0
        alts.extend(Candidate(c.source, tuple(Edit(e.line + shift, e.col, e.old, e.new) for e in c.edits), c.score)
                    for c in res.candidates[1:])
    first = units[0]
    error = SyntaxErrorInfo(first.error.message, first.error.line + first.line - 1, first.error.col,
                            first.error.kind)
    original = sf.text if with_source else ""
    if not fixed and not left:   # the engine found every failing region fine on its own
        return sf.data, FixResult(original, False, True, None, kind="valid", seconds=time.perf_counter() - t0,
                                  notes=tuple(notes))
    if not fixed:
        return sf.data, FixResult(original, False, False, error, kind="unfixed", seconds=time.perf_counter() - t0,
                                  notes=tuple(notes + [f"none of the {len(units)} failing region(s) could be "
                                                       f"repaired"]))
    parts.append(view[pos:])
    out = b"".join(parts)
    text = SourceFile.from_bytes(out, filename, sf.encoding).text if with_source else ""
    if left:
        notes.append(f"repaired {fixed} of {len(units)} failing region(s); {left} still fail")
    kind = "simple" if kinds == ["simple"] and not left else "complex"
    alts.sort(key=lambda c: -c.score)
    cands = (Candidate(text, tuple(edits), round(score, 6)), *alts[:max(0, k - 1)])
    return out, FixResult(text, True, not left, error, tuple(edits), cands, kind, time.perf_counter() - t0,
                          tuple(notes))
