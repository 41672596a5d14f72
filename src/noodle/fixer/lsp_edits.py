"""Text diffs as editor edits: the replacements that turn one text into another, and LSP positions.

Why a module of its own: a code action must send the editor the smallest edits that turn the
open file into the repaired one (an editor that gets the whole file back loses the cursor,
folds and undo granularity), in the editor's coordinates. The Language Server Protocol counts
lines at '\\n', '\\r\\n' and '\\r' only (``str.splitlines`` also splits at form feeds and
other separators Python source may hold, which CPython does not count as lines) and counts
columns in UTF-16 code units unless the client negotiated UTF-8 or UTF-32; this module does
both the LSP way, and never puts a position between the '\\r' and '\\n' of one line break.
Nothing here imports pygls, so it is tested (and usable) without it.

Example::

    from noodle.fixer.lsp_edits import LineIndex, apply_replacements, diff_replacements
    old, new = "def f(x)\\n    return x\\n", "def f(x):\\n    return x\\n"
    reps = diff_replacements(old, new)            # [Replacement(start=8, end=8, text=':')]
    assert apply_replacements(old, reps) == new
    print(LineIndex(old).position(reps[0].start))  # (0, 8): line 0, UTF-16 column 8
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ENCODINGS", "LineIndex", "Replacement", "apply_replacements", "diff_replacements"]

#: the position encodings LSP 3.17 defines (``PositionEncodingKind`` values)
ENCODINGS = ("utf-8", "utf-16", "utf-32")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Replacement:
    """Replace ``old[start:end]`` (code-point offsets into the old text) with ``text``."""

    start: int
    end: int
    text: str


def _line_offsets(lines: list[str]) -> list[int]:
    out = [0]
    for line in lines:
        out.append(out[-1] + len(line))
    return out


def _trim(old: str, start: int, end: int, new: str) -> Replacement:
    """The replacement of ``old[start:end]`` by ``new`` without their common ends, never splitting
    a '\\r\\n' (an LSP position cannot point between them)."""
    block = old[start:end]
    limit = min(len(block), len(new))
    head = 0
    while head < limit and block[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and block[len(block) - 1 - tail] == new[len(new) - 1 - tail]:
        tail += 1
    s, e = start + head, end - tail
    text = new[head:len(new) - tail]
    if 0 < s < len(old) and old[s - 1] == "\r" and old[s] == "\n":
        s -= 1
        text = "\r" + text
    if 0 < e < len(old) and old[e - 1] == "\r" and old[e] == "\n":
        text += "\n"
        e += 1
    return Replacement(s, e, text)


def diff_replacements(old: str, new: str) -> list[Replacement]:
    """The replacements, in text order and not overlapping, that turn ``old`` into ``new``.

    Why lines first: a repair touches a few lines of a long file, so the common first and last
    lines are skipped in one pass, the rest is matched line by line (``difflib``), and each
    changed block is then trimmed to the characters that differ: one inserted ':' comes out as
    one insertion of ':', not as a replaced line.
    """
    if old == new:
        return []
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    lo = 0
    while lo < min(len(a), len(b)) and a[lo] == b[lo]:
        lo += 1
    hi = 0
    while hi < min(len(a), len(b)) - lo and a[len(a) - 1 - hi] == b[len(b) - 1 - hi]:
        hi += 1
    oa, ob = _line_offsets(a), _line_offsets(b)
    matcher = difflib.SequenceMatcher(None, a[lo:len(a) - hi], b[lo:len(b) - hi], autojunk=False)
    out: list[Replacement] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start, end = oa[lo + i1], oa[lo + i2]
        out.append(_trim(old, start, end, new[ob[lo + j1]:ob[lo + j2]]))
    return out


def apply_replacements(old: str, replacements: Iterable[Replacement]) -> str:
    """``old`` with the replacements applied (offsets refer to ``old``; they must not overlap)."""
    reps = sorted(replacements, key=lambda r: (r.start, r.end))
    parts: list[str] = []
    at = 0
    for r in reps:
        if r.start < at or r.end < r.start or r.end > len(old):
            raise ValueError(f"replacement {r} overlaps another or lies outside a text of {len(old)} characters")
        parts += [old[at:r.start], r.text]
        at = r.end
    parts.append(old[at:])
    return "".join(parts)


def _units(text: str, encoding: str) -> int:
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


class LineIndex:
    """Code-point offsets of one text to LSP positions (line, column in the client's units) and back.

    ``encoding`` is the negotiated ``PositionEncodingKind``: 'utf-16' (the LSP default),
    'utf-8' or 'utf-32'.
    """

    def __init__(self, text: str, encoding: str = "utf-16") -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"position encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.text = text
        self.encoding = encoding
        self.starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]

    def line_text(self, line: int) -> str:
        """Line ``line`` (0-based) without its line break ('' past the end)."""
        if line >= len(self.starts):
            return ""
        end = self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[line]:end].rstrip("\r\n")

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column) of code-point ``offset``, both 0-based, the column in the client's units."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, _units(self.text[self.starts[line]:offset], self.encoding)

    def offset(self, line: int, column: int) -> int:
        """The code-point offset of an LSP position; a column past the line's end means its end
        (as the protocol says), a line past the text's end means the text's end."""
        if line >= len(self.starts):
            return len(self.text)
        text = self.line_text(line)
        if self.encoding == "utf-32":
            return self.starts[line] + min(column, len(text))
        used = 0
        for i, c in enumerate(text):
            if used >= column:
                return self.starts[line] + i
            used += _units(c, self.encoding)
        return self.starts[line] + len(text)
