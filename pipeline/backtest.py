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

import pandas as pd

from pipeline import sessions
from pipeline.config import Settings
from pipeline.engine import chunks, map_dates
from pipeline.stages import backtest as trades_stage
from pipeline.store import Store, atomic_write_bytes

GROUPS = ("score_quintile", "vrp_tier", "liquidity_tier", "timing")
# Exit sessions per task: a month, so a year makes a dozen tasks to spread over workers while
# each task reads its tickers' history and bars once.
CHUNK_SESSIONS = 21


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

    def run_id(self, settings: Settings) -> str:
        """Same spec, config and data root -> same id (and the same files)."""
        text = json.dumps({**asdict(self), "config": repr(settings.config)}, default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Result:
    trades: pd.DataFrame
    summary: pd.DataFrame
    curve: pd.DataFrame
    stats: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)


def candidates(settings: Settings, exit_dates: list[pd.Timestamp]) -> pd.DataFrame:
    """The priced events of the entry session before each exit session that react on it, with the
    entry and exit quotes of their straddle: one task, over a chunk of consecutive exit sessions.

    Only the events that react on the exit session are recomputed (metrics are per ticker, so
    that is exactly their rows of the whole window's metrics), and the history and bars of the
    chunk's tickers are read once for the chunk, not once per session. An exit session without
    the entry's calendar and chains contributes nothing.
    """
    from pipeline.stages.events import upcoming_events

    store = Store(settings.root)
    lookahead = settings.config.lookahead_days
    entries = sessions.previous_sessions(exit_dates)
    days = []
    for exit_date, entry in zip(exit_dates, pd.DatetimeIndex(entries)):
        if not (store.exists("calendar", entry) and store.exists("chains", entry)):
            continue
        calendar = store.read("calendar", entry)
        events = upcoming_events(calendar, entry, lookahead)
        tickers = sorted(events.loc[events["reaction_date"] == exit_date, "ticker"])
        if tickers:
            days.append((exit_date, entry, calendar[calendar["ticker"].isin(tickers)], tickers))
    if not days:
        return pd.DataFrame()
    chunk_tickers = sorted({t for *_, tickers in days for t in tickers})
    history = store.scan("earnings_history", tickers=chunk_tickers)
    prices = store.scan("prices", tickers=chunk_tickers)
    frames = [_trades_of_day(store, settings, exit_date, entry, calendar, tickers, history, prices)
              for exit_date, entry, calendar, tickers in days]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _trades_of_day(store: Store, settings: Settings, exit_date, entry, calendar, tickers, history, prices) -> pd.DataFrame:
    """The events of ``tickers`` (all reacting on ``exit_date``) with their metrics as of ``entry``
    and the quotes of their straddle on both sessions."""
    from pipeline.stages.metrics import compute_metrics

    mine = prices[prices["ticker"].isin(tickers)]
    entry_chains = store.scan("chains", dates=[entry], tickers=tickers).drop(columns="date")
    metrics = compute_metrics(entry, calendar=calendar, history=history[history["ticker"].isin(tickers)],
                              prices=mine, chains=entry_chains, config=settings.config).metrics
    events = metrics[(metrics["reaction_date"] == exit_date) & metrics["straddle_strike"].notna()]
    if events.empty:
        return pd.DataFrame()
    trades = events.assign(entry_date=entry, exit_date=exit_date, strike=events["straddle_strike"],
                           exit_kind=pd.array(["intrinsic" if e == exit_date else "quote" for e in events["expiration"]],
                                              dtype="str"))
    trades = trades_stage.leg_quotes(entry_chains, trades, "entry")
    exit_chains = store.scan("chains", dates=[exit_date], tickers=tickers).drop(columns="date")
    trades = trades_stage.leg_quotes(exit_chains, trades, "exit")
    closes = mine.set_index(["ticker", "date"])["close"]
    entry_close = closes.reindex(pd.MultiIndex.from_arrays([trades["ticker"], trades["entry_date"]])).to_numpy()
    exit_close = closes.reindex(pd.MultiIndex.from_arrays([trades["ticker"], trades["exit_date"]])).to_numpy()
    return trades.assign(exit_close=exit_close, realized_move=exit_close / entry_close - 1.0)


def run(settings: Settings, spec: Spec, engine: str = "local", scheduler: str | None = None) -> Result:
    exits = list(sessions.sessions_between(spec.start, spec.end))
    frames = [f for f in map_dates(candidates, chunks(exits, CHUNK_SESSIONS), settings, engine=engine,
                                   scheduler=scheduler) if len(f)]
    if not frames:
        raise LookupError(f"no stored snapshots with events to trade between {spec.start.date()} and "
                          f"{spec.end.date()}; run `pipeline replay --start {spec.start.date()} --end {spec.end.date()}` first")
    pool = pd.concat(frames, ignore_index=True)
    chosen = trades_stage.select(pool, spec.min_score, spec.vrp_tiers, spec.liquidity_tiers, spec.top_n)
    trades = trades_stage.simulate(chosen, spec.fill_share, spec.commission)
    trades = trades.assign(score_quintile=trades_stage.score_quintiles(trades))
    summary = pd.concat([trades_stage.group_stats(trades.assign(all="all"), "all")]
                        + [trades_stage.group_stats(trades, g) for g in GROUPS]
                        + [trades_stage.group_stats(trades_stage.simulate(chosen, share, spec.commission)
                                                    .assign(fill=name), "fill")
                           for name, share in {"mid": 0.0, f"f={spec.fill_share:g}": spec.fill_share,
                                               "touch": 1.0}.items()],
                        ignore_index=True)
    summary["value"] = summary["value"].astype("str")
    summary = summary[["group", "value", "trades", "win_rate", "mean_return", "median_return", "t_stat", "mean_pnl"]]
    curve = trades_stage.equity_curve(trades, pd.DatetimeIndex(exits))
    return Result(trades, summary, curve, trades_stage.curve_stats(curve))


def write(settings: Settings, spec: Spec, result: Result) -> dict:
    """Trades, summary and equity as Parquet under ``parquet/backtest/run=<id>/``, the summary CSV
    and the chart under ``reports/``; each file replaced atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = settings.root
    base = root / "parquet" / "backtest" / f"run={spec.run_id(settings)}"
    paths = {}
    for name, frame in (("trades", result.trades), ("summary", result.summary), ("equity", result.curve)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        paths[name] = base / name / "part-0.parquet"
        atomic_write_bytes(paths[name], lambda tmp, t=table: pq.write_table(t, tmp, compression="zstd"))
    stem = f"backtest_{spec.start.date()}_{spec.end.date()}"
    text = result.summary.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    paths["csv"] = root / "reports" / f"{stem}.csv"
    atomic_write_bytes(paths["csv"], lambda tmp: tmp.write_text(text))
    paths["png"] = root / "reports" / f"{stem}.png"
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
    left.set_title(f"Cumulative return, short straddles (fill {spec.fill_share:g} of half-spread)")
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
