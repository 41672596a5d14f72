"""A hypothesis strategy for random array programs, shared by the differential tests.

A program is a list of steps over a growing list of values (the inputs first);
``build(steps, outputs)`` turns it into an ordinary Python function that runs on
NumPy arrays (the oracle) and on tracers (the JIT) alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import noodle as nd

UNARY = {
    "neg": lambda x: -x, "abs": abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin,
    "cos": np.cos, "tanh": np.tanh,
}
BINARY = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y, "max": np.maximum, "min": np.minimum, "pow": lambda x, y: abs(x) ** y,
}
COMPARE = {"lt": lambda x, y: x < y, "ge": lambda x, y: x >= y, "eq": lambda x, y: x == y}
SHAPES = [(4, 5), (5,), (4, 1)]
LARGE_SHAPES = [(400, 300), (300,), (400, 1)]  # above the backends' parallel threshold
# basic slices of one axis (each keeps a length >= 1 of an axis of length >= 2): stencils, steps, reversal
SLICES = {"tail": slice(1, None), "head": slice(None, -1), "even": slice(None, None, 2),
          "rev": slice(None, None, -1), "mid": slice(1, -1)}
# dtype-preserving loop bodies (a carry keeps its dtype): c -> c op const
LOOP_OPS = ("add", "mul", "max", "min", "sub")


@dataclass(frozen=True)
class Case:
    dtype: str
    input_shapes: tuple[tuple[int, ...], ...]
    steps: tuple[tuple, ...]
    outputs: tuple[int, ...]

    def fn(self):
        steps, outputs = self.steps, self.outputs

        def program(*xs):
            vals = list(xs)
            for step in steps:
                kind = step[0]
                if kind == "un":
                    vals.append(UNARY[step[1]](vals[step[2]]))
                elif kind == "bin":
                    vals.append(BINARY[step[1]](vals[step[2]], vals[step[3]]))
                elif kind == "cbin":
                    vals.append(BINARY[step[1]](vals[step[2]], step[3]))
                elif kind == "where":
                    vals.append(np.where(COMPARE[step[1]](vals[step[2]], vals[step[3]]), vals[step[4]],
                                         vals[step[5]]))
                elif kind == "red":
                    vals.append(getattr(vals[step[2]], step[1])(axis=step[3], keepdims=step[4]))
                elif kind == "mm":
                    vals.append(vals[step[1]] @ vals[step[2]].T)
                elif kind == "T":
                    vals.append(vals[step[1]].T)
                elif kind == "cast":
                    vals.append(vals[step[1]].astype(step[2]))
                elif kind == "slice":   # x[:, sl] on axis 1, x[sl] on axis 0
                    sl = SLICES[step[2]]
                    vals.append(vals[step[1]][(slice(None),) * step[3] + (sl,)])
                elif kind == "sdiff":   # the stencil x[1:] - x[:-1]
                    x = vals[step[1]]
                    vals.append(x[1:] - x[:-1])
                elif kind == "take":    # an integer-array gather along axis 0
                    vals.append(vals[step[1]][np.array(step[2], dtype=np.int64)])
                elif kind == "cat":
                    vals.append(nd.concatenate([vals[step[1]], vals[step[2]]], axis=0))
                elif kind == "fori":
                    op, c = BINARY[step[2]], step[4]
                    vals.append(nd.fori_loop(0, step[3], lambda k, x, op=op, c=c: op(x, c), vals[step[1]]))
                elif kind == "while":   # counted in the carry: (x, i) while i < trips
                    op, c, trips = BINARY[step[2]], step[4], step[3]
                    vals.append(nd.while_loop(lambda t, trips=trips: t[1] < trips,
                                              lambda t, op=op, c=c: (op(t[0], c), t[1] + 1),
                                              (vals[step[1]], np.int64(0)))[0])
            out = tuple(vals[k] for k in outputs)
            return out[0] if len(out) == 1 else out

        return program

    def float_dtypes(self) -> set[str]:
        """Float dtypes the program computes in: its inputs' and every cast's."""
        found = {self.dtype} | {step[2] for step in self.steps if step[0] == "cast"}
        return {d for d in found if d.startswith("float")}

    def inputs(self, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        out = []
        for shape in self.input_shapes:
            if self.dtype == "int64":
                out.append(rng.integers(-5, 6, size=shape).astype(np.int64))
            else:
                out.append(rng.uniform(-2.0, 2.0, size=shape).astype(self.dtype))
        return out


def _broadcast(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


@st.composite
def cases(draw, max_steps: int = 6, allow_matmul: bool = True, dtypes=("float32", "float64", "int64"),
          shapes=tuple(SHAPES), indexing: bool = False):
    """``indexing``: also slices, stencils, constant gathers, concatenation and loops."""
    dtype = draw(st.sampled_from(dtypes))
    n_in = draw(st.integers(1, 3))
    shapes = [draw(st.sampled_from(shapes)) for _ in range(n_in)]
    vshapes = list(shapes)
    vtypes = ["f" if dtype != "int64" else "i"] * n_in
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        i = draw(st.integers(0, len(vshapes) - 1))
        si = vshapes[i]
        kinds = ["un", "bin", "bin", "cbin", "where", "red", "mm", "T", "cast"]
        if indexing:
            kinds += ["slice", "slice", "sdiff", "take", "cat", "fori", "while"]
        kind = draw(st.sampled_from(kinds))
        if kind == "un":
            steps.append(("un", draw(st.sampled_from(sorted(UNARY))), i))
            vshapes.append(si)
            vtypes.append("f" if steps[-1][1] not in ("neg", "abs") else vtypes[i])
        elif kind in ("bin", "cbin"):
            name = draw(st.sampled_from(sorted(BINARY)))
            if name == "pow" and vtypes[i] == "i":
                name = "mul"
            if kind == "cbin":
                c = draw(st.sampled_from([0.5, 2.0, -1.5, 3, 1, 0])) if vtypes[i] == "f" else draw(
                    st.sampled_from([2, -3, 1, 0]))
                steps.append(("cbin", name, i, c))
                vshapes.append(si)
            else:
                partners = [j for j, s in enumerate(vshapes) if _broadcast(si, s) is not None
                            and not (name == "pow" and vtypes[j] == "i")]
                j = draw(st.sampled_from(partners))
                steps.append(("bin", name, i, j))
                vshapes.append(_broadcast(si, vshapes[j]))
            vtypes.append("f" if name == "div" or vtypes[i] == "f" else vtypes[i])
        elif kind == "where":
            same = [j for j, s in enumerate(vshapes) if s == si]
            j, k = draw(st.sampled_from(same)), draw(st.sampled_from(same))
            steps.append(("where", draw(st.sampled_from(sorted(COMPARE))), i, j, i, k))
            vshapes.append(si)
            vtypes.append("f" if "f" in (vtypes[i], vtypes[k]) else "i")
        elif kind == "red" and si:
            op = draw(st.sampled_from(["sum", "mean", "max", "min"]))
            axis = draw(st.sampled_from([None, 0, len(si) - 1]))
            keep = draw(st.booleans())
            steps.append(("red", op, i, axis, keep))
            if axis is None:
                vshapes.append(tuple(1 for _ in si) if keep else ())
            else:
                vshapes.append(tuple(1 if d == axis else n for d, n in enumerate(si)) if keep
                               else tuple(n for d, n in enumerate(si) if d != axis))
            vtypes.append("f" if op == "mean" else vtypes[i])
        elif kind == "mm" and allow_matmul and len(si) == 2 and si[0] > 1:
            partners = [j for j, s in enumerate(vshapes) if len(s) == 2 and s[1] == si[1]]
            j = draw(st.sampled_from(partners))
            steps.append(("mm", i, j))
            vshapes.append((si[0], vshapes[j][0]))
            vtypes.append("f" if "f" in (vtypes[i], vtypes[j]) else "i")
        elif kind == "T" and len(si) == 2:
            steps.append(("T", i))
            vshapes.append((si[1], si[0]))
            vtypes.append(vtypes[i])
        elif kind == "cast":
            target = draw(st.sampled_from(["float32", "float64"] if vtypes[i] == "f" else ["float64", "int64"]))
            steps.append(("cast", i, target))
            vshapes.append(si)
            vtypes.append("f" if target.startswith("float") else "i")
        elif kind == "slice" and si:
            axis = draw(st.integers(0, len(si) - 1))
            if si[axis] >= 3:
                name = draw(st.sampled_from(sorted(SLICES)))
                steps.append(("slice", i, name, axis))
                vshapes.append(tuple(len(range(n)[SLICES[name]]) if d == axis else n for d, n in enumerate(si)))
                vtypes.append(vtypes[i])
        elif kind == "sdiff" and si and si[0] >= 2:
            steps.append(("sdiff", i))
            vshapes.append((si[0] - 1, *si[1:]))
            vtypes.append(vtypes[i])
        elif kind == "take" and si:
            n = si[0]
            idx = tuple(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))
            steps.append(("take", i, idx))
            vshapes.append((len(idx), *si[1:]))
            vtypes.append(vtypes[i])
        elif kind == "cat" and si:
            partners = [j for j, s in enumerate(vshapes) if len(s) == len(si) and s[1:] == si[1:]]
            j = draw(st.sampled_from(partners))
            steps.append(("cat", i, j))
            vshapes.append((si[0] + vshapes[j][0], *si[1:]))
            vtypes.append("f" if "f" in (vtypes[i], vtypes[j]) else "i")
        elif kind in ("fori", "while"):
            c = draw(st.sampled_from([0.5, 1.5, -0.25]) if vtypes[i] == "f" else st.sampled_from([2, -1, 3]))
            steps.append((kind, i, draw(st.sampled_from(LOOP_OPS)), draw(st.integers(0, 4)), c))
            vshapes.append(si)
            vtypes.append(vtypes[i])
    if not steps:
        steps.append(("un", "neg", 0))
        vshapes.append(vshapes[0])
    last = len(vshapes) - 1
    outputs = (last, last - 1) if last - 1 >= n_in and draw(st.booleans()) else (last,)
    return Case(dtype, tuple(shapes), tuple(steps), outputs)


def tolerance(dtype: np.dtype) -> dict:
    """Per-dtype tolerances (see test_differential's docstring)."""
    if dtype.kind in "biu":
        return {"rtol": 0, "atol": 0}
    if dtype == np.float32:
        return {"rtol": 2e-4, "atol": 1e-5}
    return {"rtol": 1e-9, "atol": 1e-12}
