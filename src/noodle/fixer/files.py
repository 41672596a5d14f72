"""Source files as bytes in, bytes out: encoding, BOM, line endings and the last newline kept, writes atomic.

Why bytes at both ends: a fixer that rewrites a file must change only what it repaired. The
repair engine works on ``str`` with ``\\n`` line ends, so this module decodes the way CPython
does (PEP 263 cookie or BOM, through :func:`tokenize.detect_encoding`), remembers each line's
ending (``\\n``, ``\\r\\n``, ``\\r``, mixed ones too) and whether the text ended with one, and
puts them all back on the way out; lines the repair did not touch come back byte for byte.

Writes go to a temporary file in the same directory, are flushed and fsynced, take the old
file's permission bits and replace it with :func:`os.replace`: a reader sees the old file or
the new one, never half of one, and a failure leaves the original as it was.

Example::

    from noodle.fixer.files import SourceFile, atomic_write
    sf = SourceFile.from_bytes(b"x = (1,\\r\\n2\\r\\n")
    fixed = sf.encode(sf.text + ")\\n")          # the repaired text, with \\n line ends
    assert fixed == b"x = (1,\\r\\n2\\r\\n)\\r\\n"
"""

from __future__ import annotations

import codecs
import difflib
import io
import os
import re
import stat
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

from noodle.errors import FixerFileError

__all__ = ["FixerFileError", "SourceFile", "atomic_write", "read_bytes", "unified_diff"]

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_ENDINGS = ("\n", "\r\n", "\r")
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+")


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, or FixerFileError saying why not (missing, a directory, no permission)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FixerFileError(f"{path}: no such file; give the path of a Python file or a directory") from None
    except IsADirectoryError:
        raise FixerFileError(f"{path}: is a directory where a file was expected") from None
    except OSError as exc:
        raise FixerFileError(f"{path}: cannot read it ({exc.strerror or exc}); check that it exists and is "
                             f"readable") from None


def _split_endings(text: str) -> tuple[list[str], list[str]]:
    """Lines without their endings, and each line's ending ('' for a last line without one)."""
    bodies: list[str] = []
    endings: list[str] = []
    for m in _LINE.finditer(text):
        line = m.group()
        if not line:
            break
        if line.endswith("\r\n"):
            bodies.append(line[:-2])
            endings.append("\r\n")
        elif line.endswith(("\n", "\r")):
            bodies.append(line[:-1])
            endings.append(line[-1])
        else:
            bodies.append(line)
            endings.append("")
    return bodies, endings


