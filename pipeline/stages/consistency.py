"""Statistics of past absolute moves per ticker: level, consistency, recency weighting, tails, trend;
and the past reports behind them per event, with which of them exceeded the implied move."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.stages.moves import MOVES_COLUMNS
from pipeline.stages.panel import AS_OF, key

STAT_COLUMNS = ["n_events", "hist_mean_abs_move", "hist_median_abs_move", "mad", "consistency",
                "ewm_mean_abs_move", "ewm_std_abs_move", "tail_ratio", "trend_slope"]


def recent_abs_moves(moves: pd.DataFrame, move_type: str, max_events: int) -> pd.DataFrame:
    """The last ``max_events`` reports per (as_of, ticker) with ``abs_move`` and ``age`` (0 = most recent)."""
    by = key(moves)
    ordered = moves.sort_values([*by, "reaction_date"], kind="stable")
    age = ordered.groupby(by).cumcount(ascending=False)
    recent = ordered[age < max_events]
    return pd.DataFrame({**{c: recent[c] for c in by}, "abs_move": recent[move_type].abs(),
                         "age": age[age < max_events]})


def history_stats(moves: pd.DataFrame, *, move_type: str = "close_move", max_events: int = 12,
                  min_events: int = 4, ewm_halflife: float = 4.0) -> pd.DataFrame:
    """Per (as_of, ticker) (:func:`pipeline.stages.panel.key`), over |m| of the last
    ``max_events`` reports (``moves`` holds only past reports):

    - ``hist_mean_abs_move`` = mean |m|, ``hist_median_abs_move`` = median |m|
    - ``mad`` = median(| |m| - median|m| |); ``consistency`` = clip(1 - mad / median|m|, 0, 1)
    - ``ewm_mean_abs_move``, ``ewm_std_abs_move``: weights w = 0.5 ** (age / ewm_halflife), age in
      reports; std = sqrt(sum w (|m| - ewm_mean)^2 / sum w)
    - ``tail_ratio`` = max |m| / mean |m|
    - ``trend_slope``: least-squares slope of |m| against report order (fraction per report,
      positive = moves getting larger)

    Tickers with fewer than ``min_events`` reports get nulls and ``hist_reason``. Moves are
    fractions. One row per (as_of, ticker).
    """
    by_key = key(moves)
    recent = recent_abs_moves(moves, move_type, max_events)
    if recent.empty:
        columns = {**({"as_of": "datetime64[ns]"} if "as_of" in by_key else {}), "ticker": "str", "n_events": "int64",
                   **{c: "float64" for c in STAT_COLUMNS[1:]}, "hist_reason": "str"}
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in columns.items()})
    x = recent["abs_move"]
    by = recent.groupby(by_key, sort=True)
    median = by["abs_move"].transform("median")
    order = -recent["age"].astype(float)          # later reports have larger order
    weight = 0.5 ** (recent["age"] / ewm_halflife)
    parts = pd.DataFrame({
        **{c: recent[c] for c in by_key}, "x": x, "dev": (x - median).abs(), "w": weight, "wx": weight * x,
        "t": order, "tt": order * order, "tx": order * x,
    }).groupby(by_key, sort=True)
    sums = parts[["w", "wx", "t", "tt", "tx", "x"]].sum()
    stats = pd.DataFrame({
        "n_events": by.size(),
        "hist_mean_abs_move": by["abs_move"].mean(),
        "hist_median_abs_move": by["abs_move"].median(),
        "mad": parts["dev"].median(),
        "max_abs_move": by["abs_move"].max(),
    })
    ewm_mean = sums["wx"] / sums["w"]
    keys = pd.MultiIndex.from_frame(recent[by_key]) if len(by_key) > 1 else pd.Index(recent["ticker"])
    spread = weight * (x - ewm_mean.reindex(keys).to_numpy()) ** 2
    stats["ewm_mean_abs_move"] = ewm_mean
    stats["ewm_std_abs_move"] = np.sqrt(spread.groupby([recent[c] for c in by_key]).sum() / sums["w"])
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
    """The past reports behind each event's statistics: per event (``events``: [as_of,] ticker,
    report_date, implied_move) the last ``max_events`` reports of its ticker (the window of
    :func:`history_stats`; ``moves`` holds only past reports, keyed like ``events``), oldest
    first, each with its ``past_report_date`` and moves, ``abs_move`` = |move| of ``move_type``
    and ``exceeded`` = abs_move > the event's implied move (null without an implied move).
    Events without past reports have no rows. Moves are fractions. Columns: [as_of,]
    EVENT_HISTORY_COLUMNS."""
    by_key = key(events)
    moves = moves.reset_index(drop=True)
    window = recent_abs_moves(moves, move_type, max_events)
    past = moves.loc[window.index, [*by_key[:-1], *MOVES_COLUMNS]].rename(columns={"report_date": "past_report_date"})
    rows = events[[*by_key, "report_date", "implied_move"]].merge(past.assign(abs_move=window["abs_move"]), on=by_key)
    exceeded = pd.array(rows["abs_move"] > rows["implied_move"], dtype="boolean")
    exceeded[rows["implied_move"].isna().to_numpy()] = pd.NA
    rows = rows.assign(exceeded=exceeded).sort_values([*by_key, "report_date"], kind="stable")
    return rows[[*by_key[:-1], *EVENT_HISTORY_COLUMNS]].reset_index(drop=True)


def exceedances(history: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per event (``events``: [as_of,] ticker, report_date, implied_move; ``history`` its
    :func:`event_history` rows): ``hist_exceed_count`` = past reports of the window whose |move|
    exceeded the implied move, and ``hist_exceed_share`` = that count / reports in the window.
    Null without an implied move or without past reports."""
    by_key = key(events, "report_date")
    by = history["exceeded"].fillna(False).astype(bool).groupby([history[c] for c in by_key])
    counts = pd.DataFrame({"hist_exceed_count": by.sum().astype(float), "n": by.size()})
    out = events[[*by_key, "implied_move"]].join(counts, on=by_key)
    out["hist_exceed_count"] = out["hist_exceed_count"].where(out["implied_move"].notna())
    out["hist_exceed_share"] = out["hist_exceed_count"] / out["n"]
    return out[[*by_key, "hist_exceed_count", "hist_exceed_share"]]
