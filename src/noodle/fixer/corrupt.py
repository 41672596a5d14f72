"""Realistic syntax errors made from valid code, with the edits that made them: the fixer's test set.

Why synthetic errors at all: real broken files with their human fixes are scarce and the ones
we have are kept back to judge the fixer (a fixer tuned to its own synthetic errors shows it
there). So the bench breaks held-back valid source with the *mix* real errors show, and keeps
the exact edits, so a candidate is scored by whether it restores the original program.

The mix (``MIX``, weights summing to 1) follows what studies of real Python syntax errors
report, not what is easy to generate:

- About 58% of real syntax errors need a one-token fix (the figure this issue was given for
  real Stack Overflow errors; /work/shared/ANCHORS.md: CPython flags 99.9% of 4,587 of them and
  its error line is within one line of the human edit in 97.6%), so one corruption here is one
  token-sized edit, and the multi-edit set holds 2-3 of them.
- Bracket errors lead every study of novice and Stack Overflow errors: a closing bracket
  forgotten at the end of a call, one too many, the wrong kind (Kohn, "The Error Behind The
  Message", SIGCSE 2019; Jeffries, Lee and Koprinska, "115 Ways Not to Say Hello, World!",
  ITiCSE 2022; Pritchard, "Frequency Distribution of Error Messages", PLATEAU 2015, where
  ``unexpected EOF while parsing`` and ``invalid syntax`` at a bracket top the Python list):
  33% together, most of it the missing closer.
- Missing colons after ``if``/``def``/``for`` headers and indentation errors (unexpected
  indent, expected an indented block, unindent that matches no level) come next: 14% and 12%.
- Missing commas in calls and literals (12%), unclosed strings (7%: Jeffries et al. find
  unquoted and half-quoted strings even late in a course, so a quarter of these lose the
  opening quote instead), Python 2 ``print x`` (7%: frequent in Stack Overflow questions
  pasted from old answers), ``=`` for ``==`` in a condition (5%), misspelled or capitalized
  keywords (``retrun``, ``improt``, ``If``, and ``else if`` for ``elif``; 6%), and a doubled
  operator or separator (``..``, ``,,``; 4%) make up the rest.

Every output is checked to fail ``compile`` (a corruption that happens to stay valid, like a
dropped comma between two string literals, is redrawn), and each :class:`Corruption` carries
both the edits from the original to the broken text and their reverse, so
``apply_edits(broken, reverse) == original`` holds exactly. Generation is deterministic given
the seed (``random.Random``; nothing iterates a set).

Example::

    from noodle.fixer.corrupt import corrupt, same_program
    c = corrupt(open("mod.py").read(), seed=7, n_errors=2)
    print(c.classes, c.broken)
    assert same_program(apply_edits(c.broken, c.reverse), c.original)
"""

from __future__ import annotations

import ast
import bisect
import io
import random
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from noodle.fixer.quiet import probe_warnings_silenced
from noodle.fixer.result import Edit

MIX: dict[str, float] = {
    "missing_close": 0.20,      # f(g(x)      (the commonest single error)
    "extra_close": 0.07,        # f(g(x)))
    "mismatched_close": 0.03,   # f(g(x)]
    "missing_open": 0.03,       # print x)
    "missing_colon": 0.14,      # if x
    "missing_comma": 0.12,      # f(a b)
    "unclosed_string": 0.07,    # x = "abc / x = abc"
    "stray_indent": 0.06,       # a line indented deeper than its block, or to no level at all
    "missing_indent": 0.06,     # the first line of a block body not indented
    "print2": 0.07,             # print x
    "eq_assign": 0.05,          # if x = 1:
    "keyword_typo": 0.06,       # retrun x / improt os / If x: / else if x:
    "stray_token": 0.04,        # a..b / f(a,, b)
}

CLASSES: tuple[str, ...] = tuple(MIX)

_CLOSE = ")]}"
_OPEN = "([{"
_HEADER_KW = frozenset({"if", "elif", "else", "for", "while", "def", "class", "try", "except",
                        "finally", "with", "async", "match", "case"})
_TYPO_KW = ("def", "class", "return", "import", "from", "for", "while", "if", "elif", "else", "try",
            "except", "finally", "with", "lambda", "yield", "raise", "in", "not", "and", "or", "is",
            "while", "assert", "del", "global", "pass", "continue", "break")
