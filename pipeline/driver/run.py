"""The run driver: one run of a command over one or more as-of dates, as plan -> execute -> finish.

It owns what every command shares: the data-root lock, the log, the manifest, the failure record
handed to the source and the jobs, the exit policy and the handling of interrupts. A command only
says which dates and what work: steps of the registry (:mod:`pipeline.driver.steps`; daily, rank, replay,
a stage command) or a backtest (:class:`Backtest`).

Safety rules enforced here:
- a live source serves only the current session: fetch steps for any other date are refused
  (exit 2) before anything is written;
- every stored file the steps read or replace is opened (footer and schema) first; a bad one that
  can be fetched again is moved to ``<root>/quarantine/<UTC stamp>/`` and refetched, one that
  cannot stops the run naming the file and the recovery;
- SIGINT/SIGTERM end the run with a manifest marked interrupted (exit 130/143), lock released;
- a date's metrics and report are replaced together or not at all;
- operational errors (permissions, disk full) end with a message, never a traceback.
"""
from __future__ import annotations

import errno
import logging
import signal
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pandas as pd

from pipeline.contract import clock, sessions
from pipeline.driver import jobs, steps
from pipeline import sources
from pipeline.contract.config import Settings
from pipeline.driver.engine import map_dates
from pipeline.driver.runlog import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, LockedError,
                             Manifest, RootRefused, data_root_lock, progress, setup_logging)
from pipeline.contract.files import atomic_write_bytes
from pipeline.contract.layout import PARTITIONS, Layout
from pipeline.contract.store import CorruptPartition, Store

