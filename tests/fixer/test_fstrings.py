"""Repairs inside f-strings: before :mod:`noodle.fixer.fstrings`, every ``f-string: ...`` error
was "repaired" by deleting the string or its statement (``print(f"a {x:}} b")`` came back as
``print()``), which parses and loses the user's code.

The oracle is the original text and ``compile``: each broken text must come back as its
original among the candidates (first, where one reading is clearly meant), every candidate must
compile, and no candidate may drop the f-string. The corpus test breaks the f-strings of
installed standard-library modules the ways people do (a field's ``}`` lost, the string's own
quote used inside a field, a conversion letter lost) and asks for the original back.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noodle.fixer import fix
from noodle.fixer.fstrings import scan

CASES = {
    # broken -> original; first: the original must be the top candidate
    "a field's '}' lost at the end": ('q = f"{a" + "b"\n', 'q = f"{a}" + "b"\n', True),
    "a field's '}' lost before text": ('log(f"{name!r}: {len(items) items")\n',
                                      'log(f"{name!r}: {len(items)} items")\n', True),
    "a nested spec's '}' lost": ('return_ = f"{x.name:>{width}"\n', 'return_ = f"{x.name:>{width}}"\n', True),
    "a call's ')' lost inside a field": ('print(f"total: {sum(x for x in xs}")\n',
                                        'print(f"total: {sum(x for x in xs)}")\n', True),
    "a subscript's ']' lost inside a field": ('r = f"{a[0}"\n', 'r = f"{a[0]}"\n', True),
    # (the string's own quotes made the other kind is the same one slip, and may come first)
    "the string's own quote inside a field": ("x = f'{a['k']}'\n", 'x = f\'{a["k"]}\'\n', False),
    "the own quote, twice in one call": ("w = f'{g('a', 'b')}'\n", 'w = f\'{g("a", "b")}\'\n', False),
    # ({x} and {x!r} are both what a lost letter may have been, as are {{}} and "" for {})
    "a conversion letter lost": ('s = f"A({self.x!})"\n', 's = f"A({self.x!r})"\n', False),
    "a conversion letter doubled": ('s = f"A({self.x!rr})"\n', 's = f"A({self.x!r})"\n', False),
    "a '}' typed twice": ('h = f"{x}}"\n', 'h = f"{x}"\n', True),
    "a literal '}' not doubled": ('t = f"x}y"\n', 't = f"x}}y"\n', True),
    "an empty field meant literally": ('z = f"{}"\n', 'z = f"{{}}"\n', False),
    "a regex's braces in a raw f-string": ('pat = rf"{\\d}"\n', 'pat = rf"{{\\d}}"\n', True),
    "a comma lost inside a field": ('s = f"{x y}"\n', 's = f"{x, y}"\n', False),
    "a lambda needs parentheses": ('k = f"{lambda x: 1}"\n', 'k = f"{(lambda x: 1)}"\n', False),
    "a multi-line f-string's field": ('o = f"""\n{x\n"""\n', 'o = f"""\n{x}\n"""\n', True),
    "the second of two adjacent f-strings": ('msg = (\n    f"one {a}"\n    f"two {b"\n)\n',
                                            'msg = (\n    f"one {a}"\n    f"two {b}"\n)\n', True),
}


def _fstring_count(text: str) -> int:
    return sum(1 for t in tokenize.generate_tokens(io.StringIO(text).readline)
               if t.type == tokenize.STRING and "f" in t.string[:3].lower().split("'")[0].split('"')[0])


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_fstring_comes_back(case: str) -> None:
    broken, original, first = CASES[case]
    with pytest.raises(SyntaxError, match="f-string"):
        compile(broken, "<case>", "exec")
    for rerank in (False, None):
        r = fix(broken, k=3, rerank=rerank)
        sources = [c.source for c in r.candidates]
        assert original in sources, (rerank, sources)
        if first and rerank is False:
            assert sources[0] == original, sources
        for s in sources:
            compile(s, "<candidate>", "exec")
            assert _fstring_count(s) == _fstring_count(original), f"a candidate dropped an f-string: {s!r}"


def test_scan_skips_escapes_strings_and_brackets_inside_fields() -> None:
    body = '{{lit}} {d["}"]} {k: v for k in d}x {a!r:>{w}.{p}} }'
    fields, singles = scan(body)
    got = [body[f.open:f.close + 1] for f in fields if f.close is not None]
    assert got == ['{d["}"]}', "{k: v for k in d}", "{a!r:>{w}.{p}}"]
    assert singles == [len(body) - 1]
    conv = fields[2]
    assert body[conv.conv] == "!" and body[conv.spec] == ":"
    (unclosed,), _ = scan("{f(a, [b")
    assert unclosed.close is None and unclosed.stack == "(["


def _stdlib_fstrings(limit: int) -> list[tuple[str, str]]:
    """(statement source, f-string text) from installed standard-library modules: one-line
    statements holding one single-quoted f-string with at least one field."""
    import argparse
    import dataclasses
    import inspect as insp
    import pathlib
    import typing
    import zipfile

    out = []
    for module in (argparse, dataclasses, insp, pathlib, typing, zipfile):
        source = inspect.getsource(module)
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.stmt) or isinstance(node, ast.FunctionDef | ast.ClassDef | ast.If
                                                                      | ast.For | ast.While | ast.With | ast.Try):
                continue
            if node.lineno != node.end_lineno:
                continue
            line = source.splitlines()[node.lineno - 1].strip()
            toks = [t for t in tokenize.generate_tokens(io.StringIO(line + "\n").readline)
                    if t.type == tokenize.STRING and t.string[:1] in "fF" and t.string[1:2] in "'\""]
            if len(toks) == 1 and "{" in toks[0].string and "\\" not in line and "{{" not in line:
                stmt = "def _f(self):\n    " + line + "\n"      # return, yield: a function's statements
                try:
                    compile(stmt, "<stdlib>", "exec")
                except SyntaxError:
                    continue
                out.append((stmt, toks[0].string))
    return out[:limit]


def _breaks(stmt: str, fstr: str) -> list[tuple[str, str]]:
    """(how, broken statement) for each way the f-string can be broken."""
    out = []
    body_at = stmt.index(fstr)
    quote = fstr[1]
    fields, _ = scan(fstr[2:-1])
    f = next((f for f in fields if f.close is not None), None)
    if f is None:
        return out
    close = body_at + 2 + f.close
    broken = stmt[:close] + stmt[close + 1:]
    out.append(("'}' lost", broken))
    inner = fstr[2 + f.open:2 + f.close]
    other = "'" if quote == '"' else '"'
    if other in inner:
        at = body_at + 2 + f.open
        out.append(("own quote inside", stmt[:at] + inner.replace(other, quote) + stmt[at + len(inner):]))
    if f.conv is not None and fstr[2 + f.conv + 1] in "rsa":
        at = body_at + 2 + f.conv + 1
        out.append(("conversion letter lost", stmt[:at] + stmt[at + 1:]))
    return out


def test_fstrings_of_installed_modules_broken_come_back() -> None:
    tried = back = 0
    misses = []
    for stmt, fstr in _stdlib_fstrings(60):
        for how, broken in _breaks(stmt, fstr):
            try:
                compile(broken, "<b>", "exec")
                continue                     # still valid (the break hit a nested spec): no error to fix
            except SyntaxError:
                pass
            tried += 1
            r = fix(broken, k=3, rerank=False)
            sources = [c.source for c in r.candidates]
            for s in sources:
                compile(s, "<candidate>", "exec")
            if stmt in sources:
                back += 1
            else:
                misses.append((how, broken, sources))
    assert tried >= 40, f"only {tried} broken f-strings were made from the corpus"
    assert back >= 0.9 * tried, f"{back} of {tried} came back; misses: {misses[:5]}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.text(alphabet="{}!:'\"()[]xyr 0=.,\\", max_size=14), quote=st.sampled_from(['"', "'", '"""']),
       prefix=st.sampled_from(["f", "rf", "F"]))
