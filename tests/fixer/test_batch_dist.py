"""Many files: in this process and on real Dask workers (one SIGKILLed mid-run), the cache, Redis, metrics.

The engine is ``standin_fix`` (test_files_chunks.py) wrapped in ``counting_fix``, which leaves
one file per completed fix in a directory, so "fixed exactly once" is counted across
processes. Both are sent to the workers by value.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import cloudpickle
import pytest
from test_files_chunks import standin_fix

from noodle.fixer import batch
from noodle.fixer.batch import SourceRef

cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(sys.modules[standin_fix.__module__])

N_FILES = 200


def counting_fix(source: str, *, k: int = 5, filename: str = "<string>", target_version=None,
                 count_dir: str = "", kill_name: str | None = None, marker: str | None = None):
    """The stand-in engine, counting completed fixes; kills its own worker (once) on ``kill_name``."""
    if kill_name is not None and filename == kill_name and marker is not None and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    res = standin_fix(source, k=k, filename=filename, target_version=target_version)
    tag = hashlib.sha1(filename.encode()).hexdigest()[:16]
    Path(count_dir, f"{tag}-{uuid.uuid4().hex}").write_text(filename)
    return res


def _counts(count_dir: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in count_dir.iterdir():
        name = p.read_text()
        out[name] = out.get(name, 0) + 1
    return out


def _source(i: int, salt: str = "") -> bytes:
    kind = i % 4
    body = f"# file {i} {salt}\nimport os\n\n\n"
    if kind == 0:
        body += f"def ok_{i}(x):\n    return x + {i}\n"
    elif kind == 1:
        body += f"def broken_{i}(x)\n    return x * {i}\n"
    elif kind == 2:
        body += f"class K{i}\n    value = {i}\n"
    else:
        body += f"print(os.getcwd(), {i}\n"
    data = body.encode()
    return data.replace(b"\n", b"\r\n") if i % 10 == 3 else data


def _write_tree(root: Path, salt: str = "") -> list[SourceRef]:
    root.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in range(N_FILES):
        path = root / f"m{i:03d}.py"
        path.write_bytes(_source(i, salt))
        refs.append(SourceRef(str(path), path))
    return refs


def _same(outcome) -> tuple:
    result = {k: v for k, v in (outcome.result or {}).items() if k != "seconds"}
    return outcome.name, outcome.status, outcome.output, json.dumps(result, sort_keys=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> list[SourceRef]:
    return _write_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def reference(tree, tmp_path_factory):
    """The in-process run: every file fixed once, outcomes in input order."""
    count_dir = tmp_path_factory.mktemp("count-inproc")
    fn = functools.partial(counting_fix, count_dir=str(count_dir))
    outcomes = sorted(batch.run(tree, fix_fn=fn, progress=False), key=lambda o: o.index)
    return outcomes, _counts(count_dir)


def test_in_process_run_fixes_every_file_once_and_the_repairs_parse(tree, reference):
    outcomes, counts = reference
    assert counts == {ref.name: 1 for ref in tree}
    assert [o.status for o in outcomes] == ["valid" if i % 4 == 0 else "fixed" for i in range(N_FILES)]
    for o in outcomes:
        assert (o.output is None) == (o.status == "valid")
        if o.output is not None:
            compile(o.output, o.name, "exec")
            assert (b"\r\n" in o.output) == (b"\r\n" in o.data)


@pytest.fixture(scope="module")
def proc():
    from noodle.dist import Processor

    with Processor(n_workers=2, threads_per_worker=1, port=0) as p:
        p.client.wait_for_workers(2, timeout=60)
        yield p


def test_distributed_run_with_a_worker_killed_midway_fixes_every_file_exactly_once(tree, reference, proc,
                                                                                 tmp_path):
    count_dir = tmp_path / "count"
    count_dir.mkdir()
    marker = tmp_path / "killed-pid"
    victim = tree[N_FILES // 2 + 10].name      # 10 files into a chunk of 25: the chunk is rerun elsewhere
    fn = functools.partial(counting_fix, count_dir=str(count_dir), kill_name=victim, marker=str(marker))
    pids_before = set(proc.worker_pids().values())
    outcomes = sorted(batch.run(tree, fix_fn=fn, processor=proc, progress=False), key=lambda o: o.index)
    assert marker.exists(), "the worker was not killed"
    killed = int(marker.read_text())
    assert killed in pids_before
    counts = _counts(count_dir)
    assert counts == {ref.name: 1 for ref in tree}, {k: v for k, v in counts.items() if v != 1}
    assert [_same(o) for o in outcomes] == [_same(o) for o in reference[0]]
    proc.client.wait_for_workers(2, timeout=60)
    assert killed not in proc.worker_pids().values()     # its nanny started a new process


def test_a_second_run_hits_the_cache_and_fixes_nothing(tree, reference, tmp_path, isolated_settings):
    from noodle.cache import CacheManager

    cache = CacheManager(policy="lru", max_entries=1000, redis_url=None, snapshot=False,
                         namespace="t" + uuid.uuid4().hex[:12])
    try:
        first_dir, second_dir = tmp_path / "c1", tmp_path / "c2"
        first_dir.mkdir()
        second_dir.mkdir()
        first = sorted(batch.run(tree, fix_fn=functools.partial(counting_fix, count_dir=str(first_dir)),
                                 cache=cache, progress=False), key=lambda o: o.index)
        second = sorted(batch.run(tree, fix_fn=functools.partial(counting_fix, count_dir=str(second_dir)),
                                  cache=cache, progress=False), key=lambda o: o.index)
    finally:
        cache.close()
    assert len(_counts(first_dir)) == N_FILES and _counts(second_dir) == {}
    assert not any(o.cached for o in first) and all(o.cached for o in second)
    assert [_same(o) for o in second] == [_same(o) for o in reference[0]]


def test_redis_tier_serves_a_second_process_with_its_own_cache(tmp_path, redis_url, isolated_settings,
                                                             monkeypatch):
    from noodle import config

    monkeypatch.setenv("NOODLE_REDIS_URL", redis_url)
    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_DISTRIBUTED_CACHE", "true")
    config.reload()
    refs = _write_tree(tmp_path / "tree", salt=uuid.uuid4().hex)[:40]
    dirs = [tmp_path / "c1", tmp_path / "c2"]
    runs = []
    for d in dirs:
        d.mkdir()
        cache = batch.open_cache()          # a fresh manager: empty local tier, same Redis
        try:
            assert cache.distributed
            runs.append(sorted(batch.run(refs, fix_fn=functools.partial(counting_fix, count_dir=str(d)),
                                         cache=cache, progress=False), key=lambda o: o.index))
        finally:
            cache.close()
    assert len(_counts(dirs[0])) == len(refs) and _counts(dirs[1]) == {}
    assert all(o.cached for o in runs[1])
    assert [_same(o) for o in runs[1]] == [_same(o) for o in runs[0]]


def test_every_fix_reports_latency_and_kind_to_the_metrics_registry(tmp_path, isolated_settings, monkeypatch):
    from noodle import config, metrics

    refs = _write_tree(tmp_path / "tree", salt=uuid.uuid4().hex)[:12]

    def counts() -> dict[str, float]:
        hist = metrics.registry.get("noodle_fixer_seconds")
        total = metrics.registry.get("noodle_fixer_fixes_total")
        if hist is None:
            return {}
        assert {k for k, _ in hist.children()} == {k for k, _ in total.children()}
        return {k[0]: c.count for k, c in hist.children()}

    before = counts()
    outcomes = list(batch.run(refs, fix_fn=standin_fix, progress=False))
    after = counts()
    kinds = [o.result["kind"] for o in outcomes]
    for kind in set(kinds):
        assert after[kind] - before.get(kind, 0) == kinds.count(kind)
    hist = metrics.registry.get("noodle_fixer_seconds")
    assert hist.labels("simple").percentile(50) is not None
    monkeypatch.setenv("NOODLE_SYNTAX_FIXER_PERFORMANCE_MONITORING", "false")
    config.reload()
    list(batch.run(refs, fix_fn=standin_fix, progress=False))
    assert counts() == after


def test_a_one_file_run_keeps_the_registry_unloaded_until_asked(tmp_path):
    (tmp_path / "m.py").write_bytes(b"def f(x)\n    return x\n")
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from test_files_chunks import standin_fix\n"
            "from noodle.fixer import batch\n"
            "[o] = batch.run([batch.SourceRef('m.py', batch.Path('m.py'))], fix_fn=standin_fix)\n"
            "assert 'noodle.metrics' not in sys.modules and 'prometheus_client' not in sys.modules\n"
            "batch.publish()\n"
            "from noodle import metrics\n"
            "print(metrics.registry.get('noodle_fixer_fixes_total').value('simple'))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NOODLE_CACHE_DIR=str(tmp_path / "cache")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.0"


def test_cli_workers_fan_out_and_the_distributed_switch_is_read(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"ok{i}.py").write_bytes(f"def f{i}(x):\n    return x + {i}\n".encode())
    (src / "broken.py").write_bytes(b"def f(x)\n    return x\n")
    env = dict(os.environ, NOODLE_CACHE_DIR=str(tmp_path / "cache"), NOODLE_SYNTAX_FIXER_COORDINATOR_PORT="0")
    env.pop("NOODLE_CONFIG", None)
    cmd = [sys.executable, "-m", "noodle.cli", "fix", "--json", "--workers", "2", "--no-cache", "src"]
    off = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(env, NOODLE_SYNTAX_FIXER_DISTRIBUTED_PROCESSING="false"))
    assert off.returncode == 1, off.stderr
    assert "DISTRIBUTED_PROCESSING is off" in off.stderr
    on = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env)
    assert on.returncode == 1, on.stderr
    assert "DISTRIBUTED_PROCESSING is off" not in on.stderr
    statuses = {Path(f["path"]).name: f["status"] for f in json.loads(on.stdout)["files"]}
    assert statuses == {**{f"ok{i}.py": "valid" for i in range(30)}, "broken.py": "fixed"}
    def plain(out: str) -> list[dict]:
        return [{k: v for k, v in f.items() if k != "seconds"} for f in json.loads(out)["files"]]

    assert plain(on.stdout) == plain(off.stdout)


def test_a_mid_size_file_with_many_errors_is_repaired_piece_by_piece():
    """Many errors spread over a file below the large-file size: the whole-file search runs out of rounds,
    so each failing statement gets its own search (before: nothing was repaired)."""
    funcs = [f"def f{i}(x, y):\n    if x > {i}:\n        return [x, y, {i}]\n    return {{'k': x}}\n" for i in range(1500)]
    original = "\n\n".join(funcs)
    broken_funcs = list(funcs)
    for i in range(0, 1500, 30):  # 50 missing colons: more than one search has rounds for
        broken_funcs[i] = broken_funcs[i].replace("(x, y):", "(x, y)", 1)
    broken = "\n\n".join(broken_funcs)
    assert len(broken.encode()) > 16 * 1024
    out = batch.fix_payload(broken.encode(), name="many.py")
    assert out["status"] == "fixed" and out["result"]["parses"], out["message"]
    assert out["output"].decode() == original


def _slow_counting_fix(source, *, k=5, filename="<string>", target_version=None, count_dir=""):
    import time

    time.sleep(0.3)
    return counting_fix(source, k=k, filename=filename, target_version=target_version, count_dir=count_dir)


def test_two_runners_of_one_chunk_fix_each_file_once(tmp_path):
    """Dask may run a chunk twice at once after a worker death (rescheduled and retried): the claim makes
    the second runner wait for the first one's outcome instead of fixing again; a claim left by a dead
    process is taken over."""
    journal = tmp_path / "journal"
    journal.mkdir()
    count_dir = tmp_path / "count"
    count_dir.mkdir()
    item = ("key-1", "f.py", b"def f(x)\n    return x\n")
    fn = functools.partial(_slow_counting_fix, count_dir=str(count_dir))
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                out = batch.process(item, fix_fn=fn, journal=str(journal))
                code = 0 if out["status"] == "fixed" else 3
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitpid(pid, 0)[1] for pid in pids] == [0, 0]
    assert _counts(count_dir) == {"f.py": 1}
    # a claimant that died before journaling: the next runner takes the file over
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    (journal / "key-2.json.claim").write_text(str(dead))
    out = batch.process(("key-2", "g.py", b"x = (1,\n"), fix_fn=fn, journal=str(journal))
    assert out["status"] == "fixed" and _counts(count_dir) == {"f.py": 1, "g.py": 1}
