"""The scorer's window deltas equal the whole-sequence difference, and the priors order edits as claimed."""

from __future__ import annotations

import math
import random

import pytest

from noodle.fixer import rank


class ToyLM:
    """A small trigram model with arbitrary but fixed probabilities: enough to check that the
    window arithmetic is exact for any n-gram model."""

    order = 3
    vocab = frozenset()

    def __init__(self, size: int = 12) -> None:
        self.size = size

    def ids(self, symbols):
        return [sum(map(ord, s)) % self.size for s in symbols]

    def logprob(self, context_ids, sym_id):
        ctx = tuple(context_ids[-2:])
        weights = [((a * 31 + b * 17 + sum(ctx) * 7 + len(ctx)) % 11) + 1
                   for a, b in [(s, s + 1) for s in range(self.size)]]
        return math.log(weights[sym_id] / sum(weights))


def _total(scorer, ids):
    return scorer.span(ids, 1, len(ids))


@pytest.mark.parametrize("seed", range(20))
def test_splice_delta_is_the_whole_sequence_difference(seed):
    rng = random.Random(seed)
    scorer = rank.Scorer(ToyLM())
    ids = [0] + [rng.randrange(12) for _ in range(rng.randint(3, 30))]
    i = rng.randint(1, len(ids))
    j = rng.randint(i, min(len(ids), i + 3))
    new = [rng.randrange(12) for _ in range(rng.randint(0, 3))]
    after = ids[:i] + new + ids[j:]
    want = _total(scorer, after) - _total(scorer, ids)
    assert scorer.splice_delta(ids, i, j, new) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_seq_delta_is_the_whole_sequence_difference(seed):
    rng = random.Random(100 + seed)
    scorer = rank.Scorer(ToyLM())
    left = [0] + [rng.randrange(12) for _ in range(rng.randint(0, 6))]
    old = [rng.randrange(12) for _ in range(rng.randint(1, 12))]
    new = list(old)
    for _ in range(rng.randint(1, 3)):           # a few local changes
        k = rng.randrange(len(new) + 1)
        new[k:k + rng.randint(0, 1)] = [rng.randrange(12) for _ in range(rng.randint(0, 2))]
    want = _total(scorer, left + new) - _total(scorer, left + old)
    assert scorer.seq_delta(left, old, new) == pytest.approx(want, abs=1e-9)


def test_priors_prefer_fewer_edits_near_the_error():
    assert rank.edit_cost(1) < rank.edit_cost(2)
    assert rank.edit_cost(1, line_distance=0) < rank.edit_cost(1, line_distance=2)
    assert rank.edit_cost(1, typo=1) < rank.edit_cost(1, typo=2)
    # a stray opener is rarer than a stray closer; a stray name rarer than a stray keyword
    assert rank.delete_cost("OP", ")") < rank.delete_cost("OP", "(")
    assert rank.delete_cost("NAME", "return") < rank.delete_cost("NAME", "value")
    assert rank.delete_cost("ERRORTOKEN", "$") < rank.delete_cost("ERRORTOKEN", "'abc")


def test_flat_model_stands_in_when_none_is_installed():
    flat = rank.Scorer(rank.FlatLM())
    ids = flat.ids(["<s>", "x", "=", "<NUM>"])
    assert flat.span(ids, 1, 4) == pytest.approx(3 * -math.log(2000))
    assert flat.splice_delta(ids, 2, 2, flat.ids([":"])) == pytest.approx(-math.log(2000))
