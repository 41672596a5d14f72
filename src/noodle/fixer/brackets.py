"""Bracket repairs: the stack says which closer or opener is missing, and where it can go.

Why not token edits: inserting a closer changes the layout of everything after it (the lines
a missing ')' swallowed get their NEWLINE and INDENT tokens back), so these proposals are
scored by lexing the changed lines again, and they are proposed only where the bracket stack
allows them: a closer where the unclosed opener (or one opened inside it) is on top, an opener
before an unmatched closer, the right kind for a mismatched one. Only brackets near CPython's
error are considered: one far away is a symptom (an unterminated string swallowed its closer).

Example::

    for p in bracket_edits(ctx):
        print(p.kind, ctx.changes(p), p.score)
"""

from __future__ import annotations

from collections.abc import Iterator

from noodle.fixer.context import (
    CLOSERS,
    MAX_SPOTS,
    OPENERS,
    Change,
    Context,
    Proposal,
    distance,
    first_on_line,
    insert_change,
    logical_start,
    replace_change,
)
from noodle.fixer.indent import lead, width
from noodle.fixer.rank import EOL_CLOSER_BONUS, LINE_COST, delete_cost, edit_cost

__all__ = ["bracket_edits"]


def bracket_edits(ctx: Context) -> Iterator[Proposal]:
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
    near = [c for c in unmatched if _near_error(ctx, c)][:2]
    late = _after_indent(ctx, unmatched)
    for c in near:
        yield from _open(ctx, c)
        yield from _open_on_head_line(ctx, c)
    if late is not None and late not in near:
        yield from _open(ctx, late, ctx.err.line - 1)
    yield from _early_closers(ctx, near)


def _after_indent(ctx: Context, unmatched: list[int]) -> int | None:
    """The first unmatched closer in the run of deeper lines an "unexpected indent" starts: a lost
    opener at the end of the line before (``warnings.warn`` then the indented arguments) makes
    those lines a stray block that CPython reports at its first line, far from the closer."""
    err = ctx.err
    if not err.message.startswith("unexpected indent") or not unmatched:
        return None
    base = width(lead(ctx.line_text(err.line)))
    stop = err.line
    while stop + 1 <= ctx.region.last:
        row = ctx.line_text(stop + 1)
        if row.strip() and not row.lstrip().startswith("#") and width(lead(row)) < base:
            break
        stop += 1
    for c in unmatched:
        if err.line <= ctx.fline(ctx.toks[c]) <= stop:
            return c
    return None


def _early_closers(ctx: Context, unmatched: list[int]) -> Iterator[Proposal]:
    """Delete a closer that matched, but too early: one too many closed the outer bracket, so
    CPython complains later (at the closer left over, or at the next line's indent). Which
    closers: the ones before an unmatched closer in its statement, and, when the error is at the
    start of a line, the ones on the two lines above."""
    toks = ctx.toks
    err = ctx.err
    picked: dict[int, int] = {}            # closer -> first line of the lines re-lexed
    for c in unmatched:
        stmt = logical_start(ctx, c)
        for i in range(c - 1, -1, -1):
            if ctx.fline(toks[i]) < stmt:
                break
            if toks[i].kind == "OP" and toks[i].text in CLOSERS:
                picked.setdefault(i, stmt)
    e = min(ctx.e, len(toks) - 1)
    if err.kind == "IndentationError" or first_on_line(ctx, e):
        for i in range(e - 1, -1, -1):
            if ctx.fline(toks[i]) < err.line - 2:
                break
            if toks[i].kind == "OP" and toks[i].text in CLOSERS:
                picked.setdefault(i, logical_start(ctx, i))
    for i in sorted(picked, reverse=True)[:MAX_SPOTS]:
        ch = replace_change(ctx, i, "")
        last = min(max(err.line, ctx.fline(toks[i])) + 1, ctx.region.last)
        cost = _bracket_cost(ctx, i) + delete_cost("OP", toks[i].text)
        yield Proposal(ctx.relex_delta(picked[i], last, (ch,)) - cost, "delete", 1, (i, 13), ("changes", (ch,)))


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


