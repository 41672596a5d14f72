"""Train the fixer's reranker here, from installed code, reproducibly; export it to ONNX.

Why this recipe: the reranker must learn what the search actually faces, so its examples are
the search's own rounds. Functions and classes of the language model's training files (the
held-back files that ``noodle bench fixer`` corrupts are never read) are broken by
:mod:`noodle.fixer.corrupt` with its real-world mix, one to three errors each; the fixer runs
on each with the n-gram ranking, and every goal of every round (a proposal the parser
accepted, complete or partial) becomes a row of :mod:`noodle.fixer.rerank_features`, labelled
1 when the lines it changes now read as the original's (up to blanks inside a line). The
search's time budgets are lifted while collecting, so the rows depend on the files and the
seed only, not on how busy the machine is.

A GradientBoostingClassifier (fixed seed, no subsampling: the same rows give the same trees;
skl2onnx 1.x fails to export scikit-learn 1.8's HistGradientBoosting) is fitted on the rows of most files and evaluated on the rounds of the rest (files it
never saw): how often the round's top step is a true one, by the n-gram order and by the
model. skl2onnx exports it (probabilities as a plain [rows, 2] tensor, no ZipMap) to
``data/reranker.onnx``, with ``data/reranker.json`` saying what it was trained on and how it
did.

Example::

    python -m noodle.fixer.train --reranker                       # the shipped artifact (minutes)
    python -m noodle.fixer.train --reranker --snippets 60 --out /tmp/rr   # a quick one
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import random
import re
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from noodle.fixer.quiet import probe_warnings_silenced
from noodle.fixer.rerank_features import FEATURES, N_FEATURES, RoundInfo, Step, step_rows

__all__ = ["collect", "export_onnx", "fit", "main", "snippets_from", "train"]

SEED = 1207
DEFAULT_SNIPPETS = 6000
EVAL_SHARE = 0.2
#: cases per snippet: one-edit and multi-edit (2-3 errors)
ONE_PER_SNIPPET, MULTI_PER_SNIPPET = 2, 1
SEARCH_K = 10
#: Size is bounded by memory, not by accuracy. On ``noodle bench fixer``'s one-edit cases, with
#: 3,000 snippets depth 4 / 200 trees gained +0.040 P@1 over the n-gram and depth 6 / 600 trees at
#: rate 0.05 +0.050; with 6,000 snippets depth 6 / 600 gained +0.055 and this one (depth 5 / 800
#: at 0.05) +0.055 to +0.058, in 25 MiB inside ONNX Runtime against 30 (11 for depth 4 / 200). The
#: 10 MB file's repair has room for it under its 150 MB target since SourceFile stopped keeping
#: the decoded text. Training takes about 20 minutes on 2 cores (10 for the search's rounds, 9 to fit).
MODEL_PARAMS = {"n_estimators": 800, "learning_rate": 0.05, "max_depth": 5, "min_samples_leaf": 10,
                "subsample": 1.0, "random_state": 0}


# --- the snippets ---------------------------------------------------------------------------------

def snippets_from(paths: Sequence[Path], n: int, seed: int = SEED) -> list[tuple[int, str]]:
    """Up to ``n`` (file index, snippet) pairs: functions and classes of 6-120 lines, dedented, at
    most two per file, files in a seeded order."""
    rng = random.Random(seed)
    order = list(range(len(paths)))
    rng.shuffle(order)
    out: list[tuple[int, str]] = []
    for fi in order:
        if len(out) >= n:
            break
        try:
            text = paths[fi].read_text(encoding="utf-8")
            with probe_warnings_silenced():
                tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            continue
        lines = text.splitlines(keepends=True)
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                end = node.end_lineno or node.lineno
                if 6 <= end - start + 1 <= 120:
                    found.append(textwrap.dedent("".join(lines[start - 1:end])))
        rng.shuffle(found)
        for s in found[:2]:
            try:
                compile(s, "<snippet>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
            except (SyntaxError, ValueError):
                continue
            out.append((fi, s))
    return out[:n]


# --- the rows -----------------------------------------------------------------------------------

_BLANKS = re.compile(r"[ \t]+")


def _norm(line: str) -> tuple[str, str]:
    """A line's indentation and its text without the blanks between tokens. Blanks inside string
    literals stay: ``=' x'`` is another program than ``= 'x'`` (the first artifacts' labels called
    both true, so the model put a lost quote on either side of a space)."""
    body = line.lstrip(" \t")
    return line[:len(line) - len(body)], _outside_strings(body.rstrip("\r\n"))


_TRIPLES = ("'" * 3, '"' * 3)


def _outside_strings(text: str) -> str:
    """``text`` with the blanks outside its string literals dropped (one line's scan: a string
    open at its end stays open; a comment keeps no blanks)."""
    out: list[str] = []
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                out.append(text[i:i + 2])
                i += 2
                continue
            if text.startswith(quote, i):
                out.append(quote)
                i += len(quote)
                quote = ""
                continue
            out.append(c)
        elif c in "'\"":
            quote = text[i:i + 3] if text[i:i + 3] in _TRIPLES else c
            out.append(quote)
            i += len(quote)
            continue
        elif c == "#":
            out.append(_BLANKS.sub("", text[i:]))
            break
        elif not c.isspace():
            out.append(c)
        i += 1
    return "".join(out)


class _Recorder:
    """The search's StepScorer while collecting: writes a row per goal and keeps the n-gram scores."""

    def __init__(self, original: str, group: int, sink: dict[str, list[Any]]) -> None:
        self.original = original.splitlines(keepends=True)
        self.group = group
        self.sink = sink
        self.rounds = 0
        self.note = ""

    def score_steps(self, info: RoundInfo, steps: list[Step]) -> list[float] | None:
        from noodle.fixer.context import apply_changes

        rows = step_rows(info, steps)
        base = list(info.lines)
        for s, row in zip(steps, rows):
            label = 0
            if len(base) == len(self.original):
                new = apply_changes(base, s.changes)
                touched = {c.line for c in s.changes}
                label = int(len(new) == len(self.original)
                            and all(_norm(new[t - 1]) == _norm(self.original[t - 1]) for t in touched))
            self.sink["x"].append(row)
            self.sink["y"].append(label)
            self.sink["group"].append(self.group * 1000 + self.rounds)
        self.rounds += 1
        return None


