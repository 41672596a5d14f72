"""``noodle fix --lsp``: the syntax fixer as an always-warm Language Server (pygls, over stdio).

Why a server: ``noodle fix`` from a fresh process pays for loading its language model on
every run; an editor asks after every keystroke. The server loads the model once (it repairs
a tiny broken snippet as soon as the client is initialized), keeps it warm, and for every open
Python document publishes one diagnostic per syntax error (source ``noodle-fix``) and offers
the top repairs as quick fixes, best first, each a minimal set of text edits (computed by
:mod:`noodle.fixer.lsp_edits`) that makes the file parse.

Why two steps per edit: the repair search of a long file costs a few full compiles (about
30 ms each for 2,600 lines here), while finding CPython's first error costs one parse. The
server publishes that first error at once, then runs the fixer, and publishes again only if
the repairs found more errors (or placed one differently); code actions wait for the repairs.

How edits are coalesced without losing the last state: checks and repairs run one at a time on
one worker thread (the fixer's scorer is shared state), at most one run per document is in
flight, and after each step the document's text is compared with the text it worked on: if the
user typed meanwhile, the run starts over on the newest text and the stale result is never
published. A burst of ``didChange`` notifications therefore costs one run for the text at the
burst's start and one for its end, and the last diagnostics published always belong to the
current text.

Example (what an editor runs; see the README's "Editor integration (LSP)")::

    noodle fix --lsp            # speaks LSP on stdin/stdout until the client says exit

    from noodle.fixer.lsp import make_server
    server = make_server(k=3)   # a pygls LanguageServer; server.start_io() serves stdio
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from noodle.fixer.lsp_edits import LineIndex, Replacement, apply_replacements, diff_replacements
from noodle.fixer.quiet import probe_warnings_silenced
from noodle.fixer.result import Candidate, Edit, FixResult

__all__ = ["SOURCE", "ErrorSpot", "FixerServer", "error_spots", "make_server", "serve"]

#: the ``source`` of every diagnostic this server publishes (what editors show next to it)
SOURCE = "noodle-fix"
#: what the server repairs right after ``initialized``, to load the model before the first file
WARM_SNIPPET = "def f(x)\n    return x\n"
#: intermediate texts compiled to find the errors after the first one (a repair of many edits)
MAX_EXTRA_ERRORS = 10

log = logging.getLogger("noodle.fixer.lsp")


@dataclass(frozen=True)
class ErrorSpot:
    """One syntax error in code-point offsets of the text: where it starts and ends, CPython's
    message and its class name."""

    start: int
    end: int
    message: str
    kind: str = "SyntaxError"


def _first_error(text: str, target_version: tuple[int, int] | None) -> SyntaxError | None:
    """CPython's first error, parser first and then the compiler's own checks (as the fixer
    checks: 'return' outside a function does not parse-fail, it compile-fails)."""
    with probe_warnings_silenced():
        try:
            if target_version is not None:      # compile() parses too, but only with this Python's grammar
                ast.parse(text, feature_version=target_version)
            compile(text, "<lsp>", "exec", dont_inherit=True)
        except SyntaxError as exc:
            return exc
        except (ValueError, MemoryError, RecursionError):  # NUL bytes, absurd nesting: not ours to place
            return None
    return None


def _spot(index: LineIndex, line: int, col: int, message: str, kind: str) -> ErrorSpot:
    """The span to underline for an error at 1-based ``line``, 0-based code-point ``col``: the
    word or character there, or the line's last character when CPython points past its end."""
    row = max(0, line - 1)
    text = index.line_text(row)
    base = index.starts[min(row, len(index.starts) - 1)]
    col = max(0, min(col, len(text)))
    if col < len(text):
        stop = col + 1
        if text[col].isalnum() or text[col] == "_":
            while stop < len(text) and (text[stop].isalnum() or text[stop] == "_"):
                stop += 1
        return ErrorSpot(base + col, base + stop, message, kind)
    if text:
        return ErrorSpot(base + len(text) - 1, base + len(text), message, kind)
    return ErrorSpot(base, base, message, kind)


def _map_back(offset: int, applied: list[Replacement]) -> int:
    """An offset in a text with ``applied`` (sorted) replacements done, as an offset of the text
    before them (inside an inserted text: where that insertion starts)."""
    delta = 0
    for r in applied:
        if offset < r.start + delta:
            break
        if offset < r.start + delta + len(r.text):
            return r.start
        delta += len(r.text) - (r.end - r.start)
    return offset - delta


