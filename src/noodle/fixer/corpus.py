"""Which Python files on this machine train the language model, and which are held back to test it.

Why only installed code: the model ships in the package, so its training data
must be something anyone can rerun and whose licence is clear: the standard
library of the running interpreter (PSF licence) and the site-packages
distributions whose metadata declares a permissive licence (MIT, BSD, Apache,
PSF, ISC, Zlib, 0BSD, CC0, Unlicense). Nothing is downloaded. Excluded on
purpose: test folders (generated and Python 2 fixtures, and the bench's error
models should not see the same test idioms everywhere), vendored copies
(``_vendor``: their licence is not the distribution's), copyleft distributions
(GPL, LGPL, and MPL, which is per-file copyleft rather than permissive) and
noodle itself (its own code changes with every commit; training on it would
make the artifact depend on the working tree).

Which files are held back is decided by a stable hash of a file's path
relative to its root (``sha1('stdlib/json/decoder.py')``): one in ten never
trains and is what the bench corrupts and the perplexity is measured on. The
split does not depend on file contents, the set of installed distributions or
the machine, so a file is held back everywhere or nowhere.

Example::

    from noodle.fixer import corpus
    print(corpus.describe()["train_files"], corpus.heldout_files()[:3])
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata as md
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CorpusFile", "corpus_files", "describe", "heldout_files", "is_heldout", "parses", "training_files",
]

#: Folders never read: tests and fixtures, vendored copies, caches, the interpreter's own site-packages.
EXCLUDED_DIRS = frozenset({
    "test", "tests", "idle_test", "testing_data", "__pycache__", "site-packages", "_vendor", "vendor",
    "vendored", "_vendored",
})
#: Distributions never read whatever their licence (noodle itself: see the module docstring).
EXCLUDED_DISTRIBUTIONS = frozenset({"noodle"})
#: Files larger than this are generated tables, not code people write.
MAX_BYTES = 400_000
HELDOUT_FRACTION = 10                     # one file in ten is held back

_PERMISSIVE = re.compile(
    r"^(MIT|MIT-0|X11|0?BSD|BSD-\d-Clause(-[A-Za-z]+)?|BSD License|New BSD|Simplified BSD|Apache(-| )?2(\.0)?"
    r"|Apache Software License|Apache License,? (Version )?2(\.0)?|PSF(-2\.0)?|PSFL|Python Software Foundation"
    r"( License)?|ISC|ISC License( \(ISCL\))?|Zlib|zlib/libpng|CC0(-1\.0)?|Unlicense|The Unlicense"
    r"|MIT License|Historical Permission Notice and Disclaimer \(HPND\)|HPND)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CorpusFile:
    """One candidate file: where it is, its root-relative name (what the held-out hash reads), and
    where it comes from ('stdlib' or a distribution's name)."""

    path: Path
    rel: str
    origin: str


def _licence_ok(expression: str) -> bool:
    """Whether an SPDX-ish licence expression is permissive: every AND term and at least one OR
    alternative must be (a 'WITH exception' is read as its base licence)."""
    expr = expression.strip().strip("()")
    if not expr:
        return False
    alternatives = re.split(r"\s+OR\s+|\s+or\s+", expr)
    for alt in alternatives:
        terms = re.split(r"\s+AND\s+|\s+and\s+", alt.strip().strip("()"))
        if all(_PERMISSIVE.match(re.split(r"\s+WITH\s+", t.strip().strip("()"))[0]) for t in terms):
            return True
    return False


def _licence_of(dist: md.Distribution) -> tuple[str, bool]:
    """(what the metadata says, whether that is clearly permissive). Classifiers win over a free-text
    License field, which is sometimes the whole licence text."""
    meta = dist.metadata
    expr = (meta.get("License-Expression") or "").strip()
    if expr:
        return expr, _licence_ok(expr)
    classifiers = [c.split("::")[-1].strip() for c in (meta.get_all("Classifier") or [])
                   if c.startswith("License ::") and "OSI Approved" in c]
    if classifiers:
        return " / ".join(classifiers), all(_PERMISSIVE.match(c) for c in classifiers)
    text = (meta.get("License") or "").strip()
    first = text.splitlines()[0].strip() if text else ""
    return first[:80], bool(first) and _licence_ok(first)


def _excluded(parts: tuple[str, ...]) -> bool:
    return any(p in EXCLUDED_DIRS or p.startswith("test_data") for p in parts)


def is_heldout(rel: str) -> bool:
    """Whether the file named ``rel`` (e.g. 'stdlib/json/decoder.py') is held back from training."""
    digest = hashlib.sha1(rel.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_FRACTION == 0


def _stdlib_files() -> list[CorpusFile]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _excluded(rel.parts[:-1]):
            continue
        out.append(CorpusFile(path, "stdlib/" + rel.as_posix(), "stdlib"))
    return out


def _site_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = []
    for key in ("purelib", "platlib"):
        p = Path(paths[key]).resolve()
        if p not in roots:
            roots.append(p)
    return roots


@functools.lru_cache(maxsize=1)
def _distributions() -> tuple[tuple[str, str, str, bool, tuple[CorpusFile, ...]], ...]:
    """(name, version, licence, used, files) for every distribution installed in this
    interpreter's site-packages, sorted by name (first one wins when a name is there twice)."""
    roots = _site_roots()
    seen: set[str] = set()
    rows = []
    dists = sorted(md.distributions(), key=lambda d: ((d.metadata.get("Name") or "").lower(), d.version or ""))
    for dist in dists:
        name = (dist.metadata.get("Name") or "").strip()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if not name or key in seen:
            continue
        seen.add(key)
        licence, ok = _licence_of(dist)
        files: list[CorpusFile] = []
        if ok and key not in EXCLUDED_DISTRIBUTIONS:
            for f in dist.files or ():
                if not str(f).endswith(".py"):
                    continue
                path = Path(dist.locate_file(f)).resolve()
                root = next((r for r in roots if path.is_relative_to(r)), None)
                if root is None or not path.is_file():
                    continue
                rel = path.relative_to(root)
                if _excluded(rel.parts[:-1]):
                    continue
                files.append(CorpusFile(path, "site-packages/" + rel.as_posix(), name))
        files.sort(key=lambda c: c.rel)
        used = bool(files)
        rows.append((name, dist.version or "", licence, used and key not in EXCLUDED_DISTRIBUTIONS, tuple(files)))
    return tuple(rows)


def corpus_files() -> list[CorpusFile]:
    """Every candidate file (train and held back), sorted by root-relative name, duplicates removed."""
    files = _stdlib_files()
    for _name, _version, _licence, used, dist_files in _distributions():
        if used:
            files.extend(dist_files)
    unique: dict[str, CorpusFile] = {}
    for f in files:
        unique.setdefault(f.rel, f)
    return [unique[k] for k in sorted(unique)]


def parses(path: Path) -> bool:
    """Whether a file is small enough, UTF-8, and parses under the running interpreter (Python 2
    files and fixtures do not)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return False
        source = path.read_text(encoding="utf-8")
        compile(source, str(path), "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return False
    return True


def training_files(check_parse: bool = True) -> list[Path]:
    """The files the model trains on (never a held-back one), in a fixed order.

    ``check_parse=False`` skips reading the files (the trainer checks them as it lexes them).
    """
    return [f.path for f in corpus_files()
            if not is_heldout(f.rel) and (not check_parse or parses(f.path))]


def heldout_files(check_parse: bool = True) -> list[Path]:
    """The files held back from training (what the perplexity is measured on and the bench corrupts)."""
    return [f.path for f in corpus_files()
            if is_heldout(f.rel) and (not check_parse or parses(f.path))]


def describe() -> dict[str, Any]:
    """What the corpus is, for the model's metadata and the README: counts per origin, the
    distributions used with their licences, and the ones left out with why."""
    files = corpus_files()
    held = sum(is_heldout(f.rel) for f in files)
    per_origin: dict[str, int] = {}
    for f in files:
        per_origin[f.origin] = per_origin.get(f.origin, 0) + 1
    used, skipped = [], []
    for name, version, licence, ok, dist_files in _distributions():
        row = {"name": name, "version": version, "licence": licence}
        if ok:
            used.append({**row, "files": len(dist_files)})
        else:
            key = re.sub(r"[-_.]+", "-", name).lower()
            why = ("noodle itself" if key in EXCLUDED_DISTRIBUTIONS
                   else "no .py files" if _licence_of_ok(licence) else "licence not clearly permissive")
            skipped.append({**row, "why": why})
    return {
        "stdlib": sysconfig.get_paths()["stdlib"],
        "site_packages": [str(r) for r in _site_roots()],
        "files": len(files), "train_files": len(files) - held, "heldout_files": held,
        "files_per_origin": per_origin,
        "stdlib_licence": "PSF-2.0",
        "distributions_used": used, "distributions_skipped": skipped,
        "excluded_dirs": sorted(EXCLUDED_DIRS), "max_bytes": MAX_BYTES,
        "heldout_rule": f"sha1(root-relative path)[:8] as a big-endian integer % {HELDOUT_FRACTION} == 0",
    }


def _licence_of_ok(licence: str) -> bool:
    return _licence_ok(licence) or all(_PERMISSIVE.match(c.strip()) for c in licence.split(" / "))
