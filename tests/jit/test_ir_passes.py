"""NIR, verifier, printer and the passes (each checked by the verifier)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from noodle.errors import IRVerifyError
from noodle.exec.interpreter import run_program
from noodle.ir.graph import Builder
from noodle.ir.printer import format_program
from noodle.ir.verify import verify
from noodle.passes import algebraic, cse, dce, fold_constants, optimize, plan_memory, units
from noodle.trace import trace


def chain(a, b, c, d, e):
    return a * b + c * d - 0.5 * np.exp(-e)


def test_verifier_rejects_wrong_declared_type():
    b = Builder()
    x = b.input(0, (3,), "float64")
    y = b.add("exp", x)
    prog = b.finish([y])
    verify(prog)
    prog.nodes[y] = replace(prog.nodes[y], dtype="float32")
    with pytest.raises(IRVerifyError, match="declared"):
        verify(prog)


def test_verifier_rejects_forward_reference_and_bad_output():
    b = Builder()
    x = b.input(0, (3,), "float64")
    prog = b.finish([b.add("negative", x)])
    bad = prog.copy()
    bad.nodes[1] = replace(bad.nodes[1], args=(1,))
    with pytest.raises(IRVerifyError, match="earlier value"):
        verify(bad)
    bad = prog.copy()
    bad.outputs = (7,)
    with pytest.raises(IRVerifyError, match="output"):
        verify(bad)


def test_printer_shows_types_and_groups():
    x = np.ones(8)
    text = format_program(optimize(trace(chain, (x,) * 5)))
    assert "exp" in text and "f64[8]" in text and "[g0]" in text


def test_constant_folding_and_cse_and_dce():
    x = np.arange(4.0)
    prog = trace(lambda a: a * (np.float64(2.0) * 3.0) + (a * 6.0) + 0 * a.sum(), (x,))
    folded = fold_constants(prog)
    verify(folded)
    assert sum(n.op == "const" for n in folded.nodes) < sum(n.op == "const" for n in prog.nodes) + 1
    merged = cse(folded)
    verify(merged)
    assert sum(n.op == "multiply" for n in merged.nodes) < sum(n.op == "multiply" for n in prog.nodes)
    np.testing.assert_array_equal(run_program(dce(merged), (x,))[0], run_program(prog, (x,))[0])


def test_algebraic_only_exact_rewrites():
    x = np.array([-0.0, 1.5, np.nan])
    kept = algebraic(trace(lambda a: a + 0.0, (x,)))
    assert any(n.op == "add" for n in kept.nodes), "x + 0.0 is not exact for -0.0 and must stay"
    gone = algebraic(trace(lambda a: ((a * 1.0) / 1.0 - 0.0) ** 1.0, (x,)))
    verify(gone)
    assert [n.op for n in gone.nodes] == ["input"]
    kept = algebraic(trace(lambda a: a - a, (x,)))
    assert any(n.op == "subtract" for n in kept.nodes), "x - x is NaN for NaN and must stay"
    ints = algebraic(trace(lambda a: a + 0, (np.arange(3),)))
    assert [n.op for n in ints.nodes] == ["input"]


def test_algebraic_keeps_subtracting_negative_zero():
    x = np.array([-0.0, 1.5, -2.0])
    prog = trace(lambda a: a - np.float64(-0.0), (x,))
    kept = algebraic(prog)
    assert any(n.op == "subtract" for n in kept.nodes), "-0.0 - (-0.0) is +0.0, so x - (-0.0) must stay"
    np.testing.assert_array_equal(np.signbit(run_program(optimize(prog), (x,))[0]), np.signbit(x - -0.0))


def test_fusion_groups_chain_into_one_unit():
    prog = optimize(trace(chain, (np.ones(16),) * 5), verify_each=True)
    assert len(units(prog)) == 1


def test_map_reduce_and_matmul_epilogue_fusion():
    x, w, b = np.ones((3, 4)), np.ones((4, 5)), np.ones(5)
    prog = optimize(trace(lambda a, b_, c: (a * b_ + c).sum(), (x, x, x)), verify_each=True)
    (u,) = units(prog)
    assert prog.nodes[u.members[-1]].op == "sum"
    prog = optimize(trace(lambda x, w, b: np.maximum(x @ w + b, 0.0), (x, w, b)), verify_each=True)
    (u,) = units(prog)
    assert [prog.nodes[m].op for m in u.members] == ["matmul", "add", "maximum"]


def test_fusion_refuses_cycles():
    # y = exp(a); z = y.sum() (a reduction outside the group); w = y + z needs z first
    x = np.ones((4, 4))
    prog = optimize(trace(lambda a: np.exp(a) * np.exp(a).sum(axis=0), (x,)), verify_each=True)
    order = units(prog)
    seen: set[int] = set(i for i, n in enumerate(prog.nodes) if n.op in ("input", "const"))
    for u in order:
        assert all(a in seen or a in u.members for m in u.members for a in prog.nodes[m].args)
        seen |= set(u.members)
    np.testing.assert_allclose(run_program(prog, (x,))[0], np.exp(x) * np.exp(x).sum(axis=0))


def test_memory_plan_chain_is_one_output_and_reuses_buffers():
    n = 100_000
    prog = optimize(trace(chain, (np.ones(n),) * 5))
    plan = plan_memory(prog)
    assert plan["peak_bytes"] == n * 8 == plan["output_bytes"]
    assert plan["unfused_peak_bytes"] >= 2 * n * 8
    # a sequence of unfusable steps (reductions in between) reuses same-size buffers
    p2 = optimize(trace(lambda a: np.exp(a - a.max(axis=0)) / np.exp(a - a.max(axis=0)).sum(axis=0),
                        (np.ones((100, 100)),)))
    plan2 = plan_memory(p2)
    assert plan2["peak_bytes"] <= plan2["unfused_peak_bytes"]
    assert plan2["pool_bytes"] >= plan2["peak_bytes"]
