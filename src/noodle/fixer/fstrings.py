"""Repairs inside an f-string: a lost or stray brace, a bad conversion, a broken expression.

Why their own edit class: on Python 3.11 an f-string is one STRING token, so no token edit can
reach inside it, and the only "repairs" the other generators find delete the whole string (or
its statement), which parses and loses the user's code. CPython reports these errors as
``f-string: ...`` at a column inside or after the string (for an error inside an expression, a
column of the sub-parse), so every f-string on the error's lines is scanned into its literal
text and replacement fields, and each field gets the edits its shape calls for:

- ``{x`` unclosed: ``}`` where the field's expression ends (the string's end, or a blank);
- ``{`` or ``}`` meant literally (``{}``, ``x}y``, a regex): doubled, or deleted;
- ``{x!}``, ``{x!z}``: the conversion dropped, or made ``!r``/``!s``;
- ``{f(a}``: the expression's open brackets closed before the ``}``;
- ``{x y}``, ``{lambda: 1}``: the expression repaired as a program of its own (the same
  search, recursively, on the parenthesized expression), or parenthesized.

Every proposal keeps the string one token, so the model's view of the line does not change; a
proposal is priced by its edits alone (:func:`noodle.fixer.rank.edit_cost`) and the parser
decides.

Example::

    for p in fstring_edits(ctx):
        print(ctx.changes(p), p.score)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from noodle.fixer.context import Change, Context, Proposal, word
from noodle.fixer.lexer import Tok
from noodle.fixer.quiet import probe_warnings_silenced
from noodle.fixer.rank import edit_cost

__all__ = ["Field", "fstring_edits", "is_fstring", "parses_as_expression", "scan"]

_PREFIX = re.compile(r"[rRbBuUfF]*")
_CLOSE = {"(": ")", "[": "]", "{": "}"}
#: the longest expression repaired by a search of its own (a longer one is left to the others)
MAX_INNER = 200
#: what an expression rewritten by its own search pays beyond its one edit: the inner search
#: may have deleted a keyword or added an operator, which a brace or quote edit never does
INNER_COST = 1.0
#: broken fields repaired by a search of their own per call (each such search has the full
#: time budget of a repair)
INNER_SEARCHES = 2
#: fields of one string given edits (a generated f-string can hold hundreds)
MAX_FIELDS = 12


@dataclass(frozen=True, slots=True)
class Field:
    """One replacement field of an f-string body, as offsets into the body.

    ``close`` is the ``}`` that ends it (None: the body ends first); ``conv`` the ``!`` of a
    conversion; ``spec`` the ``:`` of a format spec; ``stack`` the brackets still open in the
    expression where it ended, and ``mismatch`` the offset of a closer that did not match them.
    """

    open: int
    close: int | None
    conv: int | None
    spec: int | None
    expr_end: int
    stack: str
    mismatch: int | None


def scan(body: str) -> tuple[list[Field], list[int]]:
    """The replacement fields of an f-string's body and the offsets of its single ``}``s.

    ``{{`` and ``}}`` in literal text are escapes; inside an expression, strings and brackets are
    skipped, so a ``}`` in ``d["}"]`` or ``{k: v}`` does not end the field."""
    fields: list[Field] = []
    singles: list[int] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "}":
            if body[i + 1:i + 2] == "}":
                i += 2
                continue
            singles.append(i)
            i += 1
            continue
        if c != "{":
            i += 1
            continue
        if body[i + 1:i + 2] == "{":
            i += 2
            continue
        field, i = _field(body, i)
        fields.append(field)
    return fields, singles


def _field(body: str, start: int) -> tuple[Field, int]:
    j, n = start + 1, len(body)
    stack: list[str] = []
    quote = ""
    conv = spec = mismatch = None
    expr_end = None
    while j < n:
        ch = body[j]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            if stack and _CLOSE[stack[-1]] == ch:
                stack.pop()
            elif ch == "}":
                if stack:
                    mismatch = j
                break
        elif not stack and ch == "!" and body[j + 1:j + 2] != "=":
            conv = j
            expr_end = j
            j = _to_spec_or_end(body, j + 1)
            if j < n and body[j] == ":":
                spec = j
                j = _spec_end(body, j + 1)
            break
        elif not stack and ch == ":":
            spec = j
            expr_end = j
            j = _spec_end(body, j + 1)
            break
        j += 1
    close = j if j < n and body[j] == "}" else None
    if expr_end is None:
        expr_end = j if j <= n else n
    return Field(start, close, conv, spec, expr_end, "".join(stack), mismatch), (j + 1 if close is not None else n)


def _to_spec_or_end(body: str, j: int) -> int:
    while j < len(body) and body[j] not in ":}":
        j += 1
    return j


def _spec_end(body: str, j: int) -> int:
    """The ``}`` that ends a format spec (nested fields ``{width}`` skipped), or the body's end."""
    depth = 0
    while j < len(body):
        ch = body[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return j
            depth -= 1
        j += 1
    return j


def _parts(text: str) -> tuple[str, str, int] | None:
    """(prefix, quote, body offset) of an f-string token's text, None for any other token."""
    prefix = _PREFIX.match(text).group()      # type: ignore[union-attr]
    if "f" not in prefix.lower():
        return None
    rest = text[len(prefix):]
    quote = rest[:3] if rest[:3] in ('"""', "'''") else rest[:1]
    if not quote or len(rest) < 2 * len(quote) or not rest.endswith(quote):
        return None
    return prefix, quote, len(prefix) + len(quote)


def is_fstring(text: str) -> bool:
    """Whether a STRING token's text is an f-string."""
    return _parts(text) is not None


def _where(ctx: Context, t: Tok, offset: int) -> tuple[int, int]:
    """(file line, column) of character ``offset`` of token ``t``'s text."""
    before = t.text[:offset]
    nl = before.count("\n")
    if not nl:
        return ctx.fline(t), t.start[1] + offset
    return ctx.fline(t) + nl, offset - before.rfind("\n") - 1


def _tokens(ctx: Context) -> list[int]:
    """The f-strings on the error's lines (one before and after: CPython may name the line a
    multi-line string ends on, or the statement's next line), nearest the column first."""
    err = ctx.err
    out = []
    for i, t in enumerate(ctx.toks):
        if t.kind != "STRING" or _parts(t.text) is None:
            continue
        first, last = ctx.fline(t), t.end[0] + ctx.off
        if first - 1 <= err.line <= last + 1:
            on_line = first <= err.line <= last
            out.append((0 if on_line else 1, abs(t.start[1] - err.col) if on_line else 0, i))
    return [i for *_, i in sorted(out)]


def fstring_edits(ctx: Context) -> Iterator[Proposal]:
    """Edits inside the f-strings near an ``f-string: ...`` error (see the module docstring)."""
    seen: set[tuple] = set()
    budget = [INNER_SEARCHES]          # fields repaired by a search of their own, in this call
    for rank, i in enumerate(_tokens(ctx)[:4]):
        t = ctx.toks[i]
        prefix, quote, base = _parts(t.text)      # type: ignore[misc]
        body = t.text[base:len(t.text) - len(quote)]
        fields, singles = scan(body)
        raw = "r" in prefix.lower()
        n = 0
        ends_in_field = bool(fields) and fields[-1].close is None
        for changes in (_nested_quotes(ctx, t, prefix, quote) if ends_in_field else ()):
            yield Proposal(-(edit_cost(1) + 0.5 * rank + 0.01 * n), "substitute", len(changes),
                           (ctx.fline(t), 19, i, n), ("changes", changes))
            n += 1
        for edits, kind, extra in _edits(body, fields[:MAX_FIELDS], singles, raw, budget):
            key = (i, edits)
            if key in seen:
                continue
            seen.add(key)
            changes = []
            for start, end, new in edits:
                line, col = _where(ctx, t, base + start)
                end_line, end_col = _where(ctx, t, base + end)
                if end_line != line:
                    break
                changes.append(Change(line, col, end_col, new))
            else:
                cost = edit_cost(len(edits)) + extra + 0.5 * rank + 0.01 * n
                yield Proposal(-cost, kind, len(edits), (ctx.fline(t), 19, i, n), ("changes", tuple(changes)))
                n += 1


def _nested_quotes(ctx: Context, t: Tok, prefix: str, quote: str) -> Iterator[tuple[Change, ...]]:
    """``f'{d['k']}'``: a field that uses the string's own quote (valid from Python 3.12, where
    it ends the string before): the quotes between the opening one and a later one on the line
    made the other kind, when that makes one f-string. One mistake (the quote style), however many quotes."""
    if len(quote) != 1 or t.start[0] != t.end[0]:
        return
    other = "'" if quote == '"' else '"'
    line = ctx.fline(t)
    row = ctx.line_text(line)
    start = t.start[1] + len(prefix)                 # the opening quote
    found = 0
    for close in [j for j in range(t.end[1], len(row)) if row[j] == quote][:8]:
        inner = row[start + 1:close]
        if other in inner or "\\" in inner:
            return
        if parses_as_expression(prefix + quote + inner.replace(quote, other) + quote) is not True:
            continue
        yield tuple(Change(line, j, j + 1, other) for j in range(start + 1, close) if row[j] == quote)
        found += 1
        if found == 2:
            return


Edit = tuple[int, int, str]


def _edits(body: str, fields: list[Field], singles: list[int], raw: bool,
           budget: list[int]) -> Iterator[tuple[tuple[Edit, ...], str, float]]:
    """(edits, kind) per proposal, most specific first; offsets into ``body``."""
    for f in fields:
        expr = body[f.open + 1:f.expr_end]
        if f.mismatch is not None:       # {f(a} -> {f(a)}
            closers = "".join(_CLOSE[c] for c in reversed(f.stack) if c != "{")
            if closers:
                yield ((f.mismatch, f.mismatch, closers),), "close", 0.0
        if f.close is None:
            yield from _close_field(body, f)
        if f.conv is not None:
            end = f.spec if f.spec is not None else (f.close if f.close is not None else len(body))
            given = body[f.conv + 1:end]
            if given.strip() not in ("r", "s", "a"):
                yield ((f.conv, end, ""),), "delete", 0.0                 # {x!} -> {x}
                for c in ("r", "s"):
                    yield ((f.conv + 1, end, c),), "substitute", 0.0      # {x!z} -> {x!r}
        if not expr.strip() or (expr.rstrip().endswith("=") and not expr.rstrip()[:-1].strip()):
            yield _escaped(f), "insert", 0.0                         # {} meant literally
            if f.close is not None:
                yield ((f.open, f.close + 1, ""),), "delete", 0.0
            continue
        if f.close is not None and f.mismatch is None and f.conv is None:
            if f.spec is not None and parses_as_expression(body[f.open + 1:f.close]):
                # {lambda x: 1}: the colon is the expression's, not a format spec's
                yield ((f.open + 1, f.close, "(" + body[f.open + 1:f.close].strip() + ")"),), "insert", 0.0
            if budget[0] > 0 and parses_as_expression(expr.strip()) is False:
                budget[0] -= 1
                yield from _inner(expr, f)
        if f.close is not None or raw:
            yield _escaped(f), "insert", 0.0                         # a regex's {\d} meant literally
    for s in singles:
        double = (((s, s, "}"),), "insert", 0.0)                    # x}y: a literal brace
        drop = (((s, s + 1, ""),), "delete", 0.0)                   # {x}}: one typed twice
        yield from ((drop, double) if body[s - 1:s] == "}" else (double, drop))


def _escaped(f: Field) -> tuple[Edit, ...]:
    edits: tuple[Edit, ...] = ((f.open, f.open, "{"),)
    if f.close is not None:
        edits += ((f.close, f.close, "}"),)
    return edits


def _close_field(body: str, f: Field) -> Iterator[tuple[tuple[Edit, ...], str, float]]:
    """``}`` for a field the body ends inside: where its expression ends (the longest prefixes
    of the field's text that are expressions, ending an operand: ``{len(items) items`` closes
    after ``)``, ``[{name]`` before ``]``), then at the body's end after its open brackets."""
    if f.spec is None and f.conv is None:
        spots = []
        for j in range(min(len(body), f.open + 1 + MAX_INNER), f.open + 1, -1):
            if (j == len(body) or not word(body[j])) and (word(body[j - 1]) or body[j - 1] in ")]}'\""):
                if j < len(body) and parses_as_expression(body[f.open + 1:j]):
                    spots.append(j)
                    if len(spots) == 2:
                        break
        for j in spots:
            yield ((j, j, "}"),), "close", 0.0
    if f.conv is not None and f.spec is None and body[f.conv + 1:f.conv + 2] in ("r", "s", "a"):
        yield ((f.conv + 2, f.conv + 2, "}"),), "close", 0.0              # {name!r is ...
    closers = "".join(_CLOSE[c] for c in reversed(f.stack))
    yield ((len(body), len(body), closers.rstrip("}") + "}" if closers else "}"),), "close", 0.0
    yield ((f.open, f.open, "{"),), "insert", 0.0                         # a literal '{'


def parses_as_expression(text: str) -> bool | None:
    """Whether ``(text)`` is an expression (None: not a text CPython can be asked about)."""
    if len(text) > MAX_INNER or "\\" in text:
        return None
    try:
        with probe_warnings_silenced():      # SyntaxWarnings of a probe are not the user's
            compile("(" + text + ")", "<f-string>", "eval")
    except SyntaxError:
        return False
    except (ValueError, MemoryError, RecursionError):
        return None
    return True


def _inner(expr: str, f: Field) -> Iterator[tuple[tuple[Edit, ...], str, float]]:
    """A field whose expression does not parse (the caller asked): repaired as a program of its own."""
    text = expr.strip()
    if "#" in text:
        return
    lead = len(expr) - len(expr.lstrip())
    start, end = f.open + 1 + lead, f.open + 1 + lead + len(text)
    from noodle.fixer.repair import repair_expression  # noqa: PLC0415 - the search imports this module

    for fixed in repair_expression(text):
        yield ((start, end, fixed),), "substitute", INNER_COST
    yield ((start, end, "(" + text + ")"),), "insert", 0.0                 # read only in parentheses
