"""noodle's syntax fixer in one page: a text, a file's bytes, the large-file path, a directory with the cache.

Run: python examples/fixer_quickstart.py

The same from a shell::

    noodle fix src/                  # report: path:line:col: error, and the repair found
    noodle fix --diff src/ | patch -p0
    noodle fix --write --workers 4 src/
    noodle fix --json -k 3 --target-version py39 module.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from noodle import metrics
from noodle.fixer import fix
from noodle.fixer.batch import (
    SKIP_DIRS,
    FixerUsageError,
    SourceRef,
    cache_key,
    discover,
    model_version,
    open_cache,
    parse_target_version,
    publish,
    record,
    run,
)
from noodle.fixer.chunks import LARGE_FILE_BYTES, check_large, fix_large, is_large, statement_starts
from noodle.fixer.files import FixerFileError, SourceFile, atomic_write, read_bytes, unified_diff


def one_text() -> None:
    r = fix("def area(w, h)\n    return w * h\n", k=3)
    print(f"kind {r.kind}, edits {r.edits}, {len(r.candidates)} candidates scored "
          f"{[round(c.score, 2) for c in r.candidates]}")


def bytes_in_bytes_out() -> None:
    sf = SourceFile.from_bytes(b"\xef\xbb\xbfdef area(w, h)\r\n    return w * h\r\n", "area.py")
    fixed = sf.encode(fix(sf.text).source)          # the engine sees \n; the file keeps its BOM and CRLF
    print("repaired bytes:", fixed)
    print(unified_diff(sf.data, fixed, "area.py").decode("utf-8-sig"), end="")
    try:
        SourceFile.from_bytes(b"x = '\xff'\n", "latin.py")
    except FixerFileError as exc:
        print("undecodable:", exc)


def large_file_path() -> None:
    # files over LARGE_FILE_BYTES take this path; it works the same on a small text
    data = b"@cache\ndef f(x):\n    return x\n\nif f(1):\n    pass\nelse:\n    pass\nprint(f(2)\n"
    starts, _ = statement_starts(data)
    print("top-level statements start at bytes", starts)
    sf = SourceFile.from_bytes(data, "big.py")
    print("failing units:", [(u.line, u.error.message) for u in check_large(sf, "big.py")])
    out, res = fix_large(sf, filename="big.py")
    print(f"repaired only that unit: {res.edits}; a {LARGE_FILE_BYTES + 1:,}-byte file is large: "
          f"{is_large(LARGE_FILE_BYTES + 1)}")


def a_directory() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "pkg")
        (root / "__pycache__").mkdir(parents=True)       # skipped, like the names in SKIP_DIRS
        (root / "good.py").write_text("x = 1\n")
        (root / "bad.py").write_bytes(b"for i in range(3)\r\n    print(i)\r\n")
        refs, missing = discover([root, Path(tmp, "nope.py")])
        refs.append(SourceRef("<stdin>", None, b"print('hi'\n"))
        print("found", [Path(r.name).name for r in refs], "missing:", [o.message for o in missing],
              "skipped dirs include __pycache__:", "__pycache__" in SKIP_DIRS)
        target = parse_target_version("py310")
        try:
            parse_target_version("py2")
        except FixerUsageError as exc:
            print("bad version:", exc)
        cache = open_cache()       # NOODLE_SYNTAX_FIXER_CACHE_*; with cache warming it persists between runs
        try:
            for o in run(refs, k=3, target_version=target, cache=cache):
                print(f"  {Path(o.name).name}: {o.status}{' (cached)' if o.cached else ''}")
                if o.output is not None and o.path is not None:
                    atomic_write(o.path, o.output, expect=o.data)     # temp file + fsync + os.replace
            again = run(refs, k=3, target_version=target, cache=cache)     # hits come first, then fixes
            print("second run, cached:", {Path(o.name).name: o.cached for o in again})   # bad.py changed
        finally:
            cache.close()
        print("bad.py now:", read_bytes(root / "bad.py"))
        print("its cache key:", cache_key(read_bytes(root / "bad.py"), 3, target)[:24], "... engine",
              model_version())
    record("simple", 0.004)          # what run() does for every fix
    publish()                        # observations wait until the registry is loaded, or until asked
    total = metrics.registry.get("noodle_fixer_fixes_total")
    print("fixes counted in the registry:", total.total())


def main() -> None:
    one_text()
    bytes_in_bytes_out()
    large_file_path()
    a_directory()


if __name__ == "__main__":
    main()
