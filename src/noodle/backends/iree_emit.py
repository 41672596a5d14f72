"""KernelSpec / MatmulSpec -> MLIR text in upstream dialects (``linalg``, ``tensor``, ``arith``, ``math``).

Why text and pure: the IREE compiler takes MLIR text, and text is what a test (and CI) can
hand to the compiler and what a person reads when a result is wrong. Nothing here imports
IREE; :mod:`noodle.backends.iree_compile` compiles what this writes.

The module has one function ``@main``. Its arguments are the kernel's inputs with their
size-1 dimensions dropped (the caller reshapes, a free view; broadcasting is then a
projected-permutation indexing map); its results are the outputs at the full iteration
shape, then the reduction's result over the kept dimensions (the caller reshapes to the
spec's reduced shape). Bools travel as ``i8``.

Example::

    text = kernel_module(spec).text      # "func.func @main(%arg0: tensor<1000xf32>, ..."
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noodle.backends.iree_ops import OP_TABLE, Body, ReduceRule, cast, elementwise, storage_type
from noodle.backends.spec import KernelSpec, MatmulSpec
from noodle.errors import CompileError, ShapeError


def tensor_type(shape: tuple[int, ...], dtype: str) -> str:
    """``tensor<4x5xf32>`` (``tensor<f32>`` for a 0-d value)."""
    dims = "".join(f"{d}x" for d in shape)
    return f"tensor<{dims}{storage_type(dtype)}>"


def squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An input's shape as ``@main`` takes it: size-1 dimensions dropped."""
    return tuple(d for d in shape if d != 1)


def _map(n: int, dims: list[int]) -> str:
    ds = ", ".join(f"d{i}" for i in range(n))
    return f"affine_map<({ds}) -> ({', '.join(f'd{i}' for i in dims)})>"


def _input_dims(in_shape: tuple[int, ...], ndim: int) -> list[int]:
    """The iteration dims an input (right-aligned, size-1 dims dropped) is indexed by."""
    off = ndim - len(in_shape)
    if off < 0:
        raise ShapeError(f"kernel input of shape {in_shape} has more dimensions than the iteration space")
    return [off + j for j, d in enumerate(in_shape) if d != 1]


@dataclass(frozen=True)
class Emitted:
    """A module's text and what the caller needs to call it."""

    text: str
    in_shapes: tuple[tuple[int, ...], ...]     # @main's argument shapes (squeezed)
    reduce_in_mlir: bool                        # a result after the outputs is the reduction over kept dims
    fences: tuple[int, ...] = ()                # trailing arguments: an all-ones int<bits> each
    guarded: bool = False                       # the last result: an i8 per element, 1 where flush-to-zero may have hit
    results: tuple[tuple[tuple[int, ...], str], ...] = ()   # (shape, NumPy dtype) of each result, in order
    outputs_as_args: bool = False               # @main also takes one caller-owned array per result
    offset_inputs: bool = False                 # inputs are flat, padded, each with an i64 element offset

    def fence_arrays(self) -> list[np.ndarray]:
        """The values of the trailing fence arguments (all bits set; see ``Body.fence``)."""
        return [np.array(-1, dtype=np.int32 if b == 32 else np.int64) for b in self.fences]


