"""Where per-date work executes: in this process, or on a dask.distributed cluster, one task per
chunk of consecutive dates (a replay's fetch, then its stages and report after the previous
chunk's; a backtest's month of exit sessions).

The unit of work is a date or a chunk: a task reads shared datasets and writes only its own
dates' partitions, so no two tasks write one file. Results come back in date order whatever the
engine, so both engines write the same bytes. Tasks are plain futures returning pandas objects,
not dask collections, so there is no graph and no ``meta`` to infer. dask is imported only when
it is used.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

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
    "distributed.worker.preload": ["pipeline.driver.engine"],      # dask_setup: workers leave Ctrl-C to the client
}


def map_dates(task, dates: list, *args, engine: str = "local", scheduler: str | None = None,
              shared: tuple[int, ...] = (), then=None) -> list:
    """``[task(*args, as_of) for as_of in dates]``, run by ``engine``; an item of ``dates`` may be a
    chunk of dates (:func:`pipeline.contract.sessions.chunks`) for a task that takes one.

    ``then``: a second task per item, run in item order: ``then(*args, item, task's result, the
    previous item's then result or None)`` starts once both are done, and the results are then's.
    The ``task`` of later items runs meanwhile, whenever a worker is free (a replay fetches ahead
    while the stages run date after date).

    ``dask``: a LocalCluster of one single-threaded worker process per core (``scheduler`` None)
    or the existing cluster at ``scheduler`` (``tcp://HOST:PORT``); its workers need this package
    installed and the data root at the same path (shared storage). ``task`` must be a
    module-level function (it is pickled to the workers). An exception leaving here (an
    interrupt, a failed task) carries ``unfinished``: the items not done, in order.
    ``shared``: positions in ``args`` of objects sent once to every worker (``scatter``), so the
    tasks of one worker share one copy (e.g. the run's synthetic market and its simulated paths).
    """
    if engine == "local" or len(dates) < 2:
        results = []
        try:
            for as_of in dates:
                first = task(*args, as_of)
                results.append(first if then is None else then(*args, as_of, first, results[-1] if results else None))
        except BaseException as exc:
            exc.unfinished = list(dates[len(results):])      # what was being worked on, and after
            raise
        return results
    if engine != "dask":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    import dask
    from dask.distributed import Client, LocalCluster

    cluster = client = futures = None
    try:
        if scheduler:
            warning = scheduler_warning(scheduler)
            if warning:
                logging.getLogger("pipeline").warning("%s", warning)
                print(f"warning: {warning}", file=sys.stderr)
            client = Client(scheduler)
        else:
            with dask.config.set(LOCAL_CLUSTER_CONFIG), _sigint_held():
                # A dashboard on a free port: None still binds the default 8787, and a second
                # cluster on the machine then warns on stderr.
                cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0")
                client = Client(cluster)
                client.wait_for_workers(len(cluster.workers))    # a Ctrl-C meets a cluster up, not half-started
        try:
            args = [client.scatter(a, broadcast=True) if i in shared else a for i, a in enumerate(args)]
            futures = _submit(client, task, then, dates, args)
            results = client.gather(futures)
        except BaseException as exc:
            exc.unfinished = [d for d, f in zip(dates, futures or []) if not f.done()] or list(dates)
            raise
        peaks = client.run(_peak_memory_mib)
        logging.getLogger("pipeline").info(
            "dask: %d tasks on %d workers; peak resident memory per worker since it started: %s MiB",
            len(dates), len(peaks), ", ".join(f"{peaks[w]:.0f}" for w in sorted(peaks)))
        return results
    except BaseException as exc:
        # Interrupted (or failed): say which dates were unfinished, and keep dask's own shutdown
        # chatter (cancelled tasks, lost workers) off the operator's terminal.
        if not hasattr(exc, "unfinished"):
            exc.unfinished = list(dates)
        _quiet_dask()
        if client is not None and cluster is not None:     # our own workers only, never a shared cluster's
            client.run(_quiet_dask, on_error="ignore")
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _submit(client, task, then, dates: list, args: list) -> list:
    """The futures whose results :func:`map_dates` returns. With ``then``, each item's ``task`` is
    submitted just before its ``then``: dask runs the earlier-submitted of two ready tasks first, so
    a worker freed picks the next ``then`` as soon as it can start, and the tasks ahead otherwise."""
    if then is None:
        return [client.submit(task, *args, as_of, pure=False) for as_of in dates]
    futures, previous = [], None
    for as_of in dates:
        first = client.submit(task, *args, as_of, pure=False)
        previous = client.submit(then, *args, as_of, first, previous, pure=False)
        futures.append(previous)
    return futures


def scheduler_warning(address: str) -> str | None:
    """Why attaching to the dask scheduler at ``address`` is risky, or None. A scheduler runs
    whatever code it is sent on its workers, and this client unpickles what comes back, so
    anyone who can reach or impersonate it runs code here: only loopback or TLS is quiet."""
    from urllib.parse import urlsplit

    from pipeline.contract.outside_text import escape_controls
    from pipeline.sources.live import is_loopback

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tls" or is_loopback(parts.hostname):
        return None
    return (f"dask scheduler {escape_controls(address)} is neither loopback nor TLS (tls://): its traffic, "
            "including the pickled tasks and results this client runs and unpickles, is unauthenticated "
            "and unencrypted; anyone who can reach or impersonate it can run code here (README, 'Backtest')")


@contextmanager
def _sigint_held():
    """SIGINT ignored while the cluster starts. Ctrl-C reaches the whole process group, and a
    worker process hit while importing prints a traceback of its own; an ignored signal is
    inherited across exec, so the workers started here keep ignoring it (``dask_setup`` covers
    a worker restarted later) and only this process acts on Ctrl-C. The price: a Ctrl-C during
    the cluster's few seconds of start-up is not seen (the next one is)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def dask_setup(worker) -> None:
    """Run in each LocalCluster worker process as it starts (``distributed.worker.preload``):
    Ctrl-C reaches the whole process group, and only the client must act on it (exit 130 after
    closing the cluster), not each worker with a traceback of its own."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _quiet_dask() -> None:
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _peak_memory_mib() -> float:
    """This process's peak resident set (run on each worker)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