_DUP_OPS = (".", ",", ":", "=", "+", "*", "(", ")")


@dataclass(frozen=True)
class Corruption:
    """A broken text, the original it came from, and the edits between them.

    ``edits`` take ``original`` to ``broken`` (original's coordinates, applied together);
    ``reverse`` take ``broken`` back to ``original`` (broken's coordinates). ``classes`` names
    the error class of each corruption, in text order; one class may take two edits
    (``print2`` drops both parentheses).
    """

    original: str
    broken: str
    edits: tuple[Edit, ...]
    reverse: tuple[Edit, ...]
    classes: tuple[str, ...]

    @property
    def n_errors(self) -> int:
        return len(self.classes)

    @property
    def lines(self) -> tuple[int, ...]:
        """The lines of ``broken`` the reverse edits touch (where a perfect localizer points)."""
        return tuple(sorted({e.line for e in self.reverse}))


# --------------------------------------------------------------------------- text and edits

def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def _offset(starts: list[int], line: int, col: int) -> int:
    return starts[line - 1] + col


def _position(starts: list[int], offset: int) -> tuple[int, int]:
    i = bisect.bisect_right(starts, offset) - 1
    return i + 1, offset - starts[i]


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """Apply non-overlapping edits given in ``text``'s coordinates, all at once.

    Raises ValueError when an edit's ``old`` is not what the text holds there: a stale or
    misplaced edit must fail loudly, not corrupt silently.
    """
    starts = _line_starts(text)
    spans = []
    for e in edits:
        start = _offset(starts, e.line, e.col)
        if text[start:start + len(e.old)] != e.old:
            raise ValueError(f"edit {e} does not match the text ({text[start:start + len(e.old)]!r})")
        spans.append((start, start + len(e.old), e.new))
    spans.sort()
    out, pos = [], 0
    for start, end, new in spans:
        if start < pos:
            raise ValueError("overlapping edits")
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _apply_spans(text: str, spans: list[tuple[int, int, str]]) -> tuple[str, list[Edit], list[Edit]]:
    """The broken text and the forward and reverse edits of sorted, non-overlapping offset spans."""
    starts = _line_starts(text)
    out, pos, delta = [], 0, 0
    forward, back_offsets = [], []
    for start, end, new in spans:
        out.append(text[pos:start])
        out.append(new)
        pos = end
        line, col = _position(starts, start)
        forward.append(Edit(line, col, text[start:end], new))
        back_offsets.append((start + delta, new, text[start:end]))
        delta += len(new) - (end - start)
    out.append(text[pos:])
    broken = "".join(out)
    bstarts = _line_starts(broken)
    reverse = []
    for off, old, new in back_offsets:
        line, col = _position(bstarts, off)
        reverse.append(Edit(line, col, old, new))
    return broken, forward, reverse


# --------------------------------------------------------------------------- comparing programs

