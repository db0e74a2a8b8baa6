"""The dask.distributed client of a pipeline run: a user's client, a scheduler address, or a LocalCluster.

A :class:`~distributed.LocalCluster` is sized to the machine (``docs/pipeline.md``):

- ``threads_per_worker`` = ``cluster.threads_per_worker`` or 1 (the statistics are numba/numpy
  kernels: processes scale, threads of one process contend for the GIL);
- ``n_workers`` = ``cluster.n_workers`` or ``CPU count // threads_per_worker`` (at least 1; the
  CPU count respects cgroup and affinity limits, ``dask.system.CPU_COUNT``);
- ``memory_limit`` = ``cluster.memory_limit`` or 90 % of the machine's memory
  (``distributed.system.MEMORY_LIMIT``, cgroup-aware) divided by ``n_workers``;
- every worker process gets ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
  ``OPENBLAS_NUM_THREADS`` = ``threads_per_worker`` (the Nanny's ``env``, set before the worker
  process starts), so ``n_workers`` workers never oversubscribe the cores.

A client passed in (or connected to ``scheduler``) is used as it is and never closed; a
LocalCluster created here is closed when the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from spatialpath.pipeline._config import ClusterConfig

__all__ = ["THREAD_VARIABLES", "ClusterSize", "acquire_client", "cluster_size", "local_cluster"]

#: environment variables set to ``threads_per_worker`` on every worker of a LocalCluster.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ClusterSize:
    """Workers, threads per worker and memory per worker (bytes, or ``"auto"``) of a LocalCluster."""

    n_workers: int
    threads_per_worker: int
    memory_limit: int | str

    def env(self) -> dict[str, str]:
        """The worker environment fixing numba/OpenMP/BLAS threads to ``threads_per_worker``."""
        return {name: str(self.threads_per_worker) for name in THREAD_VARIABLES}


def cluster_size(
    cluster: ClusterConfig | None = None,
    *,
    n_workers: int | None = None,
    cpu_count: int | None = None,
    total_memory: int | None = None,
) -> ClusterSize:
    """The LocalCluster size from the config's ``cluster`` section and the machine.

    ``n_workers`` (the command line's ``--workers``) overrides ``cluster.n_workers``.

    Examples
    --------
    >>> cluster_size(cpu_count=8, total_memory=32 * 2**30)
    ClusterSize(n_workers=8, threads_per_worker=1, memory_limit=3865470566)
    >>> cluster_size(ClusterConfig(threads_per_worker=2, memory_limit="4GB"), cpu_count=8).n_workers
    4
    """
    from dask.system import CPU_COUNT
    from dask.utils import parse_bytes
    from distributed.system import MEMORY_LIMIT

    cluster = cluster or ClusterConfig()
    threads = cluster.threads_per_worker or 1
    cpus = cpu_count if cpu_count is not None else CPU_COUNT
    workers = n_workers or cluster.n_workers or max(1, cpus // threads)
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    memory: int | str
    if cluster.memory_limit == "auto":
        memory = "auto"
    elif cluster.memory_limit is not None:
        memory = int(parse_bytes(cluster.memory_limit))
    else:
        memory = int(0.9 * (total_memory if total_memory is not None else MEMORY_LIMIT) / workers)
    return ClusterSize(workers, threads, memory)


def local_cluster(size: ClusterSize, *, dashboard_address: str | None = ":8787", **kwargs: Any) -> Any:
    """A process-based LocalCluster of ``size``, numba/OpenMP/BLAS threads fixed per worker."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=size.n_workers,
        threads_per_worker=size.threads_per_worker,
        memory_limit=size.memory_limit,
        processes=True,
        env=size.env(),  # passed to each Nanny: set in the worker process before it imports anything
        dashboard_address=dashboard_address,
        **kwargs,
    )


@contextlib.contextmanager
def acquire_client(
    cluster: ClusterConfig | None = None,
    *,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
) -> Iterator[Any]:
    """Yield a :class:`distributed.Client`; close only what was created here.

    ``client`` is used as it is; else ``scheduler`` (``"tcp://host:8786"``) is connected to;
    else a LocalCluster of :func:`cluster_size` is started (and closed on exit).
    """
    from distributed import Client

    if client is not None and scheduler is not None:
        raise ValueError("pass either client= or scheduler=, not both")
    if client is not None:
        yield client
        return
    if scheduler is not None:
        with Client(scheduler) as own:
            yield own
        return
    with local_cluster(cluster_size(cluster, n_workers=n_workers)) as lc, Client(lc) as own:
        yield own
