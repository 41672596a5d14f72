"""Files in and out byte for byte, atomic writes, and large files checked and repaired piece by piece.

The repair engine is replaced by ``standin_fix`` (defined here, also used by test_cli.py and
test_batch_dist.py): a deterministic fixer that appends one closer (``:``, ``)``, ``]``,
``}``) to the line CPython blames. These tests are about the plumbing around the engine:
what is read, what is handed to it, and what is written back.
"""

from __future__ import annotations

import ast
import os
import random
import stat
import subprocess
import time

import pytest

from noodle.fixer import chunks
from noodle.fixer.chunks import check_large, fix_large, statement_starts
from noodle.fixer.files import FixerFileError, SourceFile, atomic_write, unified_diff
from noodle.fixer.result import Candidate, Edit, FixResult, SyntaxErrorInfo


def _error(text: str, filename: str, target_version: tuple[int, int] | None) -> SyntaxError | None:
    try:
        if target_version is not None:
            ast.parse(text, filename, feature_version=target_version)
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        return e
    return None


def standin_fix(source: str, *, k: int = 5, filename: str = "<string>",
                target_version: tuple[int, int] | None = None) -> FixResult:
    """A stand-in for noodle.fixer.fix: append a closer to the blamed line (or one of the lines around it)."""
    t0 = time.perf_counter()
    e = _error(source, filename, target_version)
    if e is None:
        return FixResult(source, False, True, None, kind="valid", seconds=time.perf_counter() - t0)
    info = SyntaxErrorInfo(str(e.msg), int(e.lineno or 1), max(0, int(e.offset or 1) - 1), type(e).__name__)
    lines = source.splitlines(keepends=True)
    cands: list[Candidate] = []
    at = min(int(e.lineno or 1), len(lines))
    for ln in [at, *range(at + 1, min(len(lines), at + 3) + 1), *range(at - 1, max(0, at - 3), -1)]:
        body = lines[ln - 1].rstrip("\r\n")
        end = lines[ln - 1][len(body):]
        for tok in (":", ")", "]", "}"):
            text = "".join(lines[:ln - 1] + [body + tok + end] + lines[ln:])
            if len(cands) < k and _error(text, filename, target_version) is None:
                cands.append(Candidate(text, (Edit(ln, len(body), "", tok),), -1.0 - len(cands)))
        if cands:
            break
    if not cands:
        return FixResult(source, False, False, info, kind="unfixed", seconds=time.perf_counter() - t0)
    return FixResult(cands[0].source, True, True, info, cands[0].edits, tuple(cands), "simple",
                     time.perf_counter() - t0)


# --------------------------------------------------------------------------- SourceFile