log = logging.getLogger("pipeline")

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
# Datasets partitioned by the as-of date: a run checks only its own dates' files of them. Outcomes
# are partitioned by date too, but every report reads the names' earlier ones.
DATED = tuple(name for name, key in PARTITIONS.items() if key in ("asof", "date") and name != "outcomes")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised in the main thread so every ``finally`` runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Refused(Exception):
    """The run must not go on; ``code`` is the exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class Outcome:
    """How a run ended: the exit status, a message when it did not finish, what it wrote."""

    exit_status: int
    message: str | None = None
    manifest: Path | None = None
    reports: list = field(default_factory=list)       # (path, ranked frame) per date reported
    calls: dict = field(default_factory=dict)          # vendor requests per endpoint
    summary: str | None = None                          # a paragraph for stderr (exit 3, quarantine, notes)
    result: object = None                               # what a backtest computed (pipeline.backtest.Result)


@dataclass
class Run:
    """One run under the lock: what each phase of its work reads and adds to."""

    command: str
    dates: list
    settings: Settings
    engine: str
    scheduler: str | None
    store: Store
    manifest: Manifest
    ctx: jobs.Context
    as_of: pd.Timestamp                                  # the date being worked on (for messages)
    notes: list = field(default_factory=list)           # the driver's lines for stderr (quarantine, exit 3)
    closing: list = field(default_factory=list)         # what the run made and closes at its end
    report: Path | None = None                          # the main output, when not a ranked report
    result: object = None


class _SignalGate:
    """Turns SIGINT/SIGTERM into :class:`Interrupted`; while ``hold`` is set (the manifest is being
    written) a signal is only remembered."""

    def __init__(self):
        self.hold = False
        self.pending: int | None = None

    def __call__(self, signum, frame):
        if self.hold:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)


@contextmanager
def _signals(gate: _SignalGate):
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, gate) for s in EXIT_SIGNAL}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def execute(command: str, dates: list[pd.Timestamp], work, settings: Settings,
            wait_lock: float = 0.0, engine: str = "local", scheduler: str | None = None) -> Outcome:
    """Run ``work`` over ``dates``: names of :data:`pipeline.driver.steps.STEPS` (run in the registry's
    order), or a :class:`Backtest`. ``engine``/``scheduler``: where per-date work executes.

    Exit policy: 1 when a step raises (the snapshots written before stay valid), 2 for a date the
    source cannot serve, 3 when a source could not deliver some tickers (or ``rank`` met events
    whose inputs were never fetched), else 0; 75 when another run holds the data root; 130/143
    on SIGINT/SIGTERM.
    """
    work = Steps(work) if isinstance(work, (list, tuple)) else work
    root = settings.root
    gate = _SignalGate()
    try:
        with _signals(gate), data_root_lock(root, wait_lock):
            return _locked_run(command, list(dates), work, settings, gate, engine, scheduler)
    except LockedError as exc:
        return Outcome(EXIT_LOCKED, str(exc))
    except RootRefused as exc:
        return Outcome(EXIT_BAD_INPUT, str(exc))
    except Interrupted as exc:
        return Outcome(EXIT_SIGNAL[exc.signum], f"interrupted by {exc} before the run started; nothing was written")
    except OSError as exc:
        return Outcome(EXIT_FAILED, f"cannot use the data root {root}: {_os_error(exc)}")


def _os_error(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    hint = {errno.ENOSPC: " (the disk is full: free space, then rerun)",
            errno.EACCES: " (check the permissions of the data root)",
            errno.EROFS: " (the file system is read-only)"}.get(exc.errno, "")
    return f"{text}: {exc.filename}{hint}" if exc.filename else f"{text}{hint}"


def _locked_run(command, dates, work, settings, gate, engine, scheduler) -> Outcome:
    """Holding the data root: plan -> execute -> finish. Whatever happens, the run's source is
    closed and its manifest written."""
    try:
        setup_logging(settings.root)
    except OSError as exc:
        return Outcome(EXIT_FAILED, f"cannot write the log under {Layout(settings.root).logs}: {_os_error(exc)}")
    run = _start(command, dates, settings, engine, scheduler)
    outcome = Outcome(EXIT_OK)
    try:
        work.plan(run)
        work.execute(run)
    except (Interrupted, Exception) as exc:  # noqa: BLE001 - any failure: logged, manifested, an exit status
        _failed(run, work, exc, outcome)
    finally:
        gate.hold = True           # a signal from here on is only remembered: the manifest gets written
        outcome.calls = _close(run)
    return _finish(run, outcome, gate)


def _start(command, dates, settings: Settings, engine, scheduler) -> Run:
    """The run's store (partial files of a killed run swept) and manifest."""
    root, config = settings.root, settings.config
    log.info("%s: config %s, data root %s", command, settings.origin, root.resolve())
    store = Store(root)
    leftovers = store.clean_temporaries()
    manifest = Manifest(root, command, dates[0] if len(dates) == 1 else None, config.source)
    if leftovers:      # an earlier run was killed mid-write: say so where the operator looks
        manifest.data["removed_partials"] = leftovers
        log.warning("removed %d partial file(s) left by a run killed mid-write", leftovers)
    manifest.data.update(dates=[str(d.date()) for d in dates], config=settings.origin, data_root=str(root.resolve()))
    return Run(command, dates, settings, engine, scheduler, store, manifest,
               jobs.Context(config=config, store=store), as_of=dates[0] if dates else None)


def _failed(run: Run, work, exc: BaseException, outcome: Outcome) -> None:
    """The exit status and message of a run that ``exc`` ended (called while handling it)."""
    command = run.command
    if isinstance(exc, Refused):
        outcome.exit_status, outcome.message = exc.code, str(exc)
        log.error("%s refused: %s", command, exc)
    elif isinstance(exc, Interrupted):
        outcome.exit_status, outcome.message = EXIT_SIGNAL[exc.signum], work.interrupted(run, exc)
        run.manifest.data["interrupted"] = str(exc)
        log.error("%s interrupted by %s", command, exc)
    elif isinstance(exc, OSError):
        outcome.exit_status = EXIT_FAILED
        outcome.message = f"{command} {run.as_of.date()} failed: {_os_error(exc)}; the previous snapshots are intact"
        log.error("%s failed: %s", command, exc)
    else:
        log.exception("%s failed", command)
        outcome.exit_status = EXIT_FAILED
        outcome.message = f"{command} {run.as_of.date()} failed: {exc}"
        if isinstance(exc, CorruptPartition):
            outcome.message += "\n" + _recovery(exc, run.settings.root)


