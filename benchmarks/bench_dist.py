"""``noodle bench dist``: noodle.dist against raw Dask, measured in the same run on the same cluster.

Rows (speedup = baseline time / noodle time, > 1 means noodle is faster):

- submit overhead: N no-op tasks through ``Processor.submit`` + ``gather`` vs
  ``client.submit`` + ``client.gather`` on the same client. Target: noodle's
  per-task overhead at most 1.2x Dask's, i.e. speedup >= 0.83.
- map overhead (chunk_size=1): ``Processor.map`` one item per task vs ``client.map``.
- chunked map: 10,000 small items (2,000 with --quick) in chunks of
  ``task_chunk_size`` vs unchunked ``client.map``. Target: >= 5x.
- CPU-bound map: pure-Python loops (they hold the GIL) on 2 worker processes
  vs 1, one thread each. Target: >= 1.7x (needs 2 free cores).
- cluster start: ``Processor`` start + close vs ``LocalCluster`` + ``Client``.

Worker processes are spawned, so this module defines only functions at top
level; the timings are noisy on a shared machine (compare ratios, not times).
"""

from __future__ import annotations

from noodle.benchtools import Row, per_unit, time_pair

TITLE = "noodle bench dist (noodle.dist vs raw Dask, same run)"
TARGETS = {"submit overhead": 1 / 1.2, "chunked map": 5.0, "CPU-bound map": 1.7}


def noop(x):
    return x


def cpu_work(n):
    """A pure-Python loop: holds the GIL the whole time, so only processes run it in parallel."""
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
    return acc


def _per_task(row: Row, n: int) -> Row:
    return per_unit(row, n, "n_tasks", "noodle_per_task_ms", "dask_per_task_ms", 1e3, 4)


def run(quick: bool) -> list[Row]:
    from distributed import Client, LocalCluster

    from noodle.dist import Processor

    runs = 2 if quick else 3
    rows: list[Row] = []
    with Processor(n_workers=2, threads_per_worker=1, port=0) as proc:
        client = proc.client
        n = 100 if quick else 300

        def nd_submit():
            return proc.gather([proc.submit(noop, i) for i in range(n)])

        def dask_submit():
            return client.gather([client.submit(noop, i, pure=False) for i in range(n)])

        a, b = time_pair(nd_submit, dask_submit, min_time=0.0, min_runs=runs * 2)
        rows.append(_per_task(Row("dist", "submit overhead", "Processor.submit", "client.submit", a, b), n))

        def nd_map1():
            return proc.map(noop, range(n), chunk_size=1, progress=False)

        def dask_map():
            return client.gather(client.map(noop, range(n), pure=False))

        a, b = time_pair(nd_map1, dask_map, min_time=0.0, min_runs=runs * 2)
        rows.append(_per_task(Row("dist", "map overhead (chunk_size=1)", "Processor.map", "client.map", a, b), n))

        big = 2_000 if quick else 10_000

        def nd_chunked():
            return proc.map(noop, range(big), progress=False)

        def dask_unchunked():
            return client.gather(client.map(noop, range(big), pure=False))

        a, b = time_pair(nd_chunked, dask_unchunked, min_time=0.0, min_runs=runs)
        rows.append(_per_task(Row("dist", f"chunked map, {big:,} items", f"map chunk={proc.default_chunk_size}",
                                  "client.map unchunked", a, b), big))

    work = [1_000_000 if quick else 3_000_000] * 16  # ~70 ms and ~200 ms per item: overhead negligible
    with Processor(n_workers=2, threads_per_worker=1, port=0) as two, \
            Processor(n_workers=1, threads_per_worker=1, port=0) as one:
        a, b = time_pair(lambda: two.map(cpu_work, work, chunk_size=1, progress=False),
                         lambda: one.map(cpu_work, work, chunk_size=1, progress=False),
                         min_time=0.0, min_runs=runs)
        rows.append(Row("dist", "CPU-bound map, 16 x pure-Python loop", "2 workers", "1 worker", a, b,
                        extra={"items": len(work), "loop": work[0]}))

    def nd_start():
        Processor(n_workers=2, threads_per_worker=1, port=0).start().close()

    def dask_start():
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               scheduler_port=0, dashboard_address="127.0.0.1:0")
        Client(cluster, set_as_default=False).close()
        cluster.close()

    a, b = time_pair(nd_start, dask_start, min_time=0.0, min_runs=runs - 1)
    rows.append(Row("dist", "cluster start + close (2 workers)", "Processor", "LocalCluster+Client", a, b))
    return rows


def notes(rows: list[Row]) -> list[str]:
    """The issue's Done-when checks, read off this run."""
    out = []
    for row in rows:
        for name, target in TARGETS.items():
            if row.case.startswith(name):
                ok = "meets" if row.ratio >= target else "MISSES"
                out.append(f"{row.case}: {row.ratio:.2f}x, {ok} the target >= {target:.2f}x")
    return out
