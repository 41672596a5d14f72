"""The tolerant lexer: tokenize's tokens on valid code, tokens to the end on broken code."""

from __future__ import annotations

import io
import sys
import sysconfig
import tokenize
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noodle.fixer.lexer import (
    BAD_STRING,
    BOS,
    EOS,
    ERROR,
    KEYWORDS,
    NAME_SYM,
    OPERATORS,
    Tok,
    fixed_symbols,
    lex,
    symbol_of,
    symbols,
)

PY311 = sys.version_info[:2] == (3, 11)
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _ref(source: str) -> list[tuple]:
    return [(tokenize.tok_name[t.type], t.string, t.start, t.end, t.line)
            for t in tokenize.generate_tokens(io.StringIO(source).readline)]


def _got(source: str) -> list[tuple]:
    return [(t.kind, t.text, t.start, t.end, t.line) for t in lex(source)]


def _sample_files(every: int = 12) -> list[Path]:
    files = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)
    return files[::every]


SNIPPETS = [
    "", "\n", "x", "x\n", "x = 1\n   ", "# c", "# c\n", "x  # c", "if a:\n    b\n# c",
    "def f(a,\n      b):\n\treturn a\\\n  + b\n", "s = 'a\\\nb'\n", 's = """\nx\n"""\n',
    "x = (1,\n\n  2)\n", "a\r\nb\r\n", "\fx = 1\n", "class C:\n    def f(self): pass\n\n\n",
    "x = 0x_1 + 1e5j + .5 + 1_000\n", "lambda: (yield)\n", "print(f'{x!r:>10}')\n",
    "if x:\n  if y:\n    z\nw\n", "x = [\n]\n", "@dec\ndef f(): ...\n", "async def f():\n await x\n",
]


@pytest.mark.skipif(not PY311, reason="the reference is tokenize as of Python 3.11 (3.12 splits f-strings)")
@pytest.mark.parametrize("source", SNIPPETS)
def test_equals_tokenize_on_snippets(source: str) -> None:
    assert _got(source) == _ref(source)


@pytest.mark.skipif(not PY311, reason="the reference is tokenize as of Python 3.11 (3.12 splits f-strings)")
def test_equals_tokenize_on_stdlib_sample() -> None:
    checked = 0
    for path in _sample_files():
        try:
            source = path.read_text(encoding="utf-8")
            ref = _ref(source)
        except (UnicodeDecodeError, tokenize.TokenError, IndentationError, SyntaxError):
            continue
        if any(t[0] == "ERRORTOKEN" for t in ref):     # Python 2 test data: recovery differs on purpose
            continue
        assert _got(source) == ref, path
        checked += 1
    assert checked > 100


def _offsets(source: str) -> list[int]:
    starts = [0]
    for i, c in enumerate(source):
        if c == "\n":
            starts.append(i + 1)
    return starts


def _check_consistent(source: str, toks: list[Tok]) -> None:
    assert toks and toks[-1].kind == "ENDMARKER"
    assert sum(t.kind == "ENDMARKER" for t in toks) == 1
    starts = _offsets(source)
    last = 0
    for t in toks:
        assert t.start <= t.end or t.kind in ("NEWLINE",), t
        if not t.text or t.kind in ("DEDENT", "ENDMARKER"):
            continue
        a = starts[t.start[0] - 1] + t.start[1]
        b = starts[t.end[0] - 1] + t.end[1]
        assert source[a:b] == t.text, t
        assert a >= last, t                              # in order, never overlapping
        last = b
    # every non-blank character outside comments is covered by some token
    covered = bytearray(len(source))
    for t in toks:
        if t.text and t.kind not in ("DEDENT", "ENDMARKER"):
            a = starts[t.start[0] - 1] + t.start[1]
            covered[a:a + len(t.text)] = b"\x01" * len(t.text)
    for i, c in enumerate(source):
        if not covered[i] and c not in " \t\f\r\n\\":
            raise AssertionError(f"character {c!r} at offset {i} is in no token")
    depth = sum(t.kind == "INDENT" for t in toks) - sum(t.kind == "DEDENT" for t in toks)
    assert depth == 0


