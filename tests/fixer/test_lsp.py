"""``noodle fix --lsp`` as an editor meets it: a real LSP client (pytest-lsp) over stdio.

The server is the real command (``python -m noodle.cli fix --lsp``) with the real fixer; the
client opens broken files, waits for ``publishDiagnostics``, asks for code actions and applies
their edits with its own position arithmetic (written here, not the server's), and the oracle
is CPython: the edited text parses (``ast.parse``) and, for a one-edit corruption, equals the
original. The diff-to-edits function is checked on its own with hypothesis.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytest_lsp
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from noodle.fixer.lsp_edits import LineIndex, apply_replacements, diff_replacements

ROOT = Path(__file__).resolve().parents[2]
SERVER = [sys.executable, "-m", "noodle.cli", "fix", "--lsp"]

ORIGINAL = (
    "import os\n"
    "\n"
    "\n"
    "def total(values):\n"
    "    result = 0\n"
    "    for v in values:\n"
    "        result += v\n"
    "    return result\n"
    "\n"
    "\n"
    "print(total([1, 2, 3]), os.sep)\n"
)
BROKEN = ORIGINAL.replace("def total(values):", "def total(values)")      # line 4 (0-based 3)


# -- the client: records every publishDiagnostics with its version and arrival time --

def _client() -> LanguageClient:
    client = LanguageClient()
    client.published = []          # (monotonic time, PublishDiagnosticsParams)
    register_lsp_features(client, {m: f for m, f in DEFAULT_CLIENT_FEATURES.items()
                                   if m != lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS})

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _published(ls: LanguageClient, params: lsp.PublishDiagnosticsParams) -> None:
        ls.diagnostics[params.uri] = params.diagnostics
        ls.published.append((time.perf_counter(), params))

    return client


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER, client_factory=_client),
                    scope="module")
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=pytest_lsp.client_capabilities("visual-studio-code"),
        root_uri=ROOT.as_uri()))
    yield
    await lsp_client.shutdown_session()


_on_server = pytest.mark.asyncio(loop_scope="module")   # one server process for the module
_n = iter(range(10_000))


def _uri(name: str) -> str:
    return (ROOT / "lsp-test" / f"{next(_n)}_{name}").as_uri()


async def _published(client: LanguageClient, uri: str, version: int, until=None, timeout: float = 60.0
                     ) -> tuple[float, list[lsp.Diagnostic]]:
    """The first diagnostics published for ``uri`` at ``version`` (that satisfy ``until``), and
    when they arrived. (The server publishes CPython's first error at once and again once its
    repairs find more errors.)"""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for at, p in client.published:
            if p.uri == uri and p.version == version and (until is None or until(p.diagnostics)):
                return at, list(p.diagnostics)
        await asyncio.sleep(0.002)
    raise AssertionError(f"no diagnostics for {uri} version {version} within {timeout} s: "
                         f"{[p for _, p in client.published if p.uri == uri][-3:]}")


def _open(client: LanguageClient, uri: str, text: str, version: int = 1, language: str = "python") -> None:
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        text_document=lsp.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def _replace_all(client: LanguageClient, uri: str, old: str, new: str, version: int) -> None:
    """One incremental change that replaces the whole of ``old`` (as an editor's select-all + paste)."""
    lines = re.split(r"\r\n|\r|\n", old)
    end = lsp.Position(line=len(lines) - 1, character=_utf16(lines[-1]))
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[lsp.TextDocumentContentChangePartial(
            range=lsp.Range(start=lsp.Position(line=0, character=0), end=end), text=new)]))


# -- the test's own position arithmetic (LSP: lines at \n, \r\n, \r; columns in UTF-16 units) --

def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _offset(text: str, pos: lsp.Position) -> int:
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    if pos.line >= len(starts):
        return len(text)
    line_end = starts[pos.line + 1] if pos.line + 1 < len(starts) else len(text)
    line = text[starts[pos.line]:line_end].rstrip("\r\n")
    units = 0
    for i, c in enumerate(line):
        if units >= pos.character:
            return starts[pos.line] + i
        units += _utf16(c)
    return starts[pos.line] + len(line)


def _apply(text: str, edits: list[lsp.TextEdit]) -> str:
    spans = sorted(((_offset(text, e.range.start), _offset(text, e.range.end), e.new_text) for e in edits),
                   reverse=True)
    for s, e, new in spans:
        text = text[:s] + new + text[e:]
    return text


