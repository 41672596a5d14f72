"""Lower a fused NIR program to backend kernels and a runner that calls them.

Each unit (see :mod:`noodle.passes.schedule`) becomes one step: an elementwise
or map-reduce region -> :class:`KernelSpec`; a row-wise region (softmax, layernorm)
-> :class:`RowSpec` for a backend with ``compile_rowwise``, else its parts as the
other kinds (:func:`row_parts`); a matmul region -> :class:`MatmulSpec`
(the product's epilogue as a KernelSpec whose input 0 is the product); a lone
node (reshape, a reduction of an input, ...) runs through the interpreter's
``eval_node``. 0-d constants are inlined into the spec; larger constants are
passed as kernel inputs.

Which backend compiles each region is the caller's: one for all (``backend=``),
or a chooser that placement (:mod:`noodle.jit.placing`) fills per region.

Example::

    runner = build_runner(program, get_backend("numba"))
    outputs = runner((a, b))
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from noodle.backends.base import Kernel
from noodle.backends.spec import Instr, KernelSpec, MatmulSpec, Reduce, RowSpec
from noodle.errors import CompileError, DTypeError
from noodle.exec.interpreter import array_module
from noodle.ir.graph import Program
from noodle.ir.ops import OPS, OpKind
from noodle.ir.semantics import LOOP_GUARD, eval_node
from noodle.jit.eager_layout import with_eager_layout
from noodle.passes.layout import product_operands
from noodle.passes.rowwise import is_rowwise
from noodle.passes.schedule import Unit, units

log = logging.getLogger("noodle.jit")


def kernel_spec(program: Program, unit: Unit, first: int | None = None) -> tuple[KernelSpec, list[int], list[int]]:
    """The KernelSpec of an elementwise/map-reduce unit, its input values and output values.

    ``first``: a value that must be kernel input 0 (a matmul epilogue's product).
    """
    nodes = program.nodes
    members = [m for m in unit.members if OPS[nodes[m].op].kind not in (OpKind.REDUCE, OpKind.MATMUL)]
    red = [m for m in unit.members if OPS[nodes[m].op].kind is OpKind.REDUCE]
    index: dict[int, int] = {}
    inputs: list[int] = []
    consts: list[tuple[str, Any]] = []
    const_vals: list[int] = []
    if first is not None:
        inputs.append(first)
    for v in unit.inputs:
        if v == first:
            continue
        node = nodes[v]
        if node.op == "const" and node.shape == ():
            const_vals.append(v)
        else:
            inputs.append(v)
    for k, v in enumerate(inputs):
        index[v] = k
    for v in const_vals:
        index[v] = len(inputs) + len(consts)
        c = program.consts[nodes[v].attr("index")]
        consts.append((c.dtype.name, c.item()))
    body: list[Instr] = []
    base = len(inputs) + len(consts)
    for m in members:
        node = nodes[m]
        attrs = (("dtype", node.attr("dtype")),) if node.op == "astype" else ()
        body.append(Instr(node.op, tuple(index[a] for a in node.args), node.dtype, attrs))
        index[m] = base + len(body) - 1
    mset = set(members)
    outs = [v for v in unit.outputs if v in mset]
    reduce = None
    if red:
        r = nodes[red[0]]
        src = nodes[r.args[0]]
        axis = r.attr("axis")
        axes = None if axis is None else tuple(sorted(a % len(src.shape) for a in axis))
        reduce = Reduce(r.op, index[r.args[0]], axes, bool(r.attr("keepdims", False)), r.dtype, r.shape)
    shape = nodes[members[-1]].shape if members else nodes[inputs[0]].shape
    spec = KernelSpec(
        inputs=tuple((nodes[v].dtype, nodes[v].shape) for v in inputs),
        consts=tuple(consts), body=tuple(body), outputs=tuple(index[v] for v in outs), shape=shape,
        reduce=reduce,
    )
    out_values = outs + ([red[0]] if red else [])
    return spec, inputs, out_values


def matmul_spec(program: Program, unit: Unit) -> tuple[MatmulSpec, list[int], list[int]]:
    """The MatmulSpec of a matmul(+epilogue) unit, its input values and its one output."""
    nodes = program.nodes
    mm = unit.members[0]
    a, b = nodes[mm].args
    epilogue = None
    extra: list[int] = []
    tail = unit.members[-1]
    if len(unit.members) > 1:
        used = {x for m in unit.members[1:] for x in nodes[m].args}
        sub = Unit(unit.group, unit.members[1:], (mm, *[v for v in unit.inputs if v in used]), (tail,))
        epilogue, ins, _ = kernel_spec(program, sub, first=mm)
        extra = ins[1:]
    spec = MatmulSpec(a=(nodes[a].dtype, nodes[a].shape), b=(nodes[b].dtype, nodes[b].shape),
                      out_dtype=nodes[mm].dtype, out_shape=nodes[mm].shape, epilogue=epilogue)
    return spec, [a, b, *extra], [tail]


Step = tuple[Callable[..., tuple[Any, ...]], tuple[int, ...], tuple[int, ...]]
#: region index -> the backends to try for it, best first (Backend objects, or "interpret")
Chooser = Callable[[int], Sequence[Any]]
Runner = Callable[[Sequence[Any]], tuple[Any, ...]]


def is_region(program: Program, unit: Unit) -> bool:
    """Whether ``unit`` is a fused region a backend compiles (else a lone node the interpreter runs)."""
    nodes = program.nodes
    if unit.group is None:
        return False
    return OPS[nodes[unit.members[0]].op].kind is OpKind.MATMUL or \
        any(OPS[nodes[m].op].kind is not OpKind.REDUCE for m in unit.members)


def row_spec(program: Program, unit: Unit) -> tuple[RowSpec, list[int], list[int]]:
    """The RowSpec of a row-wise unit (:func:`noodle.passes.rowwise.is_rowwise`), its input values
    and output values (``unit.outputs``). A ``reshape`` member (a reduction without keepdims
    brought back to the rows) is its operand under another shape: no instruction."""
    nodes = program.nodes
    red = next(m for m in unit.members if OPS[nodes[m].op].kind is OpKind.REDUCE)
    src_shape = nodes[nodes[red].args[0]].shape
    rows, length = tuple(src_shape[:-1]), src_shape[-1]
    full = (*rows, length)
    index: dict[int, int] = {}
    inputs: list[int] = []
    const_vals: list[int] = []
    for v in unit.inputs:
        node = nodes[v]
        (const_vals if node.op == "const" and node.shape == () else inputs).append(v)
    for k, v in enumerate(inputs):
        index[v] = k
    consts: list[tuple[str, Any]] = []
    for v in const_vals:
        index[v] = len(inputs) + len(consts)
        c = program.consts[nodes[v].attr("index")]
        consts.append((c.dtype.name, c.item()))
    body: list[Instr] = []
    levels: list[str] = []
    base = len(inputs) + len(consts)
    for m in unit.members:
        node = nodes[m]
        if node.op == "reshape":
            index[m] = index[node.args[0]]
            continue
        attrs = (("dtype", node.attr("dtype")),) if node.op == "astype" else ()
        body.append(Instr(node.op, tuple(index[a] for a in node.args), node.dtype, attrs))
        is_full = OPS[node.op].kind is not OpKind.REDUCE and tuple(node.shape) == full
        levels.append("full" if is_full else "row")
        index[m] = base + len(body) - 1
    outs = list(unit.outputs)
    spec = RowSpec(inputs=tuple((nodes[v].dtype, nodes[v].shape) for v in inputs), consts=tuple(consts),
                   body=tuple(body), levels=tuple(levels),
                   outputs=tuple((index[v], tuple(nodes[v].shape)) for v in outs), rows=rows, length=length)
    return spec, inputs, outs


def row_parts(program: Program, unit: Unit) -> list[Unit]:
    """A row-wise unit as the units the other fusion rules make (for a backend without
    ``compile_rowwise``): runs of same-shape elementwise members, each reading the one before;
    reductions and reshapes alone. Parts follow the members' order, so each needs only earlier ones."""
    nodes = program.nodes
    parts: list[list[int]] = []
    open_part: list[int] | None = None
    for m in unit.members:
        node = nodes[m]
        ew = OPS[node.op].kind not in (OpKind.REDUCE, OpKind.SHAPE)
        if ew and open_part is not None and nodes[open_part[-1]].shape == node.shape \
                and any(a in open_part for a in node.args):
            open_part.append(m)
            continue
        open_part = [m] if ew else None
        parts.append(open_part if open_part is not None else [m])
    users = program.users()
    outputs = set(program.outputs)
    out: list[Unit] = []
    for k, members in enumerate(parts):
        mset = set(members)
        ins: list[int] = []
        for m in members:
            for a in nodes[m].args:
                if a not in mset and a not in ins:
                    ins.append(a)
        outs = tuple(m for m in members if m in outputs or any(u not in mset for u in users[m]))
        lone = len(members) == 1 and OPS[nodes[members[0]].op].kind in (OpKind.REDUCE, OpKind.SHAPE)
        out.append(Unit(None if lone else k, tuple(members),
                        tuple(ins), outs))
    return out


def _parts_step(program: Program, unit: Unit, backend: Any) -> Step:
    """A row-wise unit run as its parts on ``backend`` (one step over the unit's inputs and outputs)."""
    nodes = program.nodes
    steps: list[Step] = []
    for part in row_parts(program, unit):
        if part.group is None:
            (m,) = part.members
            steps.append((_interp_step(nodes[m]), nodes[m].args, (m,)))
        else:
            kspec, ins, outs = kernel_spec(program, part)
            steps.append((backend.compile_kernel(kspec), tuple(ins), tuple(outs)))

    def step(*vals: Any) -> tuple[Any, ...]:
        env = dict(zip(unit.inputs, vals, strict=True))
        for fn, ins, outs in steps:
            for v, r in zip(outs, fn(*[env[a] for a in ins]), strict=True):
                env[v] = r
        return tuple(env[o] for o in unit.outputs)

    return step, unit.inputs, unit.outputs


def _compile_unit(program: Program, unit: Unit, backend: Any) -> Step:
    nodes = program.nodes
    if backend == "interpret":
        return _interp_unit(program, unit), unit.inputs, unit.outputs
    if is_rowwise(program, unit.members):
        if hasattr(backend, "compile_rowwise"):
            rspec, ins, outs = row_spec(program, unit)
            return backend.compile_rowwise(rspec), tuple(ins), tuple(outs)
        return _parts_step(program, unit, backend)
    if OPS[nodes[unit.members[0]].op].kind is OpKind.MATMUL:
        spec, ins, outs = matmul_spec(program, unit)
        product = backend.compile_matmul(spec)
        return _entry(product), tuple(ins), tuple(outs)
    kspec, ins, outs = kernel_spec(program, unit)
    return _entry(backend.compile_kernel(kspec)), tuple(ins), tuple(outs)


def _entry(kernel: Any) -> Callable[..., tuple[Any, ...]]:
    """A kernel's lean entry (:meth:`noodle.backends.base.Kernel.entry`); a compiled object
    that is not a :class:`Kernel` is called as it is."""
    return kernel.entry() if isinstance(kernel, Kernel) else kernel


def build_runner(program: Program, backend: Any, quiet: bool = False) -> Runner:
    """Compile every fused region; return ``runner(args) -> outputs``.

    ``backend``: one Backend for every region (an explicit ``backend=``), or a
    :data:`Chooser` giving per region the backends to try, best first: a region whose
    choice fails to compile takes the next (the interpreter never fails). The runner's
    ``region_backends`` attribute names what each region got. ``quiet``: the caller already runs
    under ``np.errstate(all="ignore")`` (a loop's sub-programs), so lone nodes skip their own.
    """
    chooser: Chooser = backend if callable(backend) and not hasattr(backend, "compile_kernel") \
        else (lambda k: (backend,))
    nodes = program.nodes
    steps: list[Step] = []
    used: list[str] = []
    notes: list[str] = []
    read = product_operands(program)   # the values whose layout a product reads (jit.eager_layout)
    for unit in units(program):
        if not is_region(program, unit):
            (m,) = unit.members
            if nodes[m].op == "while_loop":
                step = loop_step(nodes[m], backend)
                notes.append(f"while_loop %{m}: {step.loop_note}")   # type: ignore[attr-defined]
                steps.append((step, nodes[m].args, (m,)))
                continue
            steps.append((_interp_step(nodes[m], quiet), nodes[m].args, (m,)))
            continue
        tries = list(chooser(len(used)))
        for i, b in enumerate(tries):
            try:
                fn, ins, outs = _compile_unit(program, unit, b)
                # an output a product reads keeps the layout NumPy gives it (jit.eager_layout)
                steps.append((with_eager_layout(program, unit.members, tuple(ins), fn, tuple(outs), read), ins, outs))
            except Exception as exc:  # noqa: BLE001 - the next choice (at worst the interpreter) runs it
                if i == len(tries) - 1:
                    raise
                log.warning("noodle.jit: region %d failed to compile on %s, trying %s (results are "
                            "unaffected): %s: %s", len(used), _name(b), _name(tries[i + 1]),
                            type(exc).__name__, exc)
                continue
            used.append(_name(b))
            break
    runner = _runner(program, steps)
    runner.region_backends = tuple(used)  # type: ignore[attr-defined]
    runner.loop_notes = tuple(notes)  # type: ignore[attr-defined]
    return runner


def _name(backend: Any) -> str:
    return backend if isinstance(backend, str) else str(getattr(backend, "name", type(backend).__name__))


def _runner(program: Program, steps: list[Step]) -> Runner:
    nodes = program.nodes
    n = len(nodes)
    template: list[Any] = [None] * n
    input_slots: list[tuple[int, int]] = []
    for i, node in enumerate(nodes):
        if node.op == "const":
            template[i] = program.consts[node.attr("index")]
        elif node.op == "input":
            input_slots.append((i, node.attr("index")))
    outputs = program.outputs
    # the common case, one kernel reading the arguments in order and producing the outputs
    if len(steps) == 1:
        fn, ins, outs = steps[0]
        arg_of = {slot: idx for slot, idx in input_slots}
        if all(v in arg_of for v in ins) and tuple(outs) == tuple(outputs):
            order = [arg_of[v] for v in ins]
            if order == list(range(len(order))) and len(order) == program.n_inputs:
                direct: Any = lambda args: fn(*args)  # noqa: E731
                # the kernel a native entry may call in its place (noodle.jit.fastpath)
                direct.single_kernel = getattr(fn, "kernel", None) or getattr(fn, "__self__", fn)
                return direct
            return lambda args: fn(*[args[k] for k in order])

    if len(steps) <= STRAIGHT_LINE_MAX:
        return _straight_line(program, steps, input_slots)

    def runner(args: Sequence[Any]) -> tuple[Any, ...]:
        values = list(template)
        for slot, idx in input_slots:
            values[slot] = args[idx]
        for fn, ins, outs in steps:
            result = fn(*[values[v] for v in ins])
            for v, r in zip(outs, result, strict=True):
                values[v] = r
        return tuple(values[o] for o in outputs)

    return runner


#: programs of at most this many steps get a generated runner (a longer one's source would take
#: longer to compile than its walk costs)
STRAIGHT_LINE_MAX = 256


def _straight_line(program: Program, steps: list[Step], input_slots: list[tuple[int, int]]) -> Runner:
    """The steps as one generated Python function, each value a local variable.

    Why generated: a loop body runs a dozen small steps per iteration (a CG step: a matvec, two
    dots, three updates, three scalar ops), and the generic walk (a list of values, a list per
    step's operands, a zip over its results) cost about 0.8 µs a step, more than NumPy's own
    call on 800 elements."""
    nodes = program.nodes
    env: dict[str, Any] = {}
    lines = ["def runner(args):"]
    lines += [f"    v{slot} = args[{idx}]" for slot, idx in input_slots]
    for i, node in enumerate(nodes):
        if node.op == "const":
            env[f"v{i}"] = program.consts[node.attr("index")]
    for k, (fn, ins, outs) in enumerate(steps):
        env[f"f{k}"] = fn
        call = f"f{k}({', '.join(f'v{v}' for v in ins)})"
        lines.append(f"    {', '.join(f'v{v}' for v in outs)}, = {call}")
    lines.append(f"    return ({''.join(f'v{o}, ' for o in program.outputs)})")
    exec(compile("\n".join(lines) + "\n", "<noodle runner>", "exec"), env)  # noqa: S102 - our own source
    runner: Runner = env["runner"]
    return runner


def _interp_unit(program: Program, unit: Unit) -> Callable[..., tuple[Any, ...]]:
    """A region run by the interpreter's own ``eval_node``, member by member (placement chose it:
    the interpreter is the spec, so this is exactly what the uncompiled program computes)."""
    nodes = program.nodes
    outs = unit.outputs
    # each temporary is dropped after its last use, as NumPy's own expression drops it: holding a
    # region's every value to the end made 1e5-element chains 5x slower (each new temporary came
    # from fresh, page-faulting memory instead of the block just freed)
    last: dict[int, int] = {}
    for m in unit.members:
        for a in nodes[m].args:
            last[a] = m
    keep = set(outs)
    members = []
    ufuncs = {m: _ufunc_of(nodes[m]) for m in unit.members}
    for m in unit.members:
        node, ufunc = nodes[m], ufuncs[m]
        dead = tuple(a for a in dict.fromkeys(node.args) if last[a] == m and a not in keep)
        # a ufunc writes into a dead operand of the result's shape and dtype that is another ufunc's
        # result in this region, so a fresh array of ours (NumPy elides temporaries in ``a * b + c``
        # the same way; a reshape or slice member may be a view of the caller's array)
        reuse = None if ufunc is None else next(
            (a for a in dead if ufuncs.get(a) is not None and nodes[a].shape == node.shape
             and nodes[a].dtype == node.dtype), None)
        members.append((m, node, dead, reuse, ufunc))

    def step(*vals: Any) -> tuple[Any, ...]:
        env = dict(zip(unit.inputs, vals, strict=True))
        xp = array_module(vals)
        with np.errstate(all="ignore"):
            for m, node, dead, reuse, ufunc in members:
                args = [env[a] for a in node.args]
                if reuse is not None and xp is np and type(env[reuse]) is np.ndarray:
                    env[m] = ufunc(*args, out=env[reuse])
                else:
                    env[m] = eval_node(node, args, xp)
                for a in dead:
                    del env[a]
        return tuple(env[o] for o in outs)

    return step


def _ufunc_of(node: Any) -> Any:
    """NumPy's ufunc for an elementwise node (None for ``where`` and the other non-ufunc ops)."""
    row = OPS[node.op]
    if row.kind not in (OpKind.UNARY, OpKind.BINARY):
        return None
    fn = getattr(np, row.numpy, None)
    return fn if isinstance(fn, np.ufunc) else None


def loop_step(node: Any, backend: Any) -> Callable[..., tuple[Any, ...]]:
    """A ``while_loop`` node as a Python loop around its cond's and body's own runners: each
    sub-program is optimized and compiled once here (its fused regions become kernels), then every
    iteration calls them with the carried values (the semantics of :func:`noodle.ir.semantics.run_loop`).

    Why lean: an iteration is a dozen steps on small values (CG: a matvec, two dots, scalars), so
    per-step Python costs as much as the work; the sub-runners' lone nodes call their ufunc directly
    under the one ``errstate`` the loop holds.

    ``backend``: as for :func:`build_runner`; a per-region chooser of the outer program says nothing
    about the sub-programs' regions, so they are placed on their own ("auto")."""
    from noodle.ir.semantics import run_loop  # noqa: PLC0415
    from noodle.passes import optimize  # noqa: PLC0415

    runners: dict[int, Runner] = {}
    optimized: dict[str, Program] = {}
    for name in ("cond", "body"):
        sub = node.attr(name).program
        opt = optimized[name] = optimize(sub.copy())
        if backend == "interpret" or hasattr(backend, "compile_kernel"):
            runners[id(sub)] = build_runner(opt, backend, quiet=True)
        else:
            from noodle.jit.placing import chooser, plan_program  # noqa: PLC0415 - placing imports this module

            runners[id(sub)] = build_runner(opt, chooser(plan_program(opt, f"loop {name}", "auto")), quiet=True)
    get = runners.__getitem__
    compiled, note = _compiled_loop(node, optimized["cond"], optimized["body"], backend)

    def run(sub: Program, args: tuple) -> tuple[Any, ...]:
        return get(id(sub))(args)

    def step(*vals: Any) -> tuple[Any, ...]:
        # the compiled loop has no per-iteration hook for an untrusted program's bounds
        if compiled is not None and LOOP_GUARD.get() is None:
            out = compiled(vals)
            if out is not None:
                return (out,)
        with np.errstate(all="ignore"):
            return (run_loop(node, vals, run),)

    step.loop_note = note  # type: ignore[attr-defined]
    return step


_PYTHON_LOOP = "a Python loop around its condition's and body's kernels"


def _compiled_loop(node: Any, cond: Program, body: Program, backend: Any) -> tuple[Callable[..., Any] | None, str]:
    """The whole loop as one Numba function (:mod:`noodle.backends.numba_while`) when the loop's
    backend is Numba (asked for, or placement's "auto" with Numba installed) and everything in it
    is translated; else None, and the Python loop around the sub-programs' runners runs it. With
    it, what ``explain`` says about the loop."""
    name = backend if isinstance(backend, str) else getattr(backend, "name", None)
    if hasattr(backend, "compile_kernel"):
        if name != "numba":
            return None, f"{_PYTHON_LOOP} (backend {name!r})"
    elif not callable(backend) or name == "interpret":
        return None, f"{_PYTHON_LOOP} (backend {name!r})"
    try:
        from noodle.backends.numba_while import compile_while  # noqa: PLC0415 - imports Numba

        return compile_while(node, cond, body), "compiled as one Numba function (no Python between iterations)"
    except ImportError as exc:
        return None, f"{_PYTHON_LOOP} (Numba is not importable: {exc})"
    except (CompileError, DTypeError) as exc:
        log.debug("noodle.jit: while_loop runs as a Python loop around its compiled body: %s", exc)
        return None, f"{_PYTHON_LOOP}, not one compiled function: {exc}"


def _interp_step(node: Any, quiet: bool = False, scalar: bool = True) -> Callable[..., tuple[Any, ...]]:
    """A lone node run as the interpreter runs it. An elementwise op on NumPy arrays (or NumPy
    scalars) calls its NumPy function directly (what :func:`eval_node` does, without looking the
    op up on every call)."""
    row = OPS[node.op]
    if node.op == "loop_result":
        # one item of the loop's final carry (eval_node's rule): no errstate, no op lookup, where
        # the general step cost ~2 µs a call, a tenth of a jitted CG solve's fixed cost
        item = node.attr("item")
        return lambda carry: (carry[item],)
    if node.attr("scalar", False):   # NumPy's scalar power (ir.semantics.scalar_power), not the ufunc
        def scalar_power(*vals: Any) -> tuple[Any, ...]:
            with np.errstate(all="ignore"):
                return (eval_node(node, vals, array_module(vals)),)
        return scalar_power
    if scalar and quiet and tuple(node.shape) == ():
        if node.op in SCALAR_OPERATORS:
            return _scalar_step(node)
        if node.op == "where":
            return _scalar_where(node)
    if row.kind in (OpKind.UNARY, OpKind.BINARY, OpKind.TERNARY) and callable(getattr(np, row.numpy, None)):
        ufunc = getattr(np, row.numpy)
        dtype = np.dtype(node.dtype)
        ndarray, generic = np.ndarray, np.generic

        def fast(*vals: Any) -> tuple[Any, ...]:
            for v in vals:
                # NumPy scalars too (what a dot or a 0-d op hands on): NumPy types them as the
                # 0-d arrays they stand for, and eval_node's walk cost 4 µs a 0-d op in a loop body
                if type(v) is not ndarray and not isinstance(v, generic):
                    return general(*vals)
            if quiet:
                out = ufunc(*vals)
            else:
                with np.errstate(all="ignore"):
                    out = ufunc(*vals)
            if type(out) is not ndarray:   # a 0-d result comes back as a NumPy scalar
                out = np.asarray(out)
            if out.dtype != dtype:
                out = out.astype(dtype)
            return (out,)
    else:
        fast = None  # type: ignore[assignment]

    def general(*vals: Any) -> tuple[Any, ...]:
        with np.errstate(all="ignore"):
            return (eval_node(node, vals, array_module(vals)),)
    return fast if fast is not None else general


#: 0-d binary ops NumPy's scalar arithmetic computes as the ufunc does (one IEEE operation, or a
#: comparison), given two scalars of one type; ``power`` (its own scalar code), ``maximum``
#: (NaN rules) and the rest are not here
SCALAR_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul, "divide": operator.truediv,
    "less": operator.lt, "less_equal": operator.le, "greater": operator.gt, "greater_equal": operator.ge,
    "equal": operator.eq, "not_equal": operator.ne,
}
_SCALAR_TYPES = (np.float64, np.float32, np.int64, np.int32)


