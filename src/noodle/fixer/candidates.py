"""What could fix an error: token edits near where CPython stopped, each with its model score.

Why these edits and no others: real syntax errors are overwhelmingly one or two tokens wrong
near the reported position (58% need a one-token fix; the error line is within one line of the
fix in 97.6%), so the generator proposes every insertion, deletion and substitution of a
syntax token (brackets, colons, commas, dots, operators, keywords) at the tokens around the
error, and lets the model and the parser choose. Three structures get their own edit classes
because a token view cannot see them: brackets (an unclosed or unmatched bracket says which
closer or opener is missing, and where it can go: where the stack has that opener on top),
strings (an unterminated string is one bad token; its closing quote can go at any boundary
inside it) and indentation (a line or a block moved to another open level). Those edits change
the layout of what follows (NEWLINE/INDENT tokens appear or vanish), so they are scored by
lexing the changed lines again instead of splicing symbols.

CPython's message only adds positions (the range of "Perhaps you forgot a comma?", the opener
of "'(' was never closed"); it never picks the edit. Python 2's ``print x`` is the one
two-token edit proposed directly, because its message names it exactly.

Example::

    ctx = Context(lines, region, err, scorer)
    for p in propose(ctx):
        print(p.kind, p.changes, p.score)
"""

from __future__ import annotations

import functools
import keyword
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from noodle.fixer.lexer import Tok, lex, symbol_of
from noodle.fixer.localize import ParseError, Region
from noodle.fixer.rank import (
    EOL_CLOSER_BONUS,
    INDENT_LEVEL_COST,
    LINE_COST,
    STRING_PIECE_COST,
    Scorer,
    delete_cost,
    edit_cost,
)

__all__ = ["Change", "Context", "Proposal", "apply_changes", "propose"]

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {")": "(", "]": "[", "}": "{"}
#: symbols inserted at any position near the error (closers and openers come from the bracket
#: structure instead)
INSERTABLE = (":", ",", ".", "=", "==", "in", "not", "and", "or", "is", "if", "else", "for",
              "import", "as", "return", "pass", "+", "*")
#: what an operator is mistyped for, with 1 for the classic confusions ('=' for '==', ';' for
#: ':') and 2 for the rarer ones (which pay rank.TYPO_COST more)
CONFUSED: dict[str, tuple[tuple[str, int], ...]] = {
    "=": (("==", 1), (":=", 2), (":", 2), ("!=", 2)),
    "==": (("=", 1), ("!=", 2), ("is", 2)),
    ":=": (("=", 1),),
    ":": ((";", 1), (",", 2), (".", 2), ("=", 2)),
    ";": ((":", 1), (",", 2)),
    ",": ((".", 1), (":", 2), (";", 2), ("as", 2)),       # except E, e: (Python 2)
    ".": ((",", 1), (":", 2)),
    "!=": (("==", 2), ("=", 2)),
    "->": (("=", 2), (":", 2)),
    "-": (("=", 2),),
    "+=": (("=", 2),),
    "<": (("<=", 2),),
    ">": ((">=", 2), ("->", 2)),
    "<=": (("<", 2),),
    ">=": ((">", 2),),
}
KEYWORD_SUBS: dict[str, tuple[str, ...]] = {
    "if": ("elif", "while"), "elif": ("else", "if"), "else": ("elif",), "is": ("in", "=="),
    "in": ("is",), "and": ("or",), "or": ("and",),
}
#: keywords a misspelled name may be (soft keywords and constants excluded: they are names too)
TYPO_TARGETS = tuple(sorted(k for k in keyword.kwlist if k not in ("True", "False", "None")))
_ATTACH_LEFT = frozenset({")", "]", "}", ",", ":", "."})
_NO_EDIT = frozenset({"NEWLINE", "NL", "COMMENT", "INDENT", "DEDENT", "ENDMARKER"})
BACK, AHEAD = 5, 1
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


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _spaced(before: str, text: str, after: str) -> str:
    """``text`` with a space on each side where it would otherwise fuse with its neighbours."""
    if text and before and _word(before) and _word(text[0]):
        text = " " + text
    if text and after and _word(after) and (_word(text[-1]) or text[-1] in "'\""):
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
        syms = ["<s>"]
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
        self._old_spans: dict[tuple[int, int], tuple[list[int], list[int]]] = {}

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
            return (_insert_change(self, op[1], op[2]),)
        if op[0] == "replace":
            return (_replace_change(self, op[1], op[2]),)
        return op[1]

    # ---- scoring
    def splice(self, i: int, j: int, new: list[str]) -> float:
        return self.scorer.splice_delta(self.ids, i, j, self.scorer.ids(new))

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


# --------------------------------------------------------------------------- the generators

