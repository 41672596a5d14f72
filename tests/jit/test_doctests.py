"""The docstring examples of the JIT front end run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "noodle.ir.graph", "noodle.ir.verify", "noodle.ir.printer", "noodle.ir.semantics",
    "noodle.trace.tracer", "noodle.passes", "noodle.passes.simplify", "noodle.passes.fuse",
    "noodle.passes.schedule", "noodle.passes.memplan", "noodle.nbc", "noodle.nbc.format",
    "noodle.exec.interpreter", "noodle.exec.executor", "noodle.exec.state", "noodle.jit", "noodle.jit.fperrors",
    "noodle.jit.fastpath",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
