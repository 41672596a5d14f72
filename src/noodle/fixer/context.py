"""The state a repair proposal is made and scored in: the block's tokens, its symbols, the error.

Why its own module: the generators (token edits here, brackets, strings, indentation in their
own modules) all need the same geometry (where a token's text starts, where an inserted
closer goes so it lands before a trailing comment, how a deletion keeps neighbours apart) and
the same scoring (a splice of symbols for token edits, a re-lex of the changed lines for edits
that change the layout). A proposal keeps its text changes lazy (most are never parsed).

Example::

    ctx = Context(lines, region, err, scorer)
    ch = insert_change(ctx, ctx.e, ":")
    print(ctx.relex_delta(ch.line, ch.line, (ch,)))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from noodle.fixer.lexer import Tok, lex, symbol_of
from noodle.fixer.localize import ParseError, Region
from noodle.fixer.rank import Scorer

#: what the block's symbols are scored after: a block is rarely a file's first statement, and
#: a snippet's first line is not what files start with either, so the model sees the block as
#: following a statement (the commonest first line, an import) instead of the start of a file
LEAD = ("<s>", "import", "<NAME>", "<NL>")

__all__ = [
    "ATTACH_LEFT", "CLOSERS", "LEAD", "MAX_SPOTS", "NO_EDIT", "OPENERS", "Change", "Context", "Proposal", "apply_changes",
    "distance", "first_on_line", "insert_change", "logical_start", "near", "replace_change", "spaced", "word",
]

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {")": "(", "]": "[", "}": "{"}

ATTACH_LEFT = frozenset({")", "]", "}", ",", ":", "."})
NO_EDIT = frozenset({"NEWLINE", "NL", "COMMENT", "INDENT", "DEDENT", "ENDMARKER"})
#: closers proposed per unclosed bracket at most (a one-line literal of thousands of tokens)
MAX_SPOTS = 24


@dataclass(frozen=True, slots=True)
class Change:
    """Replace columns [col, end) of one line of the current text by ``new``."""

    line: int
    col: int
    end: int
    new: str


@dataclass(slots=True)
class Proposal:
    """One candidate step: what it does, its score (model delta minus prior) and a tie-break key.

    Token edits keep only (token, symbol) until :meth:`Context.changes` turns them into text
    changes: most proposals are never parsed, so most never need their text.
    """

    score: float
    kind: str
    edits: int
    key: tuple
    op: tuple


def apply_changes(lines: list[str], changes: tuple[Change, ...]) -> list[str]:
    """A copy of ``lines`` with the changes (non-overlapping, any order) applied."""
    out = list(lines)
    by_line: dict[int, list[Change]] = {}
    for c in changes:
        by_line.setdefault(c.line, []).append(c)
    for line, cs in by_line.items():
        text = out[line - 1]
        for c in sorted(cs, key=lambda c: (c.col, c.end), reverse=True):
            text = text[:c.col] + c.new + text[c.end:]
        out[line - 1] = text
    return out


def word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def spaced(before: str, text: str, after: str) -> str:
    """``text`` with a space on each side where it would otherwise fuse with its neighbours."""
    if text and before and word(before) and word(text[0]):
        text = " " + text
    if text and after and word(after) and (word(text[-1]) or text[-1] in "'\""):
        text = text + " "
    return text


class Context:
    """The region's current tokens and symbols, the error in them, and the scorer."""

    def __init__(self, lines: list[str], region: Region, err: ParseError, scorer: Scorer,
                 deadline: float = float("inf")) -> None:
        self.deadline = deadline
        self.lines = lines
        self.region = region
        self.err = err
        self.scorer = scorer
        self.off = region.first - 1
        self.toks: list[Tok] = lex("".join(lines[region.first - 1:region.last]))
        vocab = scorer.vocab
        syms = list(LEAD)
        sym_index = []
        for t in self.toks:
            s = symbol_of(t, vocab)
            if s is None:
                sym_index.append(-1)
            else:
                sym_index.append(len(syms))
                syms.append(s)
        self.syms = syms
        self.sym_index = sym_index
        self.ids = scorer.ids(syms)
        self.e = self._error_token()
        self._old_spans: dict[tuple[int, int], tuple[list[int], str, list[int]]] = {}
        self._before: dict[tuple[int, int], float] = {}

    # ---- positions
    def fline(self, t: Tok) -> int:
        return t.start[0] + self.off

    def _error_token(self) -> int:
        err = self.err
        target = (err.line - self.off, err.col)
        for i, t in enumerate(self.toks):
            if t.kind in ("NL", "COMMENT", "INDENT", "DEDENT"):
                continue
            if t.start >= target or (t.start[0] == target[0] and t.end[1] > target[1]):
                return i
        return len(self.toks) - 1

    def prev_sig(self, i: int) -> int:
        """The index of the nearest token before i that the model sees and that is code (or -1)."""
        i -= 1
        while i >= 0 and (self.sym_index[i] < 0 or self.toks[i].kind in ("INDENT", "DEDENT")):
            i -= 1
        return i

    def line_text(self, line: int) -> str:
        return self.lines[line - 1]

    def changes(self, p: Proposal) -> tuple[Change, ...]:
        """The text changes of a proposal (in the current text's coordinates)."""
        op = p.op
        if op[0] == "insert":
            return (insert_change(self, op[1], op[2]),)
        if op[0] == "replace":
            return (replace_change(self, op[1], op[2]),)
        return op[1]

    # ---- scoring
    def splice(self, i: int, j: int, new: list[str]) -> float:
        """Model delta of replacing symbols [i, j) by ``new`` (the old window's score is shared
        by every splice at i:j, so it is computed once)."""
        sc = self.scorer
        before = self._before.get((i, j))
        if before is None:
            before = self._before[(i, j)] = sc.span(self.ids, i, j + sc.order - 1)
        return sc.splice_after(self.ids, i, j, sc.symbol_ids(tuple(new))) - before

    def relex_delta(self, first: int, last: int, changes: tuple[Change, ...]) -> float:
        """Model delta of the changes over file lines [first, last], both versions lexed again
        after the same left context (the region's symbols before ``first``).

        The lines are lexed behind a few synthetic lines that open the blocks open at ``first``
        (``if 1:`` at each enclosing indentation), so a dedent after them comes out as the
        DEDENTs the whole file would have, not as the lexer's recovery from a stray indent.
        """
        first = max(first, self.region.first)
        last = min(last, self.region.last)
        key = (first, last)
        if key not in self._old_spans:
            prefix = self._prefix(first)
            self._old_spans[key] = (self._left(first), prefix,
                                    self._lexed(prefix, self.lines[first - 1:last]))
        left, prefix, old = self._old_spans[key]
        rows = self.lines[first - 1:last]
        for c in changes:
            if not first <= c.line <= last:
                raise ValueError(f"change {c} outside the lines {first}..{last} it is scored on")
            text = rows[c.line - first]
            rows[c.line - first] = text[:c.col] + c.new + text[c.end:]
        return self.scorer.seq_delta(left, old, self._lexed(prefix, rows))

    def _left(self, first: int) -> list[int]:
        for i, t in enumerate(self.toks):
            if self.fline(t) >= first:
                k = self.sym_index[i] if self.sym_index[i] >= 0 else self._next_sym(i)
                return self.ids[:k]
        return list(self.ids)

    def _prefix(self, first: int) -> str:
        """Lines that leave the lexer with the indentation stack the region has at ``first``."""
        stack: list[str] = []
        for t in self.toks:
            if self.fline(t) >= first:
                break
            if t.kind == "INDENT":
                stack.append(t.text)
            elif t.kind == "DEDENT" and stack:
                stack.pop()
        if not stack:
            return ""
        heads = [""] + stack[:-1]
        return "".join(ws + "if 1:\n" for ws in heads) + stack[-1] + "pass\n"

    def _next_sym(self, i: int) -> int:
        while i < len(self.toks) and self.sym_index[i] < 0:
            i += 1
        return self.sym_index[i] if i < len(self.toks) else len(self.ids)

    def _lexed(self, prefix: str, rows: list[str]) -> list[int]:
        skip = prefix.count("\n")
        toks = lex(prefix + "".join(rows))
        vocab = self.scorer.vocab
        syms = [s for t in toks if t.start[0] > skip and t.kind != "ENDMARKER"
                if (s := symbol_of(t, vocab)) is not None]
        while syms and syms[-1] == "<DE>":
            syms.pop()
        return self.scorer.ids(syms)