def _generic(lines: list[str], spec: KernelSpec, operands: list[str], extra_out: tuple[int, str] | None,
             fences: set[int], guard: bool = False) -> list[str]:
    """A ``linalg.generic`` computing ``spec``'s outputs (and the values to reduce); returns the
    SSA names of its results. ``extra_out``: (value, dtype) yielded as one more result;
    ``fences`` collects the widths of the ``%fence<bits>`` mask arguments the body reads;
    ``guard``: one more (last) result, an i8 per element, nonzero where flush-to-zero may have
    changed it (see ``iree_ops.Body.hazard``)."""
    shape = tuple(spec.shape)
    n = len(shape)
    n_in = len(spec.inputs)
    maps, in_types = [], []
    for (dt, s) in spec.inputs:
        maps.append(_map(n, _input_dims(tuple(s), n)))
        in_types.append(tensor_type(squeezed(tuple(s)), dt))
    outs: list[tuple[int, str]] = [(v, spec.dtype_of(v)) for v in spec.outputs]
    if extra_out is not None:
        outs.append(extra_out)
    identity = _map(n, list(range(n)))
    out_types = [tensor_type(shape, dt) for _, dt in outs]
    body = Body(guard=guard)
    values: list[tuple[str, str]] = []
    block_args = [f"%in{k}" for k in range(n_in)]
    for k, (dt, _) in enumerate(spec.inputs):
        values.append((body.arg(block_args[k], dt), dt))
        body.check_subnormal(block_args[k], dt)
    for dt, v in spec.consts:
        values.append((_guarded_const(body, v, dt), dt))
    for ins in spec.body:
        fn = elementwise(ins.op)
        values.append((fn(body, [values[a] for a in ins.args], ins.dtype, dict(ins.attrs)), ins.dtype))
    yields = []
    for v, dt in outs:
        name, vdt = values[v]
        yields.append(body.store(cast(body, name, vdt, dt), dt))
    guard = bool(body.hazards)     # no float op that can underflow: no flag (it would be a constant)
    if guard:
        yields.append(body.store(body.any_hazard(), "bool"))
        out_types.append(tensor_type(shape, "bool"))
    inits = []
    for k, ty in enumerate(out_types):
        name = f"%init{len(lines)}_{k}"
        lines.append(f"{name} = tensor.empty() : {ty}")
        inits.append(name)
    results = [f"%r{len(lines)}_{k}" for k in range(len(out_types))]
    used = sorted(body.fences)
    fences.update(used)
    operands = [*operands, *(f"%fence{b}" for b in used)]
    in_types = [*in_types, *(f"tensor<i{b}>" for b in used)]
    maps = [*maps, *([_map(n, [])] * len(used))]
    fence_args = [f"%fm{b}: i{b}" for b in used]
    out_dts = [dt for _, dt in outs] + (["bool"] if guard else [])
    block = ", ".join([f"{a}: {storage_type(dt)}" for a, (dt, _) in zip(block_args, spec.inputs, strict=True)]
                      + fence_args + [f"%out{k}: {storage_type(dt)}" for k, dt in enumerate(out_dts)])
    iters = ", ".join(['"parallel"'] * n)
    lhs = ", ".join(results)
    ins_txt = f"ins({', '.join(operands)} : {', '.join(in_types)}) " if operands else ""
    lines.append(f"{lhs} = linalg.generic {{indexing_maps = [{', '.join(maps + [identity] * len(out_types))}], "
                 f"iterator_types = [{iters}]}} {ins_txt}"
                 f"outs({', '.join(inits)} : {', '.join(out_types)}) {{")
    lines.append(f"^bb0({block}):")
    lines += [f"  {line}" for line in body.lines]
    ytypes = ", ".join(storage_type(dt) for dt in out_dts)
    lines.append(f"  linalg.yield {', '.join(yields)} : {ytypes}")
    lines.append(f"}} -> {', '.join(out_types)}" if len(out_types) == 1 else f"}} -> ({', '.join(out_types)})")
    return results


def _guarded_const(body: Body, value: object, dtype: str) -> str:
    """A spec constant; in a guarded body a float one goes through the opaque mask, so LLVM cannot
    fold a constant-only subexpression with IEEE gradual underflow (the runtime computes it, with
    the same flush-to-zero check as any other value)."""
    name = body.const(value, dtype)
    if not body.guard or np.dtype(dtype).kind != "f":
        return name
    v = np.asarray(value, dtype=dtype)
    if v != 0 and np.abs(v) < np.finfo(v.dtype).tiny:
        raise CompileError(f"the constant {float(v)!r} ({dtype}) is subnormal: IREE's CPU runtime reads "
                           "subnormals as zero in every dispatch; the region runs on another backend")
    return body.fence(name, dtype)


def _reduce(lines: list[str], values: str, spec: KernelSpec, acc: str) -> tuple[str, str]:
    """``linalg.reduce`` of the full-shape ``values`` (of dtype ``acc``); returns (name, type)."""
    red = spec.reduce
    assert red is not None
    shape = tuple(spec.shape)
    axes = tuple(range(len(shape))) if red.axes is None else tuple(red.axes)
    kept = tuple(d for i, d in enumerate(shape) if i not in axes)
    rule: ReduceRule = OP_TABLE[red.op]
    ty = tensor_type(kept, acc)
    st = storage_type(acc)
    body = Body("c")
    ident = body.const(rule.identity(acc), acc)
    lines += body.lines                     # the identity, at function level
    k = len(lines)
    lines.append(f"%rinit{k} = tensor.empty() : {ty}")
    lines.append(f"%rfill{k} = linalg.fill ins({ident} : {st}) outs(%rinit{k} : {ty}) -> {ty}")
    lines.append(f"%red{k} = linalg.reduce ins({values} : {tensor_type(shape, acc)}) outs(%rfill{k} : {ty}) "
                 f"dimensions = [{', '.join(str(a) for a in axes)}]")
    lines.append(f"  (%x{k}: {st}, %a{k}: {st}) {{")
    lines.append(f"    %s{k} = {rule.combiner(acc)} %x{k}, %a{k} : {st}")
    lines.append(f"    linalg.yield %s{k} : {st}")
    lines.append("  }")
    return f"%red{k}", ty


