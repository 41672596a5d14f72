"""What could fix an error: edits near where CPython stopped, each with its model score.

Why these edits and no others: real syntax errors are overwhelmingly one or two tokens wrong
near the reported position (58% need a one-token fix; the error line is within one line of the
fix in 97.6%), so the generator proposes every insertion, deletion and substitution of a
syntax token (colons, commas, dots, operators, keywords, a keyword for a misspelled name) at
the tokens around the error, and lets the model and the parser choose. Three structures get
their own modules because a token view cannot see them: :mod:`noodle.fixer.brackets`,
:mod:`noodle.fixer.strings` and :mod:`noodle.fixer.indent`. A few slips take two tokens but are
one mistake, and are proposed whole: ``print x``, ``exec code``, ``raise E, msg`` and ``0777``
(Python 2), ``else if``, ``x++`` (C), a missing ``()``, and a keyword used as a name
(``class = 1`` becomes ``class_``, PEP 8's spelling). F-strings get their own module too
(:mod:`noodle.fixer.fstrings`): on Python 3.11 one is a single token.

CPython's message only adds positions (the range of "Perhaps you forgot a comma?", the opener
of "'(' was never closed") and picks which structural generators run; it never picks the edit.

Example::

    ctx = Context(lines, region, err, scorer)
    for p in propose(ctx):
        print(p.kind, ctx.changes(p), p.score)
"""

from __future__ import annotations

import functools
import keyword
import re
import time
from collections.abc import Iterator

from noodle.fixer.brackets import bracket_edits
from noodle.fixer.context import (
    ATTACH_LEFT,
    CLOSERS,
    NO_EDIT,
    OPENERS,
    Change,
    Context,
    Proposal,
    distance,
    near,
    replace_change,
)
from noodle.fixer.fstrings import fstring_edits, is_fstring
from noodle.fixer.indent import indent_edits
from noodle.fixer.lexer import NAME_SYM, NUM_SYM
from noodle.fixer.rank import delete_cost, edit_cost
from noodle.fixer.strings import (
    apostrophe_edits,
    lookalike_edits,
    quote_edits,
    triple_quote_edits,
    unquoted_edits,
)

__all__ = ["CONFUSED", "INSERTABLE", "KEYWORD_SUBS", "propose"]


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

BACK, AHEAD = 5, 1


def propose(ctx: Context, limit: int = 100) -> list[Proposal]:
    """The ``limit`` best proposals for the context's error, scored, best first (ties broken by
    position; duplicates are left to the caller, who sees their texts)."""
    msg = ctx.err.message
    sources: list[Iterator[Proposal]] = [_token_edits(ctx), _pair_edits(ctx)]
    if msg.startswith("Missing parentheses in call to"):
        sources.append(_print_edit(ctx))
    if msg.startswith(("invalid character", "invalid non-printable character")):
        sources.append(lookalike_edits(ctx))
    if msg.startswith("invalid syntax"):
        sources.append(unquoted_edits(ctx))
    if msg.startswith("positional argument follows keyword argument"):
        sources.append(_keyword_argument_edits(ctx))
    if msg.startswith("f-string"):
        sources.append(fstring_edits(ctx))
    if msg.startswith("leading zeros in decimal integer literals"):
        sources.append(_octal_edits(ctx))
    sources.append(bracket_edits(ctx))
    if any(t.kind == "ERRORTOKEN" and t.text[-1:] not in ("$", "?", "!", "\\") for t in near(ctx, 3)):
        sources.append(quote_edits(ctx))
    sources.append(apostrophe_edits(ctx))
    if ctx.err.kind in ("IndentationError", "TabError") or _at_line_start(ctx) or "indent" in msg:
        sources.append(indent_edits(ctx))
    if msg.startswith("unterminated triple-quoted string"):
        sources.append(triple_quote_edits(ctx))
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
    ranged = err.end_line > err.line or err.end_col > err.col + 1
    after = 0
    for i in code:
        line = ctx.fline(toks[i])
        if line == err.line and abs(where[i] - n) <= 12:
            chosen.add(i)
        elif ranged and (err.line, err.col) <= (line, toks[i].start[1]) <= (err.end_line, err.end_col):
            chosen.add(i)
        if ranged and err.line <= line <= err.end_line + 1 and _misspelt_keyword(ctx, i):
            # a word where a keyword belongs, anywhere in the statement the message spans
            chosen.add(i)
        if ranged and after < AHEAD + 1 and (line, toks[i].start[1]) >= (err.end_line, err.end_col):
            # the token just past a named range: "expected 'else' after 'if' expression" spans
            # the expression, and the misspelled 'else' follows it
            chosen.add(i)
            after += 1
    return sorted(chosen)


