"""The staged jobs: fetch from a source into validated snapshots, compute, report.

Each job reads what it needs from the store and writes its own snapshot, so any job can be
rerun alone and a rerun of a date replaces that date's outputs whole. Which job is which step,
and whether it runs per date or over a run's dates, is declared in :mod:`pipeline.driver.steps`;
``write_moves`` runs once per run, before any date is computed and reported (the moves of
every measured report, for analysis; the views draw each date's ``event_history``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from pipeline.contract import sessions
from pipeline.contract.config import Config
from pipeline.contract.failures import Failures
from pipeline.contract.schemas import empty, split_valid_tickers
from pipeline.driver.steps import FETCH
from pipeline.contract.store import Store

log = logging.getLogger("pipeline")

# Reports come about 91 days apart: if the newest stored report is further than this before the
# upcoming one, the store has missed a report and the ticker's history is fetched again.
MAX_REPORT_GAP_DAYS = 120


@dataclass
class Context:
    """What every job needs: the config, the store, the run's failure record and (for fetch
    jobs) a source reporting into the same record."""

    config: Config
    store: Store
    source: object = None
    failures: Failures = field(default_factory=Failures)
    row_counts: dict = field(default_factory=dict)
    reports: list = field(default_factory=list)        # (path, ranked frame) per report written
    notes: list = field(default_factory=list)          # lines for the operator (stderr, manifest)
    computed: dict = field(default_factory=dict)       # as-of date -> its part of a chunk's pass (compute_chunk)

    def keep_valid(self, name: str, frame: pd.DataFrame, stage: str) -> pd.DataFrame:
        """The rows of tickers whose data passes the schema; the others become failures."""
        valid, rejected = split_valid_tickers(name, frame)
        for ticker, reason in sorted(rejected.items()):
            self.failures.add(ticker, stage, f"invalid {name} data: {reason}")
        return valid


def window_tickers(ctx: Context, as_of: pd.Timestamp,
                   calendar: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The events in the look-ahead window of ``as_of`` (from ``calendar``, else the stored one)
    and their tickers."""
    from pipeline.stages.events import upcoming_events
    from pipeline.stages.panel import dated

    calendar = ctx.store.read("calendar", as_of) if calendar is None else calendar
    upcoming = upcoming_events(dated(calendar, as_of), ctx.config.lookahead_days)
    return upcoming, sorted(upcoming["ticker"].unique())


def fetch_calendar(ctx: Context, as_of: pd.Timestamp) -> int:
    calendar = ctx.source.calendar(as_of, ctx.config.calendar_horizon_days)
    if ctx.config.symbols:
        calendar = calendar[calendar["ticker"].isin(ctx.config.symbols)]
    calendar = ctx.keep_valid("calendar", calendar, "fetch-calendar")
    ctx.store.write("calendar", calendar, as_of, validated=True)
    ctx.row_counts["calendar"] = len(calendar)
    return len(calendar)


def range_window(ctx: Context, dates: list[pd.Timestamp]) -> tuple[pd.DataFrame, list[str]]:
    """The upcoming events of every date (the latest report per ticker) and their tickers."""
    frames = [window_tickers(ctx, as_of)[0] for as_of in dates]
    upcoming = pd.concat(frames, ignore_index=True).sort_values(["ticker", "report_date"], kind="stable")
    upcoming = upcoming.drop_duplicates("ticker", keep="last")
    return upcoming, sorted(upcoming["ticker"])


def fetch_history(ctx: Context, dates: list[pd.Timestamp]) -> int:
    """Fetch earnings history, as of the last date, for the tickers in any date's window whose
    stored history misses a recent report (once per run, whatever the number of dates)."""
    upcoming, tickers = range_window(ctx, dates)
    as_of = max(dates)
    stored = ctx.store.read("earnings_history") if ctx.store.exists("earnings_history") else None
    newest = stored.groupby("ticker")["report_date"].max() if stored is not None else pd.Series(dtype="datetime64[ns]")
    due = upcoming.set_index("ticker")["report_date"] - pd.Timedelta(days=MAX_REPORT_GAP_DAYS)
    stale = sorted(t for t in tickers if t not in newest.index or newest[t] < due[t])
    if stale:
        fetched = ctx.keep_valid("earnings_history", ctx.source.earnings_history(stale, as_of), "fetch-history")
        answered = set(fetched["ticker"])
        for ticker in sorted(set(stale) - answered):
            ctx.failures.add(ticker, "fetch-history", "source returned no earnings history")
        # Only tickers the source answered for are replaced: a failed fetch never erases history.
        combined = fetched if stored is None else pd.concat(
            [stored[~stored["ticker"].isin(answered)], fetched], ignore_index=True)
        combined = combined.sort_values(["ticker", "report_date"], kind="stable").reset_index(drop=True)
        ctx.store.write("earnings_history", combined)
    ctx.row_counts["earnings_history_refreshed"] = len(stale)
    return len(stale)


