"""The metrics engine: every stage composed over the whole universe for one as-of date.

Pure: DataFrames and the config in, DataFrames out. Every step is keyed by ticker, so running
it on a partition of tickers gives exactly that partition's rows of the full run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.levels import level_name
from pipeline.config import Config
from pipeline.schemas import metrics_columns
from pipeline.stages import consistency, density, events as events_stage, implied, liquidity, moves as moves_stage, rank
from pipeline.stages import skew, surface as surface_stage, term


@dataclass
class MetricsResult:
    """The metrics and what the views show beside them, each a dataset of its name: ``term``
    (ATM IV per expiration), ``event_history`` (the past reports behind each event's statistics)
    and ``smile`` (the event expiration's quotes the skew is fitted to)."""

    moves: pd.DataFrame
    surface: pd.DataFrame
    metrics: pd.DataFrame
    term: pd.DataFrame
    event_history: pd.DataFrame
    smile: pd.DataFrame


def compute_metrics(as_of, calendar: pd.DataFrame, history: pd.DataFrame,
                    prices: pd.DataFrame, chains: pd.DataFrame, config: Config,
                    vol_history: pd.DataFrame | None = None) -> MetricsResult:
    """Every metric of the events in the look-ahead window of ``as_of``: a date, or a Series of
    dates indexed by ticker (:func:`pipeline.stages.events.as_of_rows`), so that one pass
    computes events of many as-of dates, each under its own ticker label.

    ``vol_history``: the names' earlier stored sessions (ticker, date, iv30, ex_earnings_vol) for
    the vol percentiles (:func:`pipeline.stages.term.vol_percentiles`); None counts none."""
    as_of = as_of if isinstance(as_of, pd.Series) else pd.Timestamp(as_of)
    upcoming = events_stage.upcoming_events(calendar, as_of, config.lookahead_days)
    moves = moves_stage.historical_moves(history, prices, as_of)
    stats = consistency.history_stats(moves, move_type=config.move_type, max_events=config.max_events,
                                      min_events=config.min_events, ewm_halflife=config.ewm_halflife)
    surface = surface_stage.build_surface(chains, config.risk_free_rate)
    atm = term.atm_iv_by_expiration(surface)   # once, for the skew's moneyness and the term structure
    skews = skew.fit_skew(surface, min_points=config.skew_min_points, max_abs_x=config.skew_max_abs_x, atm=atm)
    straddles = implied.event_straddles(chains, surface, upcoming, config.max_leg_spread, skews)
    terms = term.term_structure(atm, upcoming)

    m = upcoming.merge(straddles, on=["ticker", "report_date"], how="left")
    m = m.merge(stats, on="ticker", how="left")
    m = m.merge(skews, on=["ticker", "expiration"], how="left")
    m = m.merge(terms, on=["ticker", "report_date"], how="left")
    m = m.merge(term.iv30(atm), on="ticker", how="left")
    if vol_history is None:
        vol_history = pd.DataFrame({"ticker": pd.Series(dtype="str"), "iv30": pd.Series(dtype=float),
                                    "ex_earnings_vol": pd.Series(dtype=float)})
    m = m.join(term.vol_percentiles(m, vol_history))
    history = consistency.event_history(moves, m, move_type=config.move_type, max_events=config.max_events)
    m = m.merge(consistency.exceedances(history, m), on=["ticker", "report_date"], how="left")
    priced = m[["ticker", "report_date", "reaction_date", "expiration", "implied_move", "ex_earnings_vol"]]
    m = m.merge(density.event_densities(surface, atm, priced, moves, levels=config.exceed_levels,
                                        move_type=config.move_type, max_events=config.max_events),
                on=["ticker", "report_date"], how="left")
    m = m.merge(density.iv_crush(atm, priced), on=["ticker", "report_date"], how="left")
    m["n_events"] = m["n_events"].fillna(0).astype(int)
    # history_stats only sees tickers with at least one measured move.
    m["hist_reason"] = m["hist_reason"].where(m["n_events"] > 0, "no past reports with prices")
    m["skew_n"] = m["skew_n"].fillna(0).astype(int)
    no_spot = m.loc[m["spot"].isna(), "ticker"].unique()
    if len(no_spot):       # only events without a chain; avoids a pass over every bar
        m["spot"] = m["spot"].fillna(m["ticker"].map(_last_close(prices[prices["ticker"].isin(no_spot)], as_of)))

    m["vrp"] = rank.vrp(m["implied_move"], m["hist_mean_abs_move"])
    m["vrp_median"] = rank.vrp(m["implied_move"], m["hist_median_abs_move"])
    m["implied_event_move"] = implied.event_only_move(m["implied_move"], m["ex_earnings_vol"], m["t"])
    m["vrp_event"] = rank.vrp(m["implied_event_move"], m["hist_mean_abs_move"])
    signal, m["vrp_basis"] = rank.signal_vrp(m["vrp"], m["vrp_event"])
    m["vrp_tier"] = rank.vrp_tier(signal, config.vrp_tiers)
    m["vrp_reason"] = rank.skip_reason(signal, m["vrp_basis"], config.vrp_tiers)
    # Like with like: both are event-only moves; a gap means the quotes disagree with each other.
    disagrees = term.flag_disagreement(m["implied_event_move"], m["ts_implied_move"], config.disagreement_ratio)
    m["ts_flag"] = m["ts_flag"].where(~disagrees, "disagrees_with_straddle")
    m[["liquidity_tier", "liquidity_reason"]] = liquidity.liquidity_tier(
        m["straddle_spread"], m["min_leg_open_interest"], m["expiration_volume"], config.liquidity_tiers)
    m = m.join(rank.score_components(m, config.score_weights, config.vrp_tiers))
    m["status"], m["reason"] = _status(m)
    columns = metrics_columns([level_name(v) for v in config.exceed_levels])
    metrics = m.reindex(columns=columns).sort_values(["ticker", "report_date"], kind="stable").reset_index(drop=True)
    return MetricsResult(moves=moves, surface=surface, metrics=metrics, term=atm, event_history=history,
                         smile=term.event_smiles(surface, straddles))


def _last_close(prices: pd.DataFrame, as_of) -> pd.Series:
    """Close of each ticker's last bar on or before the as-of date."""
    known = prices[prices["date"].to_numpy() <= events_stage.as_of_rows(as_of, prices["ticker"])]
    return known.loc[known.groupby("ticker")["date"].idxmax(), ["ticker", "close"]].set_index("ticker")["close"]


def _status(m: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """failed: no VRP (the core number); degraded: VRP but a qualifier is missing, the implied move
    needed a fallback (implied_method in FALLBACK_METHODS) or the straddle is untradeable
    (REJECT); else ok. The reason joins every stage's reason or flag that applies, so every
    non-ok row, tier below GOOD and SKIP says why (a flag such as disagrees_with_straddle is
    reported without degrading the status)."""
    reasons = pd.DataFrame({
        "implied": m["implied_reason"],
        "history": m["hist_reason"],
        "term": m["ts_flag"],
        "skew": m["skew_reason"],
        # Absent from frames built before the density stage ran (e.g. a caller's own).
        "density": m.get("density_reason", pd.Series(None, index=m.index, dtype="str")),
        "crush": m.get("crush_reason", pd.Series(None, index=m.index, dtype="str")),
    })
    labelled = pd.DataFrame({name: name + ": " + col.astype("str") for name, col in reasons.items()}).where(reasons.notna())
    labelled = labelled.assign(liquidity=m["liquidity_reason"], vrp=m["vrp_reason"])   # already labelled
    long = labelled.stack().dropna()
    reason = long.groupby(level=0).agg("; ".join).reindex(m.index).astype("str")
    failed = m["vrp"].isna().to_numpy()
    missing = m[["implied_move", "hist_mean_abs_move", "ts_implied_move", "skew_slope"]].isna().any(axis=1)
    fallback = m["implied_method"].isin(implied.FALLBACK_METHODS)
    degraded = missing.to_numpy() | fallback.to_numpy() | (m["liquidity_tier"] == "REJECT").to_numpy()
    status = np.where(failed, "failed", np.where(degraded, "degraded", "ok"))
    return status, reason