# --------------------------------------------------------------------------- geometry

def near(ctx: Context, lines: int) -> Iterator[Tok]:
    lo = ctx.err.line - lines
    hi = ctx.err.line + 1
    for t in ctx.toks:
        if lo <= ctx.fline(t) <= hi:
            yield t


def distance(ctx: Context, i: int) -> tuple[int, int]:
    line = ctx.fline(ctx.toks[i])
    a, b = sorted((ctx.sym_index[i] if ctx.sym_index[i] >= 0 else 0, ctx.sym_index[ctx.e]))
    return abs(line - ctx.err.line), b - a


def insert_change(ctx: Context, i: int, sym: str) -> Change:
    """Insert ``sym`` before token i: right after the previous token for closers and separators
    (so a ':' lands before a trailing comment), else right before token i."""
    t = ctx.toks[i]
    p = ctx.prev_sig(i)
    if p >= 0 and ctx.toks[p].kind != "NEWLINE" and (
            sym in ATTACH_LEFT or (t.kind in ("NEWLINE", "NL", "ENDMARKER") and ctx.toks[p].end[0] == t.start[0])):
        line, col = ctx.toks[p].end[0] + ctx.off, ctx.toks[p].end[1]   # after the previous token
    elif t.kind in ("NEWLINE", "NL", "ENDMARKER", "DEDENT") and p >= 0:
        pt = ctx.toks[p]
        end = pt.start if pt.kind == "NEWLINE" else pt.end      # never past a line's end
        line, col = end[0] + ctx.off, end[1]
    else:
        line, col = ctx.fline(t), t.start[1]
    text = ctx.line_text(line)
    new = sym
    if sym == ",":
        new = ", " if col < len(text) and text[col] not in " \t\r\n)]}" else ","
    elif sym not in ATTACH_LEFT and sym not in OPENERS:
        before = text[col - 1] if col > 0 else ""
        after = text[col] if col < len(text) else ""
        new = spaced(before, sym, after)
        if not new.startswith(" ") and before not in ("", " ", "\t", "(", "[", "{"):
            new = " " + new
        if not new.endswith(" ") and after not in ("", " ", "\t", "\r", "\n", ")", "]", "}", ":", ","):
            new = new + " "
    return Change(line, col, col, new)