def _edits_of(action: lsp.CodeAction, uri: str) -> list[lsp.TextEdit]:
    assert action.edit is not None
    if action.edit.document_changes:
        (change,) = action.edit.document_changes
        assert change.text_document.uri == uri
        return list(change.edits)
    return list(action.edit.changes[uri])


async def _actions(client: LanguageClient, uri: str, diags: list[lsp.Diagnostic]) -> list[lsp.CodeAction]:
    got = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri), range=diags[0].range,
        context=lsp.CodeActionContext(diagnostics=diags)))
    return [a for a in got or [] if isinstance(a, lsp.CodeAction)]


# -- over stdio --

@_on_server
async def test_broken_file_gets_a_diagnostic_and_a_quick_fix_that_restores_it(client: LanguageClient):
    uri = _uri("broken.py")
    _open(client, uri, BROKEN)
    _, diags = await _published(client, uri, 1)
    assert len(diags) == 1
    d = diags[0]
    assert d.source == "noodle-fix" and d.severity == lsp.DiagnosticSeverity.Error
    assert d.range.start.line == 3, d
    assert "':'" in d.message or "expected" in d.message, d.message

    actions = await _actions(client, uri, diags)
    assert actions, "no code action for the diagnostic"
    assert actions[0].kind == lsp.CodeActionKind.QuickFix and actions[0].is_preferred
    assert "':'" in actions[0].title, actions[0].title
    fixed = _apply(BROKEN, _edits_of(actions[0], uri))
    ast.parse(fixed)
    assert fixed == ORIGINAL
    assert len(_edits_of(actions[0], uri)) == 1         # a minimal edit, not the whole file
    for a in actions[1:]:
        ast.parse(_apply(BROKEN, _edits_of(a, uri)))   # every offered repair parses


@_on_server
async def test_fixing_the_file_clears_the_diagnostics(client: LanguageClient):
    uri = _uri("clears.py")
    _open(client, uri, BROKEN)
    _, diags = await _published(client, uri, 1)
    assert diags
    colon = lsp.Position(line=3, character=len("def total(values)"))
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[lsp.TextDocumentContentChangePartial(range=lsp.Range(start=colon, end=colon), text=":")]))
    _, diags = await _published(client, uri, 2)
    assert diags == []
    actions = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        range=lsp.Range(start=colon, end=colon), context=lsp.CodeActionContext(diagnostics=[])))
    assert not actions


@_on_server
async def test_a_burst_of_changes_ends_with_the_diagnostics_of_the_last_text(client: LanguageClient):
    uri = _uri("burst.py")
    _open(client, uri, ORIGINAL)
    await _published(client, uri, 1)
    texts = [ORIGINAL.replace("result = 0", "result = (0"),
             ORIGINAL,
             ORIGINAL.replace("for v in values:", "for v in values"),
             ORIGINAL.replace("return result", "return result)"),
             BROKEN]
    old = ORIGINAL
    for version, text in enumerate(texts, start=2):
        _replace_all(client, uri, old, text, version)
        old = text
    _, diags = await _published(client, uri, 1 + len(texts))
    assert [d.range.start.line for d in diags] == [3]
    await asyncio.sleep(0.3)                           # nothing stale may arrive after the last text's
    last = [p for _, p in client.published if p.uri == uri][-1]
    assert last.version == 1 + len(texts) and [d.range.start.line for d in last.diagnostics] == [3]


@_on_server
async def test_two_errors_get_two_diagnostics_and_one_repair_for_both(client: LanguageClient):
    uri = _uri("two.py")
    text = ORIGINAL.replace("for v in values:", "for v in values").replace(
        "print(total([1, 2, 3]), os.sep)", "print(total([1, 2, 3], os.sep)")
    _open(client, uri, text)
    _, first = await _published(client, uri, 1)
    assert [d.range.start.line for d in first] == [5]     # CPython's first error, before any repair
    _, diags = await _published(client, uri, 1, until=lambda d: len(d) > 1)
    assert [d.range.start.line for d in diags] == [5, 10], diags
    actions = await _actions(client, uri, diags)
    assert actions
    ast.parse(_apply(text, _edits_of(actions[0], uri)))


@_on_server
async def test_columns_are_utf16_units(client: LanguageClient):
    uri = _uri("emoji.py")
    text = 's = "😋😋" + f(1\n'                          # two astral characters: 4 UTF-16 units, 2 code points
    _open(client, uri, text)
    _, diags = await _published(client, uri, 1)
    assert len(diags) == 1
    actions = await _actions(client, uri, diags)
    fixed = _apply(text, _edits_of(actions[0], uri))
    ast.parse(fixed)
    assert fixed.startswith('s = "😋😋" + f(1')