def error_spots(text: str, result: FixResult, target_version: tuple[int, int] | None = None) -> list[ErrorSpot]:
    """One spot per syntax error of ``text``, first error first.

    CPython reports only the first error; the others are found by applying the best repair's
    edits one changed block at a time and asking CPython again, so each spot is an error CPython
    itself reports once the errors before it are repaired. Without a repair (kind 'unfixed')
    only the first error is known.
    """
    if result.error is None:
        return []
    index = LineIndex(text, "utf-32")
    spots = [_spot(index, result.error.line, result.error.col, result.error.message, result.error.kind)]
    if not result.changed:
        return spots
    reps = diff_replacements(text, result.source)
    for i in range(1, min(len(reps), MAX_EXTRA_ERRORS + 1)):
        partial = apply_replacements(text, reps[:i])
        err = _first_error(partial, target_version)
        if err is None:
            break
        pidx = LineIndex(partial, "utf-32")
        row = max(0, (err.lineno or 1) - 1)
        if row >= len(pidx.starts):
            continue
        col = max(0, min((err.offset or 1) - 1, len(pidx.line_text(row))))
        where = _map_back(pidx.starts[row] + col, reps[:i])
        line = index.position(where)
        spot = _spot(index, line[0] + 1, line[1], err.msg, type(err).__name__)
        if all(spot.start != s.start for s in spots):
            spots.append(spot)
    return spots


def describe(edits: tuple[Edit, ...]) -> str:
    """A code action's title: what the repair does, where (line:column, both 1-based)."""
    parts = []
    for e in edits[:3]:
        where = f"{e.line}:{e.col + 1}"
        if not e.old:
            parts.append(f"insert {e.new!r} at {where}")
        elif not e.new:
            parts.append(f"delete {e.old!r} at {where}")
        else:
            parts.append(f"replace {e.old!r} with {e.new!r} at {where}")
    more = f" (+{len(edits) - 3} more)" if len(edits) > 3 else ""
    return "noodle: " + "; ".join(parts) + more if parts else "noodle: repair syntax"


@dataclass
class _Analysis:
    """What the server knows about one text: the fixer's result and the diagnostics it published."""

    text: str
    result: FixResult | None
    diagnostics: list[lsp.Diagnostic]
    seconds: float = 0.0
    actions: dict[str, list[lsp.TextEdit]] = field(default_factory=dict)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("noodle")
    except metadata.PackageNotFoundError:         # run from a source tree without installing
        return "0+unknown"


def _encoding(server: LanguageServer) -> str:
    enc = server.workspace.position_encoding
    value = str(getattr(enc, "value", enc) or "utf-16")
    return value if value in ("utf-8", "utf-16", "utf-32") else "utf-16"


def _range(index: LineIndex, start: int, end: int) -> lsp.Range:
    (l0, c0), (l1, c1) = index.position(start), index.position(end)
    return lsp.Range(start=lsp.Position(line=l0, character=c0), end=lsp.Position(line=l1, character=c1))


def _overlaps(a: lsp.Range, b: lsp.Range) -> bool:
    def key(p: lsp.Position) -> tuple[int, int]:
        return (p.line, p.character)
    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


