"""What the reranker sees of one repair step: numbers about the edit, its place and the round.

Why these and no others: the n-gram model already scores the tokens an edit changes, so the
reranker gets that score (and how it compares with the round's other proposals) and adds what
an n-gram cannot weigh: which generator proposed the edit, which token it inserts or removes
and between which neighbours, how far it is from where CPython stopped, whether it finishes
the block (a complete repair) or only moves the error on (a partial one, and how far), the
bracket balance of the line before and after, and how many edits the path already holds. A
calibrated probability over these lets a two-edit repair compete with a one-edit one on
evidence, not on a fixed per-edit penalty.

Every feature is a float computed from the round alone (the texts, the error, the proposal
list), in a fixed order (:data:`FEATURES`), with no hashing that depends on ``PYTHONHASHSEED``:
the same round gives the same row in every process, which the training and the tests rely on.

Example::

    rows = step_rows(round_info, steps)     # one row per (proposal, changes, next error)
    print(FEATURES[0], rows[0][0])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from noodle.fixer.context import Change, Proposal
from noodle.fixer.localize import ParseError

__all__ = ["FEATURES", "N_FEATURES", "RoundInfo", "Step", "message_class", "step_rows", "symbol_class"]

#: the symbols told apart (index + 1); anything else falls into a class by its shape
SYMBOLS = ("", ":", ",", ".", "(", ")", "[", "]", "{", "}", "=", "==", "!=", ":=", ";", "+", "*", "-",
           "/", "%", "<", ">", "<=", ">=", "->", "'", '"', '"""', "'''", "\\", "#", "@", "**", "//",
           "in", "not", "and", "or", "is", "if", "else", "elif", "for", "while", "import", "from", "as",
           "return", "pass", "print", "def", "class", "lambda", "with", "try", "except", "finally",
           "raise", "yield", "del", "global", "None", "True", "False", "async", "await", "break",
           "continue", "self", "()")
_SYMBOL_INDEX = {s: i + 1 for i, s in enumerate(SYMBOLS)}
_NAME, _NUMBER, _STRING, _SPACE, _OTHER = 90, 91, 92, 93, 99

#: CPython message prefixes told apart (index + 1; 0: none of these)
MESSAGES = ("invalid syntax", "expected ':'", "was never closed", "unmatched", "does not match",
            "closing parenthesis", "unexpected indent", "expected an indented block",
            "unindent does not match", "unterminated string", "unterminated triple-quoted",
            "Missing parentheses in call to", "invalid character", "Perhaps you forgot a comma",
            "cannot assign", "invalid decimal literal", "expected 'except' or 'finally'",
            "unexpected EOF", "Did you mean", "expected '('", "positional argument follows",
            "assignment expression", "illegal target", "expression cannot contain assignment",
            "'return' outside function", "invalid non-printable")
KINDS = ("insert", "delete", "substitute", "print", "indent", "quote", "close", "open", "mismatch")
ERROR_KINDS = ("SyntaxError", "IndentationError", "TabError")

FEATURES = (
    "score", "gap_to_best", "proposal_rank", "goal_rank", "complete", "edits", "kind", "generator",
    "line_delta", "col_delta", "n_changes", "n_lines", "new_symbol", "old_symbol", "prev_symbol",
    "next_symbol", "message", "error_kind", "balance_before", "balance_after", "next_error_lines",
    "depth", "at_line_end", "indent_delta", "on_error_line", "region_lines", "n_goals", "n_complete",
    "n_proposals", "new_len", "old_len",
    # added with the second artifact: what separates the steps the first one tied or misordered
    "name_uses", "string_code", "at_line_start", "tokens_after", "complete_rank", "gap_to_best_complete",
    # the third: how the edited spot reads against the rest of the file (code repeats itself locally:
    # ``mat_cache[(val, pow)]`` two lines down says which bracket was lost)
    "local_new", "local_old",
    # the shape of the edit itself: which side of a blank it lands on (``= '<svg`` against
    # ``=' <svg``), whether CPython's message names what it inserts (``perhaps you meant "=="``),
    # and how close a replaced word is to the new one (``an`` -> ``and`` against ``an`` -> ``in``)
    "blank_before", "blank_after", "message_names", "similarity",
)
N_FEATURES = len(FEATURES)

_WORD = re.compile(r"[^\W\d]\w*")
#: what code looks like inside a string a quote repair made: operators and the keywords that join
#: expressions (``"unknown and self.format(v) >= x"`` swallowed code; ``"a b c"`` is prose)
_CODEISH = re.compile(r"(?<![\w])(?:and|or|not|in|is|if|else|for|lambda|None|self)(?![\w])|==|!=|>=|<=|[-+*/%=<>()\[\]{}.]")
_TOKEN = re.compile(r"[ \t]+|[^\W\d]\w*|\d[\w.]*|'''|\"\"\"|\*\*=?|//=?|>>=?|<<=?|->|:=|[-+*/%&|^@=!<>]=|\S")


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """One round of the search: the text it edits, the error it is about, its proposals."""

    lines: Sequence[str]            # the current text (the parent's changes applied), line by line
    err: ParseError                 # the error the round repairs (its region's first error)
    region_lines: int
    scores: Sequence[float]         # every proposal's n-gram score, best first
    depth: int                      # edits already on the path the round continues


