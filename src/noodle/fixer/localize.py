"""Where a syntax error is: CPython's report, the smallest block that reproduces it, and the lines.

Why a block and not the file: every candidate repair is verified by parsing, and parsing a
2,600-line module costs ~10 ms where a 40-line function costs ~0.1 ms, so candidates are parsed
inside the top-level statement that holds the error (a method when that statement is a big
class). A block is only used when it reproduces the file's own error on its own; otherwise it
grows (the previous block joins it) until it does, ending at the whole file. The file is then
checked once per returned candidate, so the block is the filter and the file the guarantee.

Lines are split at '\\n' only, as :func:`noodle.fixer.lexer.lex` and ``tokenize`` split them, so
line numbers agree everywhere.

Example::

    from noodle.fixer.localize import Checker, find_region, split_lines
    checker = Checker("<string>", None)
    err = checker.file_error(text)
    region, rerr = find_region(split_lines(text), err, checker)
"""

from __future__ import annotations

import ast
import bisect
import re
from dataclasses import dataclass

from noodle.fixer.quiet import probe_warnings_silenced
from noodle.fixer.result import SyntaxErrorInfo

__all__ = ["BIG_BLOCK", "Checker", "Layout", "ParseError", "Region", "find_region", "split_lines", "string_lines"]

#: A top-level block longer than this is narrowed to the statement one level inside it (a
#: method of a class) when that statement reproduces the error.
BIG_BLOCK = 60

_CONTINUES = ("else", "elif", "except", "finally")
#: what else a statement may start with (a line starting with ':', ')', ',', '.', '=' continues one)
_STARTS = "_@'\"([{-+~*\\"
_DIGITS = re.compile(r"\d+")
# comments and strings, so that quotes in comments and column-0 lines inside docstrings do not
# count as code (an unterminated triple quote runs to the end of the text, as in the lexer)
_STRINGS = re.compile(
    r"#[^\n]*"
    r'|"""(?:\\.|[^\\])*?(?:"""|\Z)'
    r"|'''(?:\\.|[^\\])*?(?:'''|\Z)"
    r'|"(?:\\.|[^"\\\n])*(?:"|$)'
    r"|'(?:\\.|[^'\\\n])*(?:'|$)",
    re.S | re.M,
)


def split_lines(text: str) -> list[str]:
    """Physical lines with their ends, split at '\\n' only (what ``io.StringIO.readline`` gives)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


@dataclass(frozen=True)
class ParseError:
    """CPython's complaint: message, where (line 1-based, col 0-based), where it ends, and its class."""

    message: str
    line: int
    col: int
    end_line: int
    end_col: int
    kind: str = "SyntaxError"

    def info(self) -> SyntaxErrorInfo:
        return SyntaxErrorInfo(self.message, self.line, self.col, self.kind)

    def shifted(self, lines: int) -> ParseError:
        return ParseError(self.message, self.line + lines, self.col, self.end_line + lines, self.end_col,
                          self.kind)

    def same(self, other: ParseError | None) -> bool:
        """The same error, up to the line numbers a message quotes ('... on line 12')."""
        return (other is not None and self.line == other.line and self.col == other.col
                and self.kind == other.kind
                and _DIGITS.sub("#", self.message) == _DIGITS.sub("#", other.message))


def _from_exception(e: SyntaxError) -> ParseError:
    line = e.lineno or 1
    col = max((e.offset or 1) - 1, 0)
    end_line = e.end_lineno or line
    end_col = max((e.end_offset or (col + 1)) - 1, col if end_line == line else 0)
    return ParseError(str(e.msg), line, col, end_line, end_col, type(e).__name__)


