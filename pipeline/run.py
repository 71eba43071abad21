"""The run driver: one run of named steps over one or more as-of dates.

It owns what every command shares: the data-root lock, the log, the manifest, the failure record
handed to the source and the jobs, the per-date step loop, the once-per-run ``moves`` write and
the exit policy. Commands (the CLI, a replay, a backtest) only say which dates and which steps.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pipeline import clock, jobs, sources
from pipeline.config import Settings
from pipeline.engine import chunks, map_dates
from pipeline.runlog import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, LockedError,
                             Manifest, RootRefused, data_root_lock, progress, setup_logging)
from pipeline.files import atomic_write_bytes
from pipeline.store import CorruptPartition, Store

log = logging.getLogger("pipeline")

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
# What each step reads or replaces, and the step that writes each dataset again.
STEP_DATASETS = {
    "fetch-calendar": ("calendar",),
    "fetch-history": ("calendar", "earnings_history"),
    "backfill-prices": ("calendar", "prices"),
    "pull-chains": ("calendar", "chains"),
    "compute": ("calendar", "earnings_history", "prices", "chains", "surface", "metrics", "moves", "outcomes"),
    "report": ("metrics",),
}
REFETCH_STEP = {"calendar": "fetch-calendar", "earnings_history": "fetch-history", "prices": "backfill-prices",
                "chains": "pull-chains", "surface": "compute", "metrics": "compute", "moves": "compute",
                "structures": "compute", "outcomes": "compute"}
DATED = ("calendar", "chains", "surface", "metrics")
STAGE_VENDOR = {"fetch-calendar": "Alpha Vantage", "fetch-history": "Alpha Vantage",
                "backfill-prices": "Tradier", "pull-chains": "Tradier"}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised in the main thread so every ``finally`` runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Refused(Exception):
    """The run must not start; ``code`` is the exit status."""

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
    summary: str | None = None                          # a paragraph for stderr (exit 3, quarantine)


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


def execute(command: str, dates: list[pd.Timestamp], steps: list[str], settings: Settings,
            wait_lock: float = 0.0, engine: str = "local", scheduler: str | None = None) -> Outcome:
    """Run ``steps`` (names of :data:`pipeline.jobs.STEPS`, in that order) for each date.

    Exit policy: 1 when a step raises (the snapshots written before stay valid), 2 for a date the
    source cannot serve, 3 when a source could not deliver some tickers (or ``rank`` met events
    whose inputs were never fetched), else 0; 75 when another run holds the data root; 130/143
    on SIGINT/SIGTERM.
    """
    root = settings.root
    gate = _SignalGate()
    try:
        with _signals(gate):
            with data_root_lock(root, wait_lock):
                return _locked_run(command, dates, list(steps), settings, gate, engine, scheduler)
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


def _locked_run(command, dates, steps, settings, gate, engine, scheduler) -> Outcome:
    root, config = settings.root, settings.config
    try:
        setup_logging(root)
    except OSError as exc:
        return Outcome(EXIT_FAILED, f"cannot write the log under {root / 'logs'}: {_os_error(exc)}")
    log.info("%s: config %s, data root %s", command, settings.origin, root.resolve())
    store = Store(root)
    leftovers = store.clean_temporaries()
    manifest = Manifest(root, command, dates[0] if len(dates) == 1 else None, config.source)
    if leftovers:      # an earlier run was killed mid-write: say so where the operator looks
        manifest.data["removed_partials"] = leftovers
        log.warning("removed %d partial file(s) left by a run killed mid-write", leftovers)
    manifest.data.update(dates=[str(d.date()) for d in dates], config=settings.origin, data_root=str(root.resolve()))
    ctx = jobs.Context(config=config, store=store)
    outcome = Outcome(EXIT_OK)
    as_of = dates[0]
    notes: list[str] = []
    worker_market = None
    try:
        _refuse_unservable(config.source, dates, steps, store)
        steps = _preflight(store, config.source, dates, steps, manifest, notes)
        _check_reports_writable(root, steps)
        if any(name in jobs.FETCH_STEPS for name in steps):
            ctx.source = sources.make_source(config, root, ctx.failures)
        ranged = [s for s in steps if s in jobs.RANGE_STEPS]
        first = steps.index(ranged[0]) if ranged else 0
        before, after = steps[:first], [s for s in steps[first:] if s not in ranged]
        for as_of in dates:                    # per-date steps before the once-per-run ones
            for name in progress(before, f"{as_of.date()}", "step"):
                with manifest.stage(name, ctx):
                    jobs.STEPS[name](ctx, as_of)
        for name in ranged:                    # steps over all dates at once
            with manifest.stage(name, ctx):
                jobs.STEPS[name](ctx, list(dates))
        if "compute" in steps:
            # Moves are facts about past reports (stored history and prices only), and the report
            # draws them: written before any date is reported, so a first run's page has them.
            with manifest.stage("moves", ctx):
                jobs.write_moves(ctx)
        if engine == "dask" and len(dates) > 1:
            with manifest.stage("+".join(after) + " on dask", ctx):
                # The fetch failures so far go along: a date's report rows name them as the local engine's do.
                fetched = [f for f in ctx.failures if f[1] in jobs.FETCH_STEPS]
                # A synthetic market of the run's own for the workers (one copy each, simulated once
                # there); a live source is made per task (its HTTP client does not travel).
                if config.source == "synthetic" and any(name in jobs.FETCH_STEPS for name in after):
                    worker_market = sources.make_source(config, root, ctx.failures)
                for failures, reports, said in map_dates(_date_steps, dates, settings, after, fetched, worker_market,
                                                         engine=engine, scheduler=scheduler,
                                                         shared=(3,) if worker_market is not None else ()):
                    for failure in failures:
                        ctx.failures.add(*failure)
                    ctx.reports.extend(reports)
                    ctx.notes.extend(said)
        else:
            fetching = [s for s in after if s in jobs.FETCH_STEPS]
            writing = [s for s in after if s not in jobs.FETCH_STEPS]
            for chunk in chunks(dates, jobs.CHUNK_SESSIONS):
                # The chunk's chains first, then one pass of the stages over its dates, then each
                # date's writes and report, date by date.
                fetched = {}
                for as_of in chunk:
                    for name in progress(fetching, f"{as_of.date()}", "step"):
                        with manifest.stage(name, ctx):
                            jobs.STEPS[name](ctx, as_of)
                    fetched[as_of] = len(ctx.failures)
                if "compute" in writing and len(chunk) > 1:
                    with manifest.stage("compute", ctx):
                        jobs.compute_chunk(ctx, chunk, fetched)
                for as_of in chunk:
                    with _metrics_and_report_together(store, as_of, writing):
                        for name in progress(writing, f"{as_of.date()}", "step"):
                            with manifest.stage(name, ctx):
                                jobs.STEPS[name](ctx, as_of)
                    if command == "rank" and not any(s in jobs.FETCH_STEPS for s in steps):
                        _never_fetched(ctx, as_of)
    except Refused as exc:
        outcome.exit_status, outcome.message = exc.code, str(exc)
        log.error("%s refused: %s", command, exc)
    except Interrupted as exc:
        outcome.exit_status = EXIT_SIGNAL[exc.signum]
        outcome.message = (f"{command} {_working_on(exc, as_of)} interrupted by {exc}: every snapshot is either the "
                           f"previous or the new one, nothing half-written; rerun the same command to finish")
        manifest.data["interrupted"] = str(exc)
        log.error("%s interrupted by %s", command, exc)
    except OSError as exc:
        outcome.exit_status = EXIT_FAILED
        outcome.message = f"{command} {as_of.date()} failed: {_os_error(exc)}; the previous snapshots are intact"
        log.error("%s failed: %s", command, exc)
    except Exception as exc:  # noqa: BLE001 - any failure: logged, manifested, exit 1
        log.exception("%s failed", command)
        outcome.exit_status = EXIT_FAILED
        outcome.message = f"{command} {as_of.date()} failed: {exc}"
        if isinstance(exc, CorruptPartition):
            outcome.message += "\n" + _recovery(exc, root)
    finally:
        gate.hold = True           # a signal from here on is only remembered: the manifest gets written
        if worker_market is not None:
            worker_market.close()
        if ctx.source is not None:
            try:
                outcome.calls = ctx.source.call_counts()
                ctx.source.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                log.warning("closing the source failed", exc_info=True)
    if outcome.calls:
        manifest.data["calls"] = outcome.calls
    if outcome.exit_status == EXIT_OK and any(stage != "compute" for _, stage, _ in ctx.failures):
        outcome.exit_status = EXIT_PARTIAL
        notes.append(partial_summary(ctx.failures, config.source))
    if ctx.notes:
        manifest.data["notes"] = list(ctx.notes)
    if outcome.message:
        manifest.data["error"] = outcome.message
    outcome.summary = "\n".join(notes + ctx.notes) or None
    outcome.reports = ctx.reports
    try:
        outcome.manifest = manifest.finish(outcome.exit_status, ctx.failures,
                                           ctx.reports[-1][0] if ctx.reports else None)
    except OSError as exc:
        problem = f"the run manifest could not be written under {root / 'runs'}: {_os_error(exc)}"
        outcome.message = f"{outcome.message}; {problem}" if outcome.message else problem
        if outcome.exit_status in (EXIT_OK, EXIT_PARTIAL):
            outcome.exit_status = EXIT_FAILED
    if gate.pending and outcome.exit_status not in EXIT_SIGNAL.values():
        outcome.exit_status = EXIT_SIGNAL[gate.pending]
        outcome.message = (outcome.message or "") + f" (interrupted by {signal.Signals(gate.pending).name} while finishing)"
    return outcome


def _working_on(exc: BaseException, as_of) -> str:
    """The session being worked on when ``exc`` arrived: the first unfinished one of a dask map
    (:func:`pipeline.engine.map_dates` attaches them), else the loop's current date."""
    unfinished = [d for d in getattr(exc, "unfinished", []) if isinstance(d, pd.Timestamp)]
    if not unfinished:
        return str(as_of.date())
    more = f" ({len(unfinished)} sessions unfinished, to {unfinished[-1].date()})" if len(unfinished) > 1 else ""
    return f"{unfinished[0].date()}{more}"