@contextlib.contextmanager
def _no_deadlines() -> Iterator[None]:
    """Lift the search's time budgets: what it finds then depends on the text alone."""
    from noodle.fixer import repair

    saved = repair.TIME_BUDGET, repair.ROUND_BUDGET
    repair.TIME_BUDGET = repair.ROUND_BUDGET = 1e9
    try:
        yield
    finally:
        repair.TIME_BUDGET, repair.ROUND_BUDGET = saved


def collect(snippets: Sequence[str], seed: int = SEED) -> dict[str, list[Any]]:
    """Rows, labels and round ids (case * 1000 + round) from the search's rounds on corruptions
    of the snippets (one-edit and 2-3-edit cases, the corrupt module's mix)."""
    from noodle.fixer.corrupt import make_cases
    from noodle.fixer.repair import _fix

    one = make_cases(list(snippets), ONE_PER_SNIPPET * len(snippets), (1, 1), seed=seed)
    multi = make_cases(list(snippets), MULTI_PER_SNIPPET * len(snippets), (2, 3), seed=seed + 1)
    sink: dict[str, list[Any]] = {"x": [], "y": [], "group": []}
    with _no_deadlines():
        for g, case in enumerate(one + multi):
            _fix(case.broken, SEARCH_K, "<train>", None, rerank=False, steps=_Recorder(case.original, g, sink))
    return sink


# --- the model ------------------------------------------------------------------------------------

def fit(x: Any, y: Any) -> Any:
    """The classifier, fitted deterministically."""
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(**MODEL_PARAMS)
    model.fit(x, y)
    return model


