"""``noodle bench lsp``: how long an editor waits for ``noodle fix --lsp`` after an edit.

The server is the real command over stdio (``python -m noodle.cli fix --lsp``), the client
pygls' own. The files are 2,000+ lines of valid Python (a synthetic module and the standard
library's argparse.py); each run is one ``didChange`` that breaks
one ``def`` line (its ':' deleted, a different line each run so nothing is served from the
server's cache) or mends it again, timed from sending the change to receiving the
``publishDiagnostics`` for that document version; then a ``codeAction`` request is timed from
the moment that diagnostic arrived (the server publishes CPython's first error before its
repair search ends, so this waits for the rest of the search). Same-run baselines: ``fix()`` on the same
texts in this process, warm (what the server does minus the protocol), and ``compile()`` of the
valid text (what any linter pays to find the error at all).

Target (issue 12): diagnostics for a 2,000-line file under 100 ms after an edit.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from noodle.benchtools import Row, Timing

TITLE = "noodle bench lsp: didChange -> publishDiagnostics, 2,000-line file (ratios vs same-run baselines)"

_BLOCK = (
    "def total_{i}(values):\n"
    "    result = 0\n"
    "    for v in values:\n"
    "        result += v\n"
    "    return result\n"
    "\n"
    "\n"
    "class Box_{i}:\n"
    "    def __init__(self, items):\n"
    "        self.items = [x for x in items if x is not None]\n"
    "\n"
    "    def size(self):\n"
    "        return len(self.items)\n"
    "\n"
    "\n"
)


def _text(lines: int = 2000) -> str:
    per = _BLOCK.count("\n")
    return "import os\n\n\n" + "".join(_BLOCK.format(i=i) for i in range(lines // per + 1))


def _timing(samples: list[float]) -> Timing:
    s = sorted(samples)
    return Timing(s[0], statistics.median(s), len(s))


async def _serve(text: str, targets: list[int]) -> dict[str, list[float]]:
    client = LanguageClient("noodle-bench", "1")
    arrived: dict[int, float] = {}
    counts: dict[int, int] = {}

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _published(params: lsp.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            arrived[params.version] = time.perf_counter()
            counts[params.version] = len(params.diagnostics)

    await client.start_io(sys.executable, "-m", "noodle.cli", "fix", "--lsp")
    await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities()))
    client.initialized(lsp.InitializedParams())
    uri = "file:///bench/big.py"

    async def wait(version: int) -> float:
        deadline = time.perf_counter() + 60
        while version not in arrived:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no diagnostics for version {version} within 60 s")
            await asyncio.sleep(0.0005)
        return arrived[version]

    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    await wait(1)
    lines = text.splitlines(keepends=True)
    out: dict[str, list[float]] = {"broken": [], "mended": [], "action": []}
    version = 1
    for line in targets:
        col = len(lines[line].rstrip("\n")) - 1
        at, after = lsp.Position(line=line, character=col), lsp.Position(line=line, character=col + 1)
        for kind, change in (("broken", lsp.Range(start=at, end=after)), ("mended", lsp.Range(start=at, end=at))):
            version += 1
            t0 = time.perf_counter()
            client.text_document_did_change(lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[lsp.TextDocumentContentChangePartial(
                    range=change, text="" if kind == "broken" else ":")]))
            out[kind].append(await wait(version) - t0)
            if (counts[version] != 1) if kind == "broken" else (counts[version] != 0):
                raise RuntimeError(f"{kind} text at line {line + 1} got {counts[version]} diagnostics")
            if kind == "broken":
                t0 = time.perf_counter()
                await client.text_document_code_action_async(lsp.CodeActionParams(
                    text_document=lsp.TextDocumentIdentifier(uri=uri), range=lsp.Range(start=at, end=at),
                    context=lsp.CodeActionContext(diagnostics=[])))
                out["action"].append(time.perf_counter() - t0)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return out


def _in_process(text: str, targets: list[int]) -> dict[str, list[float]]:
    from noodle.fixer import fix

    fix("def f(x)\n    return x\n")
    lines = text.splitlines(keepends=True)
    out: dict[str, list[float]] = {"fix": [], "compile": []}
    for line in targets:
        broken = "".join(lines[:line] + [lines[line].replace(":\n", "\n")] + lines[line + 1:])
        t0 = time.perf_counter()
        r = fix(broken)
        out["fix"].append(time.perf_counter() - t0)
        if r.source != text:
            raise RuntimeError(f"fix() did not restore line {line + 1}: {r.edits}")
        t0 = time.perf_counter()
        compile(text, "<bench>", "exec", dont_inherit=True)
        out["compile"].append(time.perf_counter() - t0)
    return out


def _targets(text: str, quick: bool) -> list[int]:
    """The ``def``/``class`` lines (ending in ':' on the same line) to break, spread over the file."""
    lines = text.splitlines(keepends=True)
    defs = [i for i, s in enumerate(lines)
            if s.lstrip().startswith(("def ", "class ")) and s.endswith("):\n") and "#" not in s]
    want = 6 if quick else 20
    step = max(1, len(defs) // want)
    return defs[step // 2::step][:want]


def _files() -> list[tuple[str, str]]:
    """A synthetic 2,000-line module and a real one of the standard library (argparse, ~2,600 lines)."""
    import argparse

    with open(argparse.__file__, encoding="utf-8") as f:
        real = f.read()
    return [("synthetic", _text()), ("argparse.py", real)]


def run(quick: bool = False) -> list[Row]:
    rows = []
    for name, text in _files():
        targets = _targets(text, quick)
        served = asyncio.run(_serve(text, targets))
        local = _in_process(text, targets)
        n = text.count("\n")
        extra: dict[str, Any] = {"file": name, "lines": n, "edits": len(targets)}
        rows += [
            Row("lsp", f"{name} ({n} lines), one error appears", "didChange -> publishDiagnostics",
                "fix() in-process (warm)", _timing(served["broken"]), _timing(local["fix"]), extra),
            Row("lsp", f"{name} ({n} lines), the error mended", "didChange -> publishDiagnostics (empty)",
                "compile() of the valid text", _timing(served["mended"]), _timing(local["compile"]), extra),
            Row("lsp", f"{name} ({n} lines), one error", "codeAction sent on the diagnostic (waits for the repairs)",
                "fix() in-process (warm)", _timing(served["action"]), _timing(local["fix"]), extra),
        ]
    return rows


def notes(rows: list[Row]) -> list[str]:
    return [f"{r.extra['file']}: diagnostics after an edit that breaks it ({r.extra['lines']} lines): median "
            f"{r.candidate_time.median * 1e3:.0f} ms, best {r.candidate_time.min * 1e3:.0f} ms (target < 100 ms); "
            f"fix() alone in this process: median {r.baseline_time.median * 1e3:.0f} ms"
            for r in rows if r.candidate == "didChange -> publishDiagnostics"]


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    for row in result:
        print(f"{row.case} | {row.candidate} {row.candidate_time.median * 1e3:.1f} ms "
              f"(min {row.candidate_time.min * 1e3:.1f}) | {row.baseline} {row.baseline_time.median * 1e3:.1f} ms "
              f"| ratio {row.ratio:.2f}")
    print("\n".join(notes(result)))