def _date_steps(settings: Settings, names: list[str], known: list, market, as_of: pd.Timestamp) -> tuple[list, list, list]:
    """One date's per-date steps in a fresh context (seeded with the run's ``known`` failures):
    the task a dask worker runs. ``market``: the run's synthetic market (its owner closes it), or
    None to make and close a source here. Returns the failures, the reports written and the notes."""
    store = Store(settings.root)
    ctx = jobs.Context(config=settings.config, store=store)
    ctx.failures.seed(known)
    own = None
    if any(name in jobs.FETCH_STEPS for name in names):
        ctx.source = market if market is not None else sources.make_source(settings.config, settings.root, ctx.failures)
        own = None if market is not None else ctx.source
    try:
        with _metrics_and_report_together(store, as_of, names):
            for name in names:
                jobs.STEPS[name](ctx, as_of)
    finally:
        if own is not None:
            own.close()
    return list(ctx.failures), ctx.reports, ctx.notes


# ---- refusals --------------------------------------------------------------------------------

def _refuse_unservable(source: str, dates, steps, store: Store) -> None:
    fetching = [s for s in steps if s in jobs.FETCH_STEPS]
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


def _check_reports_writable(root: Path, steps) -> None:
    """A report that cannot be written must fail before the metrics it reports are replaced."""
    if "report" not in steps:
        return
    import tempfile

    reports = root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=reports, prefix=".tmp-write-check-", suffix=".partial"):
        pass