def propose(ctx: Context, limit: int = 100) -> list[Proposal]:
    """The ``limit`` best proposals for the context's error, scored, best first (ties broken by
    position; duplicates are left to the caller, who sees their texts)."""
    msg = ctx.err.message
    sources: list[Iterator[Proposal]] = [_token_edits(ctx), _pair_edits(ctx)]
    if msg.startswith("Missing parentheses in call to"):
        sources.append(_print_edit(ctx))
    if msg.startswith(("invalid character", "invalid non-printable character")):
        sources.append(_lookalike_edits(ctx))
    sources.append(_bracket_edits(ctx))
    if any(t.kind == "ERRORTOKEN" and t.text[-1:] not in ("$", "?", "!", "\\") for t in _near(ctx, 3)):
        sources.append(_quote_edits(ctx))
    if ctx.err.kind in ("IndentationError", "TabError") or _at_line_start(ctx) or "indent" in msg:
        sources.append(_indent_edits(ctx))
    if msg.startswith("unterminated triple-quoted string"):
        sources.append(_triple_quote_edits(ctx))
    out: list[Proposal] = []
    clock = time.perf_counter
    for source in sources:                 # cheapest first: past the deadline, what is scored so far
        for p in source:
            out.append(p)
            if len(out) % 16 == 0 and clock() > ctx.deadline:
                break
        if clock() > ctx.deadline:
            break
    out.sort(key=lambda p: (-p.score, p.key))
    return out[:limit]


def _near(ctx: Context, lines: int) -> Iterator[Tok]:
    lo = ctx.err.line - lines
    hi = ctx.err.line + 1
    for t in ctx.toks:
        if lo <= ctx.fline(t) <= hi:
            yield t


def _at_line_start(ctx: Context) -> bool:
    p = ctx.prev_sig(ctx.e)
    return p < 0 or ctx.toks[p].kind == "NEWLINE"


def _positions(ctx: Context) -> list[int]:
    """Token indices to edit at: a few tokens before the error and one after, the rest of the
    error's line, and the range a message names ("Perhaps you forgot a comma?")."""
    toks = ctx.toks
    code = [i for i, t in enumerate(toks) if ctx.sym_index[i] >= 0 and t.kind not in ("INDENT", "DEDENT")]
    where = {i: n for n, i in enumerate(code)}
    e = ctx.e
    n = where.get(e)
    if n is None:
        n = max((k for k, i in enumerate(code) if i < e), default=0)
    chosen = set(code[max(0, n - BACK):n + AHEAD + 1])
    err = ctx.err
    for i in code:
        line = ctx.fline(toks[i])
        if line == err.line and abs(where[i] - n) <= 12:
            chosen.add(i)
        elif err.end_line > err.line or err.end_col > err.col + 1:
            if (err.line, err.col) <= (line, toks[i].start[1]) <= (err.end_line, err.end_col):
                chosen.add(i)
    return sorted(chosen)


def _distance(ctx: Context, i: int) -> tuple[int, int]:
    line = ctx.fline(ctx.toks[i])
    a, b = sorted((ctx.sym_index[i] if ctx.sym_index[i] >= 0 else 0, ctx.sym_index[ctx.e]))
    return abs(line - ctx.err.line), b - a


def _insert_change(ctx: Context, i: int, sym: str) -> Change:
    """Insert ``sym`` before token i: right after the previous token for closers and separators
    (so a ':' lands before a trailing comment), else right before token i."""
    t = ctx.toks[i]
    p = ctx.prev_sig(i)
    if p >= 0 and ctx.toks[p].kind != "NEWLINE" and (
            sym in _ATTACH_LEFT or (t.kind in ("NEWLINE", "NL", "ENDMARKER") and ctx.toks[p].end[0] == t.start[0])):
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
    elif sym not in _ATTACH_LEFT and sym not in OPENERS:
        before = text[col - 1] if col > 0 else ""
        after = text[col] if col < len(text) else ""
        new = _spaced(before, sym, after)
        if not new.startswith(" ") and before not in ("", " ", "\t", "(", "[", "{"):
            new = " " + new
        if not new.endswith(" ") and after not in ("", " ", "\t", "\r", "\n", ")", "]", "}", ":", ","):
            new = new + " "
    return Change(line, col, col, new)


def _replace_change(ctx: Context, i: int, new: str) -> Change:
    t = ctx.toks[i]
    line = ctx.fline(t)
    text = ctx.line_text(line)
    a, b = t.start[1], t.end[1]
    before = text[a - 1] if a > 0 else ""
    after = text[b] if b < len(text) else ""
    if new:
        new = _spaced(before, new, after)
    elif _word(before) and _word(after):
        new = " "
    elif after in (" ", "\t") and (before in (" ", "\t") or not text[:a].strip()):
        b += 1                        # take one blank with it (and keep the line's indentation)
        while not text[:a].strip() and b < len(text) and text[b] in " \t":
            b += 1
    return Change(line, a, b, new)