SHAPES = {
    "lf": b"x = 1\nif x:\n    y = 2\n",
    "crlf": b"x = 1\r\nif x:\r\n    y = 2\r\n",
    "cr": b"x = 1\rif x:\r    y = 2\r",
    "mixed": b"x = 1\r\nif x:\n    y = 2\r",
    "no-final-newline": b"x = 1\nif x:\n    y = 2",
    "bom": b"\xef\xbb\xbfx = 1\nif x:\n    y = '\xc3\xa9'\n",
    "latin-1": b"# -*- coding: latin-1 -*-\nx = '\xe9'\nif x:\n    y = 2\n",
    "crlf-bom-no-newline": b"\xef\xbb\xbfx = 1\r\nif x:\r\n    y = 2",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_unchanged_text_is_the_same_bytes(name):
    sf = SourceFile.from_bytes(SHAPES[name])
    assert "\r" not in sf.text
    assert sf.encode(sf.text) is sf.data
    assert sf.encode(sf.text.replace("\n", "\n")) == SHAPES[name]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_repair_keeps_encoding_bom_line_endings_and_last_newline(name):
    data = SHAPES[name]
    broken = data.replace(b"if x:", b"if x")
    sf = SourceFile.from_bytes(broken)
    res = standin_fix(sf.text)
    assert res.changed and res.edits == (Edit(res.edits[0].line, res.edits[0].col, "", ":"),)
    assert sf.encode(res.source) == data


def test_mixed_endings_follow_each_line_and_new_lines_take_their_neighbours():
    data = b"a = 1\r\nb = 2\nc = 3\rd = 4\n"
    sf = SourceFile.from_bytes(data)
    assert sf.mixed and sf.newline == "\n"
    out = sf.encode("a = 1\nb = 22\nc = 3\nnew = 0\nd = 4\n")
    assert out == b"a = 1\r\nb = 22\nc = 3\rnew = 0\nd = 4\n"


def test_encoding_cookie_and_bom_are_decoded_as_cpython_does():
    assert SourceFile.from_bytes(SHAPES["latin-1"]).encoding == "iso8859-1"
    assert "é" in SourceFile.from_bytes(SHAPES["latin-1"]).text
    bom = SourceFile.from_bytes(SHAPES["bom"])
    assert bom.bom and not bom.text.startswith("\ufeff") and "é" in bom.text
    with pytest.raises(FixerFileError, match="not valid utf-8"):
        SourceFile.from_bytes(b"x = '\xff'\n", "bad.py")
    with pytest.raises(FixerFileError, match="coding comment"):
        SourceFile.from_bytes(b"# -*- coding: no-such-codec -*-\nx = 1\n", "bad.py")


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_line_endings_are_counted_the_same_across_the_decoding_slices(monkeypatch, cut):
    """The endings are counted a slice at a time (the text of a large file is not kept): a
    '\\r\\n' split between two slices, or a multi-byte character split between them, counts as
    the whole file decoded at once counts it."""
    from noodle.fixer import files

    monkeypatch.setattr(files, "_SCAN_BYTES", 8)
    for data in (b"x = 1\r\n" * 5, b"a = 'h\xc3\xa9'\r\nb = 2\r\n\r\nc = 3\r", b"p = 1\rq = 2\r\nr = 3\n"):
        data = b" " * cut + data.lstrip()
        sf = SourceFile.from_bytes(data)
        raw = data.decode()
        crlf = raw.count("\r\n")
        counts = {"\r\n": crlf, "\n": raw.count("\n") - crlf, "\r": raw.count("\r") - crlf}
        used = [k for k, v in counts.items() if v]
        assert sf.mixed == (len(used) > 1), data
        assert sf.newline == max(("\n", "\r\n", "\r"), key=lambda k: counts[k]), data
        assert sf.trailing_newline == raw.endswith(("\n", "\r"))
        assert sf.raw_text == raw and sf.text == raw.replace("\r\n", "\n").replace("\r", "\n")


def test_bytes_that_do_not_decode_late_in_a_file_name_their_line(monkeypatch):
    from noodle.fixer import files

    monkeypatch.setattr(files, "_SCAN_BYTES", 16)
    data = b"".join(b"x%d = %d\n" % (i, i) for i in range(40)) + b"y = '\xff'\n"
    with pytest.raises(FixerFileError, match="big.py: line 41 is not valid utf-8"):
        SourceFile.from_bytes(data, "big.py")


def test_a_character_the_encoding_cannot_hold_is_refused():
    sf = SourceFile.from_bytes(SHAPES["latin-1"])
    with pytest.raises(FixerFileError, match="cannot hold"):
        sf.encode(sf.text + "z = '\u20ac'\n")


# --------------------------------------------------------------------------- atomic writes

def _leftovers(directory) -> list[str]:
    return [p for p in os.listdir(directory) if p.endswith(".noodle-tmp")]


def test_atomic_write_replaces_the_file_keeps_its_mode_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o640)
    atomic_write(path, b"new\n", expect=b"old\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_a_failure_mid_write_leaves_the_original_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.py"
    path.write_bytes(b"original\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(FixerFileError, match="left as it was"):
        atomic_write(path, b"new\n")
    assert path.read_bytes() == b"original\n"
    assert _leftovers(tmp_path) == []


def test_a_file_changed_since_it_was_read_is_not_written(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"someone else's edit\n")
    with pytest.raises(FixerFileError, match="changed on disk"):
        atomic_write(path, b"new\n", expect=b"what we read\n")
    assert path.read_bytes() == b"someone else's edit\n"


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path):
    target = tmp_path / "real.py"
    target.write_bytes(b"old\n")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    atomic_write(link, b"new\n")
    assert link.is_symlink() and target.read_bytes() == b"new\n"


def test_a_read_only_directory_fails_cleanly():
    """Nothing may be written into a directory the writer cannot write: a FixerFileError, the original
    intact, no temp file left. Root writes anywhere, so as root the write runs in a forked child that
    has dropped to the 'nobody' user."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="noodle-ro-"))
    try:
        path = root / "m.py"
        path.write_bytes(b"original\n")
        os.chmod(root, 0o555)
        if os.geteuid() != 0:
            with pytest.raises(FixerFileError):
                atomic_write(path, b"new\n")
        else:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: drop privileges, try, report one byte, leave
                answer = b"?"
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    atomic_write(path, b"new\n")
                    answer = b"w"
                except FixerFileError:
                    answer = b"r"
                finally:
                    os.write(write_end, answer)
                    os._exit(0)
            os.close(write_end)
            answer = os.read(read_end, 1)
            os.close(read_end)
            os.waitpid(pid, 0)
            assert answer == b"r", answer  # refused with a FixerFileError (w: it wrote; ?: another error)
        assert path.read_bytes() == b"original\n" and _leftovers(root) == []
    finally:
        os.chmod(root, 0o755)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", ["lf", "crlf", "no-final-newline", "bom", "latin-1"])
def test_unified_diff_is_what_patch_applies(tmp_path, name):
    data = SHAPES[name]
    broken = data.replace(b"if x:", b"if x")
    (tmp_path / "f.py").write_bytes(broken)
    diff = unified_diff(broken, data, "f.py")
    assert diff.startswith(b"--- f.py\n+++ f.py\n@@ ")
    p = subprocess.run(["patch", "-p0", "--quiet"], input=diff, cwd=tmp_path, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "f.py").read_bytes() == data


# --------------------------------------------------------------------------- statement starts

TRICKY = '''\
"""Module docstring.

def looks_like_a_statement():
    pass
"""
import os
from typing import (
    Any,
    Optional,
)


@decorator(
    arg=1,
)
@another
def f(a, b=(1,
            2)):
    x = [i for i in range(10)
if i]
    return x


if a:
    pass
elif b:
    pass
else:
    pass
try:
    pass
except ValueError:
    pass
finally:
    pass
s = \'\'\'
class NotAClass:
    pass
\'\'\' + "it's"  # a comment with ( [ {
total = 1 + \\
2
# a comment at column 0
match command:
    case [x]:
        pass
    case _:
        pass
t = f"{s!r:>{10}}" ; u = 'a\\'b'
class C:
    """Doc."""
'''


def _ast_starts(text: str) -> list[int]:
    """First line of each top-level statement (its first decorator's), one per line (``a = 1; b = 2``)."""
    tree = ast.parse(text)
    return sorted({min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])]) for n in tree.body})


