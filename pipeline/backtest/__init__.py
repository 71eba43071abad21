"""``pipeline backtest``: would selling the ranked straddles have paid, after the spread?

Reads stored snapshots only. For every exit session D in the range, the entry session E is the
session before it: the metrics of E are recomputed from E's snapshots with the current config
(so a config change can be backtested; nothing stored after E reaches them except the exit
quotes), and every event reacting on D is sold at E's quotes and bought back at D's quotes
(:mod:`pipeline.stages.backtest`). Per-date work maps over the engine; everything after is
merged in date order, so outputs are byte-identical across engines and reruns.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pipeline.contract import sessions
from pipeline.contract.config import Settings
from pipeline.stages import backtest as trades_stage
from pipeline.contract.files import atomic_write_bytes
from pipeline.contract.layout import Layout
from pipeline.stages.panel import AS_OF
from pipeline.contract.store import Store

GROUPS = ("score_quintile", "vrp_tier", "liquidity_tier", "timing")
# The summary's columns as written to the CSV and printed: each header carries its unit.
SUMMARY_HEADERS = {"trades": "trades", "win_rate": "win_rate (fraction)",
                   "mean_return": "mean_return (fraction of premium)",
                   "median_return": "median_return (fraction of premium)", "t_stat": "t_stat"}


def summary_headers(structure: str) -> dict[str, str]:
    """The summary's headers with units; P&L is per structure traded (one contract of each leg)."""
    return SUMMARY_HEADERS | {"mean_pnl": f"mean_pnl ($ per {structure.replace('_', ' ')})"}


class NotReplayed(ValueError):
    """Most sessions of the range have no stored snapshots: a backtest would mislead."""


# Exit sessions per pass of the stages (a task). On the dask engine a month, so a year makes a
# dozen tasks to spread over workers while each reads its tickers' history and bars once; in one
# process a quarter (every name reports once in it), as each pass has fixed costs (the tickers'
# bars read, a few hundred pandas calls): the year at 500 names 9.2 s -> 6.0 s, peak 0.53 -> 0.69 GB.
CHUNK_SESSIONS = 21
LOCAL_CHUNK_SESSIONS = 63


@dataclass(frozen=True)
class Spec:
    """What to backtest: the exit-session range, fills and the selection."""

    start: pd.Timestamp
    end: pd.Timestamp
    fill_share: float = 0.5            # share of the half-spread paid away from mid (0 mid, 1 touch)
    commission: float = 0.65           # per contract traded
    min_score: float | None = None
    vrp_tiers: tuple[str, ...] = ()
    liquidity_tiers: tuple[str, ...] = ()
    top_n: int | None = None
    structure: str = "straddle"        # or strangle, iron_condor, iron_butterfly, suggested

    def slug(self) -> str:
        """A readable name of the selection and of non-default fills ("" for the unfiltered run
        at default fills), so outputs of different selections never share a file name."""
        defaults = {name: f.default for name, f in self.__dataclass_fields__.items()}
        parts = [self.structure if self.structure != defaults["structure"] else "",
                 f"vrp-{'-'.join(self.vrp_tiers).lower()}" if self.vrp_tiers else "",
                 f"liq-{'-'.join(self.liquidity_tiers).lower()}" if self.liquidity_tiers else "",
                 f"min{self.min_score:g}" if self.min_score is not None else "",
                 f"top{self.top_n}" if self.top_n is not None else "",
                 f"fill{self.fill_share:g}" if self.fill_share != defaults["fill_share"] else "",
                 f"comm{self.commission:g}" if self.commission != defaults["commission"] else ""]
        return "_".join(p for p in parts if p)

    def stem(self) -> str:
        """File name of the reports: ``backtest_<start>_<end>[_<slug>]``."""
        slug = self.slug()
        return f"backtest_{self.start.date()}_{self.end.date()}" + (f"_{slug}" if slug else "")

    def run_id(self, settings: Settings) -> str:
        """Same spec, config and data root -> same id (and the same files)."""
        spec = asdict(self)
        if self.structure == "straddle":      # the straddle's ids predate the structures
            del spec["structure"]
        text = json.dumps({**spec, "config": repr(settings.config)}, default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Result:
    trades: pd.DataFrame
    summary: pd.DataFrame
    curve: pd.DataFrame
    stats: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)      # exit sessions without stored snapshots