def _close(run: Run) -> dict:
    """Close what the run opened; the source's vendor requests per endpoint."""
    for thing in run.closing:
        thing.close()
    calls = {}
    if run.ctx.source is not None:
        try:
            calls = run.ctx.source.call_counts()
            run.ctx.source.close()
        except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
            log.warning("closing the source failed", exc_info=True)
    return calls


def _finish(run: Run, outcome: Outcome, gate: _SignalGate) -> Outcome:
    """Exit 3 when tickers lack inputs, the manifest written, a signal that came meanwhile honoured."""
    ctx, manifest = run.ctx, run.manifest
    if outcome.calls:
        manifest.data["calls"] = outcome.calls
    if outcome.exit_status == EXIT_OK and any(stage != "compute" for _, stage, _ in ctx.failures):
        outcome.exit_status = EXIT_PARTIAL
        run.notes.append(partial_summary(ctx.failures, run.settings.config.source))
    if ctx.notes:
        manifest.data["notes"] = list(ctx.notes)
    if outcome.message:
        manifest.data["error"] = outcome.message
    outcome.summary = "\n".join(run.notes + ctx.notes) or None
    outcome.reports, outcome.result = ctx.reports, run.result
    report = run.report or (ctx.reports[-1][0] if ctx.reports else None)
    try:
        outcome.manifest = manifest.finish(outcome.exit_status, ctx.failures, report)
    except OSError as exc:
        problem = f"the run manifest could not be written under {Layout(run.settings.root).runs}: {_os_error(exc)}"
        outcome.message = f"{outcome.message}; {problem}" if outcome.message else problem
        if outcome.exit_status in (EXIT_OK, EXIT_PARTIAL):
            outcome.exit_status = EXIT_FAILED
    if gate.pending and outcome.exit_status not in EXIT_SIGNAL.values():
        outcome.exit_status = EXIT_SIGNAL[gate.pending]
        outcome.message = (outcome.message or "") + f" (interrupted by {signal.Signals(gate.pending).name} while finishing)"
    return outcome


# ---- the work of a run -------------------------------------------------------------------------

class Steps:
    """Steps of the registry over the run's dates (daily, rank, replay, a stage command).

    The steps run in segments of one span (:func:`pipeline.driver.steps.segments`): a range step once
    over all dates, per-date steps a chunk of sessions at a time. The per-date steps after the
    last range step run on the engine (:func:`_on_engine`); those before feed a range step and
    run here.
    """

    def __init__(self, names):
        self.names = steps.ordered(names)

    def plan(self, run: Run) -> None:
        """Refuse what the source cannot serve, check the files the steps read or replace (adding
        the steps that fetch bad ones again), check the report can be written; then the source."""
        if not run.dates:          # e.g. a replay of a range already complete: a manifest says it ran
            return
        config, root = run.settings.config, run.settings.root
        _refuse_unservable(config.source, run.dates, self.names, run.store)
        self.names = _preflight(run.store, config.source, run.dates, self.names, run.manifest, run.notes)
        _check_reports_writable(root, self.names)
        if any(name in steps.FETCH for name in self.names):
            run.ctx.source = sources.make_source(config, root, run.ctx.failures, progress)

    def execute(self, run: Run) -> None:
        cut = steps.segments(self.names) if run.dates else []
        for i, (span, names) in enumerate(cut):
            if span == steps.RANGE:
                for name in names:
                    with run.manifest.stage(name, run.ctx):
                        steps.BY_NAME[name].run(run.ctx, list(run.dates))
                continue
            _once(run, names)
            if i == len(cut) - 1 and run.engine == "dask" and len(run.dates) > 1:
                _on_engine(run, names)
            else:
                _each_date(run, names)
        if run.command == "rank" and not any(name in steps.FETCH for name in self.names):
            for as_of in run.dates:
                _never_fetched(run.ctx, as_of)

    def interrupted(self, run: Run, exc: Interrupted) -> str:
        return (f"{run.command} {_working_on(exc, run.as_of)} interrupted by {exc}: every snapshot is either the "
                f"previous or the new one, nothing half-written; rerun the same command to finish")