def _bracket_cost(ctx: Context, i: int, edits: int = 1) -> float:
    lines, dist = distance(ctx, i)
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
    first = max(logical_start(ctx, o), oline - 10)
    stmt_width = width(lead(ctx.line_text(first)))
    spots: list[tuple[int, str]] = []
    far: list[tuple[int, str]] = []
    arrow: tuple[int, str] | None = None
    last_code = o
    for i in range(o + 1, len(toks)):
        t = toks[i]
        line = ctx.fline(t)
        code = t.kind not in ("NL", "COMMENT", "INDENT", "DEDENT", "NEWLINE", "ENDMARKER")
        if code and line > near_last and t.text in ("->", ":") and first_on_line(ctx, i) and top_at.get(i, -1) >= o:
            # a signature's closing line lost its ')': ``    x: int,`` then ``-> None:`` or ``:``
            arrow = (i, OPENERS[toks[top_at[i]].text])
            continue
        if t.kind == "ENDMARKER" or (code and line > near_last and t.start[1] <= stmt_width
                                     and first_on_line(ctx, i)):
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
    if arrow is not None:
        i, closer = arrow
        t = toks[i]
        row = ctx.line_text(ctx.fline(t))
        col = stmt_width if width(lead(row)) >= stmt_width and "\t" not in lead(row) else t.start[1]
        ch = Change(ctx.fline(t), col, col, closer + ("" if col < t.start[1] or t.text == ":" else " "))
        delta = ctx.relex_delta(first, min(ch.line + 1, ctx.region.last), (ch,))
        yield Proposal(delta - _bracket_cost(ctx, i), "insert", 1, (i, 0, closer), ("changes", (ch,)))
    if not spots and not far:
        return
    if len(spots) > MAX_SPOTS:             # a long line: line ends, then the spots nearest the error
        ends = [x for x in spots if toks[x[0]].kind in ("NL", "NEWLINE", "COMMENT")]
        rest = sorted((x for x in spots if x not in ends), key=lambda x: (abs(x[0] - ctx.e), x[0]))
        spots = sorted((ends + rest)[:MAX_SPOTS])
    last = min(max(ctx.fline(toks[i]) for i, _ in spots) + 1 if spots else first, ctx.region.last)
    for i, closer in spots:
        ch = insert_change(ctx, i, closer)
        delta = ctx.relex_delta(first, last, (ch,))
        cost = _bracket_cost(ctx, i) - (EOL_CLOSER_BONUS if _line_end(ctx, i) else 0.0)
        yield Proposal(delta - cost, "insert", 1, (i, 0, closer), ("changes", (ch,)))
    for i, closer in far:
        ch = insert_change(ctx, i, closer)
        delta = ctx.relex_delta(first, min(ch.line + 1, ctx.region.last), (ch,))
        yield Proposal(delta - _bracket_cost(ctx, i), "insert", 1, (i, 0, closer), ("changes", (ch,)))
    ch = replace_change(ctx, o, "")
    cost = _bracket_cost(ctx, o) + delete_cost("OP", toks[o].text)
    yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "delete", 1, (o, 1, ""), ("changes", (ch,)))


def _line_end(ctx: Context, i: int) -> bool:
    """Whether inserting before token i puts a closer at the end of its line (before a
    compound statement's final ':' counts: ``if f(x:``)."""
    toks = ctx.toks
    if toks[i].kind in ("NL", "NEWLINE", "COMMENT"):
        return True
    return (toks[i].text == ":" and i + 1 < len(toks)
            and toks[i + 1].kind in ("NL", "NEWLINE", "COMMENT"))


def _open(ctx: Context, c: int, since: int | None = None) -> Iterator[Proposal]:
    """Insert the opener an unmatched closer lost, at a position outside any other bracket of its
    statement or of the lines just above it (``raise E`` then ``"msg".format(x))`` on the next
    line), or delete the closer."""
    toks = ctx.toks
    opener = CLOSERS[toks[c].text]
    stmt = logical_start(ctx, c)
    first = max(ctx.region.first, stmt - 2 if since is None else min(since, stmt - 2))
    last = min(ctx.fline(toks[c]) + 1, ctx.region.last)
    depth = 0
    spots = 0
    if c > 0 and ctx.sym_index[c - 1] >= 0 and toks[c - 1].kind not in ("NEWLINE", "NL", "INDENT", "DEDENT"):
        # the opener right before its closer: ``x = ]``, ``self.prepare)`` (an empty pair)
        ch = Change(ctx.fline(toks[c]), toks[c].start[1], toks[c].start[1], opener)
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - _bracket_cost(ctx, c), "insert", 1,
                       (c, 0, opener), ("changes", (ch,)))
    inner: list[int] = []                  # positions inside a bracket of the same kind, nearest first
    for i in range(c - 1, -1, -1):
        t = toks[i]
        if ctx.fline(t) < first or spots >= MAX_SPOTS:
            break
        if t.kind == "OP" and t.text in CLOSERS:
            depth += 1
        elif t.kind == "OP" and t.text in OPENERS:
            depth -= 1
        if ctx.sym_index[i] < 0 or t.kind in ("INDENT", "DEDENT"):
            continue
        if depth != 0:
            # inside a bracket the closer's own opener was lost from: ``f(type x))``
            if depth > 0 and t.kind != "OP" and len(inner) < MAX_SPOTS // 3:
                inner.append(i)
            continue
        spots += 1
        ch = insert_change(ctx, i, opener)
        cost = _bracket_cost(ctx, i) + (LINE_COST if ctx.fline(t) < stmt else 0.0)
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "insert", 1, (i, 0, opener), ("changes", (ch,)))
    for i in inner:
        if ctx.fline(toks[i]) != ctx.fline(toks[c]):
            continue
        ch = insert_change(ctx, i, opener)
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - _bracket_cost(ctx, i), "insert", 1, (i, 0, opener),
                       ("changes", (ch,)))
    ch = replace_change(ctx, c, "")
    cost = _bracket_cost(ctx, c) + delete_cost("OP", toks[c].text)
    yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, "delete", 1, (c, 1, ""), ("changes", (ch,)))


