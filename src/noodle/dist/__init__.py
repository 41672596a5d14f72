"""Distributed processing on Dask: one API on one machine and on a cluster.

``noodle.dist`` is the only package that imports Dask. Start here::

    from noodle.dist import Processor

    if __name__ == "__main__":           # worker processes are spawned
        with Processor(n_workers=2) as proc:
            squares = proc.map(lambda x: x * x, range(1000))            # chunked, in order
            total = proc.map(abs, range(-5, 5), reduce=lambda a, b: a + b)
            task = proc.submit(pow, 2, 10, priority=5, retries=2, timeout=30)
            print(task.result(), [w.status for w in proc.workers()])

Load balancing is Dask's own (its scheduler places tasks on the least busy
worker that holds their inputs, and work stealing moves queued tasks off busy
workers); noodle offers no other strategy.
"""

from noodle.dist.chunks import Chunk, OrderedResults, plan_chunks
from noodle.dist.health import WorkerInfo, worker_infos
from noodle.dist.processor import Processor, Task, gpu_count

__all__ = ["Chunk", "OrderedResults", "Processor", "Task", "WorkerInfo", "gpu_count", "plan_chunks",
           "worker_infos"]