def _token_edits(ctx: Context) -> Iterator[Proposal]:
    toks = ctx.toks
    for i in _positions(ctx):
        t = toks[i]
        si = ctx.sym_index[i]
        lines, dist = _distance(ctx, i)
        base = edit_cost(1, lines, dist)
        glued = _after_bad_string(ctx, i)
        for sym in INSERTABLE:
            if glued and (sym in _ATTACH_LEFT or t.kind in ("NEWLINE", "NL", "ENDMARKER")):
                continue                   # the text would only lengthen the unterminated string
            delta = ctx.splice(si, si, [sym])
            yield Proposal(delta - base, "insert", 1, (i, 0, sym), ("insert", i, sym))
        if t.kind in _NO_EDIT or t.start[0] != t.end[0] or t.text in OPENERS or t.text in CLOSERS:
            continue
        cost = base + delete_cost(t.kind, t.text)
        delta = ctx.splice(si, si + 1, [])
        if t.kind != "OP":
            # a stray word (name, keyword, number, string) is as likely as the model finds it in
            # that place, so its deletion gains nothing from its own improbability
            # (see rank.delete_cost)
            delta += ctx.scorer.span(ctx.ids, si, si + 1)
        yield Proposal(delta - cost, "delete", 1, (i, 1, ""), ("replace", i, ""))
        subs: list[tuple[str, int]] = []
        if t.kind == "OP":
            subs = list(CONFUSED.get(t.text, ()))
        elif t.kind == "NAME":
            subs = [(s, 1) for s in KEYWORD_SUBS.get(t.text, ())]
            if not keyword.iskeyword(t.text):
                subs += _typo_keywords(t.text)
        for sym, typo in subs:
            cost = edit_cost(1, lines, dist, typo)
            delta = ctx.splice(si, si + 1, [sym])
            yield Proposal(delta - cost, "substitute", 1, (i, 2, sym), ("replace", i, sym))


def _after_bad_string(ctx: Context, i: int) -> bool:
    p = ctx.prev_sig(i)
    return p >= 0 and ctx.toks[p].kind == "ERRORTOKEN" and ("'" in ctx.toks[p].text or '"' in ctx.toks[p].text)


@functools.lru_cache(maxsize=4096)
def _typo_keywords(name: str) -> list[tuple[str, int]]:
    """Keywords within a small edit distance of ``name`` (transpositions and case count once)."""
    out = []
    low = name.lower()
    for kw in TYPO_TARGETS:
        if abs(len(kw) - len(name)) > 2:
            continue
        d = _damerau(low, kw)
        d += 1 if low != name else 0
        limit = 1 if len(kw) <= 3 else 2
        if 0 < d <= limit:
            out.append((kw, d))
    return out


def _damerau(a: str, b: str) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


# --------------------------------------------------------------------------- brackets

def _bracket_edits(ctx: Context) -> Iterator[Proposal]:
    """Closers where an unclosed opener is on top of the stack, openers before an unmatched
    closer, the other kind for a mismatched one, and deleting the culprit."""
    toks = ctx.toks
    stack: list[int] = []
    unclosed: list[int] = []
    unmatched: list[int] = []
    top_at: dict[int, int] = {}          # token index -> index of the opener on top before it
    for i, t in enumerate(toks):
        if stack:
            top_at[i] = stack[-1]
        if t.kind != "OP":
            continue
        if t.text in OPENERS:
            stack.append(i)
        elif t.text in CLOSERS:
            if not stack:
                unmatched.append(i)
            elif toks[stack[-1]].text != CLOSERS[t.text]:
                if _near_error(ctx, i):
                    yield from _mismatch(ctx, stack[-1], i, top_at)
                stack.pop()
            else:
                stack.pop()
    unclosed = stack
    for o in [o for o in unclosed if _near_error(ctx, o)][-2:]:
        yield from _close(ctx, o, top_at)
    for c in [c for c in unmatched if _near_error(ctx, c)][:2]:
        yield from _open(ctx, c)


def _near_error(ctx: Context, i: int) -> bool:
    """Whether bracket token i is the one CPython names, or within a few lines of its error (an
    unclosed bracket far from the error is a symptom: an unterminated string swallowed its
    closer, or it is closed by a later edit)."""
    t = ctx.toks[i]
    line = ctx.fline(t)
    err = ctx.err
    if line == err.line and t.start[1] == err.col:
        return True
    return err.line - 3 <= line <= err.line + 1


