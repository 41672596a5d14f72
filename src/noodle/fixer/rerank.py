"""The learned reranker: a calibrated probability that a repair step is a true repair, served by
the inference engine.

Why a learned model on top of the n-gram: the n-gram scores the tokens an edit changes and a
fixed prior prices the edit itself, so a two-edit repair pays a constant per edit whatever the
evidence; a small gradient-boosted model trained here on synthetic corruptions of installed
code (``python -m noodle.fixer.train --reranker``, :mod:`noodle.fixer.rerank_train`) weighs
the n-gram score together with what it cannot see (:mod:`noodle.fixer.rerank_features`) and
gives a probability, so the search can add log-probabilities over a path of edits.

One error's goals (the proposals of a round that the parser accepted) are one batch through
:class:`noodle.inference.MLInferenceEngine`. The artifact ships as ``data/reranker.onnx``;
it loads once per process and only when a fix needs it (ONNX Runtime costs ~0.2 s to import,
so a valid file never pays it).

Failure mode (a logged, counted degradation, never a different set of answers): when the
shipped artifact is missing or unreadable, :func:`default_reranker` logs a warning once,
counts the failure (:func:`stats`) and the fixer ranks by the n-gram model alone, saying so in
the result's ``notes``; every candidate still compiles, only their order is the n-gram's.
:func:`load` on an explicit path raises :class:`noodle.errors.ModelLoadError` instead.

Example::

    from noodle.fixer import fix
    r = fix("def f(x)\\n    return x\\n", rerank=True)     # the default where the artifact loads
    print(r.source, r.notes)
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

from noodle.errors import ModelLoadError
from noodle.fixer.rerank_features import N_FEATURES, RoundInfo, Step, step_rows

__all__ = ["ARTIFACT", "INPUT", "Reranker", "default_reranker", "enabled", "load", "stats"]

ARTIFACT = Path(__file__).with_name("data") / "reranker.onnx"
#: the model's input (float32, [rows, N_FEATURES])
INPUT = "features"
#: probabilities are clipped here before the log (a step the model rules out still has a finite cost)
FLOOR = 1e-4
ENV = "NOODLE_FIXER_RERANK"

_log = logging.getLogger("noodle.fixer.rerank")
_STATS = {"loads": 0, "load_failures": 0, "batches": 0, "rows": 0}


def enabled() -> bool:
    """Whether ``fix`` reranks by default: on unless ``NOODLE_FIXER_RERANK`` is 0/false/off/no."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def stats() -> dict[str, int]:
    """Loads, load failures (each a degradation to n-gram ranking), batches and rows scored in
    this process."""
    return dict(_STATS)


class Reranker:
    """One loaded artifact behind an engine; :meth:`score_steps` is what the search calls.

    Example::

        rr = load()                        # the shipped artifact
        p = rr.probabilities([[0.0] * N_FEATURES])
    """

    note = ""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.output = _probability_output(engine)

    def probabilities(self, rows: list[list[float]]) -> Any:
        """P(true repair) for each feature row (a NumPy float array), one engine batch."""
        import numpy as np

        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), N_FEATURES)
        out = self.engine.infer({INPUT: x})
        probs = out[self.output] if isinstance(out, dict) else out
        _STATS["batches"] += 1
        _STATS["rows"] += len(rows)
        return np.asarray(probs, dtype=np.float64)[:, 1]

    def score_steps(self, info: RoundInfo, steps: list[Step]) -> list[float] | None:
        """log P(true repair) of each step of one round (the search's StepScorer)."""
        if not steps:
            return []
        probs = self.probabilities(step_rows(info, steps))
        return [math.log(max(float(p), FLOOR)) for p in probs]


def _probability_output(engine: Any) -> str:
    names = [o.name for o in getattr(engine, "outputs", ())]
    for name in names:
        if "prob" in name:
            return name
    if len(names) == 1:
        return names[0]
    raise ModelLoadError(f"the reranker model has outputs {names}, none of them probabilities; rebuild it "
                         "with python -m noodle.fixer.train --reranker.")


def load(model: str | os.PathLike[str] | bytes | None = None) -> Reranker:
    """A reranker over an ONNX artifact (path or bytes; default the shipped one), on the CPU.

    Raises :class:`ModelLoadError` when the file is missing, is not an ONNX model, or does not
    take ``[rows, N_FEATURES]`` float32 under the input name ``features``.
    """
    from noodle.inference import MLInferenceEngine

    src: Any = ARTIFACT if model is None else model
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise ModelLoadError(f"the fixer's reranker artifact {str(src)!r} does not exist; build it with "
                             "python -m noodle.fixer.train --reranker, or run fix(..., rerank=False).")
    engine = MLInferenceEngine(src, device="cpu", name="fixer-reranker")
    inputs = list(getattr(engine, "inputs", ()))
    shape = tuple(getattr(inputs[0], "shape", ())) if inputs else ()
    if len(inputs) != 1 or inputs[0].name != INPUT or (len(shape) == 2 and shape[1] not in (None, N_FEATURES)):
        engine.close()
        raise ModelLoadError(f"the reranker model must take one input {INPUT!r} of shape [rows, {N_FEATURES}]; "
                             f"it takes {[(i.name, getattr(i, 'shape', None)) for i in inputs]}. Rebuild it with "
                             "python -m noodle.fixer.train --reranker.")
    _STATS["loads"] += 1
    return Reranker(engine)


class _Unavailable:
    """Stands in for the reranker when its artifact did not load: keeps the n-gram scores."""

    def __init__(self, note: str) -> None:
        self.note = note

    def score_steps(self, info: RoundInfo, steps: list[Step]) -> list[float] | None:
        return None


_DEFAULT: Reranker | _Unavailable | None = None
_LOCK = threading.Lock()


def default_reranker() -> Reranker | _Unavailable:
    """The shipped reranker, loaded on first use and kept for the process; when it cannot load,
    a stand-in that keeps the n-gram ranking (logged once, counted in :func:`stats`)."""
    global _DEFAULT
    got = _DEFAULT
    if got is not None:
        return got
    with _LOCK:
        if _DEFAULT is None:
            try:
                _DEFAULT = load()
            except (ModelLoadError, ImportError, OSError) as e:
                _STATS["load_failures"] += 1
                _log.warning("fixer reranker unavailable, ranking by the n-gram model alone: %s", e)
                _DEFAULT = _Unavailable(f"reranker unavailable ({type(e).__name__}: {e}); ranked by the n-gram "
                                        "model alone")
        return _DEFAULT


def reset_default() -> None:
    """Forget the process's reranker (the next fix loads it again): for tests that swap the artifact."""
    global _DEFAULT
    with _LOCK:
        _DEFAULT = None
