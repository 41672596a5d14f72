"""Many files at once: find them, skip what the cache already knows, fix the rest here or on Dask workers.

Why this layer: ``noodle fix src/`` on a codebase is mostly valid files, so the cost that
matters is not repairing but not repeating work. Each file's outcome is cached under a hash
of its bytes, the repair engine's version (noodle's and the language model's), ``k`` and the
target version, through :class:`noodle.cache.CacheManager` (its local tier, the warming
snapshot between runs when ``NOODLE_SYNTAX_FIXER_CACHE_WARMING`` is on, Redis when
``NOODLE_SYNTAX_FIXER_DISTRIBUTED_CACHE`` is). Cached values are JSON-able dicts built from
:meth:`FixResult.to_json`, never pickles.

What is left is fixed in this process, or, with ``workers > 1`` and enough files, fanned out
in chunks through :class:`noodle.dist.Processor` (``NOODLE_SYNTAX_FIXER_DISTRIBUTED_PROCESSING``,
``_MAX_WORKERS``, ``_TASK_CHUNK_SIZE``, ``_WORKER_TIMEOUT``). Dask reruns the chunk of a worker
that dies; so that the files that chunk had already fixed are not fixed again, each worker
journals every outcome in a run directory (one file per content hash, written atomically)
and a rerun reads it back. Every fix reports its latency and kind to the metrics registry
(``noodle_fixer_seconds{kind}``, ``noodle_fixer_fixes_total{kind}``) when
``NOODLE_SYNTAX_FIXER_PERFORMANCE_MONITORING`` is on.

Example::

    from noodle.fixer.batch import discover, run
    refs, missing = discover(["src/"])
    for outcome in run(refs, k=3):
        print(outcome.name, outcome.status)
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noodle.errors import FixerUsageError, NoodleError
from noodle.fixer.chunks import CHUNK_BYTES, fix_large, is_large
from noodle.fixer.files import FixerFileError, SourceFile, read_bytes
from noodle.fixer.result import FixResult
from noodle.fixer.telemetry import publish, quiet, record

__all__ = ["SKIP_DIRS", "FileOutcome", "FixerUsageError", "SourceRef", "cache_key", "discover", "model_version",
           "open_cache", "parse_target_version", "publish", "record", "run"]

#: directory names never entered when walking a directory (hidden ones are skipped too)
SKIP_DIRS = frozenset({"__pycache__", ".venv", "venv", "site-packages", "node_modules", "build", "dist"})
#: fewer files than this to fix are fixed in this process even when workers were asked for
MIN_CLUSTER_FILES = 16
#: version of the cached value's layout (part of every key)
CACHE_LAYOUT = 1
STATUSES = ("valid", "fixed", "partial", "unfixed", "error")

FixFn = Callable[..., FixResult]


@dataclass(frozen=True)
class SourceRef:
    """One input: its display name, its path (None for stdin) and its bytes when already read."""

    name: str
    path: Path | None = None
    data: bytes | None = None


@dataclass
class FileOutcome:
    """What happened to one input.

    ``status``: 'valid' (parses, nothing to do), 'fixed' (repaired; ``output`` holds the new
    bytes), 'partial' (a large file with some errors repaired and some left; ``output`` set),
    'unfixed' (errors no repair fixed), 'error' (unreadable or undecodable: ``message`` says
    why). ``result`` is :meth:`FixResult.to_json` (no sources), ``cached`` whether it came from
    the cache, ``chunked`` whether the large-file path checked it piece by piece.
    """

    index: int
    name: str
    path: Path | None
    status: str
    data: bytes | None = None
    output: bytes | None = None
    result: dict[str, Any] | None = None
    message: str = ""
    cached: bool = False
    chunked: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 nothing to fix, 1 something was (or would be) fixed or is still broken, 2 an error."""
        return {"valid": 0, "error": 2}.get(self.status, 1)

    def to_json(self) -> dict[str, Any]:
        """What ``noodle fix --json`` prints for this file."""
        d: dict[str, Any] = {"path": self.name, "status": self.status, "cached": self.cached,
                             "chunked": self.chunked}
        if self.message:
            d["message"] = self.message
        if self.result is not None:
            d.update(self.result)
        return d


# --------------------------------------------------------------------------- arguments

_TARGET = re.compile(r"(?:py)?3\.?(\d{1,2})")


