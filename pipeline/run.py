"""The run driver: one run of named steps over one or more as-of dates.

It owns what every command shares: the data-root lock, the log, the manifest, the failure record
handed to the source and the jobs, the per-date step loop, the once-per-run ``moves`` write and
the exit policy. Commands (the CLI, a replay, a backtest) only say which dates and which steps.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import jobs, sources
from pipeline.config import Settings
from pipeline.runlog import (EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, LockedError, Manifest,
                             data_root_lock, progress, setup_logging)
from pipeline.store import Store

log = logging.getLogger("pipeline")


@dataclass
class Outcome:
    """How a run ended: the exit status, a message when it did not finish, what it wrote."""

    exit_status: int
    message: str | None = None
    manifest: Path | None = None
    reports: list = field(default_factory=list)       # (path, ranked frame) per date reported
    calls: dict = field(default_factory=dict)          # vendor requests per endpoint


def execute(command: str, dates: list[pd.Timestamp], steps: list[str], settings: Settings,
            wait_lock: float = 0.0) -> Outcome:
    """Run ``steps`` (names of :data:`pipeline.jobs.STEPS`, in that order) for each date.

    Exit policy: 1 when a step raises (the snapshots written before stay valid), 3 when a source
    could not deliver some tickers, else 0; 75 when another run holds the data root.
    """
    root = settings.root
    try:
        with data_root_lock(root, wait_lock):
            return _locked_run(command, dates, steps, settings)
    except LockedError as exc:
        return Outcome(EXIT_LOCKED, str(exc))


def _locked_run(command, dates, steps, settings) -> Outcome:
    root, config = settings.root, settings.config
    setup_logging(root)
    log.info("%s: config %s, data root %s", command, settings.origin, root.resolve())
    store = Store(root)
    store.clean_temporaries()
    manifest = Manifest(root, command, dates[0] if len(dates) == 1 else None, config.source)
    manifest.data["dates"] = [str(d.date()) for d in dates]
    ctx = jobs.Context(config=config, store=store)
    outcome = Outcome(EXIT_OK)
    as_of = dates[0]
    try:
        if any(name in jobs.FETCH_STEPS for name in steps):
            ctx.source = sources.make_source(config, root, ctx.failures)
        for as_of in dates:
            for name in progress(steps, f"{as_of.date()}", "step"):
                with manifest.stage(name, ctx):
                    jobs.STEPS[name](ctx, as_of)
        if "compute" in steps:
            with manifest.stage("moves", ctx):
                jobs.write_moves(ctx)
    except Exception as exc:  # noqa: BLE001 - any failure: logged, manifested, exit 1
        log.exception("%s failed", command)
        outcome.exit_status = EXIT_FAILED
        outcome.message = f"{command} {as_of.date()} failed: {exc}"
    finally:
        if ctx.source is not None:
            outcome.calls = ctx.source.call_counts()
            ctx.source.close()
    if outcome.calls:
        manifest.data["calls"] = outcome.calls
    if outcome.exit_status == EXIT_OK and any(stage != "compute" for _, stage, _ in ctx.failures):
        outcome.exit_status = EXIT_PARTIAL
    outcome.reports = ctx.reports
    outcome.manifest = manifest.finish(outcome.exit_status, ctx.failures,
                                       ctx.reports[-1][0] if ctx.reports else None)
    return outcome
