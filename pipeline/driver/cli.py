"""Command line: thin wrappers over :mod:`pipeline.driver.jobs`. Heavy imports happen inside commands
so ``pipeline --help`` stays fast."""
from __future__ import annotations

import sys

import click

from pipeline.driver.steps import NAMES, STEPS


def _fail(message: str, code: int):
    from pipeline.contract.outside_text import escape_controls

    click.echo(f"error: {escape_controls(message, keep_newlines=True)}", err=True)
    sys.exit(code)


def resolve_date(text: str | None, config):
    """The as-of session: ``YYYY-MM-DD``, ``today`` or ``yesterday`` (default today, New York); a
    non-session maps to the previous session, and says so. Dates after the current session or
    before the supported range exit 2 (:func:`pipeline.contract.clock.resolve_day`)."""
    day, session = _resolve_day(text, config)
    if session != day:
        click.echo(f"{day.date()} is not an NYSE session; using the previous session {session.date()}", err=True)
    return session


def _resolve_day(text: str | None, config):
    """(the date given, the session on or before it), or exit 2 with the reason."""
    from pipeline.contract import clock
    from pipeline.driver.runlog import EXIT_BAD_INPUT

    try:
        return clock.resolve_day(text, config.history_years)
    except ValueError as exc:        # clock.DateError, or a PIPELINE_TODAY that is not a date
        _fail(str(exc), EXIT_BAD_INPUT)


class Runner:
    """The global options, turned into settings when a command needs them."""

    def __init__(self, data_dir: str | None, config_path: str | None, source: str | None, wait_lock: float):
        self.data_dir = data_dir
        self.config_path = config_path
        self.source_override = source
        self.wait_lock = wait_lock
        self.no_html = False           # --no-html, or a command that never wants the page
        self._settings = None

    def settings(self):
        from pipeline.contract.config import ConfigError, resolve
        from pipeline.driver.runlog import EXIT_BAD_INPUT

        if self._settings is None:
            try:
                self._settings = resolve(self.config_path, self.data_dir, self.source_override)
            except ConfigError as exc:
                _fail(str(exc), EXIT_BAD_INPUT)
            if self._settings.origin == "built-in defaults":
                click.echo(f"note: no --config, PIPELINE_CONFIG or ./config.yaml here; using built-in defaults "
                           f"(source {self._settings.config.source}) and data root {self._settings.root.resolve()}",
                           err=True)
            if self.no_html:
                from dataclasses import replace

                self._settings = replace(self._settings, config=replace(self._settings.config, report_html=False))
        return self._settings

    def run(self, command: str, date: str | None, steps: list[str], as_of=None):
        """Run the named steps for one as-of date through :func:`pipeline.driver.run.execute`."""
        from pipeline.driver.run import execute

        settings = self.settings()
        as_of = as_of if as_of is not None else resolve_date(date, settings.config)
        outcome = execute(command, [as_of], steps, settings, self.wait_lock)
        if outcome.calls:
            click.echo(f"vendor requests: {sum(outcome.calls.values())} {outcome.calls}", err=True)
        for path, frame in outcome.reports:
            _print_top(frame, path)
        _conclude(outcome)


def _conclude(outcome, done=None):
    """How every run ends on the terminal: its notes and manifest on stderr, then its error (exit
    with its status), or ``done()`` and its exit status."""
    if outcome.summary:
        click.echo(outcome.summary, err=True)
    if outcome.manifest:
        click.echo(f"manifest: {outcome.manifest}", err=True)
    if outcome.message:
        _fail(outcome.message, outcome.exit_status)
    if done is not None:
        done()
    sys.exit(outcome.exit_status)


def _print_top(frame, path, rows: int = 15):
    """The top of the ranked table (percent for moves, as on the page), why any shown row is not
    clean, and where the CSV and the page are."""
    from pipeline.views.display import console_table

    if frame.empty:
        click.echo(f"no upcoming events in the window; wrote an empty report {path}")
    else:
        head = frame.head(rows)
        # A degraded or failed pick must not look clean: marked "!", and why below the table.
        click.echo(console_table(frame, rows))
        for row in head[head["status"] != "ok"].itertuples():
            click.echo(f"! {row.ticker} {row.status}: {row.reason}")
        click.echo(f"{len(frame)} events -> {path}")
    page = path.with_suffix(".html")
    if page.exists():
        click.echo(f"page: {page}")


GLOBAL_OPTIONS = ("data_dir", "config_path", "source", "wait_lock")


def _global_options(func):
    """--data-dir, --config, --source and --wait-lock, accepted before or after the sub-command
    (after wins)."""
    func = click.option("--data-dir", default=None, help="Data root (default PIPELINE_DATA_DIR, else ./data).")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        help="Config file (default PIPELINE_CONFIG, else ./config.yaml, else built-in defaults).")(func)
    func = click.option("--source", type=click.Choice(["synthetic", "live"]), default=None,
                        help="Override the config's source.")(func)
    func = click.option("--wait-lock", type=float, default=None,
                        help="Seconds to wait for another run on the same data root before exiting 75 (default 0).")(func)
    return func