#: elements of padding an offset input has past its data: any element-aligned start lies within
#: that many elements of the 64-byte-aligned address IREE imports from
ALIGN_BYTES = 64


def input_padding(dtype: str) -> int:
    """The largest element offset an input of ``dtype`` can have from its 64-byte-aligned base."""
    return ALIGN_BYTES // np.dtype(dtype).itemsize - 1


def kernel_module(spec: KernelSpec, guard: bool = True, outputs_as_args: bool = False,
                  offset_inputs: bool = False) -> Emitted:
    """The MLIR module of a fused elementwise (+ reduction) region.

    ``guard``: its last result says, per element, whether flush-to-zero may have changed it;
    ``outputs_as_args``: each result is written into a trailing argument the caller allocates
    (``iree.abi.output``), so a returned array is the caller's own memory (see ``_function``);
    ``offset_inputs``: each input is a flat tensor ``input_padding(dtype)`` elements longer than
    its data, imported from the 64-byte-aligned address at or below the data, plus an i64 element
    offset where the data starts. Why: IREE imports host memory only at 64-byte alignment and
    NumPy's large arrays start 16 bytes past it; this reads them in place instead of copying."""
    if spec.version != 1:
        raise CompileError(f"KernelSpec version {spec.version} is newer than the IREE emitter (1)")
    if any(d == 0 for d in spec.shape):
        raise CompileError("a zero-size iteration space has nothing to compile")
    args = [f"%arg{k}" for k in range(len(spec.inputs))]
    in_shapes = tuple(squeezed(tuple(s)) for _, s in spec.inputs)
    lines: list[str] = []
    red = spec.reduce
    extra = None
    if red is not None:
        rule: ReduceRule = OP_TABLE[red.op]
        vdt = spec.dtype_of(red.value)
        if not rule.exact_in_mlir(vdt):
            raise CompileError(f"a {red.op} of {vdt} has one defined order that linalg.reduce does not "
                               "follow: compile values_spec(spec) and reduce its values instead")
        extra = (red.value, rule.acc_dtype(vdt))
    if not spec.outputs and extra is None:
        raise CompileError("a kernel with no outputs and no reduction computes nothing")
    guard = guard and _has_floats(spec)
    fences: set[int] = set()
    operands = _sliced_inputs(lines, spec, in_shapes) if offset_inputs else args
    results = _generic(lines, spec, operands, extra, fences, guard)
    n_results = len(spec.outputs) + (extra is not None)
    guard = len(results) > n_results
    flag = results.pop() if guard else None
    # IREE folds a result that is an input or computed from constants alone into a copy, which an
    # imported (caller-owned) output buffer refuses: such a kernel returns IREE's own, copied out
    outputs_as_args = outputs_as_args and not _has_trivial_result(spec)
    shape = tuple(spec.shape)
    outs = [(shape, spec.dtype_of(v)) for v in spec.outputs]
    if extra is not None:
        name, _ = _reduce(lines, results[-1], spec, extra[1])
        results = [*results[:-1], name]
        axes = range(len(shape)) if red.axes is None else red.axes
        outs.append((tuple(d for i, d in enumerate(shape) if i not in axes), extra[1]))
    if flag is not None:
        results.append(flag)
        outs.append((shape, "bool"))
    if offset_inputs:
        sig = ", ".join([f"{a}: {tensor_type((_size(s) + input_padding(dt),), dt)}"
                         for a, s, (dt, _) in zip(args, in_shapes, spec.inputs, strict=True)]
                        + [f"%off{k}: i64" for k in range(len(args))] + _fence_sig(fences))
    else:
        sig = ", ".join([f"{a}: {tensor_type(s, dt)}" for a, s, (dt, _) in zip(args, in_shapes, spec.inputs, strict=True)]
                        + _fence_sig(fences))
    text = _function(sig, lines, results, outs, outputs_as_args)
    return Emitted(text, in_shapes, extra is not None, tuple(sorted(fences)), guard, _names(outs), outputs_as_args,
                   offset_inputs)