@contextmanager
def _metrics_and_report_together(store: Store, as_of, steps):
    """When a run computes and reports a date, a failure in either puts the date's previous
    metrics, surface and structures back, so metrics and report never disagree."""
    if not ("compute" in steps and "report" in steps):
        yield
        return
    saved = {}
    for name in ("metrics", "surface", "structures"):
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


def _preflight(store: Store, source: str, dates, steps, manifest: Manifest, notes: list) -> list[str]:
    """Open every file the steps read or replace; quarantine and refetch what can be fetched again,
    stop on what cannot. Returns the steps, with any refetch steps added (in run order)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    wanted = dict.fromkeys(name for step in steps for name in STEP_DATASETS[step])
    extra = set()
    moved = []
    for name in wanted:
        for value, path in store.files(name):
            if name in DATED and pd.Timestamp(value) not in set(dates):
                continue
            problem = store.check_file(name, path)
            if problem is None:
                continue
            bad = CorruptPartition(name, value, path, problem)
            refetch = REFETCH_STEP[name]
            day = pd.Timestamp(value) if name in DATED else None
            fetchable = refetch == "compute" or day is None or _can_serve(source, day)
            if name in ("surface", "metrics", "moves") and "compute" not in steps:
                fetchable = False
            if name == "prices" and "compute" not in steps and "backfill-prices" not in steps:
                fetchable = False
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
    if extra - set(steps):
        if "compute" in extra and "compute" not in steps:
            extra.add("report")
        steps = [s for s in jobs.STEPS if s in set(steps) | extra]
    return steps


def _recovery(exc: CorruptPartition, root: Path, source: str | None = None) -> str:
    aside = Path(root) / "quarantine" / "manual" / exc.path.parent.relative_to(Path(root))
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
        vendor = STAGE_VENDOR.get(stage, "the stored snapshots") if source == "live" else (
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


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0][:80] if reason.startswith("deferred") else reason.split(" (")[0][:120]
