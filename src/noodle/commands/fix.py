"""``noodle fix PATH... [--diff | --check | --write] [--json]``: repair Python syntax errors, as a linter would.

Modes (files are never touched except by ``--write``):

- default: one line per file with a syntax error (``path:line:col: message``) and the repair
  found for it;
- ``--check``: only which files would be fixed or cannot be, for CI;
- ``--diff``: a unified diff of every repair on stdout (``patch -p0`` applies it);
- ``--write``: apply the repairs, each file replaced atomically (a temporary file in the same
  directory, fsynced, renamed over the original with its permissions); a file that parses is
  never written, so a second run changes nothing;
- ``--json``: per file, the status, CPython's error, the edits and the ranked alternatives
  with their scores (:meth:`noodle.fixer.FixResult.to_json`); combines with ``--write``.

``-`` reads the source from stdin; with ``--write`` the repaired source goes to stdout.

``--lsp`` (no PATH) serves an editor instead: a Language Server on stdin/stdout that keeps the
model loaded, publishes a diagnostic per syntax error and offers the top ``-k`` repairs as quick
fixes (:mod:`noodle.fixer.lsp`; pygls is imported only then).

Exit status, as ruff's: 0 when every file parses (nothing to fix, nothing written); 1 when
repairs were found (or, with ``--write``, applied), or when a file has a syntax error no
repair fixes (a violation that remains, as ruff exits 1 for unfixable violations); 2 on an
error: a path that does not exist, a file that cannot be read, decoded or written, a bad
argument or setting. Files that can be processed still are when another one fails.

Why this module imports almost nothing at the top: ``noodle fix small.py`` from a fresh
process must answer in well under half a second, and :mod:`noodle.cli` imports the command
module before it knows what to run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "fix"
HELP = "repair Python syntax errors (--diff shows, --check lists, --write applies, --json reports)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="Python files or directories (recursing into *.py and *.pyi); - reads stdin")
    p.add_argument("--lsp", action="store_true",
                   help="run as a Language Server on stdin/stdout (diagnostics and quick fixes for an editor); "
                        "takes no PATH")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="print the repairs as a unified diff; change nothing")
    mode.add_argument("--check", action="store_true", help="list files that would be fixed; change nothing")
    mode.add_argument("--write", action="store_true",
                      help="apply the repairs (atomically; files that parse are never written)")
    p.add_argument("--json", action="store_true",
                   help="print per-file results as JSON: error, edits, alternatives and scores")
    p.add_argument("-k", type=int, default=5, metavar="N", help="alternatives to rank per error (default 5)")
    p.add_argument("--target-version", metavar="VERSION", default=None,
                   help="grammar to check against, e.g. py39 or 3.9 (default: this Python's)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="fix on N Dask worker processes (0 = NOODLE_SYNTAX_FIXER_MAX_WORKERS or the CPU count, "
                        "whichever is smaller; default 1: in this process)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the fixer's cache (used when fixing more than one file)")
    p.add_argument("--no-progress", action="store_true", help="never draw a progress bar")
    p.add_argument("--stdin-filename", metavar="NAME", default=None, help="name shown for - (stdin)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors (and the diff, JSON or source)")


def _describe(edit: dict[str, Any]) -> str:
    old, new = edit["old"], edit["new"]
    where = f"{edit['line']}:{edit['col'] + 1}"
    if not old:
        return f"insert {new!r} at {where}"
    if not new:
        return f"delete {old!r} at {where}"
    return f"replace {old!r} with {new!r} at {where}"


def _error_line(o: Any) -> str:
    err = (o.result or {}).get("error") or {}
    if not err:
        return o.name
    return f"{o.name}:{err['line']}:{err['col'] + 1}: {err['kind']}: {err['message']}"


class _Report:
    """Prints outcomes in input order as the mode wants them and counts them for the summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.counts = {"valid": 0, "fixed": 0, "partial": 0, "unfixed": 0, "error": 0}
        self.written = 0
        self.json_rows: list[dict[str, Any]] = []
        self.status = 0

    def out(self, text: str) -> None:
        if not self.args.quiet:
            print(text, file=sys.stderr if self.args.write or self.args.diff else sys.stdout)

    def handle(self, o: Any) -> None:
        from noodle.fixer.files import FixerFileError, SourceFile, atomic_write, unified_diff

        args = self.args
        written = False
        stdin_source: bytes | None = None
        if args.write and o.output is not None and o.status in ("fixed", "partial"):
            if o.path is None:
                stdin_source, written = o.output, True
            else:
                try:
                    atomic_write(o.path, o.output, expect=o.data)
                    written = True
                except FixerFileError as exc:
                    o.status, o.message = "error", str(exc)
        elif args.write and o.path is None and o.data is not None:
            stdin_source = o.data                      # stdin: the source as it was
        if stdin_source is not None and not args.json:
            sys.stdout.buffer.write(stdin_source)
        self.written += written
        self.counts[o.status] = self.counts.get(o.status, 0) + 1
        self.status = max(self.status, o.exit_code)
        if args.json:
            row = o.to_json()
            if args.write:
                row["written"] = written
            if stdin_source is not None:               # stdout carries the JSON: the source goes in it
                row["source"] = SourceFile.from_bytes(stdin_source).raw_text
            self.json_rows.append(row)
            return
        if o.status == "error":
            print(f"noodle fix: {o.message}", file=sys.stderr)
            return
        if o.status == "valid":
            return
        edits = (o.result or {}).get("edits") or []
        if args.diff:
            if o.output is not None:
                sys.stdout.buffer.write(unified_diff(o.data or b"", o.output, o.name))
                sys.stdout.flush()
            if o.status == "unfixed":
                print(f"{_error_line(o)} (no repair found)", file=sys.stderr)
            return
        if args.check:
            if o.status == "unfixed":
                self.out(f"{_error_line(o)} (no repair found)")
            else:
                self.out(f"would fix: {o.name} ({len(edits)} edit{'s' if len(edits) != 1 else ''})")
            return
        if args.write:
            if written:
                self.out(f"fixed: {o.name} ({len(edits)} edit{'s' if len(edits) != 1 else ''})")
            if o.status in ("unfixed", "partial"):
                self.out(f"{_error_line(o)} ({'no repair found' if o.status == 'unfixed' else 'some errors left'})")
            return
        self.out(_error_line(o))
        if o.status == "unfixed":
            self.out("  no repair found")
        else:
            self.out("  fix: " + "; ".join(_describe(e) for e in edits[:8]) + (" ..." if len(edits) > 8 else ""))

    def finish(self) -> None:
        import json

        args = self.args
        if args.json:
            print(json.dumps({"files": self.json_rows, "summary": {**self.counts, "written": self.written}},
                             indent=2))
            return
        if args.quiet:
            return
        c = self.counts
        total = sum(c.values())
        broken = c["fixed"] + c["partial"]
        verb = "fixed" if args.write else "fixable"
        parts = [f"{total} file{'s' if total != 1 else ''} checked", f"{broken} {verb}"]
        if c["unfixed"]:
            parts.append(f"{c['unfixed']} without a repair")
        if c["error"]:
            parts.append(f"{c['error']} error{'s' if c['error'] != 1 else ''}")
        hint = ""
        if broken and not args.write:
            hint = " (--write applies, --diff shows)"
        print(", ".join(parts) + hint, file=sys.stderr)