@dataclass(frozen=True)
class SourceFile:
    """One file's bytes and what it takes to write a repaired text back in the same shape.

    ``text`` is the decoded source with every line ending turned into ``\\n`` (what the engine
    reads; line numbers are CPython's); ``raw_text`` is the decoded source as it was. Both are
    decoded when asked for, not kept: one non-BMP character makes CPython store a 10 MB file's
    text in 42 MB, and the piece-by-piece repair of a large file needs only the bytes.
    ``encoding`` is what :func:`tokenize.detect_encoding` found ('utf-8-sig' when the file
    starts with a BOM), ``newline`` the most common line ending and ``mixed`` whether there
    were several kinds.
    """

    data: bytes
    encoding: str
    newline: str
    mixed: bool
    trailing_newline: bool

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>", encoding: str | None = None) -> SourceFile:
        """Decode as CPython would (or as ``encoding`` when given: a piece of a file has no cookie of
        its own); FixerFileError when the cookie or the bytes are not decodable."""
        if encoding is None:
            encoding = detect_encoding(data, name)
        counts, last = _scan_endings(data, encoding, name)
        used = [nl for nl in _ENDINGS if counts[nl]]
        newline = max(_ENDINGS, key=lambda nl: counts[nl]) if used else "\n"
        return cls(data, encoding, newline, len(used) > 1, last in ("\n", "\r"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SourceFile:
        """Read and decode a file (FixerFileError when it cannot be read or decoded)."""
        return cls.from_bytes(read_bytes(path), str(path))

    @property
    def bom(self) -> bool:
        """Whether the file starts with a UTF-8 byte order mark (kept on write)."""
        return self.encoding == "utf-8-sig"

    @property
    def raw_text(self) -> str:
        """The decoded source as it was (decoded on each call; :meth:`from_bytes` checked it decodes)."""
        return self.data.decode(self.encoding)

    @property
    def text(self) -> str:
        """The source with ``\\n`` line ends (the engine's input)."""
        raw = self.raw_text
        if "\r" not in raw:
            return raw
        return raw.replace("\r\n", "\n").replace("\r", "\n")

    def encode(self, fixed: str) -> bytes:
        """``fixed`` (a repair of :attr:`text`, ``\\n`` line ends) as bytes shaped like the original.

        Unchanged lines keep their own endings; new lines take the ending of the line they
        replace, else the file's most common one. The output ends with a line ending exactly
        when the input did. Raises FixerFileError when the repair added a character the file's
        encoding cannot hold.
        """
        if fixed == self.text:
            return self.data
        out = self._restore_endings(fixed)
        try:
            return out.encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise FixerFileError(
                f"the repair inserts {exc.object[exc.start:exc.end]!r}, which the file's encoding {self.encoding} "
                f"cannot hold; fix this one by hand"
            ) from None

    def _restore_endings(self, fixed: str) -> str:
        bodies, endings = _split_endings(fixed)
        if not self.mixed:
            nl = self.newline
            out = fixed if nl == "\n" else fixed.replace("\n", nl)
            if self.trailing_newline and not out.endswith(nl):
                out += nl
            elif not self.trailing_newline and out.endswith(nl):
                out = out[: -len(nl)]
            return out
        old_bodies, old_endings = _split_endings(self.raw_text)
        new_endings = [self.newline] * len(bodies)
        sm = difflib.SequenceMatcher(None, old_bodies, bodies, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            for j in range(j1, j2):
                i = i1 + (j - j1)
                if tag == "equal" or (tag == "replace" and i < i2):
                    new_endings[j] = old_endings[i] or self.newline
        if new_endings:
            new_endings[-1] = self.newline if self.trailing_newline else ""
            if self.trailing_newline and old_endings and old_endings[-1]:
                new_endings[-1] = old_endings[-1]
        return "".join(b + e for b, e in zip(bodies, new_endings))


#: bytes decoded at a time while checking a file and counting its line endings
_SCAN_BYTES = 1 << 20


def _scan_endings(data: bytes, encoding: str, name: str) -> tuple[dict[str, int], str]:
    """How many of each line ending the decoded ``data`` has, and its last character; raises
    FixerFileError where the bytes do not decode. Decodes a slice at a time so that a large
    file's text is never held whole (see :class:`SourceFile`)."""
    counts = dict.fromkeys(_ENDINGS, 0)
    decoder = codecs.getincrementaldecoder(encoding)()
    prev = ""
    try:
        for a in range(0, len(data), _SCAN_BYTES):
            chunk = decoder.decode(data[a:a + _SCAN_BYTES], final=a + _SCAN_BYTES >= len(data))
            if not chunk:
                continue
            crlf = chunk.count("\r\n") + (prev == "\r" and chunk[0] == "\n")   # one split across slices
            counts["\r\n"] += crlf
            counts["\n"] += chunk.count("\n") - crlf
            counts["\r"] += chunk.count("\r") - crlf
            prev = chunk[-1]
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        _raise_undecodable(data, encoding, name)
    return counts, prev


def _raise_undecodable(data: bytes, encoding: str, name: str) -> None:
    """FixerFileError naming the first line that does not decode (the whole file is decoded
    once here, on the error path, for the exact position)."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FixerFileError(
            f"{name}: line {line} is not valid {encoding} ({exc.reason} at byte {exc.start}); save the file "
            f"as UTF-8 or declare its encoding in a '# -*- coding: ... -*-' comment on line 1 or 2"
        ) from None
    raise FixerFileError(f"{name}: the bytes are not valid {encoding}; save the file as UTF-8")


def detect_encoding(data: bytes, name: str = "<bytes>") -> str:
    """The source encoding CPython would use (PEP 263 cookie, BOM, else UTF-8), normalized."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        if not any(_COOKIE.match(line) for line in data.splitlines()[:2]):
            return "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"  # no cookie: bytes not UTF-8
        raise FixerFileError(f"{name}: {exc.msg}; fix the coding comment on "
                             f"line 1 or 2 (PEP 263) or remove it to mean UTF-8") from None
    try:
        return codecs.lookup(encoding).name
    except LookupError:  # detect_encoding already checks, but a codec can disappear
        raise FixerFileError(f"{name}: unknown source encoding {encoding!r} in its coding comment") from None


def atomic_write(path: str | os.PathLike[str], data: bytes, expect: bytes | None = None) -> None:
    """Replace the file at ``path`` with ``data``: all or nothing, permission bits kept.

    A temporary file next to the target (same filesystem, so the rename is atomic) is written,
    flushed and fsynced, given the target's mode, then renamed over it with :func:`os.replace`;
    the directory is fsynced after. Any failure removes the temporary file and leaves the
    original untouched. A symlink is followed (its target is replaced, the link stays).
    ``expect``: the bytes the file must still hold; if someone changed it since it was read,
    nothing is written and FixerFileError says so.
    """
    target = Path(os.path.realpath(path))
    try:
        st = os.stat(target)
    except OSError as exc:
        raise FixerFileError(f"{path}: cannot write it ({exc.strerror or exc})") from None
    if expect is not None and read_bytes(target) != expect:
        raise FixerFileError(f"{path}: changed on disk while it was being fixed; not written. Run again")
    fd = -1
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".noodle-tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            fd = -1  # owned by f now
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.replace(tmp, target)
        tmp = ""
    except OSError as exc:
        raise FixerFileError(f"{path}: cannot write it ({exc.strerror or exc}); the file was left as it was") \
            from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: some filesystems and platforms refuse a directory fsync)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def unified_diff(old: bytes, new: bytes, name: str) -> bytes:
    """A unified diff from ``old`` to ``new`` that ``patch -p0`` applies (bytes: the file's own encoding).

    Lines are split at ``\\n`` as ``patch`` splits them (a ``\\r\\n`` line keeps its ``\\r``); a last
    line without a newline gets the ``\\ No newline at end of file`` marker.
    """
    if old == new:
        return b""
    a, b = _split_lf(old), _split_lf(new)
    label = os.fsencode(name)
    out: list[bytes] = []
    for line in difflib.diff_bytes(difflib.unified_diff, a, b, label, label, n=3):
        if line.startswith((b"---", b"+++", b"@@")) and not line.endswith(b"\n"):
            line += b"\n"
        out.append(line)
        if not line.endswith(b"\n"):
            out.append(b"\n\\ No newline at end of file\n")
    return b"".join(out)


def _split_lf(data: bytes) -> list[bytes]:
    """Lines split at ``\\n`` only, ends kept (bytes.splitlines would also split at ``\\r``)."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines
