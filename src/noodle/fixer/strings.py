"""String and character repairs: a lost quote, an unterminated docstring, pasted look-alikes.

Why their own edit class: an unterminated string is one bad token running to the end of its
line (or file), so the place its quote belongs is inside that token, which a token edit cannot
reach; and a pasted curly quote or no-break space is a character CPython rejects, not a token.
These proposals are scored by lexing the line again; string content is priced per piece
(``rank.STRING_PIECE_COST``) because the token model sees a whole string as one symbol.

Example::

    for p in quote_edits(ctx):
        print(ctx.changes(p), p.score)
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator

from noodle.fixer.context import NO_EDIT, Change, Context, Proposal, logical_start, word
from noodle.fixer.lexer import Tok, lex
from noodle.fixer.rank import BLANK_EDGE_COST, LINE_COST, STRING_PIECE_COST, delete_cost, edit_cost

__all__ = ["LOOKALIKES", "apostrophe_edits", "lookalike_edits", "quote_edits", "triple_quote_edits",
           "unquoted_edits"]


def quote_edits(ctx: Context) -> Iterator[Proposal]:
    """Put back the quote an unterminated string lost: its closing quote at a boundary inside it,
    or inside an earlier string on its line with the same quote (that string's closing quote was
    then meant to open the next one, which is why CPython reports the wrong one), or its opening
    quote before an earlier token; or close it with its own quote where it was closed with the
    other kind (``"abc'``); or delete its quote.

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
        first = logical_start(ctx, i)
        last = min(line + 1, ctx.region.last)
        row = ctx.line_text(line)
        # a backslash at the line's end carries an unclosed string onto the next line: the token
        # then ends there, and only its first line's part is this row's
        end = t.end[1] if t.end[0] == t.start[0] else len(row.rstrip("\r\n"))
        had = _string_chars(row) + _pieces(text[q + 1:end - t.start[1]])   # the bad string's text counts as string
        base = t.start[1] + q + 1
        spots: dict[int, int] = {col: 0 for col in _boundaries(row, base, end)[-40:]}
        for j in range(i - 1, -1, -1):
            u = ctx.toks[j]
            if ctx.fline(u) != line or u.kind in NO_EDIT:
                break
            if u.kind == "STRING" and u.start[0] == u.end[0]:
                body = u.text.lstrip("rRbBuUfF")
                if body[:1] == quote and body[:3] != quote * 3:
                    start = u.start[1] + len(u.text) - len(body) + 1
                    for col in _boundaries(row, start, u.end[1] - 1):
                        spots.setdefault(col, i - j)
            elif u.kind in ("NAME", "NUMBER"):
                spots.setdefault(u.start[1], i - j)
            elif u.text in ("(", "[", "{", ",", "="):
                # a string opened after '=' or ',' starts where the next token does, past the blanks
                v = ctx.toks[j + 1]
                spots.setdefault(v.start[1] if v.start[0] == u.end[0] and v.start[1] < end else u.end[1], i - j)
        for col in sorted(spots):
            ch = Change(line, col, col, quote)
            grown = _string_chars(row[:col] + quote + row[col:]) - had
            cost = edit_cost(1, abs(line - ctx.err.line), spots[col]) + STRING_PIECE_COST * grown
            if _blank_edged(row, col, quote):
                cost += BLANK_EDGE_COST
            yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "quote", 1, (i, 4, col),
                           ("changes", (ch,)))
        ch = Change(line, base - 1, base, "")
        grown = _string_chars(row[:base - 1] + row[base:]) - had
        cost = edit_cost(1) + delete_cost("OP", "(") + STRING_PIECE_COST * grown     # a quote opens
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "quote", 1, (i, 5, 0), ("changes", (ch,)))
        other = "'" if quote == '"' else '"'
        for col in range(base, end):                 # closed with the other quote: "abc'
            if row[col] == other:
                ch = Change(line, col, col + 1, quote)
                grown = _string_chars(row[:col] + quote + row[col + 1:]) - had
                cost = edit_cost(1, 0, 1) + STRING_PIECE_COST * grown
                yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "quote", 1, (i, 17, col),
                               ("changes", (ch,)))