class Checker:
    """Parse checks for one call of ``fix``, cached by text.

    ``block_error`` runs CPython's parser only (what a candidate must get past; honours
    ``target_version`` through ``feature_version``); ``file_error`` is the guarantee: the parser
    and then the full compiler, whose checks ('return' outside function, a misplaced
    ``nonlocal``) are part of what "it compiles" means. When the input's only error is one of
    those compiler checks, ``compile_stage`` is set and blocks are checked by compiling them too.
    """

    def __init__(self, filename: str, target_version: tuple[int, int] | None) -> None:
        self.filename = filename
        self.feature = -1
        if target_version is not None and tuple(target_version) < (3, 99):
            self.feature = int(target_version[1]) if target_version[0] == 3 else 0
        self.compile_stage = False
        self._blocks: dict[str, ParseError | None] = {}
        self._files: dict[str, ParseError | None] = {}
        self.parses = 0

    def _parse(self, text: str) -> ParseError | None:
        self.parses += 1
        with probe_warnings_silenced():
            try:
                compile(text, self.filename, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True,
                        _feature_version=self.feature)
            except SyntaxError as e:
                return _from_exception(e)
            except (ValueError, RecursionError, MemoryError) as e:   # NUL bytes, absurd nesting
                return ParseError(f"{type(e).__name__}: {e}", 1, 0, 1, 1, type(e).__name__)
        return None

    def _compile(self, text: str) -> ParseError | None:
        self.parses += 1
        with probe_warnings_silenced():
            try:
                compile(text, self.filename, "exec", dont_inherit=True)
            except SyntaxError as e:
                return _from_exception(e)
            except (ValueError, RecursionError, MemoryError) as e:
                return ParseError(f"{type(e).__name__}: {e}", 1, 0, 1, 1, type(e).__name__)
        return None

    def block_error(self, text: str) -> ParseError | None:
        """The parser's first error in ``text`` (a block, possibly wrapped), or None."""
        cache = self._blocks
        if text in cache:
            return cache[text]
        err = self._compile(text) if self.compile_stage else self._parse(text)
        cache[text] = err
        return err

    def file_error(self, text: str) -> ParseError | None:
        """The first error of the whole text as ``compile`` (and the target version) sees it."""
        cache = self._files
        if text in cache:
            return cache[text]
        err = self._parse(text) if self.feature >= 0 else None
        if err is None:
            err = self._compile(text)
        cache[text] = err
        return err


# --------------------------------------------------------------------------- the block structure

def string_lines(text: str, lines: list[str]) -> list[bool]:
    """For each line, whether it starts inside a multi-line string (so it is no statement start)."""
    inside = [False] * len(lines)
    if '"""' not in text and "'''" not in text:
        return inside
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    for m in _STRINGS.finditer(text):
        a, b = m.span()
        if b - a < 6 or text[a] == "#":
            continue
        first = bisect.bisect_right(starts, a) - 1
        last = bisect.bisect_right(starts, b - 1) - 1
        for i in range(first + 1, min(last, len(lines) - 1) + 1):
            inside[i] = True
    return inside