def _logical_start(ctx: Context, i: int) -> int:
    """The file line where the statement holding token i starts."""
    j = i - 1
    while j >= 0 and toks_kind(ctx, j) not in ("NEWLINE", "INDENT", "DEDENT"):
        j -= 1
    k = j + 1
    while k < len(ctx.toks) and ctx.toks[k].kind in ("NL", "COMMENT", "INDENT", "DEDENT"):
        k += 1
    return ctx.fline(ctx.toks[min(k, i)])


def toks_kind(ctx: Context, j: int) -> str:
    return ctx.toks[j].kind


def _bracket_cost(ctx: Context, i: int, edits: int = 1) -> float:
    lines, dist = _distance(ctx, i)
    return edit_cost(edits, lines, dist)


def _close(ctx: Context, o: int, top_at: dict[int, int]) -> Iterator[Proposal]:
    """Insert the closer for the unclosed opener ``o``, or for a bracket opened inside it (when the
    closer meant for that one closed ``o``'s instead): at every position from ``o`` to a couple of
    lines on (the closer of whatever bracket is on top there), and at the end of the last line
    before the text comes back to the statement's indentation (a multi-line literal whose closing
    line was lost). Or delete ``o``."""
    toks = ctx.toks
    oline = ctx.fline(toks[o])
    near_last = min(max(oline + 2, ctx.err.line), oline + 6, ctx.region.last)
    first = max(_logical_start(ctx, o), oline - 10)
    width = _width(_lead(ctx.line_text(first)))
    spots: list[tuple[int, str]] = []
    far: list[tuple[int, str]] = []
    last_code = o
    for i in range(o + 1, len(toks)):
        t = toks[i]
        line = ctx.fline(t)
        code = t.kind not in ("NL", "COMMENT", "INDENT", "DEDENT", "NEWLINE", "ENDMARKER")
        if t.kind == "ENDMARKER" or (code and line > near_last and t.start[1] <= width
                                     and _first_on_line(ctx, i)):
            # the end of the last line inside, and the start of the first line back out
            for j in ((last_code + 1, i) if t.kind != "ENDMARKER" else (last_code + 1,)):
                if ctx.fline(toks[j]) > near_last and top_at.get(j, -1) >= o:
                    far.append((j, OPENERS[toks[top_at[j]].text]))
            break
        if code:
            last_code = i
        if line > near_last or t.kind in ("COMMENT", "INDENT", "DEDENT"):
            continue
        top = top_at.get(i, -1)
        if top < o or (t.kind == "NL" and toks[i - 1].kind == "NL"):
            continue                       # outside o, or a blank line (the line before offers its end)
        spots.append((i, OPENERS[toks[top].text]))
    if not spots and not far:
        return
    if len(spots) > MAX_SPOTS:             # a long line: line ends, then the spots nearest the error
        ends = [x for x in spots if toks[x[0]].kind in ("NL", "NEWLINE", "COMMENT")]
        rest = sorted((x for x in spots if x not in ends), key=lambda x: (abs(x[0] - ctx.e), x[0]))
        spots = sorted((ends + rest)[:MAX_SPOTS])
    last = min(max(ctx.fline(toks[i]) for i, _ in spots) + 1 if spots else first, ctx.region.last)
    for i, closer in spots:
        ch = _insert_change(ctx, i, closer)
        delta = ctx.relex_delta(first, last, (ch,))
        cost = _bracket_cost(ctx, i) - (EOL_CLOSER_BONUS if toks[i].kind in ("NL", "NEWLINE", "COMMENT") else 0.0)
        yield Proposal(delta - cost, "insert", 1, (i, 0, closer), ("changes", (ch,)))
    for i, closer in far:
        ch = _insert_change(ctx, i, closer)
        delta = ctx.relex_delta(first, min(ch.line + 1, ctx.region.last), (ch,))
        yield Proposal(delta - _bracket_cost(ctx, i), "insert", 1, (i, 0, closer), ("changes", (ch,)))
    ch = _replace_change(ctx, o, "")
    cost = _bracket_cost(ctx, o) + delete_cost("OP", toks[o].text)
    yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "delete", 1, (o, 1, ""), ("changes", (ch,)))


def _first_on_line(ctx: Context, i: int) -> bool:
    line = ctx.toks[i].start[0]
    j = i - 1
    while j >= 0 and ctx.toks[j].kind in ("INDENT", "DEDENT"):
        j -= 1
    return j < 0 or ctx.toks[j].end[0] < line or ctx.toks[j].kind in ("NL", "NEWLINE")


