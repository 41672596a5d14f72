"""Localization: the smallest block that reproduces CPython's error, and the parse checks."""

from __future__ import annotations

from noodle.fixer.localize import Checker, Layout, ParseError, find_region, split_lines, string_lines


def _method_class(n_methods: int = 12, broken: int = 7) -> str:
    parts = ["import os\n\n\nclass Big:\n    '''A class long enough to be narrowed.'''\n\n"]
    for k in range(n_methods):
        header = f"    def m{k}(self, x)" + ("" if k == broken else ":") + "\n"
        parts.append(header + "        y = x + 1\n        z = y * 2\n        return z\n\n")
    parts.append("\ndef after():\n    return 1\n")
    return "".join(parts)


def test_a_big_class_narrows_to_the_method_holding_the_error():
    text = _method_class()
    checker = Checker("<t>", None)
    err = checker.file_error(text)
    assert err is not None and err.message == "expected ':'"
    region, rerr = find_region(split_lines(text), err, checker)
    assert region.prefix == "if 1:\n"
    assert region.first <= err.line <= region.last and region.last - region.first < 8
    assert rerr.same(err)


def test_a_small_block_is_the_top_level_statement():
    text = "def a():\n    return 1\n\n\ndef b(x)\n    return x\n\n\ndef c():\n    return 3\n"
    checker = Checker("<t>", None)
    err = checker.file_error(text)
    region, rerr = find_region(split_lines(text), err, checker)
    assert (region.first, region.prefix) == (5, "")
    assert region.last < 9 and rerr == err


def test_a_block_that_does_not_reproduce_the_error_grows():
    # the unterminated docstring starts in the first block; the second alone parses fine
    text = 'def a():\n    """doc\n    return 1\n\n\ndef b():\n    return 2\n'
    checker = Checker("<t>", None)
    err = checker.file_error(text)
    lines = split_lines(text)
    region, rerr = find_region(lines, err, checker)
    assert region.first <= 2 and region.error(lines, checker) is not None


def test_lines_inside_a_docstring_are_no_statement_starts():
    text = 'x = """\nnot a statement\n"""\ny = 1\n'
    lines = split_lines(text)
    assert string_lines(text, lines) == [False, True, True, False]
    assert Layout.of(lines, text).tops == [0, 3]


def test_a_line_starting_with_a_colon_or_bracket_continues_a_statement():
    text = "def f(\n    a,\n    b\n):\n    return a\n"
    assert Layout.of(split_lines(text)).tops == [0]


def test_checker_honours_the_target_version_and_caches():
    src = "match x:\n    case 1:\n        pass\n"
    assert Checker("<t>", None).file_error(src) is None
    old = Checker("<t>", (3, 9))
    err = old.file_error(src)
    assert isinstance(err, ParseError) and "3.10" in err.message
    n = old.parses
    assert old.file_error(src) == err and old.parses == n


def test_compiler_only_errors_are_errors():
    checker = Checker("<t>", None)
    err = checker.file_error("x = 1\nreturn x\n")
    assert err is not None and "outside function" in err.message
    assert checker.block_error("x = 1\nreturn x\n") is None       # the parser alone accepts it