BROKEN = [
    'print("hello)\nx = 1\n', 'def f():\n    """doc\n    x = 1\n', "foo(1,\n  2\n", "x = 1)\nif x:\n    y\n",
    "if a:\n        b\n    c\n", "x = f'abc\ny=$ ?\n", "\\\n", "x = \\", 'a = rb"x', "  x", "s = 'a\\\nb\n",
    "def f(:\n  return [1, 2\nclass", "x = `y`\n", "if x:\n\tif y:\n        z\n  w\n", "'''", "(((", ")))\n  x\n",
]


@pytest.mark.parametrize("source", BROKEN)
def test_broken_inputs_lex_to_the_end(source: str) -> None:
    toks = lex(source)
    _check_consistent(source, toks)


def test_recovery_tokens() -> None:
    toks = lex('print("hello)\n')
    assert [t.kind for t in toks][:3] == ["NAME", "OP", "ERRORTOKEN"]
    assert toks[2].text == '"hello)' and symbol_of(toks[2]) == BAD_STRING
    toks = lex('x = """abc\ny\n')
    bad = [t for t in toks if t.kind == "ERRORTOKEN"]
    assert len(bad) == 1 and bad[0].text == '"""abc\ny\n' and symbol_of(bad[0]) == BAD_STRING
    assert [t.kind for t in toks][-2:] == ["NEWLINE", "ENDMARKER"]
    toks = lex("f(1,\n  2\n")                              # unclosed bracket: a NEWLINE is made up
    assert [t.kind for t in toks][-2:] == ["NEWLINE", "ENDMARKER"]
    toks = lex("x = 1)\nif x:\n    y\n")                  # a stray ')' does not swallow the file
    assert "INDENT" in [t.kind for t in toks]
    toks = lex("if a:\n        b\n    c\n")                # dedent to an unknown column
    assert [t.kind for t in toks if t.kind in ("INDENT", "DEDENT")] == ["INDENT", "DEDENT", "INDENT", "DEDENT"]
    assert symbol_of(lex("x = $\n")[2]) == ERROR


_VALID = "\n".join(SNIPPETS[9:]) + "\n" + 'def g(x):\n    """d"""\n    return {k: v for k, v in x}  # c\n'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_VALID)), st.sampled_from(["", *"()[]{}'\"#\\:\n \t=,.x1$"])),
                min_size=1, max_size=6))
def test_never_raises_and_positions_consistent(edits: list[tuple[int, str]]) -> None:
    source = _VALID
    for pos, ch in edits:
        pos = min(pos, len(source))
        if ch:                                              # insert a character
            source = source[:pos] + ch + source[pos:]
        else:                                               # delete one
            source = source[:pos] + source[pos + 1:]
    _check_consistent(source, lex(source))


def test_symbols_alphabet() -> None:
    src = "def f(self, n=1):\n    # note\n    return len('x') + n  \\\n        if n else None\n"
    vocab = frozenset({"self", "len"})
    syms = symbols(lex(src), vocab)
    assert syms == [BOS, "def", NAME_SYM, "(", "self", ",", NAME_SYM, "=", "<NUM>", ")", ":", "<NL>", "<IN>",
                    "return", "len", "(", "<STR>", ")", "+", NAME_SYM, "if", NAME_SYM, "else", "None", "<NL>",
                    "<DE>", EOS]
    assert symbols(lex("match = case = _ = type = 1\n"), frozenset())[1:8:2] == ["match", "case", "_", "type"]
    assert symbols(lex("f'{x}'\n"), frozenset())[1] == "<STR>"
    assert symbols(lex("x\n"))[1] == "x"                     # no vocab: every name as itself
    assert all(symbol_of(t) is None for t in lex("# c\n\n") if t.kind in ("COMMENT", "NL"))
    alphabet = fixed_symbols()
    assert len(alphabet) == len(set(alphabet))
    assert set(OPERATORS) <= set(alphabet) and KEYWORDS <= set(alphabet)
