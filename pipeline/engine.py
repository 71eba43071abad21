"""Where per-date work executes: in this process, or on a dask.distributed cluster, one task per
date (a replay) or per chunk of consecutive dates (a backtest).

The unit of work is a date or a chunk: a task reads shared datasets and writes only its own
dates' partitions, so no two tasks write one file. Results come back in date order whatever the
engine, so both engines write the same bytes. Tasks are plain futures returning pandas objects,
not dask collections, so there is no graph and no ``meta`` to infer. dask is imported only when
it is used.
"""
from __future__ import annotations

import logging
import sys

ENGINES = ("local", "dask")
# The LocalCluster's workers each run one pandas-heavy task at a time, one per core. Two dask
# defaults cost 15-25 % of every task there: glibc trimming freed memory back to the OS after
# every free (MALLOC_TRIM_THRESHOLD_=64 KiB: per-date tasks keep memory bounded without it) and
# event-loop housekeeping every 10-100 ms that takes the GIL from the task. Measured on 31
# sessions of 500 names with 2 workers: 26.1 s -> 19.1 s; a process pool does the same in 17.8 s.
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


def map_dates(task, dates: list, *args, engine: str = "local", scheduler: str | None = None) -> list:
    """``[task(*args, as_of) for as_of in dates]``, run by ``engine``; an item of ``dates`` may be a
    chunk of dates (:func:`chunks`) for a task that takes one.

    ``dask``: a LocalCluster of one single-threaded worker process per core (``scheduler`` None)
    or the existing cluster at ``scheduler`` (``tcp://HOST:PORT``); its workers need this package
    installed and the data root at the same path (shared storage). ``task`` must be a
    module-level function (it is pickled to the workers).
    """
    if engine == "local" or len(dates) < 2:
        return [task(*args, as_of) for as_of in dates]
    if engine != "dask":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        cluster = None
        warning = scheduler_warning(scheduler)
        if warning:
            logging.getLogger("pipeline").warning("%s", warning)
            print(f"warning: {warning}", file=sys.stderr)
    else:
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(task, *args, as_of, pure=False) for as_of in dates]
            results = client.gather(futures)
            peaks = client.run(_peak_memory_mib)
            logging.getLogger("pipeline").info(
                "dask: %d tasks on %d workers; peak resident memory per worker since it started: %s MiB",
                len(dates), len(peaks), ", ".join(f"{peaks[w]:.0f}" for w in sorted(peaks)))
            return results
    finally:
        if cluster is not None:
            cluster.close()


def scheduler_warning(address: str) -> str | None:
    """Why attaching to the dask scheduler at ``address`` is risky, or None. A scheduler runs
    whatever code it is sent on its workers, and this client unpickles what comes back, so
    anyone who can reach or impersonate it runs code here: only loopback or TLS is quiet."""
    from urllib.parse import urlsplit

    from pipeline.outside_text import escape_controls
    from pipeline.sources.live import is_loopback

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tls" or is_loopback(parts.hostname):
        return None
    return (f"dask scheduler {escape_controls(address)} is neither loopback nor TLS (tls://): its traffic, "
            "including the pickled tasks and results this client runs and unpickles, is unauthenticated "
            "and unencrypted; anyone who can reach or impersonate it can run code here (README, 'Backtest')")


def chunks(dates: list, size: int) -> list[list]:
    """``dates`` cut into consecutive runs of at most ``size``: units of work that share reads."""
    return [list(dates[i:i + size]) for i in range(0, len(dates), size)]


def _peak_memory_mib() -> float:
    """This process's peak resident set (run on each worker)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