class FixerServer(LanguageServer):
    """The Language Server: diagnostics on open/change/save, quick fixes on ``codeAction``."""

    def __init__(self, k: int = 5, target_version: tuple[int, int] | None = None) -> None:
        super().__init__(SOURCE, _version(), text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.k = k
        self.target_version = target_version
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="noodle-fix")
        self.analyses: dict[str, _Analysis] = {}
        self.open_uris: set[str] = set()
        self.tasks: dict[str, asyncio.Task] = {}
        self.pending: dict[str, tuple[str, asyncio.Future]] = {}

    # -- the fixer, on its one worker thread --

    def _diagnostics(self, text: str, spots: list[ErrorSpot], encoding: str) -> list[lsp.Diagnostic]:
        index = LineIndex(text, encoding)
        return [lsp.Diagnostic(range=_range(index, s.start, s.end), message=s.message, source=SOURCE,
                               severity=lsp.DiagnosticSeverity.Error, code=s.kind) for s in spots]

    def _check(self, text: str, encoding: str) -> _Analysis | list[lsp.Diagnostic]:
        """CPython's first error alone (one parse, what any linter pays): a valid text's final
        analysis, or the broken text's first diagnostic to publish before the repairs are known."""
        t0 = time.perf_counter()
        err = _first_error(text, self.target_version)
        if err is None:
            return _Analysis(text, FixResult(text, False, True, None, kind="valid"), [], time.perf_counter() - t0)
        spot = _spot(LineIndex(text, "utf-32"), err.lineno or 1, max(0, (err.offset or 1) - 1), err.msg,
                     type(err).__name__)
        return self._diagnostics(text, [spot], encoding)

    def _repair(self, text: str, filename: str, encoding: str) -> _Analysis:
        from noodle.fixer import fix

        t0 = time.perf_counter()
        try:
            result: FixResult | None = fix(text, k=self.k, filename=filename, target_version=self.target_version)
            spots = error_spots(text, result, self.target_version)  # type: ignore[arg-type]
        except Exception:                       # a fixer bug must not take the editor's server down
            log.exception("noodle-fix: the fixer failed on %s; reporting CPython's error without repairs", filename)
            result = None
            err = _first_error(text, self.target_version)
            spots = [] if err is None else [
                _spot(LineIndex(text, "utf-32"), err.lineno or 1, max(0, (err.offset or 1) - 1), err.msg,
                      type(err).__name__)]
        return _Analysis(text, result, self._diagnostics(text, spots, encoding), time.perf_counter() - t0)

    async def analyze(self, uri: str) -> _Analysis:
        """The repairs of the document's current text: cached when the text is unchanged, shared
        with a repair of the same text already running (the publisher's or another request's)."""
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        cached = self.analyses.get(uri)
        if cached is not None and cached.text == text:
            return cached
        pending = self.pending.get(uri)
        if pending is not None and pending[0] == text:
            return await pending[1]
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._repair, text, doc.path or uri, _encoding(self))
        self.pending[uri] = (text, future)
        try:
            analysis = await future
        finally:
            if self.pending.get(uri, (None, None))[1] is future:
                del self.pending[uri]
        if uri in self.open_uris:
            self.analyses[uri] = analysis
        return analysis

    # -- publishing, one run in flight per document --

    def schedule(self, uri: str) -> None:
        """Publish diagnostics for the document's newest text (a no-op while a run for it is in
        flight: that run notices the newer text when its step ends and starts over on it)."""
        if uri not in self.open_uris:
            return
        task = self.tasks.get(uri)
        if task is not None and not task.done():
            return
        self.tasks[uri] = asyncio.get_running_loop().create_task(self._publish_latest(uri))

    def _publish(self, uri: str, diagnostics: list[lsp.Diagnostic], version: int | None) -> None:
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            uri=uri, diagnostics=diagnostics, version=version))

    async def _publish_latest(self, uri: str) -> None:
        """Two steps per text: CPython's first error is published at once (one parse), then the
        fixer's repairs, which may find more errors (published only if they add or change one)."""
        loop = asyncio.get_running_loop()
        try:
            while uri in self.open_uris:
                doc = self.workspace.get_text_document(uri)
                text, version = doc.source, doc.version
                cached = self.analyses.get(uri)
                if cached is not None and cached.text == text:
                    self._publish(uri, cached.diagnostics, version)
                    return
                first = await loop.run_in_executor(self.executor, self._check, text, _encoding(self))
                if uri not in self.open_uris:
                    return
                if self.workspace.get_text_document(uri).source != text:
                    continue                    # typed meanwhile: check the newest text instead
                if isinstance(first, _Analysis):
                    self.analyses[uri] = first
                    self._publish(uri, first.diagnostics, version)
                    return
                self._publish(uri, first, version)
                analysis = await self.analyze(uri)
                if uri not in self.open_uris:
                    return
                if self.workspace.get_text_document(uri).source != text:
                    continue
                if analysis.diagnostics != first:
                    self._publish(uri, analysis.diagnostics, version)
                log.debug("noodle-fix: %s: %d diagnostics, repairs in %.1f ms", uri, len(analysis.diagnostics),
                          analysis.seconds * 1e3)
                return
        except Exception:
            log.exception("noodle-fix: publishing diagnostics for %s failed", uri)
        finally:
            if self.tasks.get(uri) is asyncio.current_task():
                del self.tasks[uri]

    # -- code actions --

    def _text_edits(self, analysis: _Analysis, cand: Candidate, encoding: str) -> list[lsp.TextEdit]:
        edits = analysis.actions.get(cand.source)
        if edits is None:
            index = LineIndex(analysis.text, encoding)
            edits = [lsp.TextEdit(range=_range(index, r.start, r.end), new_text=r.text)
                     for r in diff_replacements(analysis.text, cand.source)]
            analysis.actions[cand.source] = edits
        return edits

    async def code_actions(self, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        """One quick fix per repair (up to k, best first) for our diagnostics in the range."""
        only = params.context.only
        if only and not any(str(getattr(o, "value", o)).startswith("quickfix") for o in only):
            return []
        uri = params.text_document.uri
        if uri not in self.open_uris:
            return []
        analysis = await self.analyze(uri)
        if analysis.result is None or not analysis.result.changed:
            return []
        ours = [d for d in params.context.diagnostics if d.source == SOURCE]
        if not ours:
            ours = [d for d in analysis.diagnostics if _overlaps(d.range, params.range)]
        if not ours:
            return []
        doc = self.workspace.get_text_document(uri)
        if uri not in self.open_uris or doc.source != analysis.text:
            return []                           # edited while the repairs ran: these edits fit no text now
        encoding = _encoding(self)
        caps = self.client_capabilities
        versioned = bool(getattr(getattr(getattr(caps, "workspace", None), "workspace_edit", None),
                                 "document_changes", False))
        actions = []
        for i, cand in enumerate(analysis.result.candidates[:self.k]):
            edits = self._text_edits(analysis, cand, encoding)
            if versioned:
                wedit = lsp.WorkspaceEdit(document_changes=[lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=doc.version),
                    edits=list(edits))])
            else:
                wedit = lsp.WorkspaceEdit(changes={uri: list(edits)})
            actions.append(lsp.CodeAction(title=describe(cand.edits), kind=lsp.CodeActionKind.QuickFix,
                                          diagnostics=ours, is_preferred=i == 0, edit=wedit))
        return actions