def _serve_lsp(args: argparse.Namespace, k: int, target: tuple[int, int] | None) -> int:
    """``--lsp``: hand stdin/stdout to the Language Server (pygls is imported only here)."""
    from noodle.fixer.batch import FixerUsageError

    if args.paths:
        raise FixerUsageError(
            f"noodle fix --lsp takes no PATH (the editor sends the files over the protocol), got "
            f"{' '.join(args.paths)}; run 'noodle fix --lsp' alone, or drop --lsp to fix these files")
    used = [flag for flag, on in (("--diff", args.diff), ("--check", args.check), ("--write", args.write),
                                  ("--json", args.json), ("--workers", args.workers != 1),
                                  ("--stdin-filename", args.stdin_filename is not None)) if on]
    if used:
        raise FixerUsageError(f"noodle fix --lsp cannot be combined with {', '.join(used)}: the editor "
                              f"applies the repairs; only -k and --target-version apply to the server")
    try:
        from noodle.fixer.lsp import serve
    except ImportError as exc:
        from noodle.errors import FixerError

        raise FixerError(f"noodle fix --lsp needs pygls and lsprotocol, which are not installed ({exc}); "
                         f"install them with: pip install 'noodle[lsp]'") from exc
    serve(k=k, target_version=target)
    return 0


def main(args: argparse.Namespace) -> int:
    import os

    from noodle.fixer import batch

    k = batch.check_k(args.k)
    target = batch.parse_target_version(args.target_version)
    if args.lsp:
        return _serve_lsp(args, k, target)
    if not args.paths:
        raise batch.FixerUsageError("noodle fix needs at least one PATH (a file, a directory, or - for stdin), "
                                    "or --lsp to serve an editor")
    workers = args.workers
    if workers == 0:
        workers = min(batch.get_settings().max_workers, os.cpu_count() or 1)
    if workers < 0:
        raise batch.FixerUsageError(f"--workers must be >= 0 (0 = automatic), got {workers}")
    if workers > 1 and workers > batch.get_settings().max_workers:
        raise batch.FixerUsageError(
            f"--workers {workers} is above NOODLE_SYNTAX_FIXER_MAX_WORKERS={batch.get_settings().max_workers}; "
            f"ask for fewer workers or raise the setting")
    names = [p for p in args.paths if p != "-"]
    refs, missing = batch.discover(names)
    if "-" in args.paths:
        refs.append(batch.SourceRef(args.stdin_filename or "-", None, sys.stdin.buffer.read()))
    many = len(refs) > 1 or any(os.path.isdir(p) for p in names)
    cache = batch.open_cache() if many and not args.no_cache else None
    report = _Report(args)
    outcomes = []
    try:
        for o in batch.run(refs, k=k, target_version=target, workers=workers, cache=cache,
                           progress=False if args.no_progress else None):
            if o.status == "valid" and o.path is not None:
                o.data = None       # a codebase is mostly valid files: keep only what is printed or written
            outcomes.append(o)
    finally:
        if cache is not None:
            cache.close()
    outcomes.sort(key=lambda o: o.index)
    try:
        for o in missing + outcomes:
            report.handle(o)
            o.data = o.output = None
        report.finish()
        sys.stdout.flush()
    except BrokenPipeError:      # `noodle fix --diff . | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return report.status