@dataclass(frozen=True, slots=True)
class Step:
    """One goal of a round: its proposal, where that stood in the round, its text changes, and
    the error left after it (None: the block parses)."""

    proposal: Proposal
    proposal_rank: int
    changes: tuple[Change, ...]
    next_err: ParseError | None


def symbol_class(text: str) -> int:
    """A small integer for a token's text: its own index for the symbols in :data:`SYMBOLS`, else
    a class by shape (name, number, string, blank, other)."""
    t = text.strip()
    got = _SYMBOL_INDEX.get(t)
    if got is not None:
        return got
    if not t:
        return _SPACE
    if t[0].isalpha() or t[0] == "_":
        return _STRING if t[-1] in "'\"" else _NAME
    if t[0].isdigit():
        return _NUMBER
    if t[0] in "'\"":
        return _STRING
    return _OTHER


def message_class(message: str) -> int:
    """Which known CPython message the error has (0: none of them)."""
    for i, m in enumerate(MESSAGES):
        if m in message:
            return i + 1
    return 0


def _balance(text: str) -> int:
    return sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")


def _line_tokens(line: str) -> list[str]:
    return [m.group() for m in _TOKEN.finditer(line) if not m.group().isspace()]


def _neighbours(line: str, col: int, end: int) -> tuple[int, int]:
    before, after = _line_tokens(line[:col]), _line_tokens(line[end:])
    return (symbol_class(before[-1]) if before else 0), (symbol_class(after[0]) if after else 0)


def _kind_index(p: Proposal) -> int:
    try:
        return KINDS.index(p.kind) + 1
    except ValueError:
        return 0


def _string_code(line: str) -> int:
    """Code-looking pieces inside the line's strings, an unterminated one included."""
    from noodle.fixer.lexer import lex

    n = 0
    try:
        toks = lex(line.strip(" \t\r\n") + "\n")
    except (ValueError, IndexError):
        return 0
    for t in toks:
        if t.kind == "STRING" or (t.kind == "ERRORTOKEN" and t.text[:1] in "'\"rRbBuUfF" and len(t.text) > 1):
            body = t.text.lstrip("rRbBuUfF").strip("'\"")
            n += len(_CODEISH.findall(body))
    return n


def _name_uses(lines: Sequence[str], name: str) -> int:
    """How often a word occurs in the text (a misspelled keyword occurs once; a name in use, more)."""
    if not name or not _WORD.fullmatch(name):
        return 0
    pattern = re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)")
    return min(sum(len(pattern.findall(line)) for line in lines if name in line), 10)


#: lines either side of the error whose token trigrams are the file's local context
LOCAL_LINES = 100


def _local_trigrams(lines: Sequence[str], skip: int, around: int) -> set[tuple[str, str, str]]:
    """The token trigrams (within lines) of the lines near ``around``, line ``skip`` left out
    (1-based): the edited line must not vouch for itself."""
    lo, hi = max(1, around - LOCAL_LINES), min(len(lines), around + LOCAL_LINES)
    grams: set[tuple[str, str, str]] = set()
    for n in range(lo, hi + 1):
        if n == skip:
            continue
        toks = _line_tokens(lines[n - 1])
        grams.update(zip(toks, toks[1:], toks[2:]))
    return grams


def _local_hits(line: str, col: int, end: int, grams: set[tuple[str, str, str]]) -> float:
    """Of the line's token trigrams that touch the span ``[col, end)`` (or the point ``col``), how
    many occur elsewhere nearby."""
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(line) if not m.group().isspace()]
    toks = [line[a:b] for a, b in spans]
    touch = [k for k, (a, b) in enumerate(spans) if b >= col and a <= max(end, col)]
    if not touch:
        return 0.0
    first, last = max(0, touch[0] - 2), min(len(toks) - 3, touch[-1])
    return float(sum(1 for k in range(first, last + 1) if tuple(toks[k:k + 3]) in grams))


_QUOTED = re.compile(r"""["']([^"']{1,4})["']""")
#: what CPython's hints say in words
_HINT_WORDS = (("forgot a comma", ","),)


def _message_names(message: str, new: str) -> float:
    """1 when CPython's message suggests the very text an edit inserts (``"=="``, a comma)."""
    t = new.strip()
    if not t:
        return 0.0
    if any(m == t for m in _QUOTED.findall(message)):
        return 1.0
    return 1.0 if any(words in message and t == text for words, text in _HINT_WORDS) else 0.0