@_on_server
async def test_closing_a_document_clears_its_diagnostics(client: LanguageClient):
    uri = _uri("closed.py")
    _open(client, uri, BROKEN)
    _, diags = await _published(client, uri, 1)
    assert diags
    client.text_document_did_close(lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri)))
    deadline = time.perf_counter() + 30
    while client.diagnostics.get(uri) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    assert list(client.diagnostics.get(uri, [None])) == []


@_on_server
async def test_non_python_documents_get_no_diagnostics(client: LanguageClient):
    text_uri = _uri("notes.txt")
    _open(client, text_uri, "def f(:\n", language="plaintext")
    py_uri = _uri("after.py")
    _open(client, py_uri, BROKEN)
    await _published(client, py_uri, 1)                # handled in order: the text file came first
    assert all(p.uri != text_uri for _, p in client.published)


@_on_server
async def test_a_2000_line_file_with_one_error(client: LanguageClient):
    uri = _uri("big.py")
    block = ORIGINAL.replace("total", "total_{i}").replace("import os\n", "")
    text = "import os\n" + "".join(block.format(i=i) for i in range(2000 // block.count("\n") + 1))
    n = text.count("\n")
    assert n >= 2000
    _open(client, uri, text)
    _, diags = await _published(client, uri, 1)
    assert diags == []
    target = n // 2
    lines = text.splitlines(keepends=True)
    while not lines[target].startswith("def "):
        target += 1
    at = lsp.Position(line=target, character=len(lines[target].rstrip("\n")) - 1)   # before the ':'
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[lsp.TextDocumentContentChangePartial(
            range=lsp.Range(start=at, end=lsp.Position(line=target, character=at.character + 1)), text="")]))
    _, diags = await _published(client, uri, 2)
    assert [d.range.start.line for d in diags] == [target]
    broken = "".join(lines[:target] + [lines[target].replace(":\n", "\n")] + lines[target + 1:])
    actions = await _actions(client, uri, diags)
    assert _apply(broken, _edits_of(actions[0], uri)) == text


# The server with a fixer that prints to stdout (as a careless library might) on every call.
NOISY = [sys.executable, "-c",
         "import os, noodle.fixer.repair as r; real = r.fix\n"
         "def noisy(*a, **k):\n    print('stray print', flush=True); os.write(1, b'stray write\\n')\n"
         "    return real(*a, **k)\n"
         "r.fix = noisy\n"
         "from noodle.cli import main; raise SystemExit(main(['fix', '--lsp']))"]


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _read_frame(out) -> dict:
    """One message, read strictly: headers, a blank line, exactly Content-Length bytes of JSON
    (what VS Code's client insists on; pygls' own reader skips lines it does not understand)."""
    length = None
    while True:
        line = out.readline()
        assert line, "the server closed stdout"
        if line == b"\r\n":
            break
        name, _, value = line.decode("ascii").partition(":")
        assert name in ("Content-Length", "Content-Type") and line.endswith(b"\r\n"), f"not a header: {line!r}"
        if name == "Content-Length":
            length = int(value)
    assert length is not None
    return json.loads(out.read(length))


def test_stray_stdout_output_does_not_corrupt_the_protocol(tmp_path):
    proc = subprocess.Popen(NOISY, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd=tmp_path)
    watchdog = threading.Timer(90, proc.kill)
    watchdog.start()
    uri = (tmp_path / "noisy.py").as_uri()
    try:
        def send(msg: dict) -> None:
            proc.stdin.write(_frame({"jsonrpc": "2.0", **msg}))
            proc.stdin.flush()

        def until(pred) -> dict:
            while True:
                m = _read_frame(proc.stdout)
                if pred(m):
                    return m

        send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
        until(lambda m: m.get("id") == 1)
        send({"method": "initialized", "params": {}})
        send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": BROKEN}}})
        diags = until(lambda m: m.get("method") == "textDocument/publishDiagnostics")["params"]["diagnostics"]
        assert [d["range"]["start"]["line"] for d in diags] == [3]
        send({"id": 2, "method": "textDocument/codeAction", "params": {
            "textDocument": {"uri": uri}, "range": diags[0]["range"], "context": {"diagnostics": diags}}})
        actions = until(lambda m: m.get("id") == 2)["result"]      # the fixer has run (and printed) by now
        edits = [lsp.TextEdit(range=lsp.Range(start=lsp.Position(**e["range"]["start"]),
                                              end=lsp.Position(**e["range"]["end"])), new_text=e["newText"])
                 for e in actions[0]["edit"]["changes"][uri]]
        assert _apply(BROKEN, edits) == ORIGINAL
        send({"id": 3, "method": "shutdown", "params": None})
        until(lambda m: m.get("id") == 3)
        send({"method": "exit", "params": None})
        assert proc.wait(30) == 0
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()


