"""Compile MLIR text to an IREE VM flatbuffer (``.vmfb``), cached on disk.

Why these flags (measured on this machine, see the issue):

* ``--iree-input-demote-f64-to-f32=false``: IREE otherwise turns every f64 into f32;
* ``--iree-llvmcpu-target-cpu=host``: this CPU's vector width and FMA. IREE marks every float
  op ``contract``, so LLVM would fuse ``a*b + c*d`` into an FMA (17% of results differ from
  NumPy's separately rounded ``*`` and ``+``); the emitter puts an opaque AND after each float
  multiply instead (see ``iree_ops.Body.fence``). Turning FMA off (``-fma``) also kept the
  products exact, but made IREE's own ``exp`` call a software ``fmaf``: 7x slower;
* ``--iree-llvmcpu-reassociate-fp-reductions=false``: a product's sums keep their order;
* ``--iree-llvmcpu-vector-pproc-strategy=peel``: whole vectors in the loop body and a separate
  tail, instead of masking every iteration (masked loads/stores throughout, and a byte output
  such as the subnormal flag stored one lane at a time): the guarded fused chain at 1e7 used
  half the CPU time (float32 74 -> 38 ms, float64 144 -> 93 ms, measured here);
* CUDA: ``--iree-cuda-target=sm_80`` (IREE 3.13 refuses ``sm_90``; the driver JIT-compiles
  sm_80 PTX on newer GPUs).

The cache file is ``<cache_dir>/iree/<digest>.vmfb`` where the digest covers the MLIR text,
the flags and the compiler version: a new compiler or flag never loads a stale module.
Loading a cached module is a file read (well under 50 ms); compiling is ~0.5 s.

Example::

    vmfb, from_disk = compile_cached(text, target="llvm-cpu")
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from noodle import metrics
from noodle.backends.cache_dir import writable_dir
from noodle.config import get_settings
from noodle.errors import CompileError

EMITTER_VERSION = 1      # bump when the emitted MLIR for a spec changes meaning
log = logging.getLogger("noodle.backends.iree")

_COMPILES = metrics.counter("noodle_iree_compiles_total", "MLIR modules built by the IREE compiler",
                            ["target", "source"])
_COMPILE_SECONDS = metrics.histogram("noodle_iree_compile_seconds", "time to compile one MLIR module", ["target"])

#: /proc/cpuinfo flag -> LLVM x86 feature (only SIMD and bit-manipulation sets that matter here)
_X86_FEATURES = {
    "pni": "sse3", "ssse3": "ssse3", "sse4_1": "sse4.1", "sse4_2": "sse4.2", "popcnt": "popcnt",
    "avx": "avx", "avx2": "avx2", "f16c": "f16c", "bmi1": "bmi", "bmi2": "bmi2",
    "avx512f": "avx512f", "avx512dq": "avx512dq", "avx512bw": "avx512bw", "avx512vl": "avx512vl",
    "avx512cd": "avx512cd",
}

#: what :func:`compile_cached` did in this process: "compiled" and "disk" counts (tests read it)
STATS = {"compiled": 0, "disk": 0}
_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def host_cpu_features() -> str:
    """The host's SIMD features as an LLVM feature string (part of the cache key: a module compiled
    for ``host`` here must not load on a CPU without them)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    feats = [f"+{llvm}" for flag, llvm in _X86_FEATURES.items() if flag in flags]
    if "fma" in flags:
        feats.append("+fma")
    return ",".join(feats)


def compile_flags(target: str = "llvm-cpu") -> list[str]:
    """The compiler flags for ``target`` ("llvm-cpu" or "cuda")."""
    common = ["--iree-input-demote-f64-to-f32=false", "--iree-opt-level=O3"]
    if target == "llvm-cpu":
        return [*common, "--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu",
                "--iree-llvmcpu-target-cpu=host",
                "--iree-llvmcpu-reassociate-fp-reductions=false",
                "--iree-llvmcpu-vector-pproc-strategy=peel"]
    if target == "cuda":
        return [*common, "--iree-hal-target-device=cuda", "--iree-cuda-target=sm_80"]
    raise CompileError(f"unknown IREE target {target!r}; expected 'llvm-cpu' or 'cuda'")


@functools.lru_cache(maxsize=1)
def compiler_version() -> str:
    """The installed IREE compiler's version (part of every cache key)."""
    from iree.compiler.version import VERSION  # noqa: PLC0415 - optional dependency

    return str(VERSION)


def cache_dir() -> Path:
    """Where compiled modules live (``<settings.cache_dir>/iree``)."""
    return Path(get_settings().cache_dir) / "iree"


def module_key(text: str, target: str) -> str:
    """The digest naming a module's cache file: text + flags + compiler + emitter version."""
    h = hashlib.sha256()
    # "host" in the flags means this CPU: its features are part of the key (a shared cache dir)
    for part in (text, "\0".join(compile_flags(target)), host_cpu_features(), compiler_version(),
                 str(EMITTER_VERSION)):
        h.update(part.encode("utf-8"))
        h.update(b"\1")
    return h.hexdigest()[:40]


def _warn_unwritable(directory: Path, exc: OSError, fallback: Path) -> None:
    log.warning("IREE module cache %s is not writable (%s); using %s", directory, exc, fallback)


def _writable(directory: Path) -> Path:
    return writable_dir(directory, f".probe.{os.getpid()}.{threading.get_ident()}", "noodle-iree",
                        _warn_unwritable)


def compile_text(text: str, target: str = "llvm-cpu") -> bytes:
    """Run the IREE compiler on ``text``; CompileError carries its diagnostics."""
    try:
        from iree.compiler import compile_str  # noqa: PLC0415 - optional dependency
        from iree.compiler.tools import CompilerToolError  # noqa: PLC0415
    except ImportError as exc:
        raise CompileError(f"the IREE compiler is not installed ({exc}); pip install 'noodle[mlir]'") from exc
    t0 = time.perf_counter()
    try:
        out = compile_str(text, extra_args=compile_flags(target))
    except CompilerToolError as exc:
        diag = str(exc)
        raise CompileError(f"the IREE compiler rejected the module for {target}: {diag[:2000]}") from exc
    _COMPILE_SECONDS.labels(target).observe(time.perf_counter() - t0)
    return bytes(out)


def compile_cached(text: str, target: str = "llvm-cpu", directory: Path | None = None) -> tuple[bytes, bool]:
    """The compiled module of ``text`` and whether it came from the disk cache."""
    base = _writable(directory if directory is not None else cache_dir())
    path = base / f"{module_key(text, target)}.vmfb"
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if data:
        with _lock:
            STATS["disk"] += 1
        _COMPILES.labels(target, "disk").inc()
        return data, True
    data = compile_text(text, target)
    tmp = base / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
        # the MLIR next to it: what a person reads when a result looks wrong
        path.with_suffix(".mlir").write_text(text, encoding="utf-8")
    except OSError as exc:
        log.warning("could not write IREE module cache file %s: %s", path, exc)
    with _lock:
        STATS["compiled"] += 1
    _COMPILES.labels(target, "compiled").inc()
    return data, False


__all__ = ["EMITTER_VERSION", "STATS", "cache_dir", "compile_cached", "compile_flags", "compile_text",
           "compiler_version", "host_cpu_features", "module_key"]