def test_any_fstring_text_gives_compiling_candidates_or_none(body: str, quote: str, prefix: str) -> None:
    """Whatever the f-string holds, fix() answers without raising, and every candidate compiles."""
    source = f"s = {prefix}{quote}{body}{quote}\n"
    r = fix(source, k=3, rerank=False)
    for c in r.candidates:
        compile(c.source, "<candidate>", "exec")
    if r.kind == "valid":
        compile(source, "<source>", "exec")


def test_valid_fstrings_beside_a_broken_one_are_left_alone() -> None:
    """Only the broken field changes: the own-quote repair once offered ``f'{a}"`` for the valid
    string before it (a quote of a later string taken as its close)."""
    broken = "x = f'{a}' + f'{b if}' + f'{c if}'\n"
    r = fix(broken, k=3, rerank=False)
    assert r.candidates
    for c in r.candidates:
        assert c.source.startswith("x = f'{a}' + f'{"), c.source


def test_probing_a_field_prints_no_syntax_warning() -> None:
    """The generator compiles field texts to test them; their SyntaxWarnings are not the user's."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fix("x = f'{(1, 2)(3)'\n", k=3, rerank=False)
    assert not [w for w in caught if issubclass(w.category, SyntaxWarning)], [str(w.message) for w in caught]

