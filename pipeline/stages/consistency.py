"""Statistics of past absolute moves per ticker: level, consistency, recency weighting, tails, trend;
and the past reports behind them per event, with which of them exceeded the implied move."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.stages.moves import MOVES_COLUMNS

STAT_COLUMNS = ["n_events", "hist_mean_abs_move", "hist_median_abs_move", "mad", "consistency",
                "ewm_mean_abs_move", "ewm_std_abs_move", "tail_ratio", "trend_slope"]


def recent_abs_moves(moves: pd.DataFrame, move_type: str, max_events: int) -> pd.DataFrame:
    """The last ``max_events`` reports per ticker with ``abs_move`` and ``age`` (0 = most recent)."""
    ordered = moves.sort_values(["ticker", "reaction_date"], kind="stable")
    age = ordered.groupby("ticker").cumcount(ascending=False)
    recent = ordered[age < max_events]
    return pd.DataFrame({"ticker": recent["ticker"], "abs_move": recent[move_type].abs(),
                         "age": age[age < max_events]})


def history_stats(moves: pd.DataFrame, *, move_type: str = "close_move", max_events: int = 12,
                  min_events: int = 4, ewm_halflife: float = 4.0) -> pd.DataFrame:
    """Per ticker, over |m| of the last ``max_events`` reports (``moves`` holds only past reports):

    - ``hist_mean_abs_move`` = mean |m|, ``hist_median_abs_move`` = median |m|
    - ``mad`` = median(| |m| - median|m| |); ``consistency`` = clip(1 - mad / median|m|, 0, 1)
    - ``ewm_mean_abs_move``, ``ewm_std_abs_move``: weights w = 0.5 ** (age / ewm_halflife), age in
      reports; std = sqrt(sum w (|m| - ewm_mean)^2 / sum w)
    - ``tail_ratio`` = max |m| / mean |m|
    - ``trend_slope``: least-squares slope of |m| against report order (fraction per report,
      positive = moves getting larger)

    Tickers with fewer than ``min_events`` reports get nulls and ``hist_reason``. Moves are
    fractions. One row per ticker.
    """
    recent = recent_abs_moves(moves, move_type, max_events)
    if recent.empty:
        columns = {"ticker": "str", "n_events": "int64", **{c: "float64" for c in STAT_COLUMNS[1:]}, "hist_reason": "str"}
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in columns.items()})
    x = recent["abs_move"]
    by = recent.groupby("ticker", sort=True)
    median = by["abs_move"].transform("median")
    order = -recent["age"].astype(float)          # later reports have larger order
    weight = 0.5 ** (recent["age"] / ewm_halflife)
    parts = pd.DataFrame({
        "ticker": recent["ticker"], "x": x, "dev": (x - median).abs(), "w": weight, "wx": weight * x,
        "t": order, "tt": order * order, "tx": order * x,
    }).groupby("ticker", sort=True)
    sums = parts[["w", "wx", "t", "tt", "tx", "x"]].sum()
    stats = pd.DataFrame({
        "n_events": by.size(),
        "hist_mean_abs_move": by["abs_move"].mean(),
        "hist_median_abs_move": by["abs_move"].median(),
        "mad": parts["dev"].median(),
        "max_abs_move": by["abs_move"].max(),
    })
    ewm_mean = sums["wx"] / sums["w"]
    spread = weight * (x - recent["ticker"].map(ewm_mean)) ** 2
    stats["ewm_mean_abs_move"] = ewm_mean
    stats["ewm_std_abs_move"] = np.sqrt(spread.groupby(recent["ticker"]).sum() / sums["w"])
    n = stats["n_events"].astype(float)
    denominator = n * sums["tt"] - sums["t"] ** 2
    stats["trend_slope"] = (n * sums["tx"] - sums["t"] * sums["x"]) / denominator.where(denominator > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats["consistency"] = (1.0 - stats["mad"] / stats["hist_median_abs_move"]).clip(0.0, 1.0)
        # max >= mean always; the floor only undoes rounding when all moves are equal.
        stats["tail_ratio"] = (stats["max_abs_move"] / stats["hist_mean_abs_move"]).clip(lower=1.0)
    zero = stats["hist_mean_abs_move"] <= 0
    stats.loc[zero, ["consistency", "tail_ratio"]] = np.nan
    zero_median = ~zero & (stats["hist_median_abs_move"] <= 0)
    too_few = stats["n_events"] < min_events
    stats.loc[too_few, STAT_COLUMNS[1:]] = np.nan
    stats["hist_reason"] = np.select(
        [too_few, zero, zero_median],
        [f"fewer than {min_events} past reports", "all past moves are zero",
         "median past move is zero: consistency undefined"], None)
    return stats.drop(columns="max_abs_move").reset_index()


EVENT_HISTORY_COLUMNS = ["ticker", "report_date", "past_report_date", *MOVES_COLUMNS[2:], "abs_move", "exceeded"]


def event_history(moves: pd.DataFrame, events: pd.DataFrame, *, move_type: str = "close_move",
                  max_events: int = 12) -> pd.DataFrame:
    """The past reports behind each event's statistics: per event (``events``: ticker,
    report_date, implied_move) the last ``max_events`` reports of its ticker (the window of
    :func:`history_stats`; ``moves`` holds only past reports), oldest first, each with its
    ``past_report_date`` and moves, ``abs_move`` = |move| of ``move_type`` and ``exceeded`` =
    abs_move > the event's implied move (null without an implied move). Events without past
    reports have no rows. Moves are fractions. Columns: EVENT_HISTORY_COLUMNS."""
    moves = moves.reset_index(drop=True)
    window = recent_abs_moves(moves, move_type, max_events)
    past = moves.loc[window.index, MOVES_COLUMNS].rename(columns={"report_date": "past_report_date"})
    rows = events[["ticker", "report_date", "implied_move"]].merge(past.assign(abs_move=window["abs_move"]),
                                                                   on="ticker")
    exceeded = pd.array(rows["abs_move"] > rows["implied_move"], dtype="boolean")
    exceeded[rows["implied_move"].isna().to_numpy()] = pd.NA
    rows = rows.assign(exceeded=exceeded).sort_values(["ticker", "report_date"], kind="stable")
    return rows[EVENT_HISTORY_COLUMNS].reset_index(drop=True)


def exceedances(history: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per event (``events``: ticker, report_date, implied_move; ``history`` its
    :func:`event_history` rows): ``hist_exceed_count`` = past reports of the window whose |move|
    exceeded the implied move, and ``hist_exceed_share`` = that count / reports in the window.
    Null without an implied move or without past reports."""
    by = history["exceeded"].fillna(False).astype(bool).groupby([history["ticker"], history["report_date"]])
    counts = pd.DataFrame({"hist_exceed_count": by.sum().astype(float), "n": by.size()})
    out = events[["ticker", "report_date", "implied_move"]].join(counts, on=["ticker", "report_date"])
    out["hist_exceed_count"] = out["hist_exceed_count"].where(out["implied_move"].notna())
    out["hist_exceed_share"] = out["hist_exceed_count"] / out["n"]
    return out[["ticker", "report_date", "hist_exceed_count", "hist_exceed_share"]]