def missing_price_ranges(stored: pd.DataFrame | None, tickers: list[str], start, end) -> pd.DataFrame:
    """Per ticker, the span of wanted sessions [first missing, last missing]; tickers without
    anything missing are left out. Columns: ticker, start, end."""
    wanted = sessions.sessions_between(start, end)
    grid = pd.MultiIndex.from_product([tickers, wanted], names=["ticker", "date"])
    if stored is not None and len(stored):
        have = pd.MultiIndex.from_frame(stored[["ticker", "date"]])
        grid = grid[~grid.isin(have)]
    missing = grid.to_frame(index=False)
    if missing.empty:
        return pd.DataFrame(columns=["ticker", "start", "end"])
    spans = missing.groupby("ticker")["date"].agg(["min", "max"]).reset_index()
    return spans.rename(columns={"min": "start", "max": "end"})


def backfill_prices(ctx: Context, dates: list[pd.Timestamp]) -> int:
    """Fetch only the sessions the store lacks for the tickers in any date's window, from the
    history span before the first date to the last date, once per run; rewrite touched years."""
    _, tickers = range_window(ctx, dates)
    as_of = max(dates)
    start = min(dates) - pd.DateOffset(years=ctx.config.history_years) - pd.Timedelta(days=10)
    stored = ctx.store.read("prices") if ctx.store.partitions("prices") else None
    spans = missing_price_ranges(stored, tickers, start, as_of)
    fetched = []
    for (lo, hi), group in spans.groupby(["start", "end"], sort=True):
        fetched.append(ctx.source.prices(group["ticker"].tolist(), lo, hi))
    new = pd.concat(fetched, ignore_index=True) if fetched else None
    if new is not None and len(new):
        new = ctx.keep_valid("prices", new, "backfill-prices")
        years = set(new["date"].dt.year)
        keep = stored[stored["date"].dt.year.isin(years)] if stored is not None else None
        merged = pd.concat([keep, new], ignore_index=True) if keep is not None else new
        merged = merged.drop_duplicates(["ticker", "date"], keep="last").sort_values(["ticker", "date"], kind="stable")
        # New rows passed keep_valid, stored rows were validated when written, and the key is
        # unique again: nothing left for a second validation of every bar to find.
        ctx.store.write_by_year("prices", merged, validated=True)
    ctx.row_counts["prices_new_rows"] = 0 if new is None else len(new)
    return ctx.row_counts["prices_new_rows"]


def exit_marks(ctx: Context, as_of: pd.Timestamp) -> pd.DataFrame:
    """Events of the previous session's window that react on the as-of session: their chains
    today are the closing marks of the straddles a backtest sells the session before.

    Decided from the stored calendar of the previous session (not its metrics), so dates can be
    pulled in any order. Columns: ticker, report_date, reaction_date.
    """
    from pipeline.stages.events import upcoming_events
    from pipeline.stages.panel import dated

    entry = pd.Timestamp(sessions.previous_sessions([as_of])[0])
    if ctx.store.exists("calendar", entry):
        calendar = ctx.store.read("calendar", entry)
    elif getattr(ctx.source, "known_calendar", None) is not None:
        # Run before its previous session (dates in any order): the simulated market still knows
        # that session's calendar, so today's snapshot holds the exit marks all the same (and the
        # outcomes do not depend on the run order). Not stored: it is not this date's calendar.
        calendar = ctx.source.known_calendar(entry, ctx.config.calendar_horizon_days)
    else:
        calendar = empty("calendar")
    events = upcoming_events(dated(calendar, entry), ctx.config.lookahead_days).drop(columns="as_of")
    return events[events["reaction_date"] == as_of].reset_index(drop=True)