def _once(run: Run, names) -> None:
    """The once-per-run part of the segment's steps (the moves), before any date."""
    for name in names:
        step = steps.BY_NAME[name]
        if step.once is not None:
            with run.manifest.stage(step.once[0], run.ctx):
                step.run_once(run.ctx)


def _each_date(run: Run, names) -> None:
    """The per-date steps a chunk of sessions at a time (:data:`pipeline.driver.jobs.CHUNK_SESSIONS`): the
    chunk's fetch steps date by date, then :func:`_write_chunk`."""
    fetching, writing = _fetching_and_writing(names)

    def run_names(as_of, names):
        run.as_of = as_of
        _date_names(run, as_of, names)

    for chunk in sessions.chunks(run.dates, jobs.CHUNK_SESSIONS):
        fetched = {}
        for as_of in chunk:
            run_names(as_of, fetching)
            fetched[as_of] = len(run.ctx.failures)
        _write_chunk(run.ctx, chunk, writing, fetched, run_names, lambda name: run.manifest.stage(name, run.ctx))


def _fetching_and_writing(names) -> tuple[list, list]:
    return [name for name in names if name in steps.FETCH], [name for name in names if name not in steps.FETCH]


def _write_chunk(ctx: jobs.Context, chunk: list, names: list, fetched: dict, run_names, stage=None) -> None:
    """A chunk's steps after its fetch: one pass of the stages over its dates
    (:func:`pipeline.driver.jobs.compute_chunk`; ``fetched``: date -> how many of ``ctx.failures``
    its fetch had recorded), then each date's writes and report, date by date (``run_names(as_of,
    names)``; ``stage(name)``: the manifest's record of the pass, if any)."""
    if "compute" in names and len(chunk) > 1:
        with stage("compute") if stage else nullcontext():
            jobs.compute_chunk(ctx, chunk, fetched)
    for as_of in chunk:
        with _metrics_and_report_together(ctx.store, as_of, names):
            run_names(as_of, names)


def _date_names(run: Run, as_of, names) -> None:
    for name in progress(names, f"{as_of.date()}", "step"):
        with run.manifest.stage(name, run.ctx):
            steps.BY_NAME[name].run(run.ctx, as_of)


def _on_engine(run: Run, names) -> None:
    """The per-date steps on the engine, a chunk of sessions per task as a local run does them: each
    chunk's fetch (:func:`_fetch_task`) runs whenever a worker is free, its compute and report
    (:func:`_write_task`) after the previous chunk's, so every date sees the sessions before it
    stored, as in a local run. Results merged in date order."""
    ctx, config = run.ctx, run.settings.config
    # The fetch failures so far go along: a date's report rows name them as the local engine's do.
    fetched = [f for f in ctx.failures if f[1] in steps.FETCH]
    # A synthetic market of the run's own for the workers (one copy each, simulated once there); a
    # live source is made per task (its HTTP client does not travel).
    market = None
    if config.source == "synthetic" and any(name in steps.FETCH for name in names):
        market = sources.make_source(config, run.settings.root, ctx.failures, progress)
        run.closing.append(market)
    with run.manifest.stage("+".join(names) + f" on {run.engine}", ctx):
        for failures, reports, said in map_dates(_fetch_task, sessions.chunks(run.dates, jobs.CHUNK_SESSIONS),
                                                 run.settings, names, fetched, market, then=_write_task,
                                                 engine=run.engine, scheduler=run.scheduler,
                                                 shared=(3,) if market is not None else ()):
            for failure in failures:       # logged here: a worker's log lines stay on the worker
                ctx.failures.add(*failure)
            ctx.reports.extend(reports)
            ctx.notes.extend(said)


def _working_on(exc: BaseException, as_of) -> str:
    """The session being worked on when ``exc`` arrived: the first unfinished one of a dask map
    (:func:`pipeline.driver.engine.map_dates` attaches its unfinished items, chunks of sessions),
    else the loop's current date."""
    items = getattr(exc, "unfinished", [])
    unfinished = [d for item in items for d in (item if isinstance(item, list) else [item])
                  if isinstance(d, pd.Timestamp)]
    if not unfinished:
        return str(as_of.date())
    more = f" ({len(unfinished)} sessions unfinished, to {unfinished[-1].date()})" if len(unfinished) > 1 else ""
    return f"{unfinished[0].date()}{more}"


