"""The docstring examples of the op table, the shape rules and the code generators run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "noodle.ir.ops", "noodle.ir.shapes", "noodle.backends.op_text", "noodle.backends.emit_rules",
    "noodle.backends.coverage", "noodle.backends.numba_emit", "noodle.backends.numba_plan",
    "noodle.backends.numba_loops", "noodle.backends.numba_stages", "noodle.backends.numba_codegen",
    "noodle.backends.numba_threads", "noodle.backends.numpy_loops", "noodle.backends.numpy_loops_call",
    "noodle.backends.numba_expf", "noodle.backends.numba_native_call",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