def _token_edits(ctx: Context) -> Iterator[Proposal]:
    toks = ctx.toks
    fstring_error = ctx.err.message.startswith("f-string")
    for i in _positions(ctx):
        t = toks[i]
        si = ctx.sym_index[i]
        lines, dist = distance(ctx, i)
        base = edit_cost(1, lines, dist)
        glued = _after_bad_string(ctx, i)
        for sym in INSERTABLE:
            if glued and (sym in ATTACH_LEFT or t.kind in ("NEWLINE", "NL", "ENDMARKER")):
                continue                   # the text would only lengthen the unterminated string
            delta = ctx.splice(si, si, [sym])
            yield Proposal(delta - base, "insert", 1, (i, 0, sym), ("insert", i, sym))
        if t.kind in NO_EDIT or t.start[0] != t.end[0] or t.text in OPENERS or t.text in CLOSERS:
            continue
        if fstring_error and t.kind == "STRING" and is_fstring(t.text):
            continue     # the error is inside it: fstring_edits repairs it, deleting it loses code
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


def _keyword_argument_edits(ctx: Context) -> Iterator[Proposal]:
    """``f(a=1, b==2, c=3)``: CPython names the call's end, lines past the argument whose '='
    became '=='; every ``name ==`` argument of the call the error is in becomes ``name =``."""
    toks = ctx.toks
    depth, o = 0, -1
    for i in range(min(ctx.e, len(toks) - 1), -1, -1):     # the opener of the call around the error
        text = toks[i].text if toks[i].kind == "OP" else ""
        if text in CLOSERS and i != ctx.e:
            depth += 1
        elif text in OPENERS:
            if depth == 0:
                o = i
                break
            depth -= 1
    if o < 0 or toks[o].text != "(":
        return
    depth = 0
    for i in range(o + 1, len(toks) - 1):
        t = toks[i]
        if t.kind == "OP" and t.text in OPENERS:
            depth += 1
        elif t.kind == "OP" and t.text in CLOSERS:
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and t.kind == "OP" and t.text == "==" and _argument_name(ctx, i):
            lines, dist = distance(ctx, i)
            si = ctx.sym_index[i]
            delta = ctx.splice(si, si + 1, ["="])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 2, "="), ("replace", i, "="))


def _argument_name(ctx: Context, i: int) -> bool:
    """Whether the token before ``i`` is a name that starts an argument (after '(' or ',')."""
    n = ctx.prev_sig(i)
    if n < 0 or ctx.toks[n].kind != "NAME":
        return False
    p = ctx.prev_sig(n)
    return p >= 0 and ctx.toks[p].text in ("(", ",")


def _misspelt_keyword(ctx: Context, i: int) -> bool:
    """A name right after an operand (two operands in a row, where a keyword like 'is' or 'and'
    belongs) that is a small edit away from a keyword: ``x) Is False``, ``a an b``."""
    t = ctx.toks[i]
    if t.kind != "NAME" or keyword.iskeyword(t.text) or not _typo_keywords(t.text):
        return False
    p = ctx.prev_sig(i)
    if p < 0:
        return False
    u = ctx.toks[p]
    return (u.kind in ("NUMBER", "STRING") or (u.kind == "NAME" and not keyword.iskeyword(u.text))
            or (u.kind == "OP" and u.text in CLOSERS))


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