def token_signature(text: str) -> tuple[tuple[int, str], ...] | None:
    """The program's tokens as (type, string), blind to layout; None if it does not tokenize.

    Why this and not text equality: a fix that puts the missing ')' with a space before it, or
    re-indents a block by 2 instead of 4, restores the same program. Comments, blank lines and
    the indentation width drop out; INDENT/DEDENT keep the block structure.
    """
    sig = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NL, tokenize.COMMENT):
                continue
            if tok.type == tokenize.ERRORTOKEN:     # an unterminated string, a stray '$' or '?'
                return None
            if tok.type in (tokenize.INDENT, tokenize.NEWLINE):
                sig.append((tok.type, ""))
            else:
                sig.append((tok.type, tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return tuple(sig)


def same_program(a: str, b: str) -> bool:
    """Whether two texts are the same token sequence (see :func:`token_signature`)."""
    if a == b:
        return True
    sa = token_signature(a)
    return sa is not None and sa == token_signature(b)


def fails_to_compile(text: str) -> bool:
    """Whether CPython's parser rejects the text (a parse failure is also a compile failure)."""
    with probe_warnings_silenced():
        try:
            compile(text, "<corrupt>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except SyntaxError:
            return True
        except (ValueError, RecursionError, MemoryError):
            return False
    return False


def compiles(text: str) -> bool:
    """Whether the text compiles in full (what a snippet of the held-back corpus must do)."""
    with probe_warnings_silenced():
        try:
            compile(text, "<snippet>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


# --------------------------------------------------------------------------- the token stream

class _Stream:
    """The valid source's tokens with the lookups the generators share."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.starts = _line_starts(source)
        self.toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
                     if t.type != tokenize.ENDMARKER]
        # lines as tokenize counts them ('\n' only: splitlines would also split at form feeds)
        self.lines = [source[a:b] for a, b in zip(self.starts, self.starts[1:] + [len(source)])]
        # the first significant token of each logical line, and the token that comes before it
        skip = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)
        self.line_heads: list[int] = [i for i, t in enumerate(self.toks)
                                      if t.type not in skip and self._after_newline(i)]
        self.head_set = frozenset(self.line_heads)
        self.match = self._match_brackets()

    def _after_newline(self, i: int) -> bool:
        j = i - 1
        while j >= 0 and self.toks[j].type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            j -= 1
        return j < 0 or self.toks[j].type == tokenize.NEWLINE

    def _match_brackets(self) -> dict[int, int]:
        match, stack = {}, []
        for i, t in enumerate(self.toks):
            if t.type == tokenize.OP and t.string in _OPEN:
                stack.append(i)
            elif t.type == tokenize.OP and t.string in _CLOSE and stack:
                j = stack.pop()
                match[i], match[j] = j, i
        return match

    def off(self, pos: tuple[int, int]) -> int:
        return _offset(self.starts, pos[0], pos[1])

    def next_sig(self, i: int) -> int | None:
        """The index of the next token that is not NL or COMMENT."""
        j = i + 1
        while j < len(self.toks) and self.toks[j].type in (tokenize.NL, tokenize.COMMENT):
            j += 1
        return j if j < len(self.toks) else None

    def prev_sig(self, i: int) -> int | None:
        j = i - 1
        while j >= 0 and self.toks[j].type in (tokenize.NL, tokenize.COMMENT):
            j -= 1
        return j if j >= 0 else None

    def ops(self, chars: str) -> list[int]:
        return [i for i, t in enumerate(self.toks) if t.type == tokenize.OP and t.string in chars
                and len(t.string) == 1]

    def delete(self, i: int) -> tuple[int, int, str]:
        """Delete token i, leaving a space where the neighbours would otherwise fuse (``f(a,b)`` ->
        ``f(a b)``, not ``f(ab)``): a person who forgets a comma still types the space."""
        s, e = self.off(self.toks[i].start), self.off(self.toks[i].end)
        before = self.source[s - 1] if s > 0 else " "
        after = self.source[e] if e < len(self.source) else " "
        fuse = (before.isalnum() or before == "_") and (after.isalnum() or after in "_'\"")
        return (s, e, " " if fuse else "")

    def indent_of(self, row: int) -> str:
        line = self.lines[row - 1]
        return line[:len(line) - len(line.lstrip(" \t"))]

    def header_colons(self) -> list[int]:
        """':' tokens that end a block header (the next logical line is indented under them)."""
        out = []
        for i in self.ops(":"):
            j = self.next_sig(i)
            if j is None or self.toks[j].type != tokenize.NEWLINE:
                continue
            k = j + 1
            while k < len(self.toks) and self.toks[k].type in (tokenize.NL, tokenize.COMMENT):
                k += 1
            if k < len(self.toks) and self.toks[k].type == tokenize.INDENT:
                out.append(i)
        return out


_Spans = list[tuple[int, int, str]]


# --------------------------------------------------------------------------- the generators

def _missing_close(s: _Stream, rng: random.Random) -> _Spans | None:
    # real forgotten closers sit mostly at the end of a line: weight those 3:1
    cands = s.ops(_CLOSE)
    if not cands:
        return None
    eol = [i for i in cands if (j := s.next_sig(i)) is not None and s.toks[j].type == tokenize.NEWLINE]
    pool = eol if eol and rng.random() < 0.75 else cands
    return [s.delete(rng.choice(pool))]


def _extra_close(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = s.ops(_CLOSE)
    if not cands:
        return None
    i = rng.choice(cands)
    e = s.off(s.toks[i].end)
    return [(e, e, s.toks[i].string)]


def _mismatched_close(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = s.ops(_CLOSE)
    if not cands:
        return None
    i = rng.choice(cands)
    t = s.toks[i]
    new = rng.choice([c for c in _CLOSE if c != t.string])
    return [(s.off(t.start), s.off(t.end), new)]


def _missing_open(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = s.ops(_OPEN)
    if not cands:
        return None
    return [s.delete(rng.choice(cands))]


def _missing_colon(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = s.header_colons()
    if not cands:
        return None
    return [s.delete(rng.choice(cands))]


def _missing_comma(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = []
    for i in s.ops(","):
        j = s.next_sig(i)
        if j is not None and not (s.toks[j].type == tokenize.OP and s.toks[j].string in _CLOSE) \
                and s.toks[j].type != tokenize.NEWLINE:
            cands.append(i)     # not a trailing comma: dropping one of those is usually still valid
    if not cands:
        return None
    return [s.delete(rng.choice(cands))]


def _unclosed_string(s: _Stream, rng: random.Random) -> _Spans | None:
    """Drop a one-line string's closing quote, or one time in four its opening quote (the
    half-quoted ``print(hello")`` novices write: Jeffries et al. 2022)."""
    cands = []
    for i, t in enumerate(s.toks):
        if t.type != tokenize.STRING or t.start[0] != t.end[0]:
            continue
        body = t.string.lstrip("rRbBuUfF")
        if body[:3] in ('"""', "'''") or len(body) < 2:
            continue
        cands.append(i)
    if not cands:
        return None
    t = s.toks[rng.choice(cands)]
    e = s.off(t.end)
    if rng.random() < 0.25 and t.string[0] in "'\"" and t.string[:2] not in ('""', "''"):
        b = s.off(t.start)
        return [(b, b + 1, "")]
    return [(e - 1, e, "")]


def _stray_indent(s: _Stream, rng: random.Random) -> _Spans | None:
    """A statement indented one level deeper than the one before it (``unexpected indent``), or,
    one time in four, dedented by half a level (``unindent does not match any outer level``)."""
    same_level = []
    for i in s.line_heads:
        t = s.toks[i]
        ws = s.indent_of(t.start[0])
        if "\t" in ws or t.start[1] != len(ws):
            continue
        j = i - 1
        while j >= 0 and s.toks[j].type in (tokenize.NL, tokenize.COMMENT):
            j -= 1
        if j >= 0 and s.toks[j].type == tokenize.NEWLINE:
            same_level.append(i)
    if not same_level:
        return None
    i = rng.choice(same_level)
    row = s.toks[i].start[0]
    ws = s.indent_of(row)
    line_start = s.starts[row - 1]
    if len(ws) >= 4 and rng.random() < 0.25:
        return [(line_start, line_start + 2, "")]
    unit = " " * 4
    return [(line_start, line_start, unit)]


def _missing_indent(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = []
    for i in s.header_colons():
        k = s.next_sig(i)
        assert k is not None
        k += 1
        while s.toks[k].type in (tokenize.NL, tokenize.COMMENT):
            k += 1
        body_row = s.toks[k].start[0]
        # the header's own first line gives its level (a multi-line header ends elsewhere)
        head = i
        while head > 0 and head not in s.head_set:
            head -= 1
        header_ws = s.indent_of(s.toks[head].start[0])
        body_ws = s.indent_of(body_row)
        if "\t" in body_ws or "\t" in header_ws or not body_ws.startswith(header_ws):
            continue
        cands.append((body_row, len(header_ws), len(body_ws)))
    if not cands:
        return None
    row, keep, total = rng.choice(cands)
    start = s.starts[row - 1]
    return [(start + keep, start + total, "")]


def _print2(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = []
    for i in s.line_heads:
        t = s.toks[i]
        if t.type != tokenize.NAME or t.string != "print" or i + 1 >= len(s.toks):
            continue
        o = i + 1
        if s.toks[o].string != "(" or o not in s.match:
            continue
        c = s.match[o]
        after = s.next_sig(c)
        if after is None or s.toks[after].type != tokenize.NEWLINE or s.toks[c].start[0] != t.start[0]:
            continue
        if c == o + 1:
            continue        # print() is still valid without its parentheses
        depth, kwargs = 0, False
        for k in range(o + 1, c):
            tk = s.toks[k]
            if tk.type == tokenize.OP and tk.string in _OPEN:
                depth += 1
            elif tk.type == tokenize.OP and tk.string in _CLOSE:
                depth -= 1
            elif depth == 0 and tk.type == tokenize.OP and tk.string == "=":
                kwargs = True
        if not kwargs:
            cands.append((o, c))
    if not cands:
        return None
    o, c = rng.choice(cands)
    os_, oe = s.off(s.toks[o].start), s.off(s.toks[o].end)
    cs, ce = s.off(s.toks[c].start), s.off(s.toks[c].end)
    space = "" if s.source[os_ - 1] in " \t" or s.source[oe] in " \t" else " "
    return [(os_, oe, space), (cs, ce, "")]


def _eq_assign(s: _Stream, rng: random.Random) -> _Spans | None:
    conds, others = [], []
    head = None
    for i, t in enumerate(s.toks):
        if i in s.head_set:
            head = t.string
        if t.type == tokenize.OP and t.string == "==":
            (conds if head in ("if", "elif", "while", "assert", "return") else others).append(i)
    pool = conds if conds and (not others or rng.random() < 0.8) else others
    if not pool:
        return None
    t = s.toks[rng.choice(pool)]
    return [(s.off(t.start), s.off(t.end), "=")]


def _typo(word: str, rng: random.Random) -> str:
    """A plausible misspelling: swapped neighbours (the commonest slip), a dropped or doubled
    letter, or a capital first letter (``If``, ``Def``: what editors autocapitalize)."""
    r = rng.random()
    if r < 0.45 and len(word) >= 2:
        k = rng.randrange(len(word) - 1)
        out = word[:k] + word[k + 1] + word[k] + word[k + 2:]
    elif r < 0.70 and len(word) >= 3:
        k = rng.randrange(len(word))
        out = word[:k] + word[k + 1:]
    elif r < 0.85:
        k = rng.randrange(len(word))
        out = word[:k] + word[k] + word[k:]
    else:
        out = word[0].upper() + word[1:]
    return out


def _keyword_typo(s: _Stream, rng: random.Random) -> _Spans | None:
    """A misspelled keyword, or, one time in five where there is an ``elif``, the ``else if`` of
    C and JavaScript."""
    cands = [i for i, t in enumerate(s.toks) if t.type == tokenize.NAME and t.string in _TYPO_KW]
    if not cands:
        return None
    elifs = [i for i in cands if s.toks[i].string == "elif"]
    if elifs and rng.random() < 0.2:
        t = s.toks[rng.choice(elifs)]
        return [(s.off(t.start), s.off(t.end), "else if")]
    t = s.toks[rng.choice(cands)]
    for _ in range(8):
        new = _typo(t.string, rng)
        if new != t.string and new.isidentifier():
            return [(s.off(t.start), s.off(t.end), new)]
    return None


def _stray_token(s: _Stream, rng: random.Random) -> _Spans | None:
    cands = [i for i, t in enumerate(s.toks) if t.type == tokenize.OP and t.string in _DUP_OPS]
    if not cands:
        return None
    t = s.toks[rng.choice(cands)]
    e = s.off(t.end)
    return [(e, e, t.string)]


GENERATORS: dict[str, Callable[[_Stream, random.Random], _Spans | None]] = {
    "missing_close": _missing_close, "extra_close": _extra_close, "mismatched_close": _mismatched_close,
    "missing_open": _missing_open, "missing_colon": _missing_colon, "missing_comma": _missing_comma,
    "unclosed_string": _unclosed_string, "stray_indent": _stray_indent, "missing_indent": _missing_indent,
    "print2": _print2, "eq_assign": _eq_assign, "keyword_typo": _keyword_typo, "stray_token": _stray_token,
}
assert set(GENERATORS) == set(MIX)


# --------------------------------------------------------------------------- the public entry points

def draw_classes(rng: random.Random, n: int, mix: dict[str, float] | None = None) -> list[str]:
    """``n`` error classes drawn independently by the mix's weights."""
    mix = mix or MIX
    names = list(mix)
    return rng.choices(names, weights=[mix[c] for c in names], k=n)


def _rows(spans: _Spans, text: str) -> set[int]:
    starts = _line_starts(text)
    rows = set()
    for start, end, _ in spans:
        rows.add(_position(starts, start)[0])
        rows.add(_position(starts, max(start, end - 1))[0])
    return rows


def corrupt_classes(source: str | _Stream, classes: Sequence[str], rng: random.Random,
                    tries: int = 20) -> Corruption | None:
    """Break ``source`` with one corruption of each named class, on distinct lines.

    Returns None when the source offers no place for one of the classes (no ``print`` call for
    ``print2``), or when ``tries`` draws all left the text valid. ``source`` must compile.
    """
    if isinstance(source, _Stream):
        stream = source
    else:
        try:
            stream = _Stream(source)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            return None
    source = stream.source
    for _ in range(tries):
        chosen: list[tuple[str, _Spans]] = []
        used_rows: set[int] = set()
        ok = True
        for cls in classes:
            placed = False
            for _attempt in range(6):
                spans = GENERATORS[cls](stream, rng)
                if spans is None:
                    return None
                rows = _rows(spans, source)
                if rows & used_rows:
                    continue
                used_rows |= rows
                chosen.append((cls, spans))
                placed = True
                break
            if not placed:
                ok = False
                break
        if not ok:
            continue
        all_spans = sorted((sp, cls) for cls, spans in chosen for sp in spans)
        flat = [sp for sp, _ in all_spans]
        if any(a[1] > b[0] for a, b in zip(flat, flat[1:])):
            continue
        broken, forward, reverse = _apply_spans(source, flat)
        if broken == source or not fails_to_compile(broken):
            continue
        order = sorted(chosen, key=lambda cs: cs[1][0][0])
        return Corruption(source, broken, tuple(forward), tuple(reverse), tuple(c for c, _ in order))
    return None


def corrupt(source: str, seed: int | random.Random = 0, n_errors: int = 1,
            mix: dict[str, float] | None = None, tries: int = 20) -> Corruption | None:
    """Break ``source`` with ``n_errors`` corruptions whose classes are drawn from the mix.

    Classes the source has no place for are redrawn; None if nothing fits after ``tries``.
    """
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    for _ in range(tries):
        result = corrupt_classes(source, draw_classes(rng, n_errors, mix), rng)
        if result is not None:
            return result
    return None


def make_cases(sources: Sequence[str], n: int, n_errors: tuple[int, int] = (1, 1), seed: int = 0,
               mix: dict[str, float] | None = None, tries: int | None = None) -> list[Corruption]:
    """``n`` corruptions whose classes follow the mix: draw the classes first, then a source
    that has a place for them.

    Why classes first: drawing a source first would under-sample the classes most snippets
    lack (``print2`` needs a ``print`` call), skewing the set away from the real mix.
    ``n_errors`` is the inclusive range of corruptions per case; ``tries`` caps the sources
    tried per draw (default: all of them, in a random order).
    """
    rng = random.Random(seed)
    cases: list[Corruption] = []
    if not sources:
        return cases
    streams: dict[int, _Stream | None] = {}

    def stream(i: int) -> _Stream | None:
        if i not in streams:      # tokenize each source once, however often it is drawn
            try:
                streams[i] = _Stream(sources[i])
            except (tokenize.TokenError, IndentationError, SyntaxError):
                streams[i] = None
        return streams[i]

    for _ in range(50 * n):
        if len(cases) >= n:
            break
        k = rng.randint(n_errors[0], n_errors[1])
        classes = draw_classes(rng, k, mix)
        order = rng.sample(range(len(sources)), min(len(sources), tries or len(sources)))
        for i in order:
            st = stream(i)
            c = corrupt_classes(st, classes, rng, tries=4) if st is not None else None
            if c is not None:
                cases.append(c)
                break
    return cases


__all__ = ["CLASSES", "GENERATORS", "MIX", "Corruption", "apply_edits", "compiles", "corrupt",
           "corrupt_classes", "draw_classes", "fails_to_compile", "make_cases", "same_program",
           "token_signature"]
