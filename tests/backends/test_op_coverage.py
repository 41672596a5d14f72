"""Every registered backend declares a translation (or Unsupported) for every op of ir/ops.py, and
the check notices a new op that a backend lacks."""

from __future__ import annotations

import pytest

from noodle.backends.base import Backend, Unsupported, table_ops
from noodle.backends.coverage import missing_ops, unknown_entries, unsupported_ops
from noodle.backends.registry import backend_names, get_backend
from noodle.ir import ops
from noodle.ir.ops import DTypeRule, OpDef, OpKind


def _backend(name: str) -> Backend:
    """The registered backend ``name``; only numba may never be skipped (it is a core dependency)."""
    try:
        return get_backend(name)
    except ImportError as exc:
        if name == "numba":
            raise
        pytest.skip(f"backend {name!r} cannot be imported here: {exc}")


def test_numba_is_registered() -> None:
    assert "numba" in backend_names()


@pytest.mark.parametrize("name", backend_names())
def test_every_backend_translates_every_op(name: str) -> None:
    backend = _backend(name)
    assert missing_ops(backend) == [], f"backend {name!r} lacks a translation for these ops"
    assert unknown_entries(backend) == []
    for op in table_ops():
        ok, why = backend.supports(op)
        assert ok or why, f"{name}: {op} is unsupported without a reason"


@pytest.mark.parametrize("name", backend_names())
def test_a_new_op_without_a_translation_is_reported(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend(name)
    fake = OpDef("fake_unary", 999, OpKind.UNARY, 1, DTypeRule.SAME, "negative", 1.0, ufuncs=("fake",))
    monkeypatch.setitem(ops.OPS, fake.name, fake)
    assert "fake_unary" in table_ops()
    assert missing_ops(backend) == ["fake_unary"]
    ok, why = backend.supports("fake_unary")
    assert not ok and "fake_unary" in why


def test_unsupported_entries_are_reported_with_their_reason() -> None:
    class Partial(Backend):
        name = "partial"
        op_table = {**get_backend("numba").op_table, "tanh": Unsupported("no tanh on this target")}

        def available(self):
            return True, ""

        def compile_kernel(self, spec):
            raise NotImplementedError

        def compile_matmul(self, spec):
            raise NotImplementedError

    assert missing_ops(Partial) == []
    own = unsupported_ops(get_backend("numba"))   # the lone-node ops (slice, loops, ...) every table declares
    assert unsupported_ops(Partial) == {**own, "tanh": "no tanh on this target"}
    assert Partial().supports("tanh") == (False, "no tanh on this target")
    assert Partial().supports("exp") == (True, "")


def test_numba_code_generation_reads_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator spells ops from the table: replacing an entry changes the source, and an op
    declared Unsupported is a CompileError (the region then runs interpreted), not a wrong kernel."""
    from backend_specs import chain

    from noodle.backends import numba_emit
    from noodle.backends.emit_rules import Elementwise
    from noodle.backends.numba_codegen import generate, plan
    from noodle.errors import CompileError

    spec = chain(64)
    assert "v8 = (v6 + v7)" in generate(spec, plan(spec))
    monkeypatch.setitem(numba_emit.NUMBA_OPS, "add", Elementwise(lambda a, d, o: f"ADD({a[0]}, {a[1]})"))
    assert "v8 = ADD(v6, v7)" in generate(spec, plan(spec))
    monkeypatch.setitem(numba_emit.NUMBA_OPS, "add", Unsupported("no add here"))
    with pytest.raises(CompileError, match="no add here"):
        generate(spec, plan(spec))


def test_cuda_code_generation_reads_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend_specs import chain

    from noodle.backends import cuda_codegen
    from noodle.errors import CompileError

    spec = chain(64)
    assert "exp(v9)" in cuda_codegen.cuda_source(spec)
    monkeypatch.setitem(cuda_codegen.CUDA_OPS, "exp", Unsupported("no exp here"))
    with pytest.raises(CompileError, match="no exp here"):
        cuda_codegen.cuda_source(spec)
