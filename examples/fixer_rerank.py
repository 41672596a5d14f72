"""The syntax fixer's learned reranker: on by default, off with ``rerank=False``, served by the
inference engine.

Run: python examples/fixer_rerank.py

Rebuild the shipped artifact (src/noodle/fixer/data/reranker.onnx, a few minutes on 2 cores)::

    python -m noodle.fixer.train --reranker
"""

from __future__ import annotations

from noodle.fixer import fix, rerank
from noodle.fixer.rerank_features import N_FEATURES

# two errors in three lines: the n-gram answer is not a clear winner, so the reranker is consulted
broken = "x = foo(a b, c d)\nif x\n    print(x\n"
with_reranker = fix(broken, k=3)
ngram_only = fix(broken, k=3, rerank=False)
print("reranked:", repr(with_reranker.source), [round(c.score, 2) for c in with_reranker.candidates])
print("n-gram:  ", repr(ngram_only.source), [round(c.score, 2) for c in ngram_only.candidates])

# the artifact on its own: one batch of feature rows through MLInferenceEngine
model = rerank.load()
print("P(true repair) of two blank rows:", model.probabilities([[0.0] * N_FEATURES] * 2).round(3).tolist())
print("this process:", rerank.stats())