def _fetch_task(settings: Settings, names: list[str], known: list, market, chunk: list) -> list[list]:
    """A chunk's fetch steps, date by date, in a fresh context seeded with the run's ``known``
    failures: a task of a dask worker. ``market``: the run's synthetic market (its owner closes
    it), or None to make and close a source here. Returns, per date, the failures it recorded."""
    fetching, _ = _fetching_and_writing(names)
    ctx = jobs.Context(config=settings.config, store=Store(settings.root))
    ctx.failures.seed(known)
    if not fetching:
        return [[] for _ in chunk]
    ctx.source = market if market is not None else sources.make_source(settings.config, settings.root, ctx.failures,
                                                                       progress)
    try:
        recorded = []
        for as_of in chunk:
            before = len(ctx.failures)
            for name in fetching:
                steps.BY_NAME[name].run(ctx, as_of)
            recorded.append(list(ctx.failures)[before:])
        return recorded
    finally:
        if market is None:
            ctx.source.close()


def _write_task(settings: Settings, names: list[str], known: list, _market, chunk: list, recorded: list[list],
                previous: tuple | None) -> tuple[list, list, list]:
    """A chunk's compute and report (:func:`_write_chunk`) once its fetch recorded ``recorded``
    (:func:`_fetch_task`) and the previous chunk's write task returned ``previous``: the failure
    record starts as a local run's would be there (the previous task's, else the run's ``known``),
    and the earlier sessions' metrics and outcomes, which the vol percentiles and the report read,
    are stored (``_market``: the fetch's, unused here). Returns the failures so far, the reports
    written and the notes."""
    _, writing = _fetching_and_writing(names)
    ctx = jobs.Context(config=settings.config, store=Store(settings.root))
    ctx.failures.seed(known if previous is None else previous[0])
    fetched = {}
    for as_of, failures in zip(chunk, recorded):
        ctx.failures.seed(failures)
        fetched[as_of] = len(ctx.failures)

    def run_names(as_of, names):
        for name in names:
            steps.BY_NAME[name].run(ctx, as_of)

    _write_chunk(ctx, chunk, writing, fetched, run_names)
    return list(ctx.failures), ctx.reports, ctx.notes


class Backtest:
    """``pipeline backtest``: trade a :class:`pipeline.backtest.Spec` on stored snapshots. Its files
    are written at the end, so an interrupted backtest leaves the previous ones."""

    def __init__(self, spec):
        self.spec = spec
        self.writing = False

    def plan(self, run: Run) -> None:
        """Nothing to check first: :func:`pipeline.backtest.run` refuses a range that was not
        replayed before it computes anything, and nothing is written before the end."""

    def execute(self, run: Run) -> None:
        from pipeline import backtest as bt

        with run.manifest.stage("trades") as entry:
            try:
                chunk = bt.CHUNK_SESSIONS if run.engine == "dask" else bt.LOCAL_CHUNK_SESSIONS
                result = bt.run(run.settings, self.spec, partial(map_dates, engine=run.engine, scheduler=run.scheduler),
                                chunk)
            except bt.NotReplayed as exc:
                raise Refused(str(exc), EXIT_BAD_INPUT) from None
            except LookupError as exc:          # no event in the range, or none matching the selection
                raise Refused(str(exc), EXIT_FAILED) from None
            entry["rows"] = {"trades": len(result.trades)}
        if result.missing:
            shown = ", ".join(str(d.date()) for d in result.missing[:10]) + (" ..." if len(result.missing) > 10 else "")
            run.ctx.notes.append(f"note: {len(result.missing)} of {len(run.dates)} sessions of the range have no "
                                 f"stored snapshots and were not traded ({shown}); `pipeline replay` the range to "
                                 "include them")
        self.writing = True
        with run.manifest.stage("write"):
            paths = bt.write(run.settings, self.spec, result)
        run.manifest.data["backtest"] = {"run_id": self.spec.run_id(run.settings),
                                         "files": {name: str(path) for name, path in paths.items()}}
        run.report, run.result = paths["csv"], result

    def interrupted(self, run: Run, exc: Interrupted) -> str:
        if self.writing:
            return (f"backtest interrupted by {exc} while writing its outputs: each file is either the previous "
                    "or the new one; rerun the same command")
        unfinished = [d for chunk in getattr(exc, "unfinished", []) for d in chunk]
        where = f" while working on exit sessions from {unfinished[0].date()}" if unfinished else ""
        return (f"backtest interrupted by {exc}{where}; nothing was written (outputs are written at the end); "
                "rerun the same command")


