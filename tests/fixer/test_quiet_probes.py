"""The fixer's compile probes silence their own warnings without leaving the process's warnings
state changed, when several threads probe at once (the HTTP server's workers, the LSP worker).

Before, each probe entered ``warnings.catch_warnings`` on its own: two overlapping probes could put
one probe's "ignore everything" back after the other ended, for the rest of the process.
"""

from __future__ import annotations

import ast
import threading
import time
import warnings
from pathlib import Path

import noodle.fixer
from noodle.fixer.corrupt import compiles
from noodle.fixer.quiet import probe_warnings_silenced

BAD_ESCAPE = "x = '\\y'\n"        # CPython warns: invalid escape sequence


def _probe_in_threads(n_threads: int, rounds: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def probe() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                with probe_warnings_silenced():
                    assert compiles(BAD_ESCAPE)
                    time.sleep(0.001)     # another thread would enter here if it could
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=probe) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_overlapping_probes_leave_the_warnings_state_as_it_was():
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        mine = warnings.filters
        assert _probe_in_threads(4, 25) == []
        assert warnings.filters is mine          # no probe's state was put back in place of ours
        warnings.warn("the program's own warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in record] == ["the program's own warning"]   # and none of the probes'
    assert list(warnings.filters) == before


def test_no_fixer_module_enters_catch_warnings_on_its_own():
    root = Path(noodle.fixer.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name == "quiet.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "catch_warnings":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == [], f"use noodle.fixer.quiet.probe_warnings_silenced: {offenders}"