def parse_target_version(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """'py39', '3.9', '39' or (3, 9) -> (3, 9); None stays None (the running interpreter's grammar)."""
    if text is None:
        return None
    running = sys.version_info[:2]
    if isinstance(text, tuple):
        version = text
    else:
        m = _TARGET.fullmatch(str(text).strip().lower())
        if m is None:
            raise FixerUsageError(f"--target-version {text!r} is not a Python version; write it like py39 or 3.9")
        version = (3, int(m.group(1)))
    if len(version) != 2 or version[0] != 3 or not 7 <= version[1] <= running[1]:
        raise FixerUsageError(
            f"--target-version {text!r}: this Python ({running[0]}.{running[1]}) parses 3.7 to "
            f"{running[0]}.{running[1]} grammar; pick one of those, or run noodle under a newer Python")
    return (int(version[0]), int(version[1]))


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
        raise FixerUsageError(f"-k must be an integer from 1 to 100 (alternatives per file), got {k!r}")
    return k


# --------------------------------------------------------------------------- finding files

def get_settings() -> Any:
    """The process settings (imported on first use: a one-file run never needs them)."""
    from noodle.config import get_settings as settings

    return settings()


def _warn(message: str, *args: Any) -> None:
    import logging

    logging.getLogger("noodle.fixer").warning(message, *args)


def _skip_dir(name: str, path: str) -> bool:
    return (name.startswith(".") or name in SKIP_DIRS or name.endswith(".egg-info")
            or os.path.exists(os.path.join(path, "pyvenv.cfg")))


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[SourceRef], list[FileOutcome]]:
    """The files named or found under directories (``*.py``, ``*.pyi``), and an error outcome per missing path.

    Directories are walked in sorted order, skipping hidden ones, ``__pycache__``, virtual
    environments (``.venv``, ``venv``, ``site-packages``, any folder with a ``pyvenv.cfg``),
    build output, and what git ignores when the directory is in a git work tree (one
    ``git check-ignore`` call per directory argument). A file named explicitly is taken whatever
    its suffix and whatever git says. The same file named twice is taken once.
    """
    refs: list[SourceRef] = []
    errors: list[FileOutcome] = []
    seen: set[str] = set()

    def add(name: str, path: Path) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            refs.append(SourceRef(name, path))

    for raw in paths:
        name = os.fspath(raw)
        path = Path(name)
        if path.is_dir():
            found = []
            for base, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _skip_dir(d, os.path.join(base, d)))
                found.extend(os.path.normpath(os.path.join(base, f)) for f in sorted(files)
                             if f.endswith((".py", ".pyi")))
            ignored = _git_ignored(path, found)
            for f in found:
                if f not in ignored:
                    add(f, Path(f))
        elif path.exists():
            add(name, path)
        else:
            errors.append(FileOutcome(-1, name, path, "error",
                                      message=f"{name}: no such file or directory; give Python files or "
                                              f"directories (or - for stdin)"))
    return refs, errors


def _git_ignored(root: Path, files: list[str]) -> set[str]:
    """The files git ignores (``.gitignore``, ``.git/info/exclude``...), asked once per directory with
    ``git check-ignore --stdin``; none when git is missing or ``root`` is not in a work tree."""
    if not files:
        return set()
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        return set()
    try:
        p = subprocess.run([git, "check-ignore", "-z", "--stdin"], cwd=root, capture_output=True, timeout=30,
                           input=b"\0".join(os.fsencode(os.path.relpath(f, root)) for f in files) + b"\0")
    except (OSError, subprocess.SubprocessError):
        return set()
    if p.returncode not in (0, 1):       # 128: not a git work tree (or git failed): ignore nothing
        return set()
    ignored = {os.path.normpath(os.path.join(root, os.fsdecode(x))) for x in p.stdout.split(b"\0") if x}
    return {f for f in files if os.path.normpath(f) in ignored}


# --------------------------------------------------------------------------- one file

def _default_fix() -> FixFn:
    from noodle.fixer.repair import fix

    return fix


def _status(res: FixResult) -> str:
    if not res.changed:
        return "valid" if res.parses else "unfixed"
    return "fixed" if res.parses else "partial"


def fix_payload(data: bytes, *, name: str = "<string>", k: int = 5,
                target_version: tuple[int, int] | None = None, fix_fn: FixFn | None = None) -> dict[str, Any]:
    """Fix one file's bytes; the outcome that is sent back by workers (and, through :func:`to_jsonable`,
    cached and journaled).

    Keys: ``status``, ``result`` (FixResult.to_json, no sources), ``output`` (the repaired
    bytes, or None), ``encoding``, ``chunked``, ``kind``, ``seconds``, ``message``. A failure
    of the engine on one file is an 'error' outcome, not an exception, so one bad file cannot
    stop a run over a codebase.
    """
    t0 = time.perf_counter()
    base: dict[str, Any] = {"v": CACHE_LAYOUT, "status": "error", "result": None, "output": None,
                            "encoding": None, "chunked": is_large(len(data)), "kind": None, "seconds": 0.0,
                            "message": ""}
    with quiet():  # the run counts one fix per file (see noodle.fixer.telemetry)
        return _fix_payload(data, name, k, target_version, fix_fn, base, t0)