def pull_chains(ctx: Context, as_of: pd.Timestamp) -> int:
    """Chains of the expirations the window's events need (the first ``term_expirations`` on or
    after the reaction session and one at least FAR_EXPIRATION_DAYS out, so the term structure is
    a curve with a 30-day point), plus the exit marks of the events reacting today (the event
    expiration and the next: see :func:`exit_marks`), in one snapshot."""
    from pipeline.contract.sessions import FAR_EXPIRATION_DAYS, event_expirations

    upcoming, tickers = window_tickers(ctx, as_of)
    marks = exit_marks(ctx, as_of)
    listed = sorted(set(upcoming["ticker"]) | set(marks["ticker"]))
    if listed:
        expirations = ctx.source.expirations(listed, as_of)
        wanted = pd.concat([
            event_expirations(expirations, upcoming, ctx.config.term_expirations, as_of, FAR_EXPIRATION_DAYS),
            event_expirations(expirations, marks)])
    else:
        wanted = empty("chains")
    wanted = wanted[["ticker", "expiration"]].drop_duplicates().sort_values(["ticker", "expiration"])
    chains = ctx.keep_valid("chains", ctx.source.chains(wanted, as_of), "pull-chains") if len(wanted) else empty("chains")
    for ticker in sorted(set(tickers) - set(chains["ticker"])):
        ctx.failures.add(ticker, "pull-chains", "no option chain for the event expirations")
    for ticker in sorted(set(marks["ticker"]) - set(chains["ticker"])):
        ctx.failures.add(ticker, "pull-chains", "no option chain for the exit mark of yesterday's event")
    ctx.store.write("chains", chains, as_of, validated=True)
    ctx.row_counts.update(chains=len(chains), exit_marks=len(marks))
    return len(chains)


def _with_fetch_causes(metrics: pd.DataFrame, failures) -> pd.DataFrame:
    """A degraded or failed row's reason led by this run's fetch failures of its ticker: the
    metrics only see missing inputs ("no past reports with prices"), the fetch knows why (e.g.
    deferred to the next day by the Alpha Vantage budget)."""
    causes: dict[str, list[str]] = {}
    for ticker, stage, reason in failures:
        if stage in FETCH:
            causes.setdefault(ticker, []).append(f"{stage}: {reason}")
    if not causes:
        return metrics
    lead = metrics["ticker"].map({t: "; ".join(r) for t, r in causes.items()})
    hit = lead.notna() & (metrics["status"] != "ok")
    if not hit.any():
        return metrics
    reason = metrics["reason"].where(~hit, lead + "; " + metrics["reason"].fillna(""))
    return metrics.assign(reason=reason.str.rstrip("; ").astype(metrics["reason"].dtype))


# Sessions computed in one pass of the stages by a replay (a task on dask): a month, as the backtest's dask tasks.
CHUNK_SESSIONS = 21
# The per-date datasets a pass of the stages writes (:func:`compute`), in write order.
COMPUTED = ("surface", "metrics", "term", "event_history", "smile", "structures", "payoff")


