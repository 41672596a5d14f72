"""noodle.dist in one page: map, reduce, submit, timeouts and worker health on a local cluster.

Run: python examples/dist_quickstart.py
Worker processes are spawned, so the work sits under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import operator
import time

from noodle.dist import OrderedResults, Processor, plan_chunks
from noodle.errors import TaskTimeoutError


def collatz_steps(n: int) -> int:
    """A CPU-bound pure-Python function (holds the GIL: processes, not threads, run it in parallel)."""
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def main() -> None:
    # pure bookkeeping, no cluster: how map splits and reassembles
    print([(c.start, c.stop) for c in plan_chunks(5, 2)])
    acc = OrderedResults(plan_chunks(3, 2))
    acc.add(1, ["c"])
    acc.add(0, ["a", "b"])
    print(acc.results())

    with Processor(n_workers=2, port=0) as proc:               # a local cluster of 2 worker processes
        print("scheduler", proc.scheduler_address, "dashboard", proc.dashboard_address)
        steps = proc.map(collatz_steps, range(1, 20_001), chunk_size=500)    # in input order
        print("longest chain below 20,000:", max(steps), "steps")
        print("sum on the workers:", proc.map(collatz_steps, range(1, 20_001), reduce=operator.add))
        for index, value in proc.map(collatz_steps, [27, 97, 871], chunk_size=1, ordered=False):
            print(f"  streamed: item {index} -> {value}")                   # as chunks complete
        task = proc.submit(collatz_steps, 837_799, priority=10, retries=1)  # one task, ahead of others
        print("837799 ->", task.result(), "steps;", task)
        try:
            proc.submit(time.sleep, 2, timeout=0.2).result()
        except TaskTimeoutError as exc:
            print("timeout:", exc)
        for w in proc.workers():                                 # health as the scheduler sees it
            print(f"  {w.address} pid {w.pid} {w.status} {w.memory_bytes / 2**20:.0f} MiB "
                  f"heartbeat {w.heartbeat_age:.1f} s ago")


if __name__ == "__main__":
    main()
