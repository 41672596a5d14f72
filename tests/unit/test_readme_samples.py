"""Every ```python block of README.md runs as written, alone, in a fresh process.

Why: the project's rule is that every README sample runs as written. A sample that silently
depends on a name defined in another block, or on a GPU, misleads the reader who copies it;
only running each block on its own, the way a reader would, keeps the README honest.

Each block is written to a file in an empty temporary folder and run there with the test's
Python (as a file, not ``-c``: the dist sample's ``if __name__ == "__main__":`` must hold and its
spawned workers must find the functions it defines). ``NOODLE_CACHE_DIR`` points at a temporary
folder so no sample reads or writes the user's caches.

Samples that talk to a server read its URL from the environment, the way a user would
configure them; the test passes the URL of the real server ``make test`` starts:

- ``NOODLE_REDIS_URL`` (noodle's own setting for the Redis tier) <- ``NOODLE_TEST_REDIS_URL``
- ``DATABASE_URL`` (the usual name for a database URL) <- ``NOODLE_TEST_PG_URL``

Run by hand without those servers, such blocks are skipped with the reason; under ``make
test`` (``MAKELEVEL`` is set) or in CI (``CI`` is set) a missing server is a failure instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
TIMEOUT_S = 180  # per block; the whole module takes a few tens of seconds on 2 cores

# variable a sample reads -> variable `make test` sets to the real server's URL
SERVICES = {
    "NOODLE_REDIS_URL": "NOODLE_TEST_REDIS_URL",
    "DATABASE_URL": "NOODLE_TEST_PG_URL",
}


@dataclass(frozen=True)
class Block:
    index: int   # among the python blocks, from 0
    line: int    # 1-based line of the opening fence
    code: str

    @property
    def id(self) -> str:
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")
        first = re.sub(r"[^A-Za-z0-9_.,:/()=\"' -]+", " ", first)[:48].strip()
        return f"{self.index}-L{self.line}-{first}"


def python_blocks(text: str) -> list[Block]:
    """The ```python fenced blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if re.fullmatch(r"```\s*python\s*", lines[i].rstrip()):
            start = i
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"README.md:{start + 1}: ```python block is never closed")
            blocks.append(Block(len(blocks), start + 1, "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def _strict() -> bool:
    """Under `make test` or CI the servers must be there: a skip would hide a broken sample."""
    return bool(os.environ.get("MAKELEVEL") or os.environ.get("CI"))


def test_readme_has_python_samples() -> None:
    # guards the parser: a README rewrite that changes the fences must not make this module vacuous
    assert len(BLOCKS) >= 5, f"found only {len(BLOCKS)} ```python blocks in {README}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_sample_runs(block: Block) -> None:
    env = dict(os.environ)
    for sample_var, test_var in SERVICES.items():
        env.pop(sample_var, None)  # a sample must not reach the user's own server
        if sample_var not in block.code:
            continue
        url = os.environ.get(test_var)
        if not url:
            msg = (f"README.md:{block.line} reads {sample_var}; it needs the real server `make test` "
                   f"starts ({test_var} is not set: run `make services-start` and "
                   f"`source .noodle-services/env`)")
            if _strict():
                pytest.fail(msg)
            pytest.skip(msg)
        env[sample_var] = url
    with tempfile.TemporaryDirectory(prefix="noodle-readme-") as tmp:
        env["NOODLE_CACHE_DIR"] = str(Path(tmp) / "cache")
        env.pop("NOODLE_CONFIG", None)  # no settings file but the defaults (and the env) apply
        # the dist sample's scheduler on any free port: the default 8081 may be taken by another run
        env["NOODLE_SYNTAX_FIXER_COORDINATOR_PORT"] = "0"
        script = Path(tmp) / f"readme_block_{block.index}.py"
        script.write_text(block.code, encoding="utf-8")
        try:
            out = subprocess.run([sys.executable, script.name], cwd=tmp, env=env, capture_output=True,
                                 text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            pytest.fail(f"README.md:{block.line}: sample still running after {TIMEOUT_S} s\n"
                        f"--- stderr ---\n{err or ''}\n--- sample ---\n{block.code}")
    assert out.returncode == 0, (
        f"README.md:{block.line}: sample exited with {out.returncode}\n"
        f"--- stderr ---\n{out.stderr[-4000:]}\n--- stdout ---\n{out.stdout[-1000:]}\n"
        f"--- sample ---\n{block.code}"
    )