def _sub_options(func):
    """The global options on a sub-command: they update the group's :class:`Runner`."""
    import functools

    @_global_options
    @click.pass_obj
    @functools.wraps(func)
    def wrapper(runner, *args, data_dir=None, config_path=None, source=None, wait_lock=None, **kwargs):
        for name, value in (("data_dir", data_dir), ("config_path", config_path), ("source_override", source),
                            ("wait_lock", wait_lock)):
            if value is not None:
                setattr(runner, name, value)
        return func(runner, *args, **kwargs)
    return wrapper


class _Commands(click.Group):
    """Every command of the group takes the global options after its name as well (they update
    the group's :class:`Runner`, which it gets as its first argument)."""

    def command(self, *args, **kwargs):
        make = super().command(*args, **kwargs)

        def decorator(func):
            command = make(_sub_options(func))
            command.params.sort(key=lambda p: p.name in GLOBAL_OPTIONS)     # its own options first in --help
            return command
        return decorator


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@_global_options
@click.pass_context
def main(ctx, data_dir, config_path, source, wait_lock):
    """ivcrush: rank upcoming earnings events by volatility risk premium."""
    ctx.obj = Runner(data_dir, config_path, source, wait_lock or 0.0)


DATE = click.option("--date", "date", default=None,
                    help="As-of date YYYY-MM-DD, today or yesterday (default: today, New York).")


def _stage_command(name: str, help_text: str):
    @main.command(name, help=help_text)
    @DATE
    def command(runner: Runner, date):
        runner.run(name, date, [name])
    return command


for _step in STEPS:
    if _step.help:
        _stage_command(_step.name, _step.help)


NO_HTML = click.option("--no-html", is_flag=True, default=False,
                       help="Write the CSV only, no rank_DATE.html (config: report.html).")


@main.command()
@DATE
@NO_HTML
def daily(runner: Runner, date, no_html):
    """Run every stage in order and write the ranked report."""
    runner.no_html = no_html
    runner.run("daily", date, list(NAMES))


@main.command()
@DATE
@NO_HTML
def rank(runner: Runner, date, no_html):
    """Write data/reports/rank_DATE.csv: recompute the date's metrics from its stored snapshots
    (so config changes apply), fetching them first if the date was never run."""
    from pipeline.contract.store import Store

    runner.no_html = no_html
    as_of = resolve_date(date, runner.settings().config)
    fetched = Store(runner.settings().root).exists("chains", as_of)
    runner.run("rank", None, ["compute", "report"] if fetched else list(NAMES), as_of=as_of)


@main.command()
@click.option("--deep", is_flag=True, default=False,
              help="Also open every stored file with its schema and validate the rows the next run reads.")
def doctor(runner: Runner, deep):
    """Check config, a writable data root, credentials (presence only), vendor reachability and
    session, HTTP cache, whole data files and data freshness."""
    from pipeline.driver.doctor import exit_code, render, run_checks

    checks = run_checks(runner.data_dir, runner.config_path, runner.source_override, deep=deep)
    click.echo(render(checks))
    sys.exit(exit_code(checks))


RANGE = [click.option("--start", required=True, help="First session YYYY-MM-DD."),
         click.option("--end", required=True, help="Last session YYYY-MM-DD."),
         click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
                      help="Run the per-date work in this process or on a dask.distributed cluster."),
         click.option("--scheduler", default=None,
                      help="Address of an existing dask scheduler (tcp://HOST:PORT); default: a local cluster.")]


def _range_options(func):
    for option in reversed(RANGE):
        func = option(func)
    return func


def _sessions(runner: Runner, start: str, end: str):
    from pipeline.contract import sessions
    from pipeline.driver.runlog import EXIT_BAD_INPUT

    config = runner.settings().config
    (day, _), (end_day, last) = (_resolve_day(text, config) for text in (start, end))
    wanted = list(sessions.sessions_between(day, last))
    if day > end_day:
        _fail(f"--start {day.date()} is after --end {end_day.date()}", EXIT_BAD_INPUT)
    if not wanted:
        _fail(f"no NYSE session between --start {day.date()} and --end {end_day.date()}", EXIT_BAD_INPUT)
    if wanted[0] != day:          # the range starts on the first session on or after --start
        click.echo(f"--start {day.date()} is not an NYSE session; the range starts at the next session "
                   f"{wanted[0].date()}", err=True)
    if last != end_day:
        click.echo(f"--end {end_day.date()} is not an NYSE session; the range ends at the previous session "
                   f"{last.date()}", err=True)
    return wanted