def candidates(settings: Settings, exit_dates: list[pd.Timestamp]) -> pd.DataFrame:
    """The priced events of the entry session before each exit session that react on it, with the
    entry and exit quotes of their straddle: one task, over a chunk of consecutive exit sessions.

    Only the events reacting on their exit session are recomputed, all of the chunk in one pass
    of :func:`~pipeline.stages.metrics.compute_metrics`, each event's rows (calendar, entry
    chain) keyed by its entry session as ``as_of``: the stages are per (as_of, ticker), so each
    event gets exactly the rows a run of its entry session gives it. An exit session without the
    entry's calendar and chains contributes nothing.
    """
    recomputed = entry_pass(settings, exit_dates)
    if recomputed is None:
        return pd.DataFrame()
    events, inputs, quotes, result = recomputed
    metrics = result.metrics
    trades = reacting_trades(metrics, events)
    if trades.empty:
        return pd.DataFrame()
    trades = trades.assign(strike=trades["straddle_strike"], exit_kind=pd.array(
        np.where(trades["expiration"] == trades["exit_date"], "intrinsic", "quote"), dtype="str"))
    trades = trades_stage.leg_quotes(inputs["chains"], trades, "entry")
    trades = trades_stage.leg_quotes(event_chains(quotes, events, "exit_date"), trades, "exit")
    trades = with_exit_close(trades, inputs["prices"])
    legs = [f"{side}_{leg}_{field}" for side in ("entry", "exit") for leg in trades_stage.LEGS.values()
            for field in trades_stage.QUOTE_FIELDS]
    columns = [*metrics.columns.drop(AS_OF), "entry_date", "exit_date", "strike", "exit_kind", *legs,
               "exit_close", "realized_move"]
    return trades[columns].sort_values(["exit_date", "ticker"], kind="stable").reset_index(drop=True)


def entry_pass(settings: Settings, exit_dates: list[pd.Timestamp]):
    """The events reacting on each exit session of the chunk, recomputed as of their entry
    session in one pass (see :func:`candidates`): (events: as_of (the entry session), ticker,
    exit_date; the pass's inputs; the events' stored chains of the entry and exit sessions;
    :class:`~pipeline.stages.metrics.MetricsResult`), or None without any."""
    from pipeline.stages.params import stage_params
    from pipeline.stages.events import upcoming_events
    from pipeline.stages.metrics import CHAIN_INPUTS, PRICE_INPUTS, compute_metrics

    store = Store(settings.root)
    params = stage_params(settings.config)
    entries = pd.DatetimeIndex(sessions.previous_sessions(exit_dates))
    exit_of = {entry: exit_date for exit_date, entry in zip(exit_dates, entries)
               if store.exists("calendar", entry) and store.exists("chains", entry)}
    if not exit_of:
        return None
    # The chunk's entry calendars as one panel (one read): one pass finds every entry session's events.
    calendar = store.scan("calendar", dates=list(exit_of))
    calendar = calendar.drop(columns="asof").assign(**{AS_OF: calendar["asof"]})
    upcoming = upcoming_events(calendar, params.lookahead_days)
    exit_date = upcoming[AS_OF].map(exit_of)
    events = upcoming.loc[(upcoming["reaction_date"] == exit_date).to_numpy(), [AS_OF, "ticker"]]
    events = events.assign(exit_date=exit_date[events.index]).reset_index(drop=True)
    if events.empty:
        return None
    tickers = sorted(set(events["ticker"]))
    # The events' tickers' chains on every entry and exit session of the chunk, in one read.
    quotes = store.scan("chains", dates=sorted(set(events[AS_OF]) | set(events["exit_date"])), tickers=tickers,
                        columns=["date", *CHAIN_INPUTS])
    inputs = {
        "calendar": calendar.merge(events[[AS_OF, "ticker"]], on=[AS_OF, "ticker"]),
        "chains": event_chains(quotes, events, AS_OF),
        "history": store.scan("earnings_history", tickers=tickers),
        "prices": store.scan("prices", tickers=tickers, columns=PRICE_INPUTS),
    }
    result = compute_metrics(params=params, **inputs)
    return events, inputs, quotes, result