def _head_line(ctx: Context, c: int) -> int | None:
    """The line a run of deeper lines ending at closer ``c``'s line hangs from, when it is further
    up than :func:`_open` looks: ``f.__init__ self, a,`` then indented arguments then ``b)``."""
    lc = ctx.fline(ctx.toks[c])
    base = width(lead(ctx.line_text(lc)))
    line = lc - 1
    while line >= ctx.region.first:
        row = ctx.line_text(line)
        if row.strip() and not row.lstrip().startswith("#") and width(lead(row)) < base:
            break
        line -= 1
    if line < ctx.region.first or line >= logical_start(ctx, c) - 2:
        return None
    return line


def _open_on_head_line(ctx: Context, c: int) -> Iterator[Proposal]:
    """The opener an unmatched closer lost on the line its run of indented arguments hangs from,
    between any two of that line's tokens (the lines below are a stray block without it, so
    CPython names only the closer)."""
    head = _head_line(ctx, c)
    if head is None:
        return
    toks = ctx.toks
    opener = CLOSERS[toks[c].text]
    last = min(ctx.fline(toks[c]) + 1, ctx.region.last)
    on_line = [i for i, t in enumerate(toks) if ctx.fline(t) == head and ctx.sym_index[i] >= 0
               and t.kind not in ("INDENT", "DEDENT")]
    for i in on_line[1:MAX_SPOTS + 1]:
        ch = insert_change(ctx, i, opener)
        yield Proposal(ctx.relex_delta(logical_start(ctx, on_line[0]), last, (ch,)) - _bracket_cost(ctx, i),
                       "insert", 1, (i, 0, opener), ("changes", (ch,)))


def _mismatch(ctx: Context, o: int, c: int, top_at: dict[int, int]) -> Iterator[Proposal]:
    """A closer of the wrong kind: make it the right kind, make the opener its kind, insert the
    right closer before it, insert its own opener after the opener on top (``Union float, x]``),
    or delete it."""
    toks = ctx.toks
    first = logical_start(ctx, o)
    last = min(ctx.fline(toks[c]) + 1, ctx.region.last)
    want = OPENERS[toks[o].text]
    own = CLOSERS[toks[c].text]
    options = [
        (c, "substitute", replace_change(ctx, c, want)),
        (o, "substitute", replace_change(ctx, o, own)),
        (c, "insert", insert_change(ctx, c, want)),
        (c, "delete", replace_change(ctx, c, "")),
    ]
    inner = [i for i in range(o + 1, c) if top_at.get(i) == o and ctx.sym_index[i] >= 0
             and toks[i].kind not in ("NL", "COMMENT", "INDENT", "DEDENT")]
    # the nearest spots, and the first one inside (``f([a, b, ... z])`` lost the '[' of a long list)
    own_spots = inner[-MAX_SPOTS:] if len(inner) <= MAX_SPOTS else inner[:1] + inner[-MAX_SPOTS + 1:]
    options += [(i, "insert", insert_change(ctx, i, own)) for i in own_spots]
    # the closer the opener on top lost, inside it (a missing ']' in a multi-line call's arguments)
    options += [(i, "insert", insert_change(ctx, i, want)) for i in inner[-MAX_SPOTS:]]
    for i, kind, ch in options:
        cost = _bracket_cost(ctx, i) + (delete_cost("OP", toks[c].text) if kind == "delete" else 0.0)
        yield Proposal(ctx.relex_delta(first, last, (ch,)) - cost, kind, 1, (i, 3, kind, ch.new),
                       ("changes", (ch,)))
