"""The Prefect 1 benchmark flows on a DaskExecutor: one LocalCluster of 2 worker processes.

Set up as prefect1/adapter.py does for `prefect1-dask`: the cluster starts in start() (counted
as start-up) and every flow run connects to it by address.
"""

from __future__ import annotations

import atexit
import logging
import time
from pathlib import Path
from typing import Any

from prefect1 import bench
from prefect1.bench import VERSION, chain, fanout
from shared_pipeline.processes import exit_on_sigterm

__all__ = ["VERSION", "chain", "fanout", "pids", "start", "stop"]

_cluster: list[Any] = []


def start(workdir: Path) -> dict[str, float]:
    """Prefect 1 and Dask imported, then the cluster started; each part's seconds."""
    started = time.perf_counter()
    bench.start(workdir)
    from distributed import LocalCluster
    from prefect.executors import DaskExecutor

    imported = time.perf_counter()

    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # its HTTP server on a free loopback port
        local_directory=str(workdir / "dask-scratch"),
    )
    _cluster.append(cluster)
    atexit.register(stop)
    exit_on_sigterm()  # so atexit closes the cluster
    bench.use_executor(lambda: DaskExecutor(address=cluster.scheduler_address))
    return {"import": imported - started, "Dask cluster start": time.perf_counter() - imported}


def stop() -> None:
    while _cluster:
        _cluster.pop().close()


def pids() -> list[int]:
    """The worker processes (the scheduler runs in this process)."""
    return [
        worker.process.pid
        for cluster in _cluster
        for worker in cluster.workers.values()
        if worker.process is not None and worker.process.pid is not None
    ]