def compute_chunk(ctx: Context, dates: list[pd.Timestamp], fetched: dict | None = None) -> None:
    """One pass of the stages over the as-of ``dates`` (a chunk of consecutive sessions), split
    per date into ``ctx.computed`` for :func:`compute` to write, date by date.

    Each date gets exactly what a pass of its own gives it: its calendar, chains and window
    tickers' history and bars, the stored metrics before the chunk plus the chunk's earlier dates
    for the vol percentiles (as they would be stored by then), the fetch failures known when that
    date was computed (``fetched``: date -> how many of ``ctx.failures`` were recorded by then;
    default all) and, when some rows fail validation, its own failing tickers dropped.
    """
    from pipeline.contract.schemas import DatasetValidationError, validate_panel
    from pipeline.stages.metrics import compute_metrics
    from pipeline.stages.panel import AS_OF, dated
    from pipeline.stages.params import stage_params
    from pipeline.stages.structures import build_structures, payoff_curves

    calendars = {as_of: ctx.store.read("calendar", as_of) for as_of in dates}
    tickers = sorted(set().union(*(window_tickers(ctx, d, c)[1] for d, c in calendars.items())))
    params = stage_params(ctx.config)
    result = compute_metrics(
        calendar=pd.concat([dated(c, d) for d, c in calendars.items()], ignore_index=True),
        history=ctx.store.scan("earnings_history", tickers=tickers),
        prices=ctx.store.scan("prices", tickers=tickers),
        chains=pd.concat([dated(ctx.store.read("chains", d), d) for d in dates], ignore_index=True),
        params=params,
        vol_history=vol_history(ctx.store, tickers, dates),
    )
    failures = list(ctx.failures)
    day = result.metrics[AS_OF]
    caused = pd.concat([_with_fetch_causes(result.metrics[(day == as_of).to_numpy()],
                                           failures[:fetched[as_of]] if fetched else failures)
                        for as_of in dates], ignore_index=True)
    try:
        metrics = validate_panel("metrics", caused)
    except DatasetValidationError:
        # Some rows fail: each date drops its own failing tickers, as a run of that date does.
        metrics = pd.concat([dated(ctx.keep_valid("metrics", rows.drop(columns=AS_OF), "compute"), as_of)
                             for as_of, rows in caused.groupby(AS_OF, sort=True)], ignore_index=True)
    structures = build_structures(metrics, result.surface, result.moves, params)
    # What the views show beside the metrics, so explain, the page and notebooks read, never
    # recompute: the history rows and smiles of the events whose metrics are stored, and the
    # payoff curves of their suggested structures.
    events = metrics[[AS_OF, "ticker", "report_date"]]
    history = result.event_history.merge(events, on=[AS_OF, "ticker", "report_date"])
    smile = result.smile.merge(events[[AS_OF, "ticker"]].drop_duplicates(), on=[AS_OF, "ticker"])
    stored = {"metrics": metrics, "surface": validate_panel("surface", result.surface),
              "term": validate_panel("term", result.term), "event_history": validate_panel("event_history", history),
              "smile": validate_panel("smile", smile), "structures": validate_panel("structures", structures),
              "payoff": validate_panel("payoff", payoff_curves(structures, history, params))}
    for as_of in dates:
        ctx.computed[as_of] = {name: frame[(frame[AS_OF] == as_of).to_numpy()].drop(columns=AS_OF)
                               for name, frame in stored.items()}


def compute(ctx: Context, as_of: pd.Timestamp) -> pd.DataFrame:
    """Write the as-of date's COMPUTED datasets (from the chunk's pass when :func:`compute_chunk`
    made one, else from a pass of this date alone), then the outcomes it completes."""
    if as_of not in ctx.computed:
        compute_chunk(ctx, [as_of])
    part = ctx.computed.pop(as_of)
    metrics = part["metrics"]
    for name in COMPUTED:
        ctx.store.write(name, part[name], as_of, validated=True)
    for ticker, reason in zip(metrics.loc[metrics["status"] == "failed", "ticker"],
                              metrics.loc[metrics["status"] == "failed", "reason"]):
        ctx.failures.add(ticker, "compute", reason)
    ctx.row_counts.update({name: len(part[name]) for name in COMPUTED})
    write_outcomes(ctx, as_of)
    return metrics