def _open(ctx: Context, c: int) -> Iterator[Proposal]:
    """Insert the opener an unmatched closer lost, at a position outside any other bracket of its
    statement or of the lines just above it (``raise E`` then ``"msg".format(x))`` on the next
    line), or delete the closer."""
    toks = ctx.toks
    opener = CLOSERS[toks[c].text]
    stmt = _logical_start(ctx, c)
    first = max(ctx.region.first, stmt - 2)
    last = min(ctx.fline(toks[c]) + 1, ctx.region.last)
    depth = 0
    spots = 0
    for i in range(c - 1, -1, -1):
        t = toks[i]
        if ctx.fline(t) < first or spots >= MAX_SPOTS:
            break
        if t.kind == "OP" and t.text in CLOSERS:
            depth += 1
        elif t.kind == "OP" and t.text in OPENERS:
            depth -= 1
        if depth != 0 or ctx.sym_index[i] < 0 or t.kind in ("INDENT", "DEDENT"):
            continue
        spots += 1
        ch = _insert_change(ctx, i, opener)
        cost = _bracket_cost(ctx, i) + (LINE_COST if ctx.fline(t) < stmt else 0.0)
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "insert", 1, (i, 0, opener), ("changes", (ch,)))
    ch = _replace_change(ctx, c, "")
    cost = _bracket_cost(ctx, c) + delete_cost("OP", toks[c].text)
    yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "delete", 1, (c, 1, ""), ("changes", (ch,)))


def _mismatch(ctx: Context, o: int, c: int, top_at: dict[int, int]) -> Iterator[Proposal]:
    """A closer of the wrong kind: make it the right kind, make the opener its kind, insert the
    right closer before it, insert its own opener after the opener on top (``Union float, x]``),
    or delete it."""
    toks = ctx.toks
    first = _logical_start(ctx, o)
    last = min(ctx.fline(toks[c]) + 1, ctx.region.last)
    want = OPENERS[toks[o].text]
    own = CLOSERS[toks[c].text]
    options = [
        (c, "substitute", _replace_change(ctx, c, want)),
        (o, "substitute", _replace_change(ctx, o, own)),
        (c, "insert", _insert_change(ctx, c, want)),
        (c, "delete", _replace_change(ctx, c, "")),
    ]
    inner = [i for i in range(o + 1, c) if top_at.get(i) == o and ctx.sym_index[i] >= 0
             and toks[i].kind not in ("NL", "COMMENT", "INDENT", "DEDENT")]
    options += [(i, "insert", _insert_change(ctx, i, own)) for i in inner[-MAX_SPOTS:]]
    for i, kind, ch in options:
        cost = _bracket_cost(ctx, i) + (delete_cost("OP", toks[c].text) if kind == "delete" else 0.0)
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, kind, 1, (i, 3, kind, ch.new),
                       ("changes", (ch,)))


# --------------------------------------------------------------------------- strings

def _quote_edits(ctx: Context) -> Iterator[Proposal]:
    """Put back the quote an unterminated string lost: its closing quote at a boundary inside it,
    or inside an earlier string on its line with the same quote (that string's closing quote was
    then meant to open the next one, which is why CPython reports the wrong one), or its opening
    quote before an earlier token; or delete its quote.

    A token model cannot see inside strings, so a quote placed late would swallow code for free:
    each piece (word or punctuation mark) a repair adds to the line's string content (the bad
    string's text counted as string content before) pays :data:`STRING_PIECE_COST`, and each one
    it moves out of strings, where the model then scores it as a token, gains as much.
    """
    for i, t in enumerate(ctx.toks):
        if t.kind != "ERRORTOKEN" or abs(ctx.fline(t) - ctx.err.line) > 1:
            continue
        text = t.text
        q = 0
        while q < len(text) and text[q] not in "'\"":
            q += 1
        if q >= len(text) or text[q:q + 3] == text[q] * 3:
            continue
        quote = text[q]
        line = ctx.fline(t)
        first = _logical_start(ctx, i)
        last = min(line + 1, ctx.region.last)
        row = ctx.line_text(line)
        had = _string_chars(row) + _pieces(text[q + 1:])   # the bad string's text counts as string
        base = t.start[1] + q + 1
        spots: dict[int, int] = {col: 0 for col in _boundaries(row, base, t.end[1])[-40:]}
        for j in range(i - 1, -1, -1):
            u = ctx.toks[j]
            if ctx.fline(u) != line or u.kind in _NO_EDIT:
                break
            if u.kind == "STRING" and u.start[0] == u.end[0]:
                body = u.text.lstrip("rRbBuUfF")
                if body[:1] == quote and body[:3] != quote * 3:
                    start = u.start[1] + len(u.text) - len(body) + 1
                    for col in _boundaries(row, start, u.end[1] - 1):
                        spots.setdefault(col, i - j)
            elif u.kind in ("NAME", "NUMBER") or u.text in ("(", "[", "{", ",", "="):
                spots.setdefault(u.start[1] if u.kind in ("NAME", "NUMBER") else u.end[1], i - j)
        for col in sorted(spots):
            ch = Change(line, col, col, quote)
            grown = _string_chars(row[:col] + quote + row[col:]) - had
            cost = edit_cost(1, abs(line - ctx.err.line), spots[col]) + STRING_PIECE_COST * grown
            yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "quote", 1, (i, 4, col),
                           ("changes", (ch,)))
        ch = Change(line, base - 1, base, "")
        grown = _string_chars(row[:base - 1] + row[base:]) - had
        cost = edit_cost(1) + delete_cost("OP", "(") + STRING_PIECE_COST * grown     # a quote opens
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "quote", 1, (i, 5, 0), ("changes", (ch,)))