def _scalar_step(node: Any) -> Callable[..., tuple[Any, ...]]:
    """A 0-d binary op inside a loop's body or condition, on NumPy scalars by NumPy's scalar
    arithmetic.

    Why: a CG iteration has five such ops (``rs / pAp``, ``k + 1``, ``rs_new / rs``, ``k < n``,
    ``rs >= tol``); the ufunc on 0-d values costs 1.5-1.7 µs each here (dispatch, a 0-d array
    result), the scalar operator 0.1. It applies when both operands are NumPy scalars (or 0-d
    arrays, read as scalars) of one type and the result has the node's dtype (true division of
    integers gives float64 like the ufunc; bools are not taken: ``True + True`` is not
    ``np.add``'s logical or). Anything else takes the ufunc path. Only for loops: their runner
    holds one ``errstate(all="ignore")`` around all iterations, as the scalar operators need (a
    division by zero would warn otherwise)."""
    fn = SCALAR_OPERATORS[node.op]
    out_type = np.dtype(node.dtype).type
    other = _interp_step(node, quiet=True, scalar=False)
    ndarray = np.ndarray
    accept = _SCALAR_TYPES

    def step(a: Any, b: Any) -> tuple[Any, ...]:
        if type(a) is ndarray and a.ndim == 0:
            a = a[()]
        if type(b) is ndarray and b.ndim == 0:
            b = b[()]
        ta = type(a)
        if ta is type(b) and ta in accept:
            out = fn(a, b)
            if type(out) is out_type:
                return (out,)
        return other(a, b)

    return step


def _scalar_where(node: Any) -> Callable[..., tuple[Any, ...]]:
    """``where(c, x, y)`` on 0-d values in a loop (what ``a & b`` of two comparisons traces to):
    one of the two NumPy scalars, when both already have the node's dtype; else ``np.where``."""
    out_type = np.dtype(node.dtype).type
    other = _interp_step(node, quiet=True, scalar=False)
    ndarray, bool_ = np.ndarray, np.bool_

    def step(c: Any, x: Any, y: Any) -> tuple[Any, ...]:
        if type(c) is ndarray and c.ndim == 0:
            c = c[()]
        if type(x) is ndarray and x.ndim == 0:
            x = x[()]
        if type(y) is ndarray and y.ndim == 0:
            y = y[()]
        if type(c) is bool_ and type(x) is out_type and type(y) is out_type:
            return (x if c else y,)
        return other(c, x, y)

    return step


__all__ = ["SCALAR_OPERATORS", "Chooser", "build_runner", "is_region", "kernel_spec", "matmul_spec", "row_parts", "row_spec"]