def _is_python(doc: object) -> bool:
    lang = getattr(doc, "language_id", None)
    if lang:
        return lang == "python"
    path = str(getattr(doc, "uri", ""))
    return path.endswith((".py", ".pyi"))


def make_server(k: int = 5, target_version: tuple[int, int] | None = None) -> FixerServer:
    """A :class:`FixerServer` with its handlers registered (``server.start_io()`` serves stdio).

    ``k`` repairs are offered per error, ``target_version`` (3, minor) is the grammar to check
    against (None: the running Python's).
    """
    server = FixerServer(k, target_version)

    @server.feature(lsp.INITIALIZED)
    def initialized(ls: FixerServer, params: lsp.InitializedParams) -> None:
        from noodle.fixer import fix

        def warm() -> None:
            from noodle.fixer import rerank

            t0 = time.perf_counter()
            fix(WARM_SNIPPET, k=ls.k)
            if rerank.enabled():            # a snippet the n-gram is sure of never loads the reranker
                rerank.default_reranker()
            log.info("noodle-fix: the fixer is warm (%.0f ms)", (time.perf_counter() - t0) * 1e3)

        ls.executor.submit(warm)                # queued first: the first document waits for it, not for us

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FixerServer, params: lsp.DidOpenTextDocumentParams) -> None:
        if _is_python(params.text_document):
            ls.open_uris.add(params.text_document.uri)
            ls.schedule(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FixerServer, params: lsp.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: FixerServer, params: lsp.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FixerServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        if uri in ls.open_uris:
            ls.open_uris.discard(uri)
            ls.analyses.pop(uri, None)
            ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
    async def code_action(ls: FixerServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        return await ls.code_actions(params)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: FixerServer, params: None) -> None:
        ls.executor.shutdown(wait=False, cancel_futures=True)

    return server


def serve(k: int = 5, target_version: tuple[int, int] | None = None) -> None:
    """Serve LSP on this process's stdin/stdout until the client sends ``exit``.

    Why stdout is moved first: the protocol owns it, and one stray ``print`` (from any library,
    or native code writing to file descriptor 1) would corrupt a message. The protocol gets a
    private copy of the descriptor; descriptor 1 and ``sys.stdout`` then point at stderr, which
    editors show as the server's log.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("pygls").setLevel(logging.WARNING)     # at INFO it logs every message it sends
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    make_server(k, target_version).start_io(sys.stdin.buffer, protocol_out)