def _similarity(old: str, new: str) -> float:
    """How alike a replaced token and its replacement are (0 when either is empty)."""
    a, b = old.strip(), new.strip()
    if not a or not b:
        return 0.0
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b).ratio()


def _token_at(line: str, lo: int, hi: int) -> str:
    """The first token of ``line`` that overlaps ``[lo, hi)``, or for a point (``lo == hi``) the one
    that touches it: what an edit made of, or cut into, a whole token (``an`` + ``d`` is ``and``)."""
    for m in _TOKEN.finditer(line):
        if m.group().isspace():
            continue
        a, b = m.span()
        if (a < hi and b > lo) if hi > lo else (a <= lo <= b):
            return m.group()
    return ""


def _blank(line: str, k: int) -> float:
    """1 when position ``k`` of the line is a blank (or off its ends), else 0."""
    return 1.0 if k < 0 or k >= len(line) or line[k] in " \t\n" else 0.0


def step_rows(info: RoundInfo, steps: Sequence[Step]) -> list[list[float]]:
    """The feature rows (order of :data:`FEATURES`) of a round's goals, in the order given."""
    local: dict[int, set[tuple[str, str, str]]] = {}    # edited line -> the trigrams around it
    best = info.scores[0] if info.scores else 0.0
    n_complete = sum(1 for s in steps if s.next_err is None)
    complete = sorted((-s.proposal.score, k) for k, s in enumerate(steps) if s.next_err is None)
    complete_rank = {k: r for r, (_, k) in enumerate(complete)}
    best_complete = -complete[0][0] if complete else best
    err = info.err
    rows = []
    for goal_rank, s in enumerate(steps):
        p = s.proposal
        ch = min(s.changes, key=lambda c: (c.line, c.col)) if s.changes else Change(err.line, err.col, err.col, "")
        old_line = info.lines[ch.line - 1] if 0 < ch.line <= len(info.lines) else ""
        old_text = old_line[ch.col:ch.end]
        new_line = old_line[:ch.col] + ch.new + old_line[ch.end:]
        prev_sym, next_sym = _neighbours(old_line, ch.col, ch.end)
        lines_touched = {c.line for c in s.changes}
        old_ws = len(old_line) - len(old_line.lstrip(" \t"))
        new_ws = len(new_line) - len(new_line.lstrip(" \t"))
        if s.next_err is None:
            moved = 0.0
        else:
            moved = float(min(max(s.next_err.line - err.line, -50), 50))
        generator = p.key[1] if len(p.key) > 1 and isinstance(p.key[1], int) else -1
        new_tok = _token_at(new_line, ch.col, ch.col + len(ch.new))
        grams = local.get(ch.line)
        if grams is None:
            grams = local[ch.line] = _local_trigrams(info.lines, ch.line, err.line)
        rows.append([
            float(p.score), float(best - p.score), float(s.proposal_rank), float(goal_rank),
            1.0 if s.next_err is None else 0.0, float(p.edits), float(_kind_index(p)), float(generator),
            float(min(max(ch.line - err.line, -20), 20)),
            float(min(max(ch.col - err.col, -80), 80)) if ch.line == err.line else 99.0,
            float(len(s.changes)), float(len(lines_touched)),
            float(symbol_class(ch.new)), float(symbol_class(old_text)), float(prev_sym), float(next_sym),
            float(message_class(err.message)),
            float(ERROR_KINDS.index(err.kind) if err.kind in ERROR_KINDS else 3),
            float(_balance(old_line)), float(_balance(new_line)), moved, float(info.depth),
            1.0 if ch.col >= len(old_line.rstrip()) else 0.0, float(new_ws - old_ws),
            1.0 if ch.line == err.line else 0.0, float(info.region_lines), float(len(steps)),
            float(n_complete), float(len(info.scores)), float(len(ch.new.strip())), float(len(old_text.strip())),
            float(_name_uses(info.lines, old_text.strip())),
            float(_string_code(new_line) - _string_code(old_line)) if ("'" in old_line or '"' in old_line) else 0.0,
            1.0 if ch.col <= old_ws else 0.0,
            float(min(len(_line_tokens(old_line[ch.end:])), 20)),
            float(complete_rank.get(goal_rank, -1)),
            float(best_complete - p.score),
            _local_hits(new_line, ch.col, ch.col + len(ch.new), grams),
            _local_hits(old_line, ch.col, ch.end, grams),
            _blank(new_line, ch.col - 1), _blank(new_line, ch.col + len(ch.new)),
            _message_names(err.message, new_tok), _similarity(_token_at(old_line, ch.col, ch.end), new_tok),
        ])
    return rows
