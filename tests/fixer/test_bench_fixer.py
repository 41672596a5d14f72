"""The fixer bench's arithmetic: a precision figure is only worth its scoring code.

Stub fixers with known answers pin precision at k, parse share and the percentiles; a tiny
real run checks the suite's path end to end (no timing assertions: the machine is shared).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from noodle.fixer.corrupt import Corruption, fails_to_compile, make_cases

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> Any:
    path = ROOT / "benchmarks" / "bench_fixer.py"
    spec = importlib.util.spec_from_file_location("noodle_bench_fixer_under_test", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def paths() -> list[Path]:
    folder = Path(os.path.dirname(os.__file__)) / "json"
    return sorted(folder.glob("*.py"))


@dataclass
class _Cand:
    source: str


@dataclass
class _Result:
    source: str
    changed: bool
    parses: bool
    candidates: tuple[_Cand, ...]
    kind: str = "simple"


def _cases(paths: list[Path], bench: Any, n: int = 6) -> list[Corruption]:
    snippets = bench.build_snippets(paths, 20, seed=1)
    return make_cases(snippets, n, (1, 1), seed=2)


def test_the_original_first_is_a_hit_at_one(bench: Any, paths: list[Path]) -> None:
    cases = _cases(paths, bench)
    by_broken = {c.broken: c.original for c in cases}

    def perfect(text: str) -> _Result:
        orig = by_broken[text]
        return _Result(orig, True, True, (_Cand(orig), _Cand(orig + "x = 1\n")))

    s = bench.summarize(bench.evaluate(cases, perfect))
    assert s["n"] == len(cases) and s["p@1"] == s["p@5"] == s["p@10"] == 1.0 and s["parses"] == 1.0


def test_rank_three_counts_at_five_not_at_one(bench: Any, paths: list[Path]) -> None:
    cases = _cases(paths, bench)
    by_broken = {c.broken: c.original for c in cases}

    def third(text: str) -> _Result:
        orig = by_broken[text]
        wrong = [_Cand(f"y{i} = 0\n") for i in range(2)]
        return _Result(wrong[0].source, True, True, (*wrong, _Cand(orig + "\n# layout only\n\n")))

    scores = bench.evaluate(cases, third)
    assert {s.rank for s in scores} == {3}
    s = bench.summarize(scores)
    assert s["p@1"] == 0.0 and s["p@5"] == 1.0 and s["p@10"] == 1.0


def test_rank_eleven_is_a_miss_and_nothing_is_unparsed(bench: Any, paths: list[Path]) -> None:
    cases = _cases(paths, bench, 4)
    by_broken = {c.broken: c.original for c in cases}

    def late(text: str) -> _Result:
        cands = tuple(_Cand(f"z{i} = 0\n") for i in range(10)) + (_Cand(by_broken[text]),)
        return _Result(text, False, False, cands, "unfixed")

    scores = bench.evaluate(cases, late)
    assert all(s.rank is None for s in scores)
    s = bench.summarize(scores)
    assert s["p@10"] == 0.0 and s["parses"] == 0.0
    assert bench.by_kind(scores)["unfixed"]["n"] == 4
    nothing = bench.summarize(bench.evaluate(cases, lambda t: _Result(t, False, False, ())))
    assert nothing["p@1"] == 0.0


def test_an_applied_source_outside_the_candidates_ranks_first(bench: Any) -> None:
    r = _Result("x = (1)\n", True, True, (_Cand("x = 1\n"),))
    assert bench.ranked_sources(r) == ["x = (1)\n", "x = 1\n"]
    assert bench.rank_of("x = ( 1 )\n", bench.ranked_sources(r)) == 1


def test_percentiles_and_mixed_precision(bench: Any) -> None:
    assert bench.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert bench.percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    S = bench.Score
    scores = [S(("a",), 1, True, "simple", 0.01), S(("a",), 4, True, "simple", 0.02),
              S(("b",), None, True, "complex", 0.3), S(("b",), 10, False, "complex", 0.1)]
    s = bench.summarize(scores)
    assert (s["p@1"], s["p@5"], s["p@10"], s["parses"]) == (0.25, 0.5, 0.75, 0.75)
    cls = bench.by_class(scores)
    assert cls["a"]["p@5"] == 1.0 and cls["b"]["p@1"] == 0.0 and cls["b"]["p@10"] == 0.5
    kinds = bench.by_kind(scores)
    assert kinds["simple"]["p50_ms"] == pytest.approx(15.0) and kinds["complex"]["n"] == 2


def test_uniform_baseline_finds_a_missing_colon(bench: Any) -> None:
    broken = "def f(x)\n    return x\n"
    found = bench.uniform_baseline(broken)
    assert found and "def f(x):\n    return x\n" in found
    assert all(not fails_to_compile(t) for t in found)
    assert bench.uniform_baseline("x = 1\n") == []


def test_large_file_parts_join_split_and_inject(bench: Any, paths: list[Path]) -> None:
    parts = bench.build_large(paths, 60_000)
    assert parts
    whole = bench._join(parts)
    ast.parse(whole)
    assert bench._split_parts(whole, len(parts)) == parts
    broken, hit = bench.inject(parts, 3)
    assert len(hit) == min(3, len(parts)) and all(fails_to_compile(broken[i]) for i in hit)
    assert fails_to_compile(bench._join(broken))


def test_renaming_keeps_the_part_valid(bench: Any) -> None:
    text = "def f(x):\n    return f'{x}'\n\nclass A:\n    f = 1\n\ny = f(A.f)\n"
    out = bench._renamed(text, 7)
    ast.parse(out)
    assert "def f_p7(x)" in out and "class A_p7" in out and "f'{x}'" in out and "A_p7.f" in out
    assert bench._future_free("from __future__ import annotations\nx: int = 1\n").startswith("\n")


def test_measure_reports_time_rss_and_status(bench: Any) -> None:
    r = bench.measure([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert r["rc"] == 3 and r["seconds"] > 0 and r["maxrss_kib"] > 1000


def test_a_tiny_real_run(bench: Any, paths: list[Path]) -> None:
    """The suite's precision path with the real fixer on a handful of cases."""
    pytest.importorskip("noodle.fixer.repair")
    rows = bench.precision_rows(True, paths, n_one=6, n_multi=3)
    sets = {r.extra["set"]: r.extra for r in rows if "set" in r.extra}
    assert set(sets) == {"one-edit", "multi-edit (2-3)"}
    for e in sets.values():
        assert 0.0 <= e["p@1"] <= e["p@5"] <= e["p@10"] <= 1.0
        assert 0.0 <= e["baseline_p@1"] <= e["baseline_p@10"] <= 1.0
        assert 0.0 <= e["parses"] <= 1.0
    assert sets["one-edit"]["n"] == 6 and sets["multi-edit (2-3)"]["n"] == 3
    lines = bench.notes(rows)
    assert any(line.startswith("[PASS]") or line.startswith("[FAIL]") for line in lines)