# --------------------------------------------------------------------------- print x

def _print_edit(ctx: Context) -> Iterator[Proposal]:
    """``print x`` -> ``print(x)`` (and ``exec code``): the message names this two-token edit
    and the function exactly ("Missing parentheses in call to 'exec'")."""
    toks = ctx.toks
    named = re.search(r"call to '(\w+)'", ctx.err.message)
    name = named.group(1) if named else "print"
    i = ctx.e
    while i < len(toks) and not (toks[i].kind == "NAME" and toks[i].text == name):
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
    extra: tuple[Change, ...] = ()
    if name == "exec":       # exec code in g, l is exec(code, g, l): its 'in' names the namespaces
        k = _top_level(ctx, i + 1, last, "in")
        if k is not None:
            p = ctx.prev_sig(k)
            if ctx.fline(toks[p]) != ctx.fline(toks[k]):
                return
            extra = (Change(ctx.fline(toks[k]), toks[p].end[1], toks[k].end[1], ","),)
            new[ctx.sym_index[k] - si + 1] = ","
    delta = ctx.splice(si, sj + 1, new)
    # one slip (Python 2's syntax), which CPython's message names, so one edit's cost
    yield Proposal(delta - edit_cost(1), "print", 2, (i, 7), ("changes", (open_change, *extra, close_change)))


def _top_level(ctx: Context, start: int, end: int, text: str) -> int | None:
    """The first token ``text`` outside brackets in tokens [start, end], or None."""
    depth = 0
    for k in range(start, end + 1):
        u = ctx.toks[k].text
        if u in OPENERS:
            depth += 1
        elif u in CLOSERS:
            depth -= 1
        elif depth == 0 and u == text and ctx.toks[k].kind == "NAME":
            return k
    return None


# --------------------------------------------------------------------------- 0777

#: what a repair the error message itself names gains over another one-edit repair
NAMED_BONUS = 3.0

def _octal_edits(ctx: Context) -> Iterator[Proposal]:
    """Python 2's octal ``0777`` -> ``0o777`` (the same value), ``0089`` (never octal) -> ``89``."""
    toks = ctx.toks
    for i in range(max(0, ctx.e - 1), min(len(toks), ctx.e + 2)):
        t = toks[i]
        if t.kind != "NUMBER" or not t.text.startswith("0"):
            continue
        j = i                               # the lexer reads 0777 as 0 then 777
        while j + 1 < len(toks) and toks[j + 1].kind == "NUMBER" and toks[j + 1].start == toks[j].end:
            j += 1
        digits = "".join(u.text for u in toks[i:j + 1])
        if len(digits) < 2 or not digits.isdigit():
            continue
        # Python 2 read 0777 as octal (511): the decimal only where it cannot be (0089)
        options = ["0o" + digits.lstrip("0")] if set(digits) <= set("01234567") else [digits.lstrip("0") or "0"]
        for n, new in enumerate(options):
            ch = Change(ctx.fline(t), t.start[1], toks[j].end[1], new)
            delta = ctx.splice(ctx.sym_index[i], ctx.sym_index[j] + 1, [NUM_SYM])
            # CPython's message names this repair ("use an 0o prefix"): one edit, less the bonus
            # that puts it before edits that only split the number (0, 777)
            yield Proposal(delta - edit_cost(1) + NAMED_BONUS - 0.5 * n, "substitute", 1, (i, 18, n),
                           ("changes", (ch,)))
        return


# --------------------------------------------------------------------------- two tokens as one slip

