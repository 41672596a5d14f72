"""Products whose bits depend on their operands' memory layout give the plain function's bits.

NumPy's matmul picks its BLAS call from the operands' strides and from whether the two are one
buffer (C- or Fortran-ordered gemv/gemm, ``syrk`` for ``x @ x.T``, its own loop for a strided
vector); each sums in another order. A jitted function once dropped ``x.copy()`` and ``x * 1`` (a
view where NumPy has a fresh array), merged two equal temporaries into one buffer, and wrote
elementwise results in C order where NumPy keeps a transpose's Fortran order: the products then
differed from the plain function's in the last bits. The oracle is the plain function."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.jit.call_helpers import example_module

import noodle as nd

RNG = np.random.default_rng(0)
A = RNG.standard_normal((200, 200))
V = RNG.standard_normal(200)
V2 = RNG.standard_normal((200, 2))

CASES = {
    "copy of a transpose": (lambda a, v: a.T.copy() @ v, (A, V)),
    "np.copy keeps Fortran order": (lambda a, v: np.copy(a.T) @ v, (A, V)),
    "copy of a strided vector": (lambda a, v: a @ v.copy(), (A, V2[:, 0])),
    "times one of a strided view": (lambda a, v: (a[:, ::2] * 1.0) @ v[:100], (A, V)),
    "times one of a transpose": (lambda a, v: (a.T * 1.0) @ v, (A, V)),
    "two equal temporaries": (lambda a, v: (a * 2.0) @ (a * 2.0).T, (A, V)),
    "two equal identities": (lambda a, v: (a * 1.0) @ (a * 1.0).T, (A, V)),
    "elementwise on a Fortran input": (lambda a, v: (a * 2.0 + 1.0) @ v, (np.asfortranarray(A), V)),
    "elementwise on a transpose": (lambda a, v: (a.T * 2.0 - a.T) @ v, (A, V)),
    "where on transposes": (lambda a, v: np.where(a.T > 0, a.T, -a.T) @ v, (A, V)),
    "astype keeps Fortran order": (lambda a, v: a.T.astype(np.float32) @ v.astype(np.float32), (A, V)),
    "vector times a transposed product": (lambda a, v: v @ (a.T * 3.0), (A, V)),
    "a product of a constant's transpose": (lambda a, v: (np.arange(40000.0).reshape(200, 200) / 7).T @ v, (A, V)),
    "same buffer product stays syrk": (lambda a, v: a @ a.T, (A, V)),
    "column gather": (lambda a, v: a[:, np.arange(199, -1, -1)] @ v, (A, V)),
    "column gather of a transpose, scaled": (lambda a, v: (a.T * 2.0)[:, np.arange(200) % 7] @ v, (A, V)),
    "concatenate of transposed temporaries": (lambda a, v: np.concatenate([a.T * 2.0, a.T + 1.0]) @ v[:200], (A, V)),
    "stack of transposed temporaries": (lambda a, v: nd.stack([a.T * 2.0, a.T - 1.0], axis=1)[:, 0] @ v, (A, V)),
    "a float32 transpose times float64": (lambda a, v: a.T.astype(np.float32) @ v, (A, V)),
    "a bool transpose times float64": (lambda a, v: (a.T > 0) @ v, (A, V)),
    "an int64 transpose times float64": (lambda a, v: (a * 100).astype(np.int64).T @ v, (A, V)),
    "a loop result whose body has no product": (lambda a, v: nd.fori_loop(0, 1, lambda i, c: c.T * 0.5, a) @ v,
                                                 (A, V)),
    "a reversed Fortran carry": (lambda a, v: nd.fori_loop(0, 3, lambda i, c: c[::-1] * 0.5, a) @ v,
                                 (np.asfortranarray(A), V)),
    "strided vector dot": (lambda a, v: v @ (v * 1.0), (A, V2[:, 1])),
}


@pytest.mark.parametrize("backend", ["interpret", None])
@pytest.mark.parametrize("name", sorted(CASES))
def test_products_give_the_plain_functions_bits(name: str, backend: str | None) -> None:
    fn, args = CASES[name]
    want = fn(*args)
    f = nd.jit(fn, backend=backend)
    f.compile(*args)
    for _ in range(2):
        got = f(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), f"{name}: differs by {np.abs(got - want).max()}"


def _add_in_place(a, b, v):
    t = a.T * 2.0
    t += b
    return t @ v


def _divide_in_place(a, b, v):
    t = a.T.astype(np.float64)
    t /= b.T + b
    return t @ v


@pytest.mark.parametrize("fn", [_add_in_place, _divide_in_place])
@pytest.mark.parametrize("backend", ["interpret", None])
def test_an_in_place_update_keeps_its_buffers_layout(fn, backend) -> None:
    """``t += b`` writes into t's (Fortran-ordered) buffer in NumPy, so a product of t reads it so."""
    b = RNG.standard_normal((200, 200))
    want = fn(A, b, V)
    f = nd.jit(fn, backend=backend)
    f.compile(A, b, V)
    assert f(A, b, V).tobytes() == want.tobytes()


