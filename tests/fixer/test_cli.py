"""``noodle fix`` as a linter user meets it: real processes, real files, exit codes 0/1/2.

Each run is ``python -c BOOT fix ...``: the real ``noodle.cli.main`` with the repair engine
swapped for ``standin_fix`` (test_files_chunks.py), so what is checked is the command around
the engine: modes, exit codes, what is written and how, stdin, JSON, arguments. One test runs
the real engine when its language model is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BOOT = (
    f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_files_chunks as t; "
    "import noodle.fixer.batch as b; b._default_fix = lambda: t.standin_fix; "
    "from noodle.cli import main; sys.exit(main(sys.argv[1:]))"
)

BROKEN = b"def f(x)\n    return x\n"
FIXED = b"def f(x):\n    return x\n"
VALID = {
    "lf.py": b"x = 1\n",
    "crlf.py": b"def g():\r\n    return 1\r\n",
    "bom.py": b"\xef\xbb\xbfs = '\xc3\xa9'\n",
    "latin1.py": b"# -*- coding: latin-1 -*-\ns = '\xe9'\n",
    "no_newline.py": b"y = 2",
}


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["NOODLE_CACHE_DIR"] = str(tmp_path / "noodle-cache")
    e["NOODLE_SYNTAX_FIXER_COORDINATOR_PORT"] = "0"
    e.pop("NOODLE_CONFIG", None)
    return e


def noodle(*args: str, cwd: Path, env: dict[str, str], stdin: bytes | None = None,
           real: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "noodle.cli"] if real else [sys.executable, "-c", BOOT]
    return subprocess.run([*cmd, "fix", *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=120)


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    for name, data in VALID.items():
        (src / name).write_bytes(data)
    (src / "pkg" / "broken.py").write_bytes(BROKEN)
    (src / "pkg" / "stub.pyi").write_bytes(b"def h(a: int) -> int: ...\nclass K\n    y: int\n")
    for skipped in (".hidden", "__pycache__", ".venv", "venv", "site-packages"):
        (src / skipped).mkdir()
        (src / skipped / "bad.py").write_bytes(BROKEN)
    return src


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_exit_0_when_everything_parses(tmp_path, env):
    src = _tree(tmp_path)
    for name in VALID:
        r = noodle(str(src / name), cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout == b""


def test_default_mode_reports_and_changes_nothing(tmp_path, env):
    src = _tree(tmp_path)
    before = _snapshot(src)
    r = noodle("src", cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stderr
    out = r.stdout.decode()
    assert "src/pkg/broken.py:1:9: SyntaxError: expected ':'" in out
    assert "insert ':' at 1:9" in out
    assert "bad.py" not in out                      # hidden, __pycache__, venvs skipped
    assert "7 files checked, 2 fixable" in r.stderr.decode()
    assert _snapshot(src) == before


def test_check_lists_and_leaves_files_untouched(tmp_path, env):
    src = _tree(tmp_path)
    before = _snapshot(src)
    r = noodle("--check", "src", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert sorted(r.stdout.decode().splitlines()) == ["would fix: src/pkg/broken.py (1 edit)",
                                                       "would fix: src/pkg/stub.pyi (1 edit)"]
    assert _snapshot(src) == before


def test_diff_is_a_patch_that_gives_what_write_gives(tmp_path, env):
    src = _tree(tmp_path)
    other = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(src), str(other)], check=True)
    r = noodle("--diff", "src", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert r.stdout.startswith(b"--- src/pkg/broken.py\n+++ src/pkg/broken.py\n@@ -1,2 +1,2 @@\n")
    assert b"-def f(x)\n+def f(x):\n" in r.stdout
    p = subprocess.run(["patch", "-p0", "--quiet"], input=r.stdout.replace(b"src/", b"copy/"), cwd=tmp_path,
                       capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    w = noodle("--write", "src", cwd=tmp_path, env=env)
    assert w.returncode == 1
    for path in src.rglob("*.py*"):
        assert path.read_bytes() == (other / path.relative_to(src)).read_bytes()


def test_write_changes_only_broken_files_atomically_and_is_idempotent(tmp_path, env):
    src = _tree(tmp_path)
    before = _snapshot(src)
    r = noodle("--write", "src", cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stderr
    assert "fixed: src/pkg/broken.py (1 edit)" in r.stderr.decode()
    after = _snapshot(src)
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == ["pkg/broken.py", "pkg/stub.pyi"]
    assert after["pkg/broken.py"][0] == FIXED
    assert after["pkg/broken.py"][2] != before["pkg/broken.py"][2]   # a new inode: replaced, not rewritten
    for name in VALID:                               # byte-identical, not even rewritten
        assert after[name] == before[name]
    assert not [p for p in src.rglob("*") if p.name.endswith(".noodle-tmp")]
    again = noodle("--write", "src", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert _snapshot(src) == after


def test_write_keeps_crlf_bom_latin1_and_missing_last_newline_of_a_repaired_file(tmp_path, env):
    cases = {
        "crlf.py": (b"def f(x)\r\n    return x\r\n", b"def f(x):\r\n    return x\r\n"),
        "bom.py": (b"\xef\xbb\xbfif True\n    s = '\xc3\xa9'\n", b"\xef\xbb\xbfif True:\n    s = '\xc3\xa9'\n"),
        "latin1.py": (b"# -*- coding: latin-1 -*-\nif True\n    s = '\xe9'\n",
                      b"# -*- coding: latin-1 -*-\nif True:\n    s = '\xe9'\n"),
        "no_newline.py": (b"x = (1,\n     2", b"x = (1,\n     2)"),
        "cr.py": (b"x = 1\rif x\r    y = 2\r", b"x = 1\rif x:\r    y = 2\r"),
    }
    for name, (broken, _) in cases.items():
        (tmp_path / name).write_bytes(broken)
    mode = 0o604
    os.chmod(tmp_path / "crlf.py", mode)
    r = noodle("--write", *cases, cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stderr
    for name, (_, fixed) in cases.items():
        assert (tmp_path / name).read_bytes() == fixed, name
    assert (tmp_path / "crlf.py").stat().st_mode & 0o777 == mode


def test_exit_2_for_missing_and_undecodable_files_and_the_others_still_run(tmp_path, env):
    (tmp_path / "broken.py").write_bytes(BROKEN)
    (tmp_path / "bad_utf8.py").write_bytes(b"x = 1\ny = '\xff'\n")
    r = noodle("--write", "nope.py", "bad_utf8.py", "broken.py", cwd=tmp_path, env=env)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "nope.py: no such file or directory" in err
    assert "bad_utf8.py: line 2 is not valid utf-8" in err
    assert (tmp_path / "broken.py").read_bytes() == FIXED
    assert (tmp_path / "bad_utf8.py").read_bytes() == b"x = 1\ny = '\xff'\n"


def test_exit_1_when_a_file_cannot_be_repaired(tmp_path, env):
    (tmp_path / "hopeless.py").write_bytes(b"x = = 1\n")
    r = noodle("--write", "hopeless.py", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert "hopeless.py:1:5: SyntaxError: invalid syntax (no repair found)" in r.stderr.decode()
    assert (tmp_path / "hopeless.py").read_bytes() == b"x = = 1\n"


def test_a_failed_write_is_exit_2_and_leaves_the_original(tmp_path, monkeypatch, capsys):
    from test_files_chunks import standin_fix

    import noodle.fixer.batch as batch
    from noodle.cli import main

    monkeypatch.setattr(batch, "_default_fix", lambda: standin_fix)
    path = tmp_path / "broken.py"
    path.write_bytes(BROKEN)

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    assert main(["fix", "--write", str(path)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert path.read_bytes() == BROKEN
    assert [p.name for p in tmp_path.iterdir()] == ["broken.py"]


def test_stdin(tmp_path, env):
    r = noodle("-", cwd=tmp_path, env=env, stdin=BROKEN)
    assert r.returncode == 1 and b"-:1:9: SyntaxError: expected ':'" in r.stdout
    r = noodle("--write", "-", cwd=tmp_path, env=env, stdin=BROKEN)
    assert r.returncode == 1 and r.stdout == FIXED
    r = noodle("--write", "-", cwd=tmp_path, env=env, stdin=b"x = 1\r\n")
    assert r.returncode == 0 and r.stdout == b"x = 1\r\n"
    r = noodle("--diff", "--stdin-filename", "mod.py", "-", cwd=tmp_path, env=env, stdin=BROKEN)
    assert r.returncode == 1 and r.stdout.startswith(b"--- mod.py\n+++ mod.py\n")
    r = noodle("--write", "--json", "-", cwd=tmp_path, env=env, stdin=BROKEN)
    assert r.returncode == 1 and json.loads(r.stdout)["files"][0]["source"] == FIXED.decode()


def test_json_lists_edits_and_scored_alternatives(tmp_path, env):
    (tmp_path / "broken.py").write_bytes(b"x = (1,\n")
    (tmp_path / "ok.py").write_bytes(b"x = 1\n")
    r = noodle("--json", "-k", "2", "broken.py", "ok.py", cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"] == {"valid": 1, "fixed": 1, "partial": 0, "unfixed": 0, "error": 0, "written": 0}
    broken, ok = doc["files"]
    assert broken["path"] == "broken.py" and broken["status"] == "fixed" and broken["changed"]
    assert broken["error"] == {"message": "'(' was never closed", "line": 1, "col": 4, "kind": "SyntaxError"}
    assert broken["edits"] == [{"line": 1, "col": 7, "old": "", "new": ")"}]
    assert 1 <= len(broken["candidates"]) <= 2
    assert all(set(c) == {"edits", "score"} for c in broken["candidates"])
    assert ok["status"] == "valid" and ok["edits"] == [] and ok["error"] is None
    assert (tmp_path / "broken.py").read_bytes() == b"x = (1,\n"
    w = noodle("--json", "--write", "broken.py", cwd=tmp_path, env=env)
    assert json.loads(w.stdout)["files"][0]["written"] is True


def test_k_and_target_version_are_checked_and_used(tmp_path, env):
    (tmp_path / "m.py").write_bytes(b"match x:\n    case 1:\n        pass\n")
    assert noodle("m.py", cwd=tmp_path, env=env).returncode == 0
    r = noodle("--target-version", "py39", "m.py", cwd=tmp_path, env=env)
    assert r.returncode == 1 and b"only supported in Python 3.10" in r.stdout
    assert noodle("--target-version", "3.10", "m.py", cwd=tmp_path, env=env).returncode == 0
    bad = noodle("--target-version", "py2", "m.py", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and b"not a Python version" in bad.stderr
    assert noodle("-k", "0", "m.py", cwd=tmp_path, env=env).returncode == 2
    assert noodle("--check", "--write", "m.py", cwd=tmp_path, env=env).returncode == 2   # argparse
    many = noodle("--workers", "9", "m.py", cwd=tmp_path, env=dict(env, NOODLE_SYNTAX_FIXER_MAX_WORKERS="8"))
    assert many.returncode == 2 and b"NOODLE_SYNTAX_FIXER_MAX_WORKERS=8" in many.stderr


def test_a_second_run_over_a_directory_is_served_from_the_cache(tmp_path, env):
    src = _tree(tmp_path)
    first = json.loads(noodle("--json", "src", cwd=tmp_path, env=env).stdout)
    assert not any(f["cached"] for f in first["files"])
    second = json.loads(noodle("--json", "src", cwd=tmp_path, env=env).stdout)
    assert all(f["cached"] for f in second["files"])
    strip = [{k: v for k, v in f.items() if k not in ("cached", "seconds")} for f in first["files"]]
    assert strip == [{k: v for k, v in f.items() if k not in ("cached", "seconds")} for f in second["files"]]
    off = json.loads(noodle("--json", "--no-cache", "src", cwd=tmp_path, env=env).stdout)
    assert not any(f["cached"] for f in off["files"])
    assert list((tmp_path / "noodle-cache" / "snapshots").iterdir())
    assert src.exists()


def test_the_command_path_stays_light(tmp_path, env):
    (tmp_path / "broken.py").write_bytes(BROKEN)
    code = ("import sys; from noodle.cli import main; rc = main(['fix', 'broken.py']); "
            "heavy = sorted({'numpy', 'dask', 'distributed', 'prometheus_client', 'rich', 'msgpack'} "
            "& {m.split('.')[0] for m in sys.modules}); print(heavy); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stdout.decode().strip().splitlines()[-1] == "[]"


def test_pre_commit_hook_definition():
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "noodle-fix")
    assert hook["entry"] == "noodle fix --write" and hook["language"] == "python" and hook["types"] == ["python"]


def test_noodle_config_lists_the_fixer_settings(tmp_path, env):
    r = subprocess.run([sys.executable, "-m", "noodle.cli", "config", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {row["env"] for row in json.loads(r.stdout).values()}
    used = {f"NOODLE_SYNTAX_FIXER_{n}" for n in (
        "DISTRIBUTED_PROCESSING", "MAX_WORKERS", "TASK_CHUNK_SIZE", "WORKER_TIMEOUT", "CACHE_STRATEGY",
        "CACHE_SIZE", "CACHE_TTL", "DISTRIBUTED_CACHE", "CACHE_WARMING", "PERFORMANCE_MONITORING")}
    assert used <= listed
    bad = dict(env, NOODLE_SYNTAX_FIXER_TASK_CHUNK_SIZE="0")
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    (tmp_path / "b.py").write_bytes(b"y = 1\n")
    r = noodle("--workers", "2", "a.py", "b.py", cwd=tmp_path, env=bad)
    assert r.returncode == 2 and b"NOODLE_SYNTAX_FIXER_TASK_CHUNK_SIZE" in r.stderr


def _has_model() -> bool:
    from noodle.fixer import lm

    return lm.default_path().is_file()


@pytest.mark.skipif(not _has_model(), reason="the fixer's language model is not built yet")
def test_the_real_engine_end_to_end(tmp_path, env):
    (tmp_path / "broken.py").write_bytes(BROKEN)
    (tmp_path / "ok.py").write_bytes(b"x = 1\n")
    r = noodle("--write", "broken.py", "ok.py", cwd=tmp_path, env=env, real=True)
    assert r.returncode == 1, r.stderr
    compile((tmp_path / "broken.py").read_bytes(), "broken.py", "exec")
    assert (tmp_path / "ok.py").read_bytes() == b"x = 1\n"
    assert noodle("--write", "broken.py", "ok.py", cwd=tmp_path, env=env, real=True).returncode == 0


def test_the_example_runs(tmp_path, env):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "fixer_quickstart.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "bad.py now: b'for i in range(3):\\r\\n    print(i)\\r\\n'" in r.stdout
    assert "second run, cached: {'good.py': True, '<stdin>': True, 'bad.py': False}" in r.stdout


def test_a_directory_in_a_git_work_tree_skips_what_git_ignores(tmp_path, env):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("generated/\n*_pb2.py\n")
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "bad.py").write_bytes(BROKEN)
    (tmp_path / "api_pb2.py").write_bytes(BROKEN)
    (tmp_path / "mine.py").write_bytes(BROKEN)
    r = noodle("--check", ".", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert r.stdout.decode().splitlines() == ["would fix: mine.py (1 edit)"]
    named = noodle("--check", "api_pb2.py", cwd=tmp_path, env=env)      # named explicitly: taken
    assert named.stdout.decode().splitlines() == ["would fix: api_pb2.py (1 edit)"]