def export_onnx(model: Any) -> bytes:
    """The model as ONNX bytes: input ``features`` float32 [rows, N_FEATURES], outputs ``label`` and
    ``probabilities`` [rows, 2]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
                          options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    onx.doc_string = "noodle fixer reranker: P(a repair step is a true repair); see noodle.fixer.rerank_train"
    # the same trees give the same bytes: skl2onnx names the graph with a random uuid
    onx.graph.name = "noodle_fixer_reranker"
    onx.producer_version = ""
    return onx.SerializeToString()


def round_top1(groups: Any, y: Any, score: Any) -> tuple[float, int]:
    """(share, rounds): of the rounds that hold a true step, how often the best-scored one is true."""
    import numpy as np

    order = np.lexsort((-score, groups))
    g, yy = groups[order], y[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    has = {int(k) for k in np.unique(g[yy == 1])}
    tops = [(int(k), int(v)) for k, v in zip(g[first], yy[first])]
    rounds = [v for k, v in tops if k in has]
    return (sum(rounds) / len(rounds) if rounds else float("nan")), len(rounds)


def train(out: Path | None = None, n_snippets: int = DEFAULT_SNIPPETS, seed: int = SEED,
          paths: Sequence[Path] | None = None) -> dict[str, Any]:
    """Collect, fit, evaluate on files not trained on, export; returns the metadata written."""
    import numpy as np

    from noodle.fixer import corpus

    t0 = time.perf_counter()
    if paths is None:
        paths = corpus.training_files(check_parse=False)
    snips = snippets_from(paths, n_snippets, seed)
    files = sorted({fi for fi, _ in snips})
    rng = random.Random(seed)
    held = set(rng.sample(files, max(1, int(len(files) * EVAL_SHARE)))) if len(files) > 1 else set()
    train_snips = [s for fi, s in snips if fi not in held]
    eval_snips = [s for fi, s in snips if fi in held]
    tr = collect(train_snips, seed)
    ev = collect(eval_snips, seed + 7) if eval_snips else {"x": [], "y": [], "group": []}
    t_collect = time.perf_counter() - t0
    x, y = np.asarray(tr["x"], dtype=np.float32), np.asarray(tr["y"], dtype=np.int64)
    if len(set(y.tolist())) < 2:
        raise ValueError(f"the {len(y)} training rows hold one label only; give more snippets")
    model = fit(x, y)
    data = export_onnx(model)
    meta: dict[str, Any] = {
        "features": list(FEATURES), "model": "GradientBoostingClassifier", "params": MODEL_PARAMS,
        "seed": seed, "snippets": len(snips), "train_snippets": len(train_snips), "eval_snippets": len(eval_snips),
        "train_rows": len(y), "train_positive": int(y.sum()), "bytes": len(data),
        "collect_s": round(t_collect, 1), "total_s": None,
    }
    if ev["x"]:
        xe, ye, ge = (np.asarray(ev["x"], dtype=np.float32), np.asarray(ev["y"]), np.asarray(ev["group"]))
        p = model.predict_proba(xe)[:, 1]
        ngram_share, rounds = round_top1(ge, ye, xe[:, FEATURES.index("score")])
        model_share, _ = round_top1(ge, ye, p)
        meta["eval"] = {"rows": len(ye), "rounds_with_a_true_step": rounds,
                        "round_top1_ngram": round(ngram_share, 4), "round_top1_reranker": round(model_share, 4)}
    meta["total_s"] = round(time.perf_counter() - t0, 1)
    folder = out if out is not None else Path(__file__).with_name("data")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reranker.onnx").write_bytes(data)
    (folder / "reranker.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m noodle.fixer.train --reranker``: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m noodle.fixer.train --reranker",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for reranker.onnx and reranker.json (default: the package's)")
    ap.add_argument("--snippets", type=int, default=DEFAULT_SNIPPETS, help="snippets to corrupt (default %(default)s)")
    ap.add_argument("--seed", type=int, default=SEED, help="seed of the snippets and corruptions (default %(default)s)")
    args = ap.parse_args(argv)
    meta = train(args.out, args.snippets, args.seed)
    print(json.dumps(meta, indent=1, sort_keys=True))
    return 0