def test_the_cg_example_with_a_strided_right_hand_side() -> None:
    mod = example_module("dense_layers")
    m = RNG.standard_normal((200, 200))
    a = m @ m.T + 200 * np.eye(200)
    for b in (V2[:, 0], np.asfortranarray(V2)[:, 1]):
        x, k = mod.conjugate_gradient(a, b)
        xj, kj = nd.jit(mod.conjugate_gradient)(a, b)
        assert int(kj) == int(k) and xj.tobytes() == x.tobytes()


_OPERANDS = [
    lambda x: x,
    lambda x: x.T,
    lambda x: x.copy(),
    lambda x: x.T.copy(),
    lambda x: np.copy(x.T),
    lambda x: x * 1.0,
    lambda x: x.T * 2.0 + 1.0,
    lambda x: np.where(x > 0, x, -x).T,
    lambda x: (x.T - x.T * 0.5) * 1.0,
    lambda x: x[:, ::-1] * 1.0,
    lambda x: x.astype(np.float32).astype(np.float64).T,
    lambda x: (x * 3.0).T.copy() * 1.0,
]
_LAYOUTS = {
    "C": lambda a: a,
    "F": np.asfortranarray,
    "strided": lambda a: np.repeat(a, 2, axis=1)[:, ::2],
}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, len(_OPERANDS) - 1), st.integers(0, len(_OPERANDS) - 1), st.sampled_from(sorted(_LAYOUTS)),
       st.sampled_from(sorted(_LAYOUTS)), st.sampled_from(["interpret", None]), st.booleans())
def test_random_operand_layouts_give_the_plain_functions_bits(i, j, la, lb, backend, vector) -> None:
    a = _LAYOUTS[la](RNG.standard_normal((64, 64)))
    b = _LAYOUTS[lb](RNG.standard_normal((64, 64)))

    def fn(a, b):
        left = _OPERANDS[i](a)
        right = _OPERANDS[j](b)
        return left @ (right[:, 3] * 1.0) if vector else left @ right

    want = fn(a, b)
    f = nd.jit(fn, backend=backend)
    f.compile(a, b)
    got = f(a, b)
    assert got.tobytes() == want.tobytes(), f"differs by {np.abs(got - want).max()}"


def test_layouts_cross_a_loop_boundary_and_the_carry() -> None:
    """A Fortran-ordered copy made before a loop and read by a product inside it, and a transposed
    carry: each product reads what the plain loop's reads."""
    a = RNG.standard_normal((60, 60))
    v = RNG.standard_normal(60)

    def hoisted(a, v):
        body = lambda c: ((a.astype(np.float64, order="F") * 1.5) @ c[0] * 0.01, c[1] + 1)  # noqa: E731
        return nd.while_loop(lambda c: c[1] < 3, body, (v, np.int64(0)))

    def carried(a, v):
        return nd.while_loop(lambda c: c[1] < 3, lambda c: (c[0].T * 1.0, c[1] + 1, c[0] @ v), (a, np.int64(0), v))

    for fn in (hoisted, carried):
        want = fn(a, v)
        for backend in ("interpret", None):
            f = nd.jit(fn, backend=backend)
            f.compile(a, v)
            got = f(a, v)
            for g, w in zip(got, want, strict=True):
                assert np.asarray(g).tobytes() == np.asarray(w).tobytes(), (fn.__name__, backend)