@main.command()
@_range_options
def replay(runner: Runner, start, end, engine, scheduler):
    """Run the daily steps for every session from START to END, skipping sessions already
    complete (resumable). The synthetic source builds any range; a live source can only
    recompute dates whose snapshots are stored."""
    from pipeline.driver.run import execute
    from pipeline.contract.store import Store

    # A replay writes the CSV of every session; the HTML page is for the day an analyst reads.
    runner.no_html = True
    settings = runner.settings()
    store = Store(settings.root)
    wanted = _sessions(runner, start, end)
    todo = [d for d in wanted
            if not (store.exists("metrics", d) and store.layout.rank_csv(d.date().isoformat()).exists())]
    names = list(NAMES)
    if settings.config.source == "live":
        todo = [d for d in todo if store.exists("chains", d)]
        names = ["compute", "report"]
    click.echo(f"replay: {len(wanted)} sessions, {len(wanted) - len(todo)} already complete, {len(todo)} to run",
               err=True)
    # Nothing to run still goes through the driver: its manifest tells a cron job's operator it ran.
    outcome = execute("replay", todo, names, settings, runner.wait_lock, engine, scheduler)
    _conclude(outcome, lambda: click.echo(f"{len(outcome.reports)} reports written under {store.layout.reports}"))


@main.command()
@_range_options
@click.option("--fill", "fill_share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of the half-spread paid away from mid (0 = mid, 1 = the touch).")
@click.option("--commission", type=click.FloatRange(0), default=0.65, show_default=True,
              help="Commission per contract.")
@click.option("--min-score", type=click.FloatRange(0, 100), default=None,
              help="Trade only events scoring at least this (0-100).")
@click.option("--vrp-tier", "vrp_tiers", multiple=True,
              help="Trade only these VRP tiers (repeatable, any case; the configured names and SKIP).")
@click.option("--liquidity-tier", "liquidity_tiers", multiple=True,
              help="Trade only these liquidity tiers (repeatable, any case; the configured names and REJECT).")
@click.option("--top", "top_n", type=click.IntRange(1), default=None, help="At most N trades per entry session.")
@click.option("--structure", type=click.Choice(["straddle", "strangle", "iron_condor", "iron_butterfly", "suggested"]),
              default="straddle", show_default=True,
              help="What to sell per event: a structure of DESIGN section 12, or the one the entry data suggests.")
def backtest(runner: Runner, start, end, engine, scheduler, **selection):
    """Sell the straddle of every event reacting between START and END at the session before,
    buy it back at the reaction session, from stored snapshots only."""
    from pipeline import backtest as bt
    from pipeline.driver.run import Backtest, execute

    settings = runner.settings()
    dates = _sessions(runner, start, end)
    order = bt.tier_order(settings.config)
    tiers = {column: _tier_choice(selection.pop(option), order[column], option)
             for option, column in (("vrp_tiers", "vrp_tier"), ("liquidity_tiers", "liquidity_tier"))}
    spec = bt.Spec(dates[0], dates[-1], vrp_tiers=tiers["vrp_tier"], liquidity_tiers=tiers["liquidity_tier"],
                   **selection)
    outcome = execute("backtest", dates, Backtest(spec), settings, runner.wait_lock, engine, scheduler)
    _conclude(outcome, lambda: _print_backtest(outcome.result, spec))


def _print_backtest(result, spec) -> None:
    """The summary table, the equity statistics and where the files are."""
    import pandas as pd

    from pipeline.backtest import summary_headers

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        click.echo(result.summary.rename(columns=summary_headers(spec.structure)).to_string(
            index=False, float_format=lambda v: f"{v:.3f}"))
    stats, paths = result.stats, result.paths
    click.echo(f"equal premium per exit session: cumulative return {stats['total_return']:.3f} session premiums, "
               f"max drawdown {stats['max_drawdown']:.3f}, Sharpe {stats['sharpe']:.2f}")
    click.echo(f"trades: {paths['trades']}\nsummary: {paths['csv']}\nchart: {paths['png']}")


def _tier_choice(given, names, option: str) -> tuple[str, ...]:
    """The tiers asked for, case-insensitive, in the configured order; an unknown one exits 2
    listing the valid names."""
    from pipeline.driver.runlog import EXIT_BAD_INPUT

    wanted = {text.strip().upper() for text in given}
    unknown = sorted(wanted - set(names))
    if unknown:
        flag = "--" + option[:-1].replace("_", "-")
        _fail(f"{flag} {', '.join(unknown)}: unknown tier; valid: {', '.join(names)} (any case)", EXIT_BAD_INPUT)
    return tuple(name for name in names if name in wanted)


@main.command()
@click.argument("ticker")
@DATE
@click.option("--report-date", default=None, help="Which report, when the ticker has two in the window.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
def explain(runner: Runner, ticker, date, report_date, as_json):
    """One event from the date's stored snapshots: calendar entry, past reports and how often they
    moved more than implied, straddle legs, term structure, smile, VRP, score parts, status."""
    import json

    from pipeline.views.explain import ExplainError, explain as explain_event, render_text
    from pipeline.driver.runlog import EXIT_BAD_INPUT
    from pipeline.contract.store import Store

    settings = runner.settings()
    as_of = resolve_date(date, settings.config)
    try:
        doc = explain_event(Store(settings.root), ticker, as_of, settings.config, report_date)
    except ExplainError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    click.echo(json.dumps(doc, indent=2, allow_nan=False) if as_json else render_text(doc), nl=as_json)