# ---- refusals --------------------------------------------------------------------------------

def _refuse_unservable(source: str, dates, names, store: Store) -> None:
    fetching, _ = _fetching_and_writing(names)
    if not fetching:
        return
    current = clock.current_session()
    for day in dates:
        if day > current:
            raise Refused(f"{day.date()} is after the current session {current.date()}: no source can serve it",
                          EXIT_BAD_INPUT)
        if source == "live" and day != current:
            raise Refused(
                f"source 'live' serves only the current session {current.date()}; {fetching[0]} for {day.date()} "
                f"would store today's market as {day.date()}'s, so nothing was fetched or written. "
                + _what_can_run(store, day, current), EXIT_BAD_INPUT)


def _what_can_run(store: Store, day, current) -> str:
    """Advice that works: recompute ``day`` when its snapshots are stored, else name the dates
    that are (never the command that was just refused)."""
    if store.exists("chains", day) and store.exists("calendar", day):
        return f"`pipeline rank --date {day.date()}` recomputes {day.date()} from its stored snapshots."
    stored = [d for d in store.partitions("chains") if store.exists("calendar", pd.Timestamp(d))]
    where = (f"stored dates run {stored[0]} to {stored[-1]}: `pipeline rank --date {stored[-1]}` recomputes one"
             if stored else "no date is stored yet")
    return (f"{day.date()} was never stored on this data root, so it cannot be recomputed either ({where}); "
            f"`pipeline daily` fetches the current session {current.date()}.")


def _check_reports_writable(root: Path, names) -> None:
    """A report that cannot be written must fail before the metrics it reports are replaced."""
    if "report" not in names:
        return
    import tempfile

    reports = Layout(root).reports
    reports.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=reports, prefix=".tmp-write-check-", suffix=".partial"):
        pass


@contextmanager
def _metrics_and_report_together(store: Store, as_of, names):
    """When a run computes and reports a date, a failure in either puts the date's previous
    metrics and what was computed with them back, so metrics and report never disagree."""
    if not ("compute" in names and "report" in names):
        yield
        return
    saved = {}
    for name in jobs.COMPUTED:
        path = store.partition_path(name, as_of)
        saved[path] = path.read_bytes() if path.exists() else None
    try:
        yield
    except BaseException:
        for path, data in saved.items():
            try:
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write_bytes(path, lambda tmp, data=data: tmp.write_bytes(data))
            except OSError:
                log.error("could not put back %s after a failed run", path, exc_info=True)
        raise


# ---- corrupt and foreign files ---------------------------------------------------------------

def _can_serve(source: str, day) -> bool:
    current = clock.current_session()
    return day <= current if source == "synthetic" else day == current


