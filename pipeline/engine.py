"""Where per-date work executes: in this process, or on a dask.distributed cluster, one task per
date.

The unit of work is a date: a task reads shared datasets and writes only its own date's
partitions, so no two tasks write one file. Results come back in date order whatever the engine,
so both engines write the same bytes. dask is imported only when it is used.
"""
from __future__ import annotations

ENGINES = ("local", "dask")


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
    from dask.distributed import Client, LocalCluster

    cluster = None if scheduler else LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(task, *args, as_of, pure=False) for as_of in dates]
            return client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()


def chunks(dates: list, size: int) -> list[list]:
    """``dates`` cut into consecutive runs of at most ``size``: units of work that share reads."""
    return [list(dates[i:i + size]) for i in range(0, len(dates), size)]