def _blank_edged(row: str, col: int, quote: str) -> bool:
    """Whether a quote put at ``col`` bounds a string on its blank side: it closes a string whose
    text ends in a blank, or opens one whose text starts with one. Between a word and a blank a
    quote fits either way (``"Gather or`` closes as ``"Gather" or`` or ``"Gather "or``); code
    keeps its blanks outside strings far more often than inside them."""
    new = row[:col] + quote + row[col:]
    off = len(new) - len(new.lstrip(" \t"))
    for t in lex(new[off:].rstrip("\r\n")):
        if t.kind != "STRING" or t.start[0] != t.end[0]:
            continue
        body = t.text.lstrip("rRbBuUfF")
        a = t.start[1] + off + len(t.text) - len(body)
        b = t.end[1] + off
        inner = body[1:-1]
        if not inner.strip() or body[:3] in ('"""', "'''"):
            continue
        if b == col + 1 and inner[-1] in " \t":
            return True
        if a == col and inner[0] in " \t":
            return True
    return False


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
        if col == end or (col > start and (not word(row[col]) or not word(row[col - 1]))
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


_PIECE = re.compile(r"\w+|[^\w\s'\"]")  # quotes inside are not content: they may become delimiters


def _pieces(text: str) -> int:
    return len(_PIECE.findall(text))


#: characters pasted from word processors, web pages and non-ASCII keyboards that CPython rejects,
#: and the ASCII they stand for
LOOKALIKES = {
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u2018": "'", "\u2019": "'",
    "\u201a": "'", "\u2032": "'", "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u00a0": " ",
    "\u2009": " ", "\u202f": " ", "\u200b": "", "\ufeff": "", "\u00d7": "*", "\u00f7": "/",
    "\uff1a": ":", "\uff0c": ",", "\uff08": "(", "\uff09": ")", "\uff1b": ";", "\uff1d": "=",
    "\u3000": " ", "\uff3b": "[", "\uff3d": "]", "\u2026": "...",
}


def lookalike_edits(ctx: Context) -> Iterator[Proposal]:
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
    first = logical_start(ctx, ctx.e) if ctx.e < len(ctx.toks) else line
    last = min(line + 1, ctx.region.last)
    options = []
    if ctx.err.col in cols:
        options.append((ctx.err.col,))
    options.append(tuple(cols))
    for n, group in enumerate(dict.fromkeys(options)):
        changes = tuple(Change(line, c, c + 1, LOOKALIKES[row[c]]) for c in group)
        delta = ctx.relex_delta(min(first, line), last, changes)
        yield Proposal(delta - edit_cost(1), "substitute", len(changes), (line, 10, n), ("changes", changes))


def apostrophe_edits(ctx: Context) -> Iterator[Proposal]:
    """``'it's'``, ``"he said "hi" there"``: the string's own quote used inside it, so the string
    ends early and a word follows it directly. The string's quotes, up to a later quote of the
    same kind on the line, become the other kind (one mistake: the quote style)."""
    line = ctx.err.line
    if not ctx.region.first <= line <= ctx.region.last:
        return
    row = ctx.line_text(line)
    last = min(line + 1, ctx.region.last)
    every_tried = False
    for i, t in enumerate(ctx.toks[:-1]):
        if ctx.fline(t) != line:
            if ctx.fline(t) > line:
                break
            continue
        ended = _ended_early(t, ctx.toks[i + 1])
        if ended is None:
            continue
        opening, quote, other = ended
        first = min(logical_start(ctx, i), line)
        for close in [j for j in range(t.end[1], len(row)) if row[j] == quote][:6]:
            inner = row[opening + 1:close]
            if other in inner or "\\" in inner:
                break
            changes = (Change(line, opening, opening + 1, other), Change(line, close, close + 1, other))
            delta = ctx.relex_delta(first, last, changes)
            # code moved into the string beyond the word after the apostrophe pays per piece, and
            # each further quote swallowed is a string's edge the text had (the ', ' of 'a', 'b')
            swallowed = STRING_PIECE_COST * (max(_pieces(row[t.end[1]:close]) - 1, 0) + inner.count(quote) - 1)
            yield Proposal(delta - edit_cost(1) - swallowed, "quote", 1, (line, 20, i, close), ("changes", changes))
        if not every_tried:
            every_tried = True
            every = _every_apostrophe(row, line)
            if len(every) > 2:     # 'can't', 'won't': the same slip in each string, one repair
                delta = ctx.relex_delta(first, last, every)
                yield Proposal(delta - edit_cost(1) - 1.0 * (len(every) // 2 - 1), "quote", 1, (line, 20, i, -1),
                               ("changes", every))


def _ended_early(t: Tok, nxt: Tok) -> tuple[int, str, str] | None:
    """(column of its opening quote, its quote, the other quote) of a one-line, single-quoted
    string that a word follows directly (its closing quote was an apostrophe), else None."""
    if t.kind != "STRING" or t.start[0] != t.end[0] or nxt.kind != "NAME" or nxt.start != t.end \
            or keyword.iskeyword(nxt.text):      # 'a'if c else 'b' is code
        return None
    prefix = len(t.text) - len(t.text.lstrip("rRbBuUfF"))
    quote = t.text[prefix]
    if t.text[prefix:prefix + 3] == quote * 3:
        return None
    return t.start[1] + prefix, quote, "'" if quote == '"' else '"'


def _every_apostrophe(row: str, line: int) -> tuple[Change, ...]:
    """Each string of the row that a word follows directly, closed at the next quote of its kind
    with both quotes made the other kind, one after another (the row lexed again after each)."""
    changes: list[Change] = []
    for _ in range(6):
        toks = lex(row)
        for i, t in enumerate(toks[:-1]):
            ended = _ended_early(t, toks[i + 1])
            if ended is None or t.start[0] != 1:
                continue
            opening, quote, other = ended
            close = row.find(quote, t.end[1])
            if {opening, close} & {c.col for c in changes}:
                return ()          # a quote already made the other kind: the lexer went back on it
            if close < 0 or other in row[opening + 1:close] or "\\" in row[opening + 1:close]:
                continue
            changes += [Change(line, opening, opening + 1, other), Change(line, close, close + 1, other)]
            row = row[:opening] + other + row[opening + 1:close] + other + row[close + 1:]
            break
        else:
            break
    return tuple(changes)


def triple_quote_edits(ctx: Context) -> Iterator[Proposal]:
    """Close an unterminated triple-quoted string at the end of one of the lines after it opens."""
    bad = next((i for i, t in enumerate(ctx.toks) if t.kind == "ERRORTOKEN" and len(t.text) >= 3
                and t.text.lstrip("rRbBuUfF")[:3] in ('"""', "'''")), None)
    if bad is None:
        return
    t = ctx.toks[bad]
    quote = t.text.lstrip("rRbBuUfF")[:3]
    start = ctx.fline(t)
    last = min(start + 30, ctx.region.last)
    first = logical_start(ctx, bad)
    for line in range(start, last + 1):
        row = ctx.line_text(line)
        col = len(row.rstrip("\r\n"))
        if line == start and col <= t.start[1] + 3:
            continue
        ch = Change(line, col, col, quote)
        delta = ctx.relex_delta(first, last, (ch,))
        yield Proposal(delta - edit_cost(1, 0, 0) - LINE_COST * min(line - start, 8) * 0.25, "quote", 1,
                       (bad, 11, line), ("changes", (ch,)))


# --------------------------------------------------------------------------- text without quotes

def unquoted_edits(ctx: Context) -> Iterator[Proposal]:
    """Quote words someone meant as text (``print(Hello world)``): each run of two or more words
    on the error's line that is a whole argument or element, wrapped in quotes. Two edits, and every
    word put into the string pays :data:`STRING_PIECE_COST`, so a missing comma between two
    names stays likelier unless the model finds a string there much likelier."""
    toks = ctx.toks
    line = ctx.err.line
    run: list[int] = []
    for i, t in enumerate(toks + [toks[-1]]):
        adjacent = (run and i < len(toks) and t.kind in ("NAME", "NUMBER") and ctx.fline(t) == line
                    and t.start[0] == toks[run[-1]].end[0] and t.start[1] == toks[run[-1]].end[1] + 1)
        if adjacent:
            run.append(i)
            continue
        before = toks[run[0] - 1].text if run and run[0] > 0 else ""
        after = toks[run[-1] + 1].text if run and run[-1] + 1 < len(toks) else ""
        if len(run) >= 2 and before in ("(", "[", ",") and after in (")", "]", ","):
            a, b = toks[run[0]], toks[run[-1]]
            changes = (Change(line, a.start[1], a.start[1], '"'), Change(line, b.end[1], b.end[1], '"'))
            first = logical_start(ctx, run[0])
            delta = ctx.relex_delta(first, min(line + 1, ctx.region.last), changes)
            cost = edit_cost(2) + STRING_PIECE_COST * len(run)
            yield Proposal(delta - cost, "quote", 2, (run[0], 16), ("changes", changes))
        run = [i] if i < len(toks) and t.kind in ("NAME", "NUMBER") and ctx.fline(t) == line else []