def _preflight(store: Store, source: str, dates, names, manifest: Manifest, notes: list) -> list[str]:
    """Open every file the steps read or replace; quarantine and refetch what can be fetched again,
    stop on what cannot. Returns the steps, with any refetch steps added (in run order)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    extra = set()
    moved = []
    for name in steps.checked(names):
        for value, path in store.files(name):
            if name in DATED and pd.Timestamp(value) not in set(dates):
                continue
            problem = store.check_file(name, path)
            if problem is None:
                continue
            bad = CorruptPartition(name, value, path, problem)
            refetch = steps.writer(name)
            day = pd.Timestamp(value) if name in DATED else None
            # Derived data is rebuilt only by a run that computes; fetched data by a source serving its day.
            fetchable = "compute" in names if refetch == "compute" else day is None or _can_serve(source, day)
            if not fetchable:
                raise Refused(f"{bad}\n{_recovery(bad, store.root, source)}", EXIT_FAILED)
            target = store.quarantine(path, stamp)
            extra.add(refetch)
            moved.append({"dataset": name, "partition": value, "file": str(path), "moved_to": str(target),
                          "reason": problem, "refetched_by": refetch})
            log.warning("quarantined %s (%s) to %s; %s fetches it again", path, problem, target, refetch)
    if moved:
        manifest.data["quarantined"] = moved
        notes.append("quarantined (unreadable or foreign files; copies kept): " + "; ".join(
            f"{m['file']} -> {m['moved_to']} ({m['reason']}), refetched by {m['refetched_by']}" for m in moved))
    if extra - set(names):
        if "compute" in extra and "compute" not in names:
            extra.add("report")
        names = steps.ordered(set(names) | extra)
    return names


def _recovery(exc: CorruptPartition, root: Path, source: str | None = None) -> str:
    aside = Layout(root).manual_quarantine(exc.path)
    why = ("it cannot be fetched again: a live source serves only the current session"
           if source == "live" else "it cannot be fetched again by this command")
    return (f"{why}. Restore it from a backup, or move it aside (a copy is kept) with:\n"
            f"  mkdir -p {aside} && mv {exc.path} {aside}/\n"
            f"then rerun; for a past date `pipeline --source synthetic daily --date D` rebuilds synthetic "
            f"snapshots, while a live past date's chains are gone for good (its report stays as written).")


# ---- rank: inputs never fetched -----------------------------------------------------------------

def _never_fetched(ctx: jobs.Context, as_of: pd.Timestamp) -> None:
    """``rank`` recomputes from stored snapshots only: name window events whose inputs were never
    fetched for ``as_of`` (e.g. the window was widened after the date was fetched)."""
    _, tickers = jobs.window_tickers(ctx, as_of)
    if not tickers:
        return
    store = ctx.store
    have = {
        "option chain": set(store.scan("chains", dates=[as_of], tickers=tickers, columns=["ticker"])["ticker"]),
        "earnings history": set(store.scan("earnings_history", tickers=tickers, columns=["ticker"])["ticker"]),
        "price bars": set(store.scan("prices", tickers=tickers, columns=["ticker"])["ticker"]),
    }
    for ticker in tickers:
        missing = [what for what, present in have.items() if ticker not in present]
        if missing:
            ctx.failures.add(ticker, "rank-inputs", f"never fetched for {as_of.date()}: {', '.join(missing)} "
                             f"(rank recomputes from stored snapshots only; the window may be wider than when "
                             f"{as_of.date()} was fetched)")


# ---- the exit-3 paragraph ---------------------------------------------------------------------

def partial_summary(failures, source: str) -> str:
    """One paragraph: which tickers, which vendor, why, what happens tomorrow."""
    groups: dict[tuple[str, str], list[str]] = {}
    for ticker, stage, reason in failures:
        if stage == "compute":
            continue
        groups.setdefault((stage, _reason_kind(reason)), []).append(ticker)
    parts = []
    deferred = False
    for (stage, kind), tickers in groups.items():
        vendor = _vendor(stage) if source == "live" else (
            "the stored snapshots" if stage == "rank-inputs" else f"the {source} source")
        shown = ", ".join(tickers[:12]) + (f" and {len(tickers) - 12} more" if len(tickers) > 12 else "")
        parts.append(f"{len(tickers)} at {stage} from {vendor} ({kind}): {shown}")
        deferred |= kind.startswith("deferred")
    total = len({t for t, s, _ in failures if s != "compute"})
    tomorrow = ("Deferred tickers are fetched first on the next run, when the Alpha Vantage daily budget resets; "
                if deferred else "")
    return (f"partial run (exit 3): {total} ticker(s) lack inputs; their report rows are marked failed. "
            + "; ".join(parts) + ". " + tomorrow
            + "every other failure is retried by the next run (see the manifest for each reason).")


def _vendor(stage: str) -> str:
    """Who a live run's failure at ``stage`` came from: the step's vendor, else the store."""
    step = steps.BY_NAME.get(stage)
    return step.vendor if step is not None and step.vendor else "the stored snapshots"


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0][:80] if reason.startswith("deferred") else reason.split(" (")[0][:120]