def reads_input(spec: KernelSpec) -> list[bool]:
    """Per value of the spec (inputs, constants, body), whether it depends on any input."""
    reads = [True] * len(spec.inputs) + [False] * len(spec.consts)
    for ins in spec.body:
        reads.append(any(reads[a] for a in ins.args))
    return reads


def _has_trivial_result(spec: KernelSpec) -> bool:
    """Whether an output (or the reduced value) is an input, a constant, or reads no input."""
    reads = reads_input(spec)
    values = list(spec.outputs) + ([spec.reduce.value] if spec.reduce is not None else [])
    return any(v < len(spec.inputs) + len(spec.consts) or not reads[v] for v in values)


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _sliced_inputs(lines: list[str], spec: KernelSpec, in_shapes: tuple[tuple[int, ...], ...]) -> list[str]:
    """Each padded flat input ``%argK`` cut at ``%offK`` to its data and shaped as ``in_shapes[K]``."""
    names = []
    for k, ((dt, _), shape) in enumerate(zip(spec.inputs, in_shapes, strict=True)):
        n = _size(shape)
        flat = tensor_type((n,), dt)
        lines.append(f"%offi{k} = arith.index_cast %off{k} : i64 to index")
        lines.append(f"%flat{k} = tensor.extract_slice %arg{k}[%offi{k}] [{n}] [1] : "
                     f"{tensor_type((n + input_padding(dt),), dt)} to {flat}")
        if len(shape) == 1:
            names.append(f"%flat{k}")
            continue
        if not shape:
            lines.append(f"%shaped{k} = tensor.collapse_shape %flat{k} [] : {flat} into {tensor_type((), dt)}")
        else:
            dims = ", ".join(str(i) for i in range(len(shape)))
            lines.append(f"%shaped{k} = tensor.expand_shape %flat{k} [[{dims}]] output_shape "
                         f"[{', '.join(str(d) for d in shape)}] : {flat} into {tensor_type(shape, dt)}")
        names.append(f"%shaped{k}")
    return names


def _names(outs: list[tuple[tuple[int, ...], str]]) -> tuple[tuple[tuple[int, ...], str], ...]:
    return tuple((tuple(s), np.dtype(dt).name) for s, dt in outs)


def _has_floats(spec: KernelSpec) -> bool:
    """Whether any value of ``spec`` is a float (otherwise flush-to-zero cannot touch it)."""
    dts = [dt for dt, _ in spec.inputs] + [dt for dt, _ in spec.consts] + [ins.dtype for ins in spec.body]
    return any(np.dtype(dt).kind == "f" for dt in dts)


def _fence_sig(fences: set[int]) -> list[str]:
    return [f"%fence{b}: tensor<i{b}>" for b in sorted(fences)]


def _function(sig: str, lines: list[str], results: list[str], outs: list[tuple[tuple[int, ...], str]],
              outputs_as_args: bool = False) -> str:
    """``@main``; with ``outputs_as_args`` one more argument per result, marked ``iree.abi.output``:
    IREE writes the result into that (caller-owned) buffer. Why: a result IREE allocates comes
    back as a view of memory its allocator reuses for a later call's results (a returned array
    changed under its owner), and copying it out would cost one more pass over memory."""
    res_types = [tensor_type(s, dt) for s, dt in outs]
    if outputs_as_args:
        sig = ", ".join([*([sig] if sig else []),
                         *(f"%result{k}: {t} {{iree.abi.output = {k} : index}}" for k, t in enumerate(res_types))])
    rt = res_types[0] if len(res_types) == 1 else f"({', '.join(res_types)})"
    body = "\n".join(f"  {line}" for line in lines)
    return (f"func.func @main({sig}) -> {rt} {{\n{body}\n"
            f"  return {', '.join(results)} : {', '.join(res_types)}\n}}\n")


