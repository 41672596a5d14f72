"""The same noodle code on a cluster: join a running Dask scheduler by its address.

Run: python examples/dist_join_cluster.py [tcp://host:port]
Without an address it starts a stand-in cluster with Dask itself (as a cluster
admin would with ``dask scheduler`` / ``dask worker``) and joins that.
A worker that declares ``--resources GPU=1`` receives the ``resources={'GPU': 1}`` work.
"""

from __future__ import annotations

import sys

from noodle.dist import Processor


def shout(word: str) -> str:
    return word.upper() + "!"


def main() -> None:
    cluster = None
    if len(sys.argv) > 1:
        address = sys.argv[1]
    else:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", scheduler_port=0,
                               dashboard_address="127.0.0.1:0", resources={"GPU": 1})
        address = cluster.scheduler_address
    try:
        with Processor(address=address) as proc:      # close() disconnects; the cluster stays up
            print(proc.map(shout, ["noodle", "on", "dask"]))
            print(proc.submit(shout, "gpu", resources={"GPU": 1}).result())
            print([(w.address, w.resources) for w in proc.workers()])
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