def replace_change(ctx: Context, i: int, new: str) -> Change:
    t = ctx.toks[i]
    line = ctx.fline(t)
    text = ctx.line_text(line)
    a, b = t.start[1], t.end[1]
    before = text[a - 1] if a > 0 else ""
    after = text[b] if b < len(text) else ""
    if new:
        new = spaced(before, new, after)
    elif word(before) and word(after):
        new = " "
    elif after in (" ", "\t") and (before in (" ", "\t") or not text[:a].strip()):
        b += 1                        # take one blank with it (and keep the line's indentation)
        while not text[:a].strip() and b < len(text) and text[b] in " \t":
            b += 1
    return Change(line, a, b, new)


def logical_start(ctx: Context, i: int) -> int:
    """The file line where the statement holding token i starts."""
    j = i - 1
    while j >= 0 and ctx.toks[j].kind not in ("NEWLINE", "INDENT", "DEDENT"):
        j -= 1
    k = j + 1
    while k < len(ctx.toks) and ctx.toks[k].kind in ("NL", "COMMENT", "INDENT", "DEDENT"):
        k += 1
    return ctx.fline(ctx.toks[min(k, i)])


def first_on_line(ctx: Context, i: int) -> bool:
    line = ctx.toks[i].start[0]
    j = i - 1
    while j >= 0 and ctx.toks[j].kind in ("INDENT", "DEDENT"):
        j -= 1
    return j < 0 or ctx.toks[j].end[0] < line or ctx.toks[j].kind in ("NL", "NEWLINE")