def _pair_edits(ctx: Context) -> Iterator[Proposal]:
    """Slips that take two tokens but are one mistake: ``else if`` for ``elif``, ``&&``/``||``/``!``
    for ``and``/``or``/``not`` (C, JavaScript), ``raise E, msg`` (Python 2), and a missing ``()``
    after a name (``def f:``, ``x.close:``)."""
    toks = ctx.toks
    for i in _positions(ctx):
        t = toks[i]
        si = ctx.sym_index[i]
        lines, dist = distance(ctx, i)
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == "NAME" and t.text == "else" and nxt is not None and nxt.text == "if" \
                and nxt.start[0] == t.start[0]:
            ch = Change(ctx.fline(t), t.start[1], nxt.end[1], "elif")
            delta = ctx.splice(si, si + 2, ["elif"])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 8), ("changes", (ch,)))
        if nxt is not None and t.kind == "OP" and t.text in ("&", "|") and nxt.text == t.text \
                and nxt.start == t.end:
            word = "and" if t.text == "&" else "or"        # C's && and ||
            ch = replace_change(ctx, i, word)
            ch = Change(ch.line, ch.col, nxt.end[1], ch.new)
            delta = ctx.splice(si, si + 2, [word])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 14), ("changes", (ch,)))
        if t.kind == "ERRORTOKEN" and t.text == "!" and nxt is not None and nxt.start == t.end:
            ch = Change(ctx.fline(t), t.start[1], t.end[1], "not ")     # C's !x
            delta = ctx.splice(si, si + 1, ["not"])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 15), ("changes", (ch,)))
        if t.kind == "NAME" and t.text == "raise":
            yield from _raise_edit(ctx, i)
        after = toks[i + 2] if i + 2 < len(toks) else None
        if nxt is not None and t.kind == "OP" and t.text in ("+", "-") and nxt.text == t.text \
                and nxt.start == t.end and (after is None or after.kind in ("NEWLINE", "ENDMARKER", "COMMENT")
                                            or after.text == ";"):
            glued_left = t.start[1] > 0 and ctx.line_text(ctx.fline(t))[t.start[1] - 1] != " "
            ch = Change(ctx.fline(t), t.start[1], nxt.end[1], (" " if glued_left else "") + t.text + "= 1")
            delta = ctx.splice(si, si + 2, [t.text + "=", NUM_SYM])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 21), ("changes", (ch,)))
        glued = _unglued(t.text) if t.kind == "NAME" and not keyword.iskeyword(t.text) \
            and _starts_statement(ctx, i) else None
        if glued is not None:
            # defmain(), forx in xs, defdef: a keyword run into the name after it, or typed twice
            ch = Change(ctx.fline(t), t.start[1], t.end[1], " ".join(glued))
            delta = ctx.splice(si, si + 1, [glued[0]] + [NAME_SYM] * (len(glued) - 1))
            yield Proposal(delta - edit_cost(1, lines, dist) - GLUE_COST, "substitute", 1, (i, 23),
                           ("changes", (ch,)))
        if t.kind == "NAME" and _keyword_as_name(ctx, i):
            # class = 1, f(lambda=2), obj.from, def f(in): a keyword where a name goes becomes
            # the name PEP 8 gives it (a trailing underscore)
            ch = Change(ctx.fline(t), t.start[1], t.end[1], t.text + "_")
            delta = ctx.splice(si, si + 1, [NAME_SYM])
            yield Proposal(delta - edit_cost(1, lines, dist), "substitute", 1, (i, 22), ("changes", (ch,)))
        p = ctx.prev_sig(i)
        if p >= 0 and toks[p].kind == "NAME" and not keyword.iskeyword(toks[p].text) \
                and toks[p].end[0] == t.start[0] and t.text not in ("(", "["):
            pt = toks[p]
            ch = Change(ctx.fline(pt), pt.end[1], pt.end[1], "()")
            delta = ctx.splice(si, si, ["(", ")"])
            yield Proposal(delta - edit_cost(2, lines, dist), "insert", 2, (i, 9), ("changes", (ch,)))