def vol_history(store: Store, tickers: list[str], dates: list[pd.Timestamp]) -> pd.DataFrame:
    """The tickers' stored sessions within the last PERCENTILE_SESSIONS sessions to any of
    ``dates`` and before the last, other than ``dates`` themselves (a pass computes those):
    ticker, date, iv30, ex_earnings_vol from the stored ``metrics`` (a name has a row on the days
    its event is in the window). Partitions written before ``iv30`` existed give ex_earnings_vol."""
    from pipeline.stages.term import PERCENTILE_SESSIONS
    from pipeline.contract.store import CorruptPartition

    first = pd.Timestamp(sessions.sessions_offset([min(dates)], -(PERCENTILE_SESSIONS - 1), strict=False)[0])
    computed = {pd.Timestamp(d) for d in dates}
    days = [d for d in store.partitions("metrics")
            if first <= pd.Timestamp(d) < max(dates) and pd.Timestamp(d) not in computed]
    columns = ["date", "ticker", "iv30", "ex_earnings_vol"]
    if not days:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "ticker": pd.Series(dtype="str"),
                             "iv30": pd.Series(dtype=float), "ex_earnings_vol": pd.Series(dtype=float)})
    try:
        return store.scan("metrics", dates=days, tickers=tickers, columns=columns[1:]).reindex(columns=columns)
    except CorruptPartition:
        pass
    frames = []
    for day in days:
        try:
            frames.append(store.scan("metrics", dates=[day], tickers=tickers, columns=columns[1:]))
        except CorruptPartition:
            # A partition of an earlier version has no iv30; a really damaged file fails again here.
            frames.append(store.scan("metrics", dates=[day], tickers=tickers, columns=["ticker", "ex_earnings_vol"]))
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def write_outcomes(ctx: Context, as_of: pd.Timestamp) -> int:
    """The ``outcomes`` partitions that the as-of date's snapshots complete: the events exiting
    today (entry yesterday) and those exiting on the next session (entry today), each written
    once both the entry metrics and the exit chain are stored. Whichever of the two dates runs
    last writes the partition, from stored snapshots only, so dates can run in any order."""
    from pipeline.stages.outcomes import event_outcomes

    written = 0
    following = pd.Timestamp(sessions.sessions_offset([as_of.to_datetime64()], 0, strict=True)[0])
    for exit_date in (as_of, following):
        entry = pd.Timestamp(sessions.previous_sessions([exit_date])[0])
        if not (ctx.store.exists("metrics", entry) and ctx.store.exists("chains", exit_date)):
            continue
        if exit_date in ctx.computed:      # computed by this run and not written yet: it writes its own
            continue
        metrics = ctx.store.read("metrics", entry)
        reacting = metrics[metrics["reaction_date"] == exit_date]
        if reacting.empty:
            continue
        tickers = sorted(set(reacting["ticker"]))
        bars = ctx.store.scan("prices", dates=sorted({entry.year, exit_date.year}), tickers=tickers)
        outcomes = event_outcomes(reacting, ctx.store.scan("chains", dates=[exit_date], tickers=tickers),
                                  bars, entry, exit_date, ctx.config.risk_free_rate)
        if len(outcomes):
            ctx.store.write("outcomes", outcomes, exit_date)
            written += len(outcomes)
    ctx.row_counts["outcomes"] = ctx.row_counts.get("outcomes", 0) + written
    return written


def report(ctx: Context, as_of: pd.Timestamp) -> None:
    from pipeline.views.report import write_report

    from pipeline.stages.outcomes import past_summary

    page = ctx.store.layout.rank_html(pd.Timestamp(as_of).date().isoformat())
    had_page = page.exists()
    metrics = ctx.store.read("metrics", as_of)
    outcomes = ctx.store.scan("outcomes", tickers=sorted(set(metrics["ticker"])))
    # What each name's past implied moves then did (stored outcomes up to today), where known.
    metrics = metrics.merge(past_summary(outcomes, as_of), on="ticker", how="left")
    structures = ctx.store.read("structures", as_of) if ctx.store.exists("structures", as_of) else None
    # The payoff curves are the page's alone (a replay writes the CSV only).
    drawn = ctx.config.report_html and ctx.store.exists("payoff", as_of)
    payoff = ctx.store.read("payoff", as_of) if drawn else None
    # Read once: the page draws the same structures, payoff curves and outcomes.
    ctx.reports.append(write_report(metrics, ctx.store.root, as_of, ctx.config, structures=structures,
                                    outcomes=outcomes, payoff=payoff))
    if had_page and not page.exists():
        # The old page showed the previous metrics: removed so it never disagrees with the CSV, and said.
        why = ("--no-html (or report.html: false) skipped the page" if not ctx.config.report_html
               else "the page could not be drawn (see the log)")
        note = (f"removed {page}: it showed {pd.Timestamp(as_of).date()}'s previous metrics and {why}; "
                f"`pipeline rank --date {pd.Timestamp(as_of).date()}` without --no-html draws it again")
        log.warning(note)
        ctx.notes.append(note)


def write_moves(ctx: Context) -> int:
    """The ``moves`` dataset from the stored inputs, written once per run.

    Moves are facts about past reports, so they are computed from the whole stored
    ``earnings_history`` and ``prices`` as of the last stored session: the dataset depends on
    the data, never on which dates were run or in which order.
    """
    from pipeline.stages.moves import historical_moves
    from pipeline.stages.panel import AS_OF, dated
    from pipeline.stages.params import stage_params

    prices = ctx.store.read_or_empty("prices")
    history = ctx.store.read_or_empty("earnings_history")
    if prices.empty or history.empty:
        moves = empty("moves")
    else:
        moves = historical_moves(dated(history, prices["date"].max()), prices).drop(columns=AS_OF)
    moves = moves.sort_values(["ticker", "report_date"], kind="stable").reset_index(drop=True)
    ctx.store.write("moves", moves)
    ctx.row_counts["moves"] = len(moves)
    return len(moves)

