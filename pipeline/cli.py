"""Command line: thin wrappers over :mod:`pipeline.jobs`. Heavy imports happen inside commands
so ``pipeline --help`` stays fast."""
from __future__ import annotations

import logging
import sys
from datetime import datetime

import click


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
    """The global options, turned into settings when a command needs them."""

    def __init__(self, data_dir: str | None, config_path: str | None, source: str | None, wait_lock: float):
        self.data_dir = data_dir
        self.config_path = config_path
        self.source_override = source
        self.wait_lock = wait_lock

    def settings(self):
        from pipeline.config import ConfigError, resolve
        from pipeline.runlog import EXIT_BAD_INPUT

        try:
            return resolve(self.config_path, self.data_dir, self.source_override)
        except ConfigError as exc:
            _fail(str(exc), EXIT_BAD_INPUT)

    def run(self, command: str, date: str | None, steps: list[str]):
        """Run the named steps for one as-of date through :func:`pipeline.run.execute`."""
        from pipeline.run import execute

        as_of = resolve_date(date)
        outcome = execute(command, [as_of], steps, self.settings(), self.wait_lock)
        if outcome.calls:
            click.echo(f"vendor requests: {sum(outcome.calls.values())} {outcome.calls}", err=True)
        if outcome.message:
            _fail(outcome.message, outcome.exit_status)
        for path, frame in outcome.reports:
            _print_top(frame, path)
        click.echo(f"manifest: {outcome.manifest}", err=True)
        sys.exit(outcome.exit_status)


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
@click.option("--data-dir", default=None, help="Data root (default PIPELINE_DATA_DIR, else ./data).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default PIPELINE_CONFIG, else ./config.yaml, else built-in defaults).")
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
        runner.run(name, date, [name])
    return command


_stage_command("fetch-calendar", "Fetch the earnings calendar snapshot for the as-of date.")
_stage_command("fetch-history", "Refresh past earnings reports for the window's tickers.")
_stage_command("backfill-prices", "Fetch daily bars for sessions the store lacks (incremental).")
_stage_command("pull-chains", "Pull option chains for the expirations the window's events need.")
_stage_command("compute", "Compute moves, surface and metrics from the stored snapshots.")

# The order of pipeline.jobs.STEPS, spelled out so the CLI starts without importing pandas.
ALL_STEPS = ["fetch-calendar", "fetch-history", "backfill-prices", "pull-chains", "compute", "report"]


@main.command()
@DATE
@click.pass_obj
def daily(runner: Runner, date):
    """Run every stage in order and write the ranked report."""
    runner.run("daily", date, ALL_STEPS)


@main.command()
@DATE
@click.pass_obj
def rank(runner: Runner, date):
    """Write data/reports/rank_DATE.csv: recompute the date's metrics from its stored snapshots
    (so config changes apply), fetching them first if the date was never run."""
    from pipeline.store import Store

    as_of = resolve_date(date)
    fetched = Store(runner.settings().root).exists("chains", as_of)
    runner.run("rank", str(as_of.date()), ["compute", "report"] if fetched else ALL_STEPS)


@main.command()
@click.pass_obj
def doctor(runner: Runner):
    """Check config, credentials (presence only), vendor reachability, HTTP cache and data freshness."""
    from pipeline.doctor import exit_code, render, run_checks

    checks = run_checks(runner.data_dir, runner.config_path, runner.source_override)
    click.echo(render(checks))
    sys.exit(exit_code(checks))


@main.command()
@click.argument("ticker")
@DATE
@click.option("--report-date", default=None, help="Which report, when the ticker has two in the window.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.pass_obj
def explain(runner: Runner, ticker, date, report_date, as_json):
    """One event from the date's stored snapshots: calendar entry, past reports and how often they
    moved more than implied, straddle legs, term structure, smile, VRP, score parts, status."""
    import json

    from pipeline.explain import ExplainError, explain as explain_event, render_text
    from pipeline.runlog import EXIT_BAD_INPUT
    from pipeline.store import Store

    settings = runner.settings()
    as_of = resolve_date(date)
    try:
        doc = explain_event(Store(settings.root), ticker, as_of, settings.config, report_date)
    except ExplainError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    click.echo(json.dumps(doc, indent=2, allow_nan=False) if as_json else render_text(doc), nl=as_json)


def _with_no_html(command):
    """Add ``--no-html`` to a report-writing command: this run writes the CSV only (config key
    ``report.html``) and removes a stale rank_D.html of the date."""
    import functools
    from dataclasses import replace

    command.params.append(click.Option(["--no-html"], is_flag=True, default=False,
                                       help="Write the CSV only, no rank_DATE.html (config: report.html)."))
    inner = command.callback

    @functools.wraps(inner)
    def callback(*args, no_html=False, **kwargs):
        runner = click.get_current_context().find_object(Runner)
        if no_html and runner is not None:
            resolved = runner.settings

            def settings():
                current = resolved()
                return replace(current, config=replace(current.config, report_html=False))
            runner.settings = settings
        return inner(*args, **kwargs)
    command.callback = callback
    return command


_with_no_html(daily)
_with_no_html(rank)
