"""Indentation repairs: a line or a block moved to another open level.

Why line edits and not token edits: INDENT and DEDENT tokens come from the widths of whole
lines, so a stray or missing indent is fixed by changing a line's leading whitespace, and
scored by lexing the block again (the model sees the INDENT/DEDENT symbols that result).
Which lines: for "expected an indented block", the line that should have been the body;
otherwise the error's line and the two statements before it (a line dedented by mistake
makes the next one look indented). Which levels: the open ones (each enclosing block's), one
deeper after a block opener, never more than a few.

Example::

    for p in indent_edits(ctx):
        print(ctx.changes(p), p.score)
"""

from __future__ import annotations

from collections.abc import Iterator

from noodle.fixer.context import Change, Context, Proposal
from noodle.fixer.rank import INDENT_LEVEL_COST, edit_cost

__all__ = ["indent_edits", "lead", "width"]


def width(ws: str) -> int:
    col = 0
    for ch in ws:
        col = (col // 8 + 1) * 8 if ch == "\t" else col + 1
    return col


def lead(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def _code(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def indent_edits(ctx: Context) -> Iterator[Proposal]:
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
        ws = lead(lines[row - 1])
        w0 = width(ws)
        for w in _levels(lines, rows, row, unit, body) + [w0]:
            new_ws = _ws_for(lines, rows, w)
            if w == w0 and (new_ws == ws or ctx.err.kind != "TabError"):
                continue                   # same level: only to make tabs and spaces agree
            for span in _spans(lines, rows, row, w0):
                changes = tuple(Change(r, 0, len(lead(lines[r - 1])),
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
        w = width(lead(lines[r - 1]))
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
    pw = width(lead(lines[p - 1]))
    if body:
        nxt = [r for r in rows if r > row][:1]
        out = [pw + unit, pw + 4]
        if nxt and width(lead(lines[nxt[0] - 1])) > pw:
            out.append(width(lead(lines[nxt[0] - 1])))
        return sorted(set(out))
    levels = [pw]
    low = pw
    for r in reversed(prev):
        w = width(lead(lines[r - 1]))
        if w < low:
            levels.append(w)
            low = w
    if lines[p - 1].split("#")[0].rstrip().endswith(":"):
        levels.insert(0, pw + unit)
    return levels[:4]


def _ws_for(lines: list[str], rows: list[int], w: int) -> str:
    for r in rows:
        ws = lead(lines[r - 1])
        if width(ws) == w:
            return ws
    return " " * w


def _shift(line: str, w0: int, w: int, new_ws: str) -> str:
    ws = lead(line)
    rest = width(ws) - w0
    return new_ws + " " * rest if rest > 0 else new_ws


def _spans(lines: list[str], rows: list[int], row: int, w0: int) -> list[list[int]]:
    """The line alone; with the following lines nested deeper than it; with the following lines
    at its level or deeper (until a shallower one)."""
    after = [r for r in rows if r > row]
    nested = [row]
    for r in after:
        if width(lead(lines[r - 1])) > w0:
            nested.append(r)
        else:
            break
    block = [row]
    for r in after:
        if width(lead(lines[r - 1])) >= w0:
            block.append(r)
        else:
            break
    spans = [[row]]
    for s in (nested, block):
        if len(s) > 1 and len(s) <= 40 and s not in spans:
            spans.append(s)
    return spans