def matmul_shapes(spec: MatmulSpec) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The (a, b, product) shapes the module computes with: 1-D operands as 1xK / Kx1 (the caller
    reshapes), 2-D or equally batched 3-D; CompileError for other NumPy broadcasting forms."""
    a, b = tuple(spec.a[1]), tuple(spec.b[1])
    if len(a) == 1:
        a = (1, *a)
    if len(b) == 1:
        b = (*b, 1)
    if len(a) != len(b) or len(a) not in (2, 3) or (len(a) == 3 and a[0] != b[0]):
        raise CompileError(f"the IREE backend translates 2-D and equally batched 3-D matmuls; got "
                           f"{spec.a[1]} @ {spec.b[1]}")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul shapes {spec.a[1]} and {spec.b[1]} do not agree on the inner dimension")
    return a, b, (*a[:-1], b[-1])


def matmul_module(spec: MatmulSpec, guard: bool = True, outputs_as_args: bool = False) -> Emitted:
    """``a @ b`` (operands cast to the product dtype) and its epilogue, as one module; ``guard``:
    a float epilogue's last result flags flush-to-zero (the product itself is checked by the
    caller from its operands, see ``iree_mlir.IreeMatmulKernel``)."""
    dt = spec.out_dtype
    if np.dtype(dt).kind == "b":
        raise CompileError("a bool matmul (an OR of ANDs in NumPy) is not translated by the IREE backend")
    a_shape, b_shape, p_shape = matmul_shapes(spec)
    lines: list[str] = []
    names = []
    for k, ((odt, _), shp) in enumerate(((spec.a, a_shape), (spec.b, b_shape))):
        name = f"%arg{k}"
        if np.dtype(odt) != np.dtype(dt):     # the cast NumPy's matmul makes, as a generic
            body = Body()
            x = cast(body, body.arg("%i", odt), odt, dt)
            y = body.store(x, dt)
            n = len(shp)
            idm = _map(n, list(range(n)))
            iters = ", ".join(['"parallel"'] * n)
            lines.append(f"%ce{k} = tensor.empty() : {tensor_type(shp, dt)}")
            lines.append(f"%cast{k} = linalg.generic {{indexing_maps = [{idm}, {idm}], iterator_types = "
                         f"[{iters}]}} ins({name} : {tensor_type(shp, odt)}) "
                         f"outs(%ce{k} : {tensor_type(shp, dt)}) {{")
            lines.append(f"^bb0(%i: {storage_type(odt)}, %o: {storage_type(dt)}):")
            lines += [f"  {line}" for line in body.lines]
            lines.append(f"  linalg.yield {y} : {storage_type(dt)}")
            lines.append(f"}} -> {tensor_type(shp, dt)}")
            name = f"%cast{k}"
        names.append(name)
    pt = tensor_type(p_shape, dt)
    zero = Body("z")
    z = zero.const(0, dt)
    lines += zero.lines
    lines.append(f"%pe = tensor.empty() : {pt}")
    lines.append(f"%pz = linalg.fill ins({z} : {storage_type(dt)}) outs(%pe : {pt}) -> {pt}")
    named = OP_TABLE["matmul"].named_op if len(p_shape) == 2 else OP_TABLE["matmul"].batched
    lines.append(f"%prod = {named} ins({names[0]}, {names[1]} : {tensor_type(a_shape, dt)}, "
                 f"{tensor_type(b_shape, dt)}) outs(%pz : {pt}) -> {pt}")
    out_shape = tuple(spec.out_shape)
    prod = "%prod"
    if p_shape != out_shape:      # a 1-D operand: drop its unit dimension (a collapse of 1-dims)
        if squeezed(p_shape) != squeezed(out_shape) or len(out_shape) > len(p_shape):
            raise CompileError(f"matmul product shape {p_shape} does not fold to {out_shape}")
        lines.append(f"%prodc = tensor.collapse_shape %prod {_collapse(p_shape, out_shape)} : {pt} into "
                     f"{tensor_type(out_shape, dt)}")
        prod = "%prodc"
    extras = []
    fences: set[int] = set()
    results, outs = [prod], [(out_shape, dt)]
    if spec.epilogue is not None:
        ep = spec.epilogue
        if tuple(ep.inputs[0][1]) != out_shape or np.dtype(ep.inputs[0][0]) != np.dtype(dt):
            raise ShapeError("the epilogue's input 0 must be the product (out_dtype, out_shape)")
        if len(ep.outputs) != 1 or ep.reduce is not None or tuple(ep.shape) != out_shape:
            raise ShapeError("a matmul epilogue must write one output of the product's shape")
        extras = [f"%arg{k + 2}" for k in range(len(ep.inputs) - 1)]
        if squeezed(out_shape) != out_shape:
            raise CompileError("a matmul epilogue on a product with unit dimensions is not translated")
        guard = guard and _has_floats(ep)
        results = _generic(lines, ep, [prod, *extras], None, fences, guard)
        guard = len(results) > 1
        outs = [(out_shape, ep.dtype_of(ep.outputs[0]))]
        if guard:
            outs.append((out_shape, "bool"))
    else:
        guard = False
    in_shapes = [a_shape, b_shape]
    sig = [f"%arg0: {tensor_type(a_shape, spec.a[0])}", f"%arg1: {tensor_type(b_shape, spec.b[0])}"]
    if spec.epilogue is not None:
        for k, (edt, es) in enumerate(spec.epilogue.inputs[1:]):
            in_shapes.append(squeezed(tuple(es)))
            sig.append(f"%arg{k + 2}: {tensor_type(squeezed(tuple(es)), edt)}")
    sig += _fence_sig(fences)
    return Emitted(_function(", ".join(sig), lines, results, outs, outputs_as_args), tuple(in_shapes), False,
                   tuple(sorted(fences)), guard, _names(outs), outputs_as_args)


def _collapse(src: tuple[int, ...], dst: tuple[int, ...]) -> str:
    """The reassociation of ``src`` into ``dst`` (the same dims, some unit dims dropped)."""
    if not dst:
        return "[]"
    groups: list[list[int]] = [[] for _ in dst]
    j = 0
    for i, d in enumerate(src):
        if j < len(dst) and d == dst[j]:
            groups[j].append(i)
            j += 1
        elif d == 1:
            groups[max(j - 1, 0)].append(i)
        else:
            raise CompileError(f"cannot collapse {src} into {dst}")
    if j != len(dst):
        raise CompileError(f"cannot collapse {src} into {dst}")
    return "[" + ", ".join("[" + ", ".join(str(i) for i in g) + "]" for g in groups) + "]"


def shape_module(op: str, dtype: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 axes: tuple[int, ...] | None = None) -> str:
    """A module applying one shape op (reshape, transpose, broadcast_to) to one argument.

    The JIT runs a lone shape op through the interpreter (it is a view there); this is the
    op table's MLIR translation, used when a shape op sits inside a region compiled here."""
    it, ot = tensor_type(in_shape, dtype), tensor_type(out_shape, dtype)
    if op == "reshape":
        n = int(np.prod(in_shape))
        flat = tensor_type((n,), dtype)
        lines = [f"%f = tensor.collapse_shape %arg0 [[{', '.join(str(i) for i in range(len(in_shape)))}]] "
                 f": {it} into {flat}" if in_shape else f"%f = tensor.expand_shape %arg0 [] output_shape [1] "
                 f": {it} into {flat}"]
        if out_shape:
            lines.append(f"%r = tensor.expand_shape %f [[{', '.join(str(i) for i in range(len(out_shape)))}]] "
                         f"output_shape [{', '.join(str(d) for d in out_shape)}] : {flat} into {ot}")
        else:
            lines.append(f"%r = tensor.collapse_shape %f [] : {flat} into {ot}")
    elif op == "transpose":
        perm = tuple(reversed(range(len(in_shape)))) if axes is None else axes
        lines = [f"%e = tensor.empty() : {ot}",
                 f"%r = linalg.transpose ins(%arg0 : {it}) outs(%e : {ot}) permutation = [{', '.join(map(str, perm))}]"]
    elif op == "broadcast_to":
        if squeezed(in_shape) != in_shape:
            raise CompileError("broadcast_to from unit dimensions: squeeze the input first")
        off = len(out_shape) - len(in_shape)
        added = [d for d in range(len(out_shape)) if d < off]
        lines = [f"%e = tensor.empty() : {ot}",
                 f"%r = linalg.broadcast ins(%arg0 : {it}) outs(%e : {ot}) dimensions = [{', '.join(map(str, added))}]"]
    else:
        raise CompileError(f"{op!r} is not a shape op")
    return _function(f"%arg0: {it}", lines, ["%r"], [(out_shape, dtype)])


__all__ = ["Emitted", "kernel_module", "matmul_module", "matmul_shapes", "reads_input", "shape_module", "squeezed", "tensor_type"]