def reacting_trades(metrics: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The metrics rows of the events reacting on their exit session with a straddle strike,
    with entry_date (their as-of session) and exit_date."""
    trades = metrics.merge(events[[AS_OF, "ticker", "exit_date"]], on=[AS_OF, "ticker"])
    trades = trades.assign(entry_date=trades[AS_OF])
    return trades[(trades["reaction_date"] == trades["exit_date"]) & trades["straddle_strike"].notna()]


def with_exit_close(trades: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Trades with the reaction close (``exit_close``) and the close-to-close ``realized_move``
    from the entry session."""
    closes = prices.set_index(["ticker", "date"])["close"]
    entry_close = closes.reindex(pd.MultiIndex.from_arrays([trades["ticker"], trades["entry_date"]])).to_numpy()
    exit_close = closes.reindex(pd.MultiIndex.from_arrays([trades["ticker"], trades["exit_date"]])).to_numpy()
    return trades.assign(exit_close=exit_close, realized_move=exit_close / entry_close - 1.0)


def event_chains(quotes: pd.DataFrame, events: pd.DataFrame, session: str) -> pd.DataFrame:
    """Each event's ticker's chain on its ``session`` (as_of: the entry, or exit_date), keyed by
    the event's as-of session as the trades are. ``quotes``: stored chains with their ``date``."""
    wanted = pd.DataFrame({"date": events[session], "ticker": events["ticker"], AS_OF: events[AS_OF]})
    return quotes.merge(wanted.drop_duplicates(), on=["date", "ticker"]).drop(columns="date")


def missing_sessions(store: Store, exits: list[pd.Timestamp]) -> list[pd.Timestamp]:
    """Exit sessions that cannot be traded from the store: the entry session's calendar or chains,
    or the exit session's chains, were never stored (the range was not replayed)."""
    entries = pd.DatetimeIndex(sessions.previous_sessions(exits))
    return [day for day, entry in zip(exits, entries)
            if not (store.exists("calendar", entry) and store.exists("chains", entry) and store.exists("chains", day))]


def run(settings: Settings, spec: Spec, map_tasks=sessions.map_locally,
        chunk_sessions: int = LOCAL_CHUNK_SESSIONS) -> Result:
    """The backtest of ``spec``; ``map_tasks(task, items, *args)`` runs the chunks of
    ``chunk_sessions`` exit sessions (:func:`candidates`) and returns their results in order (the
    run driver passes its engine's map and chunk size). The trades do not depend on the chunks."""
    if spec.structure != "straddle":
        from pipeline.backtest import structures as backtest_structures

        return backtest_structures.run(settings, spec, map_tasks, chunk_sessions)
    exits = list(sessions.sessions_between(spec.start, spec.end))
    missing = missing_sessions(Store(settings.root), exits)
    if 2 * len(missing) > len(exits):
        first_entry = pd.Timestamp(sessions.previous_sessions(exits[:1])[0]).date()
        raise NotReplayed(f"{len(missing)} of {len(exits)} sessions of {spec.start.date()}..{spec.end.date()} have no "
                          f"stored snapshots (entry calendar and chains, exit chains); run `pipeline replay --start "
                          f"{first_entry} --end {spec.end.date()}` first")
    frames = [f for f in map_tasks(candidates, sessions.chunks(exits, chunk_sessions), settings) if len(f)]
    if not frames:
        raise LookupError(f"no stored snapshots with events to trade between {spec.start.date()} and "
                          f"{spec.end.date()}; run `pipeline replay --start {spec.start.date()} --end {spec.end.date()}` first")
    pool = pd.concat(frames, ignore_index=True)
    chosen = trades_stage.select(pool, spec.min_score, spec.vrp_tiers, spec.liquidity_tiers, spec.top_n)
    if chosen.empty:
        raise LookupError(f"no trade matches the selection ({spec.slug()}) among {len(pool)} events between "
                          f"{spec.start.date()} and {spec.end.date()}; nothing written")
    order = tier_order(settings.config)
    trades = trades_stage.simulate(chosen, spec.fill_share, spec.commission)
    trades = trades.assign(score_quintile=trades_stage.score_quintiles(trades))
    summary = pd.concat([trades_stage.group_stats(trades.assign(all="all"), "all")]
                        + [trades_stage.group_stats(_in_order(trades, g, order.get(g)), g) for g in GROUPS]
                        + [trades_stage.group_stats(trades_stage.simulate(chosen, share, spec.commission)
                                                    .assign(fill=name), "fill")
                           for name, share in {"mid": 0.0, f"f={spec.fill_share:g}": spec.fill_share,
                                               "touch": 1.0}.items()],
                        ignore_index=True)
    summary["value"] = summary["value"].astype("str")
    summary = summary[["group", "value", "trades", "win_rate", "mean_return", "median_return", "t_stat", "mean_pnl"]]
    curve = trades_stage.equity_curve(trades, pd.DatetimeIndex(exits))
    return Result(trades, summary, curve, trades_stage.curve_stats(curve), missing=missing)


def tier_order(config) -> dict[str, tuple[str, ...]]:
    """Each tier column's names in their configured order, best first, then the fallback tier."""
    from pipeline.contract.schemas import LIQUIDITY_TIERS, VRP_TIERS

    return {"vrp_tier": (*config.vrp_tiers, VRP_TIERS[-1]),
            "liquidity_tier": (*config.liquidity_tiers, LIQUIDITY_TIERS[-1])}


def _in_order(trades: pd.DataFrame, column: str, names) -> pd.DataFrame:
    """``trades`` with ``column`` ordered by ``names`` (so groups sort best first), if given."""
    if names is None:
        return trades
    return trades.assign(**{column: pd.Categorical(trades[column], categories=list(names), ordered=True)})


def write(settings: Settings, spec: Spec, result: Result) -> dict:
    """Trades, summary and equity as Parquet under ``parquet/backtest/run=<id>/``, the summary CSV
    and the chart under ``reports/``; each file replaced atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout, run_id = Layout(settings.root), spec.run_id(settings)
    paths = {}
    for name, frame in (("trades", result.trades), ("summary", result.summary), ("equity", result.curve)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        paths[name] = layout.backtest_file(run_id, name)
        atomic_write_bytes(paths[name], lambda tmp, t=table: pq.write_table(t, tmp, compression="zstd"))
    stem = spec.stem()
    text = result.summary.rename(columns=summary_headers(spec.structure)).to_csv(index=False, float_format="%.6g", lineterminator="\n")
    paths["csv"] = layout.report_file(f"{stem}.csv")
    atomic_write_bytes(paths["csv"], lambda tmp: tmp.write_text(text))
    paths["png"] = layout.report_file(f"{stem}.png")
    atomic_write_bytes(paths["png"], lambda tmp: _chart(result, spec, tmp))
    result.paths = paths
    return paths


def _chart(result: Result, spec: Spec, path) -> None:
    """Equity curve and mean return by score quintile, one PNG (Agg; deterministic bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    left.plot(result.curve["date"], result.curve["cumulative_return"], color="#1f5fa8")
    left.axhline(0.0, color="black", linewidth=0.8)
    what = "straddles" if spec.structure == "straddle" else spec.structure.replace("_", " ") + "s"
    left.set_title(f"Cumulative return, short {what} (fill {spec.fill_share:g} of half-spread)")
    left.set_ylabel("sum of daily returns on premium")
    left.tick_params(axis="x", labelrotation=30)
    quintiles = result.summary[result.summary["group"] == "score_quintile"]
    right.bar(quintiles["value"], quintiles["mean_return"], color="#3b8d5a")
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set_title("Mean return on premium by score quintile")
    right.set_xlabel("score quintile (1 = lowest)")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