def _fix_payload(data: bytes, name: str, k: int, target_version: tuple[int, int] | None, fix_fn: FixFn | None,
                 base: dict[str, Any], t0: float) -> dict[str, Any]:
    try:
        sf = SourceFile.from_bytes(data, name)
        base["encoding"] = sf.encoding
        fn = fix_fn or _default_fix()
        if base["chunked"]:
            out, res = fix_large(sf, k=k, filename=name, target_version=target_version, fix_fn=fn,
                                 with_source=False)
        else:
            res = fn(sf.text, k=k, filename=name, target_version=target_version)
            out = sf.encode(res.source) if res.changed else data
            if not res.parses and len(data) > CHUNK_BYTES:
                # many errors spread over a file: the whole-file search spends its rounds and time
                # budget on the first ones; piece by piece, each error gets a search of its own
                out2, res2 = fix_large(sf, k=k, filename=name, target_version=target_version, fix_fn=fn,
                                       with_source=False)
                if res2.parses or (res2.changed and not res.changed):
                    out, res = out2, res2
                    base["chunked"] = True
    except FixerFileError as exc:
        base.update(message=str(exc), seconds=time.perf_counter() - t0)
        return base
    except NoodleError as exc:
        base.update(message=f"{name}: {exc}", seconds=time.perf_counter() - t0)
        return base
    except Exception as exc:  # an engine bug on one file must not end a run over thousands
        base.update(message=f"{name}: the repair engine failed on this file ({type(exc).__name__}: {exc}); "
                            f"please report it with the file", seconds=time.perf_counter() - t0)
        return base
    output = out if out is not data and out != data else None
    base.update(status=_status(res), result=res.to_json(), output=output, kind=res.kind, seconds=res.seconds)
    return base


def to_jsonable(value: dict[str, Any]) -> dict[str, Any] | None:
    """The outcome as plain JSON data (the repaired bytes as text in the file's encoding), or None when those
    bytes would not survive the round trip (then the outcome is simply not cached)."""
    out = value.get("output")
    if out is None:
        return {k: v for k, v in value.items() if k != "journaled"}
    try:
        text = out.decode(value["encoding"])
        if text.encode(value["encoding"]) != out:
            return None
    except (UnicodeError, LookupError, TypeError):
        return None
    return {**{k: v for k, v in value.items() if k != "journaled"}, "output": text}


def from_jsonable(value: Any) -> dict[str, Any] | None:
    """The inverse of :func:`to_jsonable` (None for anything that is not such a dict)."""
    if not isinstance(value, dict) or value.get("v") != CACHE_LAYOUT:
        return None
    text = value.get("output")
    if text is None:
        return dict(value)
    try:
        return {**value, "output": str(text).encode(str(value["encoding"]))}
    except (UnicodeError, LookupError, KeyError):
        return None


def _journal_path(journal: str, key: str) -> str:
    return os.path.join(journal, key + ".json")


def process(item: tuple[str, str, bytes], *, k: int = 5, target_version: tuple[int, int] | None = None,
            fix_fn: FixFn | None = None, journal: str | None = None) -> dict[str, Any]:
    """Fix one ``(key, name, data)`` item (on a worker or here); with ``journal``, never twice per run.

    A rerun of a chunk (its worker died) finds the files the dead worker finished in the
    journal directory and returns those outcomes without fixing again. Why a claim too: when a
    worker dies, Dask may run a chunk again while another copy of it is still running (a
    rescheduled task and a retried one), so a file is claimed (an exclusive create) before it
    is fixed; a second runner waits for the claimant's outcome, and takes the file over only
    if the claimant's process is gone. A journal the worker cannot reach (a cluster without
    the client's filesystem) is simply not used.
    """
    key, name, data = item
    path = _journal_path(journal, key) if journal and os.path.isdir(journal) else None
    if path is not None:
        done = _journaled(path)
        if done is None and not _claim(path):
            done = _wait_for_claimant(path)
        if done is not None:
            return dict(done, journaled=True)
    value = fix_payload(data, name=name, k=k, target_version=target_version, fix_fn=fix_fn)
    plain = to_jsonable(value) if path is not None else None
    if path is not None and plain is not None:
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(plain, f)
            os.replace(tmp, path)
        except OSError:
            pass
    return value