def _line_with(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def test_statement_starts_are_the_top_level_statements():
    data = TRICKY.encode()
    starts, end = statement_starts(data)
    assert end == len(data)
    got = [_line_of(data, o) for o in starts]
    assert got == _ast_starts(TRICKY)


def test_statement_starts_with_crlf_and_latin_1():
    text = "# -*- coding: latin-1 -*-\n" + TRICKY.replace("it's", "it\xe9s")
    data = text.replace("\n", "\r\n").encode("latin-1")
    starts, _ = statement_starts(data, "iso8859-1")
    assert [data.count(b"\r\n", 0, o) + 1 for o in starts] == [1] + _ast_starts(text)  # 1: the cookie


def test_an_unclosed_bracket_ends_at_the_next_line_that_can_only_be_a_statement():
    data = b"x = foo(1,\n    2\ny = 3\ndef g():\n    pass\n"
    starts, _ = statement_starts(data)
    assert [_line_of(data, o) for o in starts] == [1, 4]   # 'y = 3' may be a keyword argument; 'def' cannot
    data = b"print(x\n\n@deco(a,\n      b)\n@other\ndef g():\n    pass\n"
    starts, _ = statement_starts(data)
    assert [_line_of(data, o) for o in starts] == [1, 3]   # the decorators go with their def


def test_check_large_finds_only_the_broken_statements_of_a_tricky_file():
    broken = TRICKY.replace("def f(a, b=(1,", "def f(a, b=(1,,").replace("class C:", "class C")
    sf = SourceFile.from_bytes(broken.encode())
    units = list(check_large(sf))
    assert [u.line for u in units] == [_line_with(broken, "@decorator("), _line_with(broken, "class C")]
    assert [u.line + u.error.line - 1 for u in units] == [_line_with(broken, "def f(a"),
                                                         _line_with(broken, "class C")]


def test_valid_tricky_file_has_no_units_even_with_tiny_pieces(monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 16)   # a cheap cut at nearly every line, most of them wrong
    assert list(check_large(SourceFile.from_bytes(TRICKY.encode() * 3))) == []


# --------------------------------------------------------------------------- the 10 MB file

def _block(i: int) -> str:
    kind = i % 6
    if kind == 0:
        return (f'@decorator(arg={i},\n           other="x")\n@simple\ndef func_{i}(a, b=({i}, 2),\n'
                f'         *args, **kw):\n    """Docstring {i}.\n\ndef not_a_statement():\n    pass\n"""\n'
                f'    if a > b:\n        return a + {i}\n    elif a < b:\n        return b\n    else:\n'
                f'        return [x for x in range(10)\nif x % 2]\n\n\n')
    if kind == 1:
        return (f'class C{i}(Base):\n    x = {i}\n\n    def m(self):\n        s = \'it\\\'s {{}}\'.format(1)  '
                f'# ( [\n        return s\n\n\n')
    if kind == 2:
        return (f'try:\n    v{i} = compute({i},\n        [1, 2,\n 3])\nexcept ValueError as e:\n    pass\n'
                f'else:\n    pass\nfinally:\n    done = True\nprint(v{i})\n\n')
    if kind == 3:
        return f'TEXT_{i} = """\nclass Fake:\n    pass\n"""  + \'\'\'\nmore\n\'\'\'\n# a comment\n\n'
    if kind == 4:
        return (f'if cond_{i}:\n    x = 1\nelif other:\n    x = 2\nelse:\n    x = 3\n'
                f'd = {{\n  "k{i}": [1, 2, 3],\n  "v": (4,\n5),\n}}\n\n')
    return (f'for i in range({i}):\n    total = total + i \\\n        + 1\n'
            f'with open("f{i}") as fh, \\\n     open("g") as gh:\n    pass\n\n')


def _big(target: int = chunks.LARGE_FILE_BYTES + 300_000) -> list[str]:
    blocks, size, i = [], 0, 0
    while size < target:
        b = _block(i)
        blocks.append(b)
        size += len(b)
        i += 1
    return blocks


def _break(blocks: list[str], n: int, seed: int = 7) -> tuple[list[str], list[int]]:
    """Remove the ':' of a def/class line or the ')' of a print line in n blocks; the broken line numbers."""
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(10, len(blocks) - 10), n))
    out = list(blocks)
    for i in picks:
        kind = i % 6
        if kind == 1:
            out[i] = out[i].replace(f"class C{i}(Base):", f"class C{i}(Base)", 1)
        elif kind == 2:
            out[i] = out[i].replace(f"print(v{i})", f"print(v{i}", 1)
        elif kind == 4:
            out[i] = out[i].replace(f"if cond_{i}:", f"if cond_{i}", 1)
        else:
            out[i] = out[i] + f"print(value_{i}\n\n"
    lines, line = [], 1
    broken = set(picks)
    for i, b in enumerate(out):
        if i in broken:
            for j, text in enumerate(b.split("\n")):
                if text.startswith((f"class C{i}(Base)", f"print(v{i}", f"if cond_{i}", f"print(value_{i}")):
                    lines.append(line + j)
        line += b.count("\n")
    return out, lines