# -- the diff-to-edits function, on its own --

_PIECES = st.sampled_from(["a", "b", " ", "(", ")", ":", "\n", "\r\n", "\r", "é", "😋", "\t", "\f", "\u2028"])
_TEXTS = st.lists(_PIECES, max_size=40).map("".join)


@st.composite
def _text_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two unrelated texts, or (as a repair gives) a text and a few small edits of it."""
    old = draw(_TEXTS)
    if draw(st.booleans()):
        return old, draw(_TEXTS)
    new = old
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(new)))
        cut = draw(st.integers(0, min(2, len(new) - at)))
        new = new[:at] + draw(st.lists(_PIECES, max_size=2).map("".join)) + new[at + cut:]
    return old, new


@given(_text_pairs(), st.sampled_from(["utf-8", "utf-16", "utf-32"]))
@settings(max_examples=500, deadline=None)
def test_replacements_turn_old_into_new_in_lsp_positions(pair: tuple[str, str], encoding: str):
    old, new = pair
    reps = diff_replacements(old, new)
    assert apply_replacements(old, reps) == new
    assert all(a.end <= b.start for a, b in zip(reps, reps[1:]))           # in order, not overlapping
    index = LineIndex(old, encoding)
    for r in reps:
        for off in (r.start, r.end):
            assert not (0 < off < len(old) and old[off - 1] == "\r" and old[off] == "\n"), (old, r)
            assert index.offset(*index.position(off)) == off               # positions round-trip


@given(st.lists(st.sampled_from(["x = 1\n", "def f(a):\n", "    return a\n", "print('é')\n", "\n"]),
                min_size=1, max_size=60), st.data())
@settings(max_examples=200, deadline=None)
def test_one_character_edit_is_one_minimal_replacement(lines: list[str], data: st.DataObject):
    old = "".join(lines)
    at = data.draw(st.integers(0, len(old)))
    ch = data.draw(st.sampled_from([":", ")", "(", "z"]))
    new = old[:at] + ch + old[at:]
    reps = diff_replacements(old, new)
    assert len(reps) == 1 and reps[0].text == ch and reps[0].start == reps[0].end
    assert apply_replacements(old, reps) == new
    back = diff_replacements(new, old)
    assert len(back) == 1 and back[0].text == "" and back[0].end - back[0].start == 1


def test_utf16_columns_against_the_encoder():
    text = 'a = "😋é"\r\nb\rc\n'
    for enc, width in (("utf-16", _utf16), ("utf-8", lambda s: len(s.encode())), ("utf-32", len)):
        index = LineIndex(text, enc)
        assert index.position(text.index("é") + 1) == (0, width('a = "😋é'))
        assert index.position(text.index("b")) == (1, 0)
        assert index.position(text.index("c")) == (2, 0)
        assert index.position(len(text)) == (3, 0)
    with pytest.raises(ValueError, match="utf-16"):
        LineIndex(text, "latin-1")


# -- the command line --

def _noodle(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noodle.cli", "fix", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, cwd=ROOT)


def test_lsp_with_paths_is_a_usage_error():
    r = _noodle("--lsp", "some.py")
    assert r.returncode == 2
    assert "--lsp takes no PATH" in r.stderr and "some.py" in r.stderr


def test_lsp_with_a_mode_is_a_usage_error():
    r = _noodle("--lsp", "--write")
    assert r.returncode == 2 and "--write" in r.stderr


def test_no_paths_without_lsp_is_a_usage_error():
    r = _noodle()
    assert r.returncode == 2 and "PATH" in r.stderr and "--lsp" in r.stderr


def test_plain_fix_does_not_import_pygls():
    code = ("import sys; from noodle.cli import main; main(['fix', '-q', '--no-progress', '-']); "
            "print('pygls' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], input="x = 1\n", capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.stdout.strip() == "False", (r.stdout, r.stderr)