def _indent(line: str) -> int:
    """The indentation width with tabs to multiples of 8 (the tokenizer's rule)."""
    ws = line[:len(line) - len(line.lstrip(" \t\f"))]
    if "\t" not in ws and "\f" not in ws:
        return len(ws)
    col = 0
    for ch in ws:
        if ch == " ":
            col += 1
        elif ch == "\t":
            col = (col // 8 + 1) * 8
        elif ch == "\f":
            col = 0
        else:
            break
    return col


def _is_code(line: str) -> bool:
    s = line.lstrip(" \t\f")
    return bool(s) and s[0] not in "#\r\n"


def _first_word(line: str) -> str:
    s = line.lstrip(" \t\f")
    end = 0
    while end < len(s) and (s[end].isalnum() or s[end] == "_"):
        end += 1
    return s[:end]


def _starts(lines: list[str], inside: list[bool], lo: int, hi: int, width: int) -> list[int]:
    """0-based indices in [lo, hi) of the lines that start a statement at indentation ``width``:
    code lines at that width, not inside a string, not after a backslash, not a clause that
    continues the statement before it (else, except, ...), decorators joined to what they
    decorate."""
    out: list[int] = []
    decorated = False
    for i in range(lo, hi):
        line = lines[i]
        if width == 0 and line[:1] in (" ", "\t", "\f", "\r", "\n", "#", ""):
            continue
        if inside[i] or not _is_code(line) or _indent(line) != width:
            continue
        if i > 0 and lines[i - 1].rstrip("\r\n").endswith("\\"):
            continue
        s = line.lstrip(" \t\f")
        if not (s[0].isalnum() or s[0] in _STARTS) or _first_word(line) in _CONTINUES:
            continue
        if decorated:
            decorated = s[0] == "@"
            continue
        out.append(i)
        decorated = s[0] == "@"
    return out


@dataclass(frozen=True)
class Region:
    """Lines ``first``..``last`` (1-based, inclusive) of the text, parsed after ``prefix``.

    ``prefix`` is '' for top-level blocks and 'if 1:\\n' for a statement taken from inside one
    (its lines keep their indentation; the parser needs an enclosing block for them).
    """

    first: int
    last: int
    prefix: str = ""

    @property
    def shift(self) -> int:
        """Parsed line = file line - shift."""
        return self.first - 1 - self.prefix.count("\n")

    def text(self, lines: list[str]) -> str:
        """The text to parse, from the file's (current) lines."""
        return self.prefix + "".join(lines[self.first - 1:self.last])

    def error(self, lines: list[str], checker: Checker) -> ParseError | None:
        """The region's own error in file coordinates (None when it parses)."""
        err = checker.block_error(self.text(lines))
        return None if err is None else err.shifted(self.shift)


@dataclass(frozen=True)
class Layout:
    """Which lines start inside a multi-line string, and where the top-level statements start
    (0-based), computed once per text: the edits of a repair rarely change either, and a block
    that no longer fits is caught by its error no longer agreeing with the file's."""

    inside: list[bool]
    tops: list[int]

    @classmethod
    def of(cls, lines: list[str], text: str | None = None) -> Layout:
        inside = string_lines("".join(lines) if text is None else text, lines)
        return cls(inside, _starts(lines, inside, 0, len(lines), 0))


def find_region(lines: list[str], err: ParseError, checker: Checker,
                layout: Layout | None = None) -> tuple[Region, ParseError]:
    """The smallest block around ``err`` that reproduces it, and the error as the block reports it.

    Tries the statements nested in a big top-level block, innermost first (while a block is
    longer than :data:`BIG_BLOCK` lines), then the top-level block, then that block with the
    ones before it, then the whole text.
    """
    n = len(lines)
    whole = Region(1, max(n, 1))
    if n == 0:
        return whole, err
    if layout is None or len(layout.inside) != n:
        layout = Layout.of(lines)
    inside, tops = layout.inside, layout.tops
    row = min(max(err.line, 1), n) - 1
    k = bisect.bisect_right(tops, row) - 1
    first = tops[k] if k >= 0 else 0
    end = tops[k + 1] if k + 1 < len(tops) else n
    tries: list[Region] = [Region(first + 1, end)]
    lo, hi = first, end
    while not checker.compile_stage and hi - lo > BIG_BLOCK:
        sub = _inner(lines, inside, lo, hi, row)
        if sub is None or sub == (lo, hi):
            break
        tries.insert(0, Region(sub[0] + 1, sub[1], "if 1:\n"))
        lo, hi = sub
    for back in (1, 3):
        if k - back >= 0:
            tries.append(Region(tops[k - back] + 1, end))
    for region in tries:
        if region.first == 1 and region.last >= n:
            break
        rerr = region.error(lines, checker)
        if rerr is not None and err.same(rerr):
            return region, rerr
    return whole, err


def _inner(lines: list[str], inside: list[bool], first: int, end: int, row: int) -> tuple[int, int] | None:
    """The statement one level inside the block [first, end) holding 0-based line ``row``."""
    own = _indent(lines[first])
    width = None
    for i in range(first + 1, end):
        if not inside[i] and _is_code(lines[i]) and _indent(lines[i]) > own:
            width = _indent(lines[i])
            break
    if not width:
        return None
    subs = _starts(lines, inside, first + 1, end, width)
    k = bisect.bisect_right(subs, row) - 1
    if k < 0:
        return None
    stop = subs[k + 1] if k + 1 < len(subs) else end
    return subs[k], stop