@pytest.fixture(scope="module")
def big_blocks() -> list[str]:
    return _big()


def test_a_valid_10_mb_file_is_checked_piece_by_piece_and_left_as_is(big_blocks):
    data = "".join(big_blocks).encode()
    assert chunks.is_large(len(data))
    calls = []

    def never(source, **kw):   # a valid file must never reach the engine
        calls.append(source)
        return standin_fix(source, **kw)

    sf = SourceFile.from_bytes(data, "big.py")
    out, res = fix_large(sf, filename="big.py", fix_fn=never)
    assert out is data and res.kind == "valid" and not res.changed and res.parses
    assert calls == []


def test_a_10_mb_file_with_errors_is_repaired_only_where_they_are(big_blocks):
    blocks, bad_lines = _break(big_blocks, 6)
    data = "".join(blocks).replace("\n", "\r\n").encode()   # and with CRLF line endings throughout
    sf = SourceFile.from_bytes(data, "big.py")
    seen: list[str] = []

    def counting(source, **kw):
        seen.append(source)
        return standin_fix(source, **kw)

    units = list(check_large(sf, "big.py"))
    assert [u.line + u.error.line - 1 for u in units] == bad_lines
    assert all(u.stop - u.start < 2000 for u in units)       # a statement or two, not a 16 KB piece
    out, res = fix_large(sf, filename="big.py", fix_fn=counting)
    assert len(seen) == len(bad_lines) and res.changed and res.parses
    assert sorted({e.line for e in res.edits}) == bad_lines
    assert res.error is not None and res.error.line == bad_lines[0]
    old_lines, new_lines = data.split(b"\r\n"), out.split(b"\r\n")
    assert len(old_lines) == len(new_lines)
    changed = [i + 1 for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert changed == bad_lines                      # every other line byte for byte, CRLF kept
    assert list(check_large(SourceFile.from_bytes(out, "big.py"))) == []   # the whole file compiles now
