"""What a repair returns: the repaired text, CPython's original error, the edits, and the alternatives.

Why these are plain frozen dataclasses with ``to_json``: the same result is
printed by ``noodle fix --json``, cached by content hash through the cache
(its safe encoding takes JSON-able values, never pickles), and shipped back
from distributed workers.

Example::

    from noodle.fixer import fix
    r = fix("print('hi'")
    print(r.kind, r.edits[0], r.candidates[0].score)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("valid", "simple", "complex", "unfixed")


@dataclass(frozen=True)
class Edit:
    """One token edit, in the coordinates of the text it applies to.

    ``line`` is 1-based, ``col`` 0-based (CPython's ``SyntaxError`` convention is
    1-based columns; ours match ``tokenize``). ``old`` is the replaced text
    ('' for an insertion), ``new`` the inserted text ('' for a deletion).
    """

    line: int
    col: int
    old: str
    new: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "col": self.col, "old": self.old, "new": self.new}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Edit:
        return cls(int(d["line"]), int(d["col"]), str(d["old"]), str(d["new"]))


@dataclass(frozen=True)
class Candidate:
    """One repaired text that parses, its edits against the input, and its score (higher is better;
    a log-probability under the language model plus edit costs, comparable within one result)."""

    source: str
    edits: tuple[Edit, ...]
    score: float

    def to_json(self, with_source: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"edits": [e.to_json() for e in self.edits], "score": round(self.score, 4)}
        if with_source:
            d["source"] = self.source
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Candidate:
        return cls(str(d["source"]), tuple(Edit.from_json(e) for e in d["edits"]), float(d["score"]))


@dataclass(frozen=True)
class SyntaxErrorInfo:
    """CPython's message for the input, where it points (line 1-based, col 0-based), and its class name."""

    message: str
    line: int
    col: int
    kind: str = "SyntaxError"       # or IndentationError, TabError

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "col": self.col, "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SyntaxErrorInfo:
        return cls(str(d["message"]), int(d["line"]), int(d["col"]), str(d.get("kind", "SyntaxError")))


@dataclass(frozen=True)
class FixResult:
    """The outcome of :func:`noodle.fixer.fix` on one text.

    ``source``: the repaired text, or the input unchanged when it already parses
    or when no repair is confident. ``changed``: whether ``source`` differs from
    the input. ``parses``: whether ``source`` parses. ``error``: CPython's error
    for the input (None when it parsed). ``edits``: the edits from the input to
    ``source``. ``candidates``: up to k alternatives that all parse, best first
    (the first is ``source`` when ``changed``). ``kind``: 'valid' (nothing to
    do), 'simple' (one error, one token edit), 'complex' (2+ edits, several
    errors, or an indentation block), or 'unfixed'. ``seconds``: wall time.
    """

    source: str
    changed: bool
    parses: bool
    error: SyntaxErrorInfo | None
    edits: tuple[Edit, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    kind: str = "valid"
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def to_json(self, with_sources: bool = False) -> dict[str, Any]:
        """A JSON-able dict (what ``noodle fix --json`` prints per file); sources only if asked."""
        d: dict[str, Any] = {
            "changed": self.changed, "parses": self.parses, "kind": self.kind,
            "error": self.error.to_json() if self.error else None,
            "edits": [e.to_json() for e in self.edits],
            "candidates": [c.to_json(with_sources) for c in self.candidates],
            "seconds": round(self.seconds, 6), "notes": list(self.notes),
        }
        if with_sources:
            d["source"] = self.source
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FixResult:
        """The inverse of ``to_json(with_sources=True)``."""
        return cls(str(d["source"]), bool(d["changed"]), bool(d["parses"]),
                   SyntaxErrorInfo.from_json(d["error"]) if d.get("error") else None,
                   tuple(Edit.from_json(e) for e in d["edits"]),
                   tuple(Candidate.from_json(c) for c in d["candidates"]),
                   str(d["kind"]), float(d["seconds"]), tuple(d.get("notes", ())))


__all__ = ["KINDS", "Candidate", "Edit", "FixResult", "SyntaxErrorInfo"]