#: keywords that never stand where a name does, so one there is a name that collides with one
#: (the constants and soft keywords are names already)
_RENAMEABLE = frozenset(k for k in keyword.kwlist if k not in ("True", "False", "None"))
_STARTS_EXPRESSION = frozenset({"lambda", "not", "await", "yield"})
_BEFORE_OPERAND = frozenset({"(", "[", "{", ",", "=", "return", "+", "-", "*", "/", "%", "==", "!=", "<", ">",
                             "<=", ">=", "+=", "-=", "*=", "/="})


#: keywords that start a statement and that a name follows, so one typed without its blank fuses
#: with the name (the operators in, is, and, or, not are left out: split off a name inside an
#: expression they parse too readily, ``type(ind) ind`` becoming ``type(ind) in d``)
_GLUE = tuple(sorted(("def", "class", "return", "import", "from", "if", "elif", "while", "for", "del", "raise",
                      "assert", "global", "nonlocal", "yield", "with", "await", "async", "except"),
                     key=len, reverse=True))
#: what a split of a glued keyword pays beyond one edit: less than nothing, since it is one
#: blank typed where inserting the keyword before the name (``if ifx``) gives the model the same
#: symbols for a whole token (a name such as ``format`` starts with a keyword too: the parser
#: decides whether the split is needed)
GLUE_COST = -1.0


def _starts_statement(ctx: Context, i: int) -> bool:
    p = ctx.prev_sig(i)
    return p < 0 or ctx.toks[p].kind in ("NEWLINE", "INDENT", "DEDENT") or ctx.toks[p].text in (":", ";")


@functools.lru_cache(maxsize=4096)
def _unglued(name: str) -> tuple[str, ...] | None:
    """``defmain`` -> ("def", "main"), ``defdef`` -> ("def",); None when ``name`` does not start
    with a keyword followed by an identifier."""
    for kw in _GLUE:
        if name.startswith(kw) and len(name) > len(kw):
            rest = name[len(kw):]
            if rest == kw:
                return (kw,)
            if rest.isidentifier() and not keyword.iskeyword(rest):
                return (kw, rest)
    return None


def _keyword_as_name(ctx: Context, i: int) -> bool:
    """Whether keyword token ``i`` stands where only a name can: assigned to (``class = 1``), a
    keyword argument (``f(lambda=2)``), an attribute (``obj.from``), or a parameter."""
    toks = ctx.toks
    t = toks[i]
    if t.text not in _RENAMEABLE:
        return False
    p = ctx.prev_sig(i)
    prev = toks[p].text if p >= 0 and toks[p].kind != "NEWLINE" else ""
    nxt = toks[i + 1].text if i + 1 < len(toks) else ""
    if prev == ".":
        return True
    if nxt == "=" and prev in ("", ",", "(", ";"):
        return True
    if prev in ("(", ",") and nxt in (",", ")", ":") and _in_def(ctx, i):
        return True
    # an operand: print(class), return in, x = [from] (a keyword that starts an expression
    # is left alone: lambda, not, await, yield)
    nk = toks[i + 1].kind if i + 1 < len(toks) else "ENDMARKER"
    return (t.text not in _STARTS_EXPRESSION and prev in _BEFORE_OPERAND
            and (nxt in (")", "]", "}", ",") or nk in ("NEWLINE", "ENDMARKER", "COMMENT")))


def _in_def(ctx: Context, i: int) -> bool:
    """Whether token ``i`` is inside the parameter list of a ``def`` on its line."""
    depth = 0
    for j in range(i - 1, -1, -1):
        u = ctx.toks[j]
        if u.kind in ("NEWLINE", "INDENT", "DEDENT"):
            return False
        if u.text in CLOSERS:
            depth += 1
        elif u.text in OPENERS:
            if depth == 0:
                q = ctx.prev_sig(j)
                r = ctx.prev_sig(q) if q >= 0 else -1
                return q >= 0 and ctx.toks[q].kind == "NAME" and r >= 0 and ctx.toks[r].text == "def"
            depth -= 1
    return False


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