def _boundaries(row: str, start: int, end: int) -> list[int]:
    """Columns in [start, end] where a quote could end a string: word edges and the end. At the
    end of a line the quote goes after any trailing blanks (code lines do not end in blanks, so
    they were the string's)."""
    stop = len(row.rstrip("\r\n"))
    blanks = len(row[:stop].rstrip(" \t"))        # where trailing blanks start
    out = []
    for col in range(start, end + 1):
        if end >= stop and blanks <= col < stop:
            continue
        if col == end or (col > start and (not _word(row[col]) or not _word(row[col - 1]))
                          and row[col] != "\\" and row[col - 1] != "\\"):
            out.append(col)
    return out


def _string_chars(row: str) -> int:
    """Pieces (words and punctuation marks) of string content in the complete strings on one line."""
    n = 0
    for t in lex(row.lstrip(" \t")):
        if t.kind == "STRING":
            body = t.text.lstrip("rRbBuUfF")
            q = 3 if body[:3] in ('"""', "'''") else 1
            n += _pieces(body[q:-q])
    return n


_PIECE = re.compile(r"\w+|[^\w\s]")


def _pieces(text: str) -> int:
    return len(_PIECE.findall(text))


# --------------------------------------------------------------------------- indentation

def _width(ws: str) -> int:
    col = 0
    for ch in ws:
        col = (col // 8 + 1) * 8 if ch == "\t" else col + 1
    return col


def _lead(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def _code(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _indent_edits(ctx: Context) -> Iterator[Proposal]:
    """Move a statement's line to another open level: alone, with the lines nested under it, or
    with the rest of its block. Which lines: for "expected an indented block", the line that
    should have been the body (the header is not what is wrong); otherwise the error's line and
    the two statements before it (a line dedented by mistake makes the next one look indented).
    """
    lines = ctx.lines
    reg = ctx.region
    rows = _statement_rows(ctx)
    if not rows:
        return
    err_row = min(max(ctx.err.line, reg.first), reg.last)
    body = ctx.err.message.startswith("expected an indented block")
    if body:
        targets = [r for r in rows if r >= err_row][:1]
    else:
        targets = [r for r in rows if r < err_row][-2:] + ([err_row] if err_row in rows else [])
    unit = _unit(lines, rows)
    for row in targets:
        ws = _lead(lines[row - 1])
        w0 = _width(ws)
        for w in _levels(lines, rows, row, unit, body) + [w0]:
            new_ws = _ws_for(lines, rows, w)
            if w == w0 and (new_ws == ws or ctx.err.kind != "TabError"):
                continue                   # same level: only to make tabs and spaces agree
            for span in _spans(lines, rows, row, w0):
                changes = tuple(Change(r, 0, len(_lead(lines[r - 1])),
                                       _shift(lines[r - 1], w0, w, new_ws)) for r in span)
                last = min(span[-1] + 2, reg.last)
                delta = ctx.relex_delta(reg.first, last, changes)
                cost = edit_cost(len(span), abs(row - ctx.err.line)) + INDENT_LEVEL_COST * abs(w - w0) / unit
                yield Proposal(delta - cost, "indent", len(span), (row, 6, w, len(span)), ("changes", changes))


def _statement_rows(ctx: Context) -> list[int]:
    """File lines where a statement starts (not continuation lines, not lines inside strings)."""
    rows = []
    start = True
    for t in ctx.toks:
        if t.kind in ("NEWLINE", "INDENT", "DEDENT"):
            start = True
        elif t.kind not in ("NL", "COMMENT", "ENDMARKER"):
            if start:
                rows.append(ctx.fline(t))
            start = False
    return rows


def _unit(lines: list[str], rows: list[int]) -> int:
    steps: dict[int, int] = {}
    prev = 0
    for r in rows:
        w = _width(_lead(lines[r - 1]))
        if w > prev:
            steps[w - prev] = steps.get(w - prev, 0) + 1
        prev = w
    return max(sorted(steps), key=lambda s: steps[s]) if steps else 4


def _levels(lines: list[str], rows: list[int], row: int, unit: int, body: bool = False) -> list[int]:
    """The open indentation levels at ``row``: the previous statement's, each shallower one
    above it, and one deeper when the previous line opens a block. For a missing body only the
    deeper ones: a unit in, four spaces in, or as deep as the next line when that is deeper."""
    prev = [r for r in rows if r < row]
    if not prev:
        return [0]
    p = prev[-1]
    pw = _width(_lead(lines[p - 1]))
    if body:
        nxt = [r for r in rows if r > row][:1]
        out = [pw + unit, pw + 4]
        if nxt and _width(_lead(lines[nxt[0] - 1])) > pw:
            out.append(_width(_lead(lines[nxt[0] - 1])))
        return sorted(set(out))
    levels = [pw]
    low = pw
    for r in reversed(prev):
        w = _width(_lead(lines[r - 1]))
        if w < low:
            levels.append(w)
            low = w
    if lines[p - 1].split("#")[0].rstrip().endswith(":"):
        levels.insert(0, pw + unit)
    return levels[:4]


def _ws_for(lines: list[str], rows: list[int], w: int) -> str:
    for r in rows:
        ws = _lead(lines[r - 1])
        if _width(ws) == w:
            return ws
    return " " * w


def _shift(line: str, w0: int, w: int, new_ws: str) -> str:
    ws = _lead(line)
    rest = _width(ws) - w0
    return new_ws + " " * rest if rest > 0 else new_ws


def _spans(lines: list[str], rows: list[int], row: int, w0: int) -> list[list[int]]:
    """The line alone; with the following lines nested deeper than it; with the following lines
    at its level or deeper (until a shallower one)."""
    after = [r for r in rows if r > row]
    nested = [row]
    for r in after:
        if _width(_lead(lines[r - 1])) > w0:
            nested.append(r)
        else:
            break
    block = [row]
    for r in after:
        if _width(_lead(lines[r - 1])) >= w0:
            block.append(r)
        else:
            break
    spans = [[row]]
    for s in (nested, block):
        if len(s) > 1 and len(s) <= 40 and s not in spans:
            spans.append(s)
    return spans


# --------------------------------------------------------------------------- print x

def _print_edit(ctx: Context) -> Iterator[Proposal]:
    """``print x`` -> ``print(x)``: the message names this two-token edit exactly."""
    toks = ctx.toks
    i = ctx.e
    while i < len(toks) and not (toks[i].kind == "NAME" and toks[i].text == "print"):
        i += 1
    if i + 1 >= len(toks):
        return
    j = i + 1
    while j < len(toks) and toks[j].kind not in ("NEWLINE", "ENDMARKER"):
        j += 1
    last = ctx.prev_sig(j)
    if last <= i:
        return
    line = ctx.fline(toks[i])
    a = toks[i].end[1]
    b = toks[i + 1].start[1]
    end_tok = toks[last]
    open_change = Change(line, a, b if ctx.fline(toks[i + 1]) == line else a, "(")
    close_change = Change(end_tok.end[0] + ctx.off, end_tok.end[1], end_tok.end[1], ")")
    si, sj = ctx.sym_index[i], ctx.sym_index[last]
    new = ctx.syms[si:sj + 1]
    new = [new[0], "("] + new[1:] + [")"]
    delta = ctx.splice(si, sj + 1, new)
    # one slip (Python 2's syntax), which CPython's message names, so one edit's cost
    yield Proposal(delta - edit_cost(1), "print", 2, (i, 7), ("changes", (open_change, close_change)))


# --------------------------------------------------------------------------- two tokens as one slip

def _pair_edits(ctx: Context) -> Iterator[Proposal]:
    """Slips that take two tokens but are one mistake: ``else if`` for ``elif`` (C, JavaScript),
    and a missing ``()`` after a name (``def f:``, ``x.close:``)."""
    toks = ctx.toks
    for i in _positions(ctx):
        t = toks[i]
        si = ctx.sym_index[i]
        lines, dist = _distance(ctx, i)
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == "NAME" and t.text == "else" and nxt is not None and nxt.text == "if" \
                and nxt.start[0] == t.start[0]:
            ch = Change(ctx.fline(t), t.start[1], nxt.end[1], "elif")
            delta = ctx.splice(si, si + 2, ["elif"])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 8), ("changes", (ch,)))
        if t.kind == "NAME" and t.text == "raise":
            yield from _raise_edit(ctx, i)
        p = ctx.prev_sig(i)
        if p >= 0 and toks[p].kind == "NAME" and not keyword.iskeyword(toks[p].text) \
                and toks[p].end[0] == t.start[0] and t.text not in ("(", "["):
            pt = toks[p]
            ch = Change(ctx.fline(pt), pt.end[1], pt.end[1], "()")
            delta = ctx.splice(si, si, ["(", ")"])
            yield Proposal(delta - edit_cost(2, lines, dist), "insert", 2, (i, 9), ("changes", (ch,)))


def _raise_edit(ctx: Context, i: int) -> Iterator[Proposal]:
    """Python 2's ``raise E, message`` -> ``raise E(message)`` (one slip, like ``print x``)."""
    toks = ctx.toks
    j = i + 1
    while j < len(toks) and (toks[j].kind == "NAME" or toks[j].text == ".") and toks[j].start[0] == toks[i].start[0]:
        j += 1
    if j == i + 1 or j >= len(toks) or toks[j].text != ",":
        return
    end = j + 1
    while end < len(toks) and toks[end].kind not in ("NEWLINE", "ENDMARKER"):
        end += 1
    last = ctx.prev_sig(end)
    if last <= j or toks[last].end[0] != toks[j].start[0]:
        return
    line = ctx.fline(toks[j])
    comma = toks[j]
    row = ctx.line_text(line)
    stop = comma.end[1] + (1 if row[comma.end[1]:comma.end[1] + 1] == " " else 0)
    changes = (Change(line, comma.start[1], stop, "("),
               Change(line, toks[last].end[1], toks[last].end[1], ")"))
    si, sj = ctx.sym_index[j], ctx.sym_index[last]
    new = ["("] + ctx.syms[si + 1:sj + 1] + [")"]
    delta = ctx.splice(si, sj + 1, new)
    yield Proposal(delta - edit_cost(1), "substitute", 2, (i, 12), ("changes", changes))


# --------------------------------------------------------------------------- look-alike characters

#: characters pasted from word processors, web pages and non-ASCII keyboards that CPython rejects,
#: and the ASCII they stand for
LOOKALIKES = {
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u2018": "'", "\u2019": "'",
    "\u201a": "'", "\u2032": "'", "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u00a0": " ",
    "\u2009": " ", "\u202f": " ", "\u200b": "", "\ufeff": "", "\u00d7": "*", "\u00f7": "/",
    "\uff1a": ":", "\uff0c": ",", "\uff08": "(", "\uff09": ")", "\uff1b": ";", "\uff1d": "=",
    "\u3000": " ", "\uff3b": "[", "\uff3d": "]", "\u2026": "...",
}


def _lookalike_edits(ctx: Context) -> Iterator[Proposal]:
    """Replace the look-alike character CPython names, or every one on its line outside strings
    (a pasted line has them all: both curly quotes of a string)."""
    line = ctx.err.line
    if not ctx.region.first <= line <= ctx.region.last:
        return
    row = ctx.line_text(line)
    inside = set()
    for t in ctx.toks:
        if t.kind == "STRING" and ctx.fline(t) == line and t.start[0] == t.end[0]:
            inside.update(range(t.start[1], t.end[1]))
    cols = [c for c, ch in enumerate(row) if ch in LOOKALIKES and c not in inside]
    if not cols:
        return
    first = _logical_start(ctx, ctx.e) if ctx.e < len(ctx.toks) else line
    last = min(line + 1, ctx.region.last)
    options = []
    if ctx.err.col in cols:
        options.append((ctx.err.col,))
    options.append(tuple(cols))
    for n, group in enumerate(dict.fromkeys(options)):
        changes = tuple(Change(line, c, c + 1, LOOKALIKES[row[c]]) for c in group)
        delta = ctx.relex_delta(min(first, line), last, changes)
        yield Proposal(delta - edit_cost(1), "substitute", len(changes), (line, 10, n), ("changes", changes))


# --------------------------------------------------------------------------- unterminated docstring

def _triple_quote_edits(ctx: Context) -> Iterator[Proposal]:
    """Close an unterminated triple-quoted string at the end of one of the lines after it opens."""
    bad = next((i for i, t in enumerate(ctx.toks) if t.kind == "ERRORTOKEN" and len(t.text) >= 3
                and t.text.lstrip("rRbBuUfF")[:3] in ('"""', "'''")), None)
    if bad is None:
        return
    t = ctx.toks[bad]
    quote = t.text.lstrip("rRbBuUfF")[:3]
    start = ctx.fline(t)
    last = min(start + 30, ctx.region.last)
    first = _logical_start(ctx, bad)
    for line in range(start, last + 1):
        row = ctx.line_text(line)
        col = len(row.rstrip("\r\n"))
        if line == start and col <= t.start[1] + 3:
            continue
        ch = Change(line, col, col, quote)
        delta = ctx.relex_delta(first, last, (ch,))
        yield Proposal(delta - edit_cost(1, 0, 0) - LINE_COST * min(line - start, 8) * 0.25, "quote", 1,
                       (bad, 11, line), ("changes", (ch,)))