def _journaled(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return from_jsonable(json.load(f))
    except (OSError, ValueError):
        return None


def _claim(path: str) -> bool:
    """Claim the file for this process (True), or find it claimed by another (False)."""
    try:
        fd = os.open(path + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True  # no claims possible here: fix it (at worst twice, as without a journal)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _wait_for_claimant(path: str) -> dict[str, Any] | None:
    """The outcome the claimant journals, or None once it is gone (then this process fixes the file)."""
    deadline = time.monotonic() + float(get_settings().worker_timeout)
    while time.monotonic() < deadline:
        done = _journaled(path)
        if done is not None:
            return done
        try:
            with open(path + ".claim", encoding="utf-8") as f:
                owner = int(f.read().strip() or 0)
        except (OSError, ValueError):
            owner = 0
        if owner and not _alive(owner):
            return _journaled(path)
        time.sleep(0.01)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- cache and metrics

#: the modules whose code decides a repair (their source is part of the cache key)
ENGINE_MODULES = ("repair", "candidates", "localize", "rank", "lm", "lexer", "chunks", "files", "result")


@functools.lru_cache(maxsize=1)
def model_version() -> str:
    """The repair engine's identity for cache keys: its code and its language model.

    The code is a hash of the engine modules' source; the model is the "version" of its
    metadata (``lm.json`` next to ``lm.bin``) when it has one, else a hash of that metadata
    (rebuilt with every training run), else of the artifact. So a changed engine or a
    retrained model never serves outcomes cached for the old one, and two machines with the
    same install share keys (nothing here depends on file times).
    """
    import hashlib

    import noodle
    from noodle.fixer import lm

    here = Path(__file__).resolve().parent
    code = hashlib.sha256()
    for name in ENGINE_MODULES:
        try:
            code.update((here / f"{name}.py").read_bytes())
        except OSError:
            code.update(name.encode())
    model = "none"
    path = lm.default_path()
    for candidate in (path.with_suffix(".json"), path):
        try:
            raw = candidate.read_bytes()
        except OSError:
            continue
        if candidate.suffix == ".json":
            try:
                meta = json.loads(raw)
            except ValueError:
                meta = None
            if isinstance(meta, dict) and meta.get("version"):
                model = str(meta["version"])
                break
        model = hashlib.sha256(raw).hexdigest()[:16]
        break
    return f"noodle-{noodle.__version__}/code-{code.hexdigest()[:12]}/lm-{model}"


def cache_key(data: bytes, k: int, target_version: tuple[int, int] | None, engine: str | None = None) -> str:
    """The content hash an outcome is cached under: the bytes, the engine's version, k and the target version."""
    import hashlib

    h = hashlib.sha256()
    tv = "none" if target_version is None else f"{target_version[0]}.{target_version[1]}"
    h.update(f"noodle-fix/{CACHE_LAYOUT}\0{engine or model_version()}\0k={k}\0target={tv}\0".encode())
    h.update(data)
    return "fix-" + h.hexdigest()


def open_cache() -> Any:
    """The fixer's cache (namespace 'fixer'), configured from NOODLE_SYNTAX_FIXER_CACHE_*; close it when done.

    With cache warming on, it starts from the snapshot the last run saved (under
    ``NOODLE_CACHE_DIR``) and saves one when closed, so a second ``noodle fix`` over the same
    files fixes nothing again.
    """
    from noodle.cache import CacheManager

    settings = get_settings()
    return CacheManager(policy=settings.cache_strategy, max_entries=settings.cache_size, ttl=settings.cache_ttl,
                        namespace="fixer", snapshot=settings.cache_warming, snapshot_entries=settings.cache_size)


# --------------------------------------------------------------------------- the run

def _outcome(index: int, ref: SourceRef, data: bytes, value: dict[str, Any], cached: bool) -> FileOutcome:
    output = value.get("output")
    return FileOutcome(index, ref.name, ref.path, str(value["status"]), data, output, value.get("result"),
                       str(value.get("message") or ""), cached, bool(value.get("chunked")),
                       float(value.get("seconds") or 0.0))


@dataclass
class _Pending:
    key: str
    refs: list[tuple[int, SourceRef]] = field(default_factory=list)
    data: bytes = b""


def run(refs: Sequence[SourceRef], *, k: int = 5, target_version: tuple[int, int] | None = None,
        workers: int = 1, cache: Any = None, progress: bool | None = None, fix_fn: FixFn | None = None,
        processor: Any = None) -> Iterator[FileOutcome]:
    """Fix every input; yields one FileOutcome per input (cache hits first, then as fixes finish).

    ``cache``: a CacheManager (see :func:`open_cache`) or None for no cache. ``workers``: with
    more than 1 (and distributed processing allowed, and at least MIN_CLUSTER_FILES files to
    fix) the fixes run on a local Dask cluster of that many workers, or on ``processor`` when
    one is given. ``fix_fn`` replaces :func:`noodle.fixer.fix` (same signature); on workers it
    must be picklable. ``progress``: a bar on stderr (None: when stderr is a terminal).
    """
    k = check_k(k)
    target_version = parse_target_version(target_version)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise FixerUsageError(f"workers must be an integer >= 1, got {workers!r}")
    # content keys serve the cache, the workers' journal and deduplication; one file alone needs none
    keyed = cache is not None or processor is not None or workers > 1 or len(refs) > 1
    engine = model_version() if keyed else ""
    pending: dict[str, _Pending] = {}
    for index, ref in enumerate(refs):
        try:
            data = ref.data if ref.data is not None else read_bytes(ref.path if ref.path is not None else ref.name)
        except FixerFileError as exc:
            yield FileOutcome(index, ref.name, ref.path, "error", message=str(exc))
            continue
        key = cache_key(data, k, target_version, engine) if keyed else f"item-{index}"
        if cache is not None:
            hit = from_jsonable(cache.get(key))
            if hit is not None:
                yield _outcome(index, ref, data, hit, cached=True)
                continue
        p = pending.get(key)
        if p is None:
            p = pending[key] = _Pending(key, data=data)
        p.refs.append((index, ref))
    if not pending:
        return
    items = [(p.key, p.refs[0][1].name, p.data) for p in pending.values()]
    opts = dict(k=k, target_version=target_version, fix_fn=fix_fn)
    for key, value in _execute(items, opts, workers, progress, processor):
        p = pending.pop(key)
        if value.get("status") != "error":
            record(str(value.get("kind")), float(value.get("seconds") or 0.0))
            plain = to_jsonable(value) if cache is not None else None
            if plain is not None:
                cache.set(key, plain)
        for index, ref in p.refs:
            yield _outcome(index, ref, p.data, value, cached=False)


def _execute(items: list[tuple[str, str, bytes]], opts: dict[str, Any], workers: int, progress: bool | None,
             processor: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    use_cluster = processor is not None or (workers > 1 and len(items) >= MIN_CLUSTER_FILES)
    if use_cluster and processor is None and not get_settings().distributed_processing:
        _warn("noodle fix: NOODLE_SYNTAX_FIXER_DISTRIBUTED_PROCESSING is off, so the %d files are fixed in "
                    "this process instead of on %d workers", len(items), workers)
        use_cluster = False
    done: set[str] = set()
    if use_cluster:
        from noodle.errors import DistError

        try:
            for key, value in _on_cluster(items, opts, workers, progress, processor):
                done.add(key)
                yield key, value
            return
        except DistError as exc:
            _warn("noodle fix: the distributed run stopped (%s); the %d files left are fixed in this process",
                        exc, len(items) - len(done))
    left = [it for it in items if it[0] not in done]
    with _Bar(len(left), progress) as bar:
        for item in left:
            yield item[0], process(item, **opts)
            bar.advance()


def _on_cluster(items: list[tuple[str, str, bytes]], opts: dict[str, Any], workers: int, progress: bool | None,
                processor: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Fan the items out in chunks (TASK_CHUNK_SIZE at most, ~4 chunks per worker) with a journal for reruns."""
    import math
    import shutil
    import tempfile

    from noodle.dist import Processor

    settings = get_settings()
    journal = tempfile.mkdtemp(prefix="noodle-fix-journal-")
    try:
        proc = processor if processor is not None else Processor(n_workers=workers)
        try:
            n = max(1, proc.n_workers if processor is not None else workers)
            chunk = max(1, min(settings.task_chunk_size, math.ceil(len(items) / (4 * n))))
            fn = functools.partial(process, journal=journal, **opts)
            for index, value in proc.map(fn, items, chunk_size=chunk, ordered=False,
                                         timeout=float(settings.worker_timeout), progress=progress):
                yield items[index][0], value
        finally:
            if processor is None:
                proc.close()
    finally:
        shutil.rmtree(journal, ignore_errors=True)


class _Bar:
    """A rich progress bar on stderr for in-process runs over many files (nothing otherwise)."""

    def __init__(self, total: int, progress: bool | None) -> None:
        show = progress if progress is not None else (total >= 20 and sys.stderr.isatty())
        self._bar: Any = None
        if show and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("noodle fix"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._task = self._bar.add_task("fix", total=total)
            self._bar.start()

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
