"""How likely a repair is: the language model's verdict on the changed tokens plus a prior on the edit.

Why a score of differences: every candidate differs from the broken text only near its edits,
so for an n-gram model ``log P(fixed) - log P(broken)`` is the sum over the changed symbols and
the ``order - 1`` symbols after them; nothing else moves. That makes candidates with different
edits comparable (insertions pay for their extra symbol, deletions gain one) at the price of a
few lookups each. The prior is the log-odds of the edit itself: every token edit costs
:data:`EDIT_COST` (fewer edits are likelier), and an edit costs more the further it is from
where CPython stopped (its error line is within a line of the human fix in 97.6% of real
errors). A keyword spelled with one more typo costs :data:`TYPO_COST` more. That is all the
prior knows; everything else is the model's.

When no trained model is installed (``noodle.fixer.lm`` missing or its data absent) the scorer
falls back to a flat model: every symbol equally likely, so only the prior and the parse
checks rank, and ``notes`` says so.

Example::

    from noodle.fixer.rank import default_scorer
    sc = default_scorer()
    ids = sc.ids(["<s>", "def", "<NAME>", "(", ")", ":", "<NL>"])
    print(sc.span(ids, 1, len(ids)))
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Sequence
from typing import Any

from noodle.errors import NoodleError

__all__ = ["BLANK_EDGE_COST", "DELETE_CONTENT_COST", "DELETE_KEYWORD_COST", "DELETE_OPENER_COST", "DELETE_PUNCT_COST", "EDIT_COST", "EOL_CLOSER_BONUS", "INDENT_LEVEL_COST", "LINE_COST", "STRING_PIECE_COST", "TOKEN_COST", "TYPO_COST", "FlatLM", "Scorer", "default_scorer",
           "delete_cost", "edit_cost"]

#: log-odds paid per token edit (an indentation change of one line counts as one edit)
EDIT_COST = 3.0
#: paid per line between the edit and CPython's error line
LINE_COST = 1.0
#: paid per token between the edit and the token CPython stopped at (capped)
TOKEN_COST = 0.15
#: paid beyond EDIT_COST to delete a token that someone would have had to type by mistake: a
#: delimiter or operator, a keyword, a name/number/string
DELETE_PUNCT_COST = 1.0
#: an opening bracket typed by mistake is rarer than a closing one forgotten (a tenth as often
#: in the studies behind noodle.fixer.corrupt's mix), so deleting an unclosed opener costs more
DELETE_OPENER_COST = 3.0
DELETE_KEYWORD_COST = 5.0
DELETE_CONTENT_COST = 8.0
#: paid per piece (word or punctuation mark) of string content a repair creates: closing a
#: string later swallows more text into it, which the token model, seeing one <STR>, would not
#: charge for (about what a token costs the model in code)
STRING_PIECE_COST = 2.5
#: paid when a quote a repair puts back bounds a string on its blank side (``"Gather "or`` for
#: ``"Gather" or``): both read the same to the token model, and code keeps blanks outside strings
BLANK_EDGE_COST = 1.0
#: paid per indentation level a line moves (people are off by a space or a level, rarely by three)
INDENT_LEVEL_COST = 1.0
#: taken off the cost of a closing bracket put at the end of a line (or before its final ':'):
#: forgotten closers sit there, the last of several at the end of a call being the one people
#: lose count of (about 4 to 1 against a place inside the line)
EOL_CLOSER_BONUS = 1.5
#: paid per letter a keyword repair changes beyond the first
TYPO_COST = 2.0


def delete_cost(kind: str, text: str) -> float:
    """What deleting a token costs beyond :func:`edit_cost`: the chance that someone typed it by
    mistake. Stray punctuation is common (a doubled ',' or ')'); a stray keyword less so; a stray
    name, number or string, which carries content, is rare, and (the caller's part) it is as
    likely as the model finds that token in that place, so deleting an improbable name gains
    nothing from its improbability (the noisy-channel reading of a deletion)."""
    if kind == "OP" and text in ("(", "[", "{"):
        return DELETE_OPENER_COST
    if kind == "OP" or (kind == "ERRORTOKEN" and len(text) == 1):
        return DELETE_PUNCT_COST
    if kind == "NAME" and keyword.iskeyword(text):
        return DELETE_KEYWORD_COST
    return DELETE_CONTENT_COST


def edit_cost(edits: int, line_distance: int = 0, token_distance: int = 0, typo: int = 0) -> float:
    """The prior cost (>= 0, subtracted from the score) of ``edits`` token edits this far from
    the error, ``typo`` being the letters changed when a name becomes a keyword."""
    return (EDIT_COST * edits + LINE_COST * min(line_distance, 8) + TOKEN_COST * min(token_distance, 12)
            + TYPO_COST * max(typo - 1, 0))


class FlatLM:
    """Every symbol equally likely: the stand-in when no trained model is installed."""

    order = 2

    def __init__(self, vocab: frozenset[str] | None = None, size: int = 2000) -> None:
        self.vocab = vocab if vocab is not None else frozenset()
        self._lp = -math.log(size)
        self._ids: dict[str, int] = {}

    def ids(self, symbols: Sequence[str]) -> list[int]:
        table = self._ids
        return [table.setdefault(s, len(table)) for s in symbols]

    def logprob(self, context_ids: Sequence[int], sym_id: int) -> float:
        return self._lp


class Scorer:
    """The model behind a memo: ``span`` sums log-probabilities of a stretch of symbols.

    Why a memo: candidates at one position share their context, and many candidates score the
    same n-grams (the unchanged symbols after each edit), so each n-gram is looked up once. The
    memo is keyed by the n-gram's ids and holds exact model values, so keeping it across calls
    (until it reaches 100,000 entries) changes no result, only the time.
    """

    def __init__(self, lm: Any, note: str = "") -> None:
        self.lm = lm
        self.order = int(getattr(lm, "order", 3))
        self.vocab: frozenset[str] | None = getattr(lm, "vocab", None)
        self.note = note
        self._memo: dict[tuple[int, ...], float] = {}
        self._ids: dict[tuple[str, ...], list[int]] = {}

    def reset(self) -> None:
        if len(self._memo) > 100_000:
            self._memo.clear()

    def ids(self, symbols: Sequence[str]) -> list[int]:
        return list(self.lm.ids(list(symbols)))

    def span(self, ids: Sequence[int], start: int, end: int) -> float:
        """Sum of log P(ids[j] | the order-1 ids before it) for j in [start, end), clamped."""
        end = min(end, len(ids))
        start = max(start, 1)
        memo = self._memo
        back = self.order - 1
        logprob = self.lm.logprob
        total = 0.0
        for j in range(start, end):
            key = tuple(ids[max(0, j - back):j + 1])
            lp = memo.get(key)
            if lp is None:
                lp = logprob(key[:-1], key[-1])
                memo[key] = lp
            total += lp
        return total

    def splice_delta(self, ids: Sequence[int], i: int, j: int, new: Sequence[int]) -> float:
        """log P(with ids[i:j] replaced by new) - log P(ids): only the changed window is scored."""
        return self.splice_after(ids, i, j, new) - self.span(ids, i, j + self.order - 1)

    def splice_after(self, ids: Sequence[int], i: int, j: int, new: Sequence[int]) -> float:
        """The log-probability of the window a splice changes, after it (the part of
        :meth:`splice_delta` that depends on ``new``; the rest is shared by every splice at i:j)."""
        back = self.order - 1
        lo = max(0, i - back)
        local = list(ids[lo:i]) + list(new) + list(ids[j:j + back])
        return self.span(local, i - lo, len(local))

    def symbol_ids(self, symbols: tuple[str, ...]) -> list[int]:
        """``ids`` of a few symbols, memoized (the same few are inserted everywhere)."""
        got = self._ids.get(symbols)
        if got is None:
            got = self._ids[symbols] = self.ids(symbols)
        return got

    def seq_delta(self, left: Sequence[int], old: Sequence[int], new: Sequence[int]) -> float:
        """log P(new) - log P(old) for two stretches after the same ``left`` context; their common
        prefix and the part of their common suffix whose context agrees are not scored."""
        n_old, n_new = len(old), len(new)
        k = 0
        top = min(n_old, n_new)
        while k < top and old[k] == new[k]:
            k += 1
        m = 0
        while m < top - k and old[n_old - 1 - m] == new[n_new - 1 - m]:
            m += 1
        skip = max(m - (self.order - 1), 0)
        back = self.order - 1
        ctx = list(left[-back:]) if back else []
        c = len(ctx)
        a = ctx + list(old)
        b = ctx + list(new)
        return self.span(b, c + k, c + n_new - skip) - self.span(a, c + k, c + n_old - skip)


_DEFAULT: Scorer | None = None


def default_scorer() -> Scorer:
    """The scorer over ``noodle.fixer.lm.load_default()``, or over :class:`FlatLM` when no model
    is installed (loaded once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        try:
            from noodle.fixer import lm as lm_module
            _DEFAULT = Scorer(lm_module.load_default())
        except (ImportError, AttributeError, OSError, ValueError, NoodleError) as e:
            _DEFAULT = Scorer(FlatLM(), note=f"no language model ({type(e).__name__}: {e}); ranked by "
                                             "edit costs only")
    return _DEFAULT
