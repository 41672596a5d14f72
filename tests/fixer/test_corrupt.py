"""The corruption generator: the bench's precision is only as honest as these properties.

Deterministic (a rerun scores the same cases), every output really broken (a valid "broken"
file would count a no-op as a miss), the recorded edits exactly reversible (precision compares
against the original), and every error class of the mix actually produced.
"""

from __future__ import annotations

import collections
import os
import random

import pytest

from noodle.fixer.corrupt import (
    CLASSES,
    GENERATORS,
    MIX,
    Corruption,
    apply_edits,
    compiles,
    corrupt,
    corrupt_classes,
    fails_to_compile,
    make_cases,
    same_program,
    token_signature,
)
from noodle.fixer.result import Edit

RICH = '''\
import os, sys


def report(items, *, verbose=False):
    """Print every item (a Python 2 user would write print without parentheses)."""
    total = 0
    for name, value in items:
        if value == 0:
            continue
        total += value
        print("item", name, value)
    while total > 100:
        total = total - 1
    data = {"a": [1, 2, 3], "b": (4, 5)}
    return total, data


class Box(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def area(self):
        try:
            return self.x * self.y
        except TypeError:
            raise ValueError('not numbers')
'''


def _stdlib_sources() -> list[str]:
    root = os.path.dirname(os.__file__)
    out = []
    for pkg in ("json", "email"):
        folder = os.path.join(root, pkg)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    text = f.read()
                if compiles(text):
                    out.append(text)
    return out


@pytest.fixture(scope="module")
def sources() -> list[str]:
    return [RICH] + _stdlib_sources()


def _check(c: Corruption) -> None:
    assert compiles(c.original)
    assert fails_to_compile(c.broken), c.broken
    assert c.broken != c.original
    assert apply_edits(c.original, c.edits) == c.broken
    assert apply_edits(c.broken, c.reverse) == c.original
    assert same_program(apply_edits(c.broken, c.reverse), c.original)
    assert not same_program(c.broken, c.original)
    assert all(cls in MIX for cls in c.classes)


def test_mix_is_a_distribution_over_the_generators() -> None:
    assert set(MIX) == set(GENERATORS) == set(CLASSES)
    assert abs(sum(MIX.values()) - 1.0) < 1e-9
    assert all(w > 0 for w in MIX.values())


def test_deterministic_given_the_seed(sources: list[str]) -> None:
    a = make_cases(sources, 30, (1, 3), seed=11)
    b = make_cases(sources, 30, (1, 3), seed=11)
    c = make_cases(sources, 30, (1, 3), seed=12)
    assert [(x.broken, x.edits, x.classes) for x in a] == [(x.broken, x.edits, x.classes) for x in b]
    assert [x.broken for x in a] != [x.broken for x in c]
    assert corrupt(RICH, seed=5, n_errors=2) == corrupt(RICH, seed=5, n_errors=2)


def test_one_edit_cases_fail_to_compile_and_reverse(sources: list[str]) -> None:
    cases = make_cases(sources, 150, (1, 1), seed=1)
    assert len(cases) == 150
    for c in cases:
        _check(c)
        assert c.n_errors == 1
        # print2 drops both parentheses; every other class is one edit
        assert len(c.edits) == (2 if c.classes == ("print2",) else 1)


def test_multi_edit_cases_touch_distinct_lines(sources: list[str]) -> None:
    cases = make_cases(sources, 60, (2, 3), seed=2)
    assert len(cases) == 60
    assert {c.n_errors for c in cases} == {2, 3}
    for c in cases:
        _check(c)
        lines = [e.line for e in c.edits]
        assert len(set(lines)) >= c.n_errors


def test_every_class_is_produced_on_a_rich_source() -> None:
    rng = random.Random(0)
    for cls in CLASSES:
        c = corrupt_classes(RICH, [cls], rng)
        assert c is not None, cls
        assert c.classes == (cls,)
        _check(c)


def test_the_mix_covers_every_class_near_its_weight(sources: list[str]) -> None:
    n = 600
    cases = make_cases(sources, n, (1, 1), seed=3)
    counts = collections.Counter(c.classes[0] for c in cases)
    assert set(counts) == set(MIX)
    for cls, w in MIX.items():
        # binomial sd is at most ~0.016 here; 4 sd keeps this from flaking
        assert abs(counts[cls] / n - w) < 4 * (w * (1 - w) / n) ** 0.5 + 0.01, (cls, counts[cls])


def test_classes_do_what_they_say() -> None:
    rng = random.Random(4)
    for _ in range(10):
        c = corrupt_classes(RICH, ["print2"], rng)
        assert c is not None
        assert "print " in c.broken and "print(" not in c.broken.split("item")[0][-10:]
        c = corrupt_classes(RICH, ["missing_colon"], rng)
        assert c is not None and c.edits[0].old == ":" and c.edits[0].new == ""
        c = corrupt_classes(RICH, ["eq_assign"], rng)
        assert c is not None and c.edits[0] == Edit(c.edits[0].line, c.edits[0].col, "==", "=")
        c = corrupt_classes(RICH, ["unclosed_string"], rng)
        assert c is not None and c.edits[0].old in ("'", '"')
        c = corrupt_classes(RICH, ["missing_indent"], rng)
        assert c is not None and c.edits[0].old.strip() == "" and c.edits[0].new == ""


def test_string_and_keyword_variants_appear() -> None:
    rng = random.Random(6)
    opening = closing = else_if = 0
    for _ in range(60):
        c = corrupt_classes(RICH, ["unclosed_string"], rng)
        assert c is not None
        line = c.original.split("\n")[c.edits[0].line - 1]
        after = line[c.edits[0].col + 1:]
        # the opening quote has the string's body after it on the line; the closing one does not
        opening += after[:1] not in ("", ")", ",", ":", "]", "}", " ")
        closing += after[:1] in ("", ")", ",", ":", "]", "}", " ")
        c = corrupt_classes("if a:\n    x = 1\nelif b:\n    x = 2\n", ["keyword_typo"], rng)
        assert c is not None
        else_if += c.edits[0].new == "else if"
    assert opening and closing > opening and else_if


def test_a_dropped_comma_never_fuses_names() -> None:
    c = corrupt_classes("f(a,b)\n", ["missing_comma"], random.Random(0))
    assert c is not None and c.broken == "f(a b)\n"


def test_no_place_for_a_class_is_none() -> None:
    assert corrupt_classes("x = 1\n", ["print2"], random.Random(0)) is None
    assert corrupt_classes("x = 1\n", ["missing_colon"], random.Random(0)) is None


def test_same_program_ignores_layout_only() -> None:
    assert same_program("f(a, b)\n", "f( a,b )  # note\n")
    assert same_program("if x:\n    y = 1\n", "if x:\n  y = 1\n\n")
    assert not same_program("f(a, b)\n", "f(a, c)\n")
    assert not same_program("if x:\n    y\n    z\n", "if x:\n    y\nz\n")
    assert token_signature("x = '\n") is None


def test_apply_edits_refuses_a_stale_edit() -> None:
    with pytest.raises(ValueError):
        apply_edits("x = 1\n", [Edit(1, 0, "y", "z")])
    assert apply_edits("x = 1\n", [Edit(1, 4, "1", "2"), Edit(1, 0, "", "  ")]) == "  x = 2\n"
