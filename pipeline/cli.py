"""Command line: thin wrappers over :mod:`pipeline.jobs`. Heavy imports happen inside commands
so ``pipeline --help`` stays fast."""
from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import click

DEFAULT_CONFIG = "config.yaml"


def _fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def resolve_date(text: str | None):
    """The as-of session: the given date (YYYY-MM-DD) or today in New York; a non-session maps to
    the previous session, and says so."""
    import pandas as pd

    from pipeline import sessions
    from pipeline.runlog import EXIT_BAD_INPUT

    if text is None:
        from zoneinfo import ZoneInfo

        day = pd.Timestamp(datetime.now(ZoneInfo(sessions.NEW_YORK)).date())
    else:
        try:
            day = pd.Timestamp(datetime.strptime(text, "%Y-%m-%d"))
        except ValueError:
            _fail(f"--date {text!r} is not a date in YYYY-MM-DD form", EXIT_BAD_INPUT)
    try:
        session = sessions.session_on_or_before(day)
    except sessions.OutOfRangeError as exc:
        _fail(f"--date {day.date()}: {exc}", EXIT_BAD_INPUT)
    if session != day:
        click.echo(f"{day.date()} is not an NYSE session; using the previous session {session.date()}", err=True)
    return session


class Runner:
    """Shared options, resolved lazily."""

    def __init__(self, data_dir: str, config_path: str | None, source: str | None, wait_lock: float):
        self.data_dir = Path(data_dir)
        self.config_path = config_path
        self.source_override = source
        self.wait_lock = wait_lock

    def config(self):
        from pipeline.config import Config, ConfigError, load_config
        from pipeline.runlog import EXIT_BAD_INPUT

        path = self.config_path or os.environ.get("PIPELINE_CONFIG")
        try:
            if path is None:
                config = load_config(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else Config()
            else:
                config = load_config(path)
        except ConfigError as exc:
            _fail(str(exc), EXIT_BAD_INPUT)
        if self.source_override:
            from dataclasses import replace

            config = replace(config, source=self.source_override)
        return config

    def run(self, command: str, date: str | None, stages: list[str], report: bool):
        """Run the named stages for one as-of date under the lock, with a manifest."""
        from pipeline import jobs
        from pipeline.runlog import (EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, LockedError, Manifest,
                                     data_root_lock, progress, setup_logging)
        from pipeline.sources import make_source
        from pipeline.store import Store

        as_of = resolve_date(date)
        config = self.config()
        root = self.data_dir
        try:
            with data_root_lock(root, self.wait_lock):
                setup_logging(root)
                store = Store(root)
                store.clean_temporaries()
                manifest = Manifest(root, command, as_of, config.source)
                ctx = jobs.Context(config=config, store=store)
                report_path = None
                try:
                    if any(name in jobs.FETCH_STAGES for name in stages):
                        ctx.source = make_source(config, root)
                    for name in progress(stages, "stages", "stage"):
                        with manifest.stage(name, ctx):
                            jobs.STAGES[name](ctx, as_of)
                    if report:
                        from pipeline.report import write_report

                        with manifest.stage("report", ctx):
                            report_path, frame = write_report(ctx.store.read("metrics", as_of), root, as_of)
                except Exception as exc:  # noqa: BLE001 - any failure: logged, manifested, exit 1
                    logging.getLogger("pipeline").exception("%s %s failed", command, as_of.date())
                    _source_calls(ctx)
                    manifest.finish(EXIT_FAILED, ctx.failures)
                    _fail(f"{command} {as_of.date()} failed: {exc}", EXIT_FAILED)
                calls = _source_calls(ctx)
                if calls:
                    manifest.data["calls"] = calls
                    click.echo(f"vendor requests: {sum(calls.values())} {calls}", err=True)
                fetch_failures = [f for f in ctx.failures if f[1] != "compute"]
                status = EXIT_PARTIAL if fetch_failures else EXIT_OK
                manifest_path = manifest.finish(status, ctx.failures, report_path)
        except LockedError as exc:
            _fail(str(exc), EXIT_LOCKED)
        if report_path is not None:
            _print_top(frame, report_path)
        click.echo(f"manifest: {manifest_path}", err=True)
        sys.exit(status)


def _source_calls(ctx) -> dict:
    """Fold a live source's per-ticker failures into the run's; return its request counts."""
    source_failures = getattr(ctx.source, "failures", [])
    known = set(ctx.failures)
    ctx.failures.extend(f for f in source_failures if tuple(f) not in known)
    return ctx.source.call_counts() if hasattr(ctx.source, "call_counts") else {}


def _print_top(frame, path, rows: int = 15):
    import pandas as pd

    shown = ["rank", "ticker", "report_date", "timing", "implied_move", "hist_mean_abs_move", "vrp",
             "vrp_event", "vrp_tier", "consistency", "liquidity_tier", "score"]
    if frame.empty:
        click.echo(f"no upcoming events in the window; wrote an empty report {path}")
        return
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        click.echo(frame[shown].head(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(f"{len(frame)} events -> {path}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", envvar="PIPELINE_DATA_DIR", default="data", show_default=True,
              help="Data root (also PIPELINE_DATA_DIR).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"Config file (default ./{DEFAULT_CONFIG}, or PIPELINE_CONFIG).")
@click.option("--source", type=click.Choice(["synthetic", "live"]), default=None,
              help="Override the config's source.")
@click.option("--wait-lock", type=float, default=0.0, show_default=True,
              help="Seconds to wait for another run on the same data root before exiting 75.")
@click.pass_context
def main(ctx, data_dir, config_path, source, wait_lock):
    """ivcrush: rank upcoming earnings events by volatility risk premium."""
    ctx.obj = Runner(data_dir, config_path, source, wait_lock)


DATE = click.option("--date", "date", default=None, help="As-of date YYYY-MM-DD (default: today, New York).")


def _stage_command(name: str, help_text: str):
    @main.command(name, help=help_text)
    @DATE
    @click.pass_obj
    def command(runner: Runner, date):
        runner.run(name, date, [name], report=False)
    return command


_stage_command("fetch-calendar", "Fetch the earnings calendar snapshot for the as-of date.")
_stage_command("fetch-history", "Refresh past earnings reports for the window's tickers.")
_stage_command("backfill-prices", "Fetch daily bars for sessions the store lacks (incremental).")
_stage_command("pull-chains", "Pull option chains for the expirations the window's events need.")
_stage_command("compute", "Compute moves, surface and metrics from the stored snapshots.")

# The order of pipeline.jobs.STAGES, spelled out so the CLI starts without importing pandas.
ALL_STAGES = ["fetch-calendar", "fetch-history", "backfill-prices", "pull-chains", "compute"]


@main.command()
@DATE
@click.pass_obj
def daily(runner: Runner, date):
    """Run every stage in order and write the ranked report."""
    runner.run("daily", date, ALL_STAGES, report=True)


@main.command()
@DATE
@click.pass_obj
def rank(runner: Runner, date):
    """Write data/reports/rank_DATE.csv: recompute the date's metrics from its stored snapshots
    (so config changes apply), fetching them first if the date was never run."""
    from pipeline.store import Store

    as_of = resolve_date(date)
    fetched = Store(runner.data_dir).exists("chains", as_of)
    runner.run("rank", str(as_of.date()), ["compute"] if fetched else ALL_STAGES, report=True)


@main.command()
@click.pass_obj
def doctor(runner: Runner):
    """Check config, credentials (presence only), vendor reachability, HTTP cache and data freshness."""
    from pipeline.doctor import exit_code, render, run_checks

    checks = run_checks(runner.data_dir, runner.config_path, runner.source_override)
    click.echo(render(checks))
    sys.exit(exit_code(checks))
