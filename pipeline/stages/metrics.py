"""The metrics engine: every stage composed over the whole universe for a panel of as-of dates.

Pure: DataFrames and plain parameters in, DataFrames out. Every step is keyed by (as_of, ticker),
so running it on a partition of the keys (one date, some tickers) gives exactly that partition's
rows of the full run, and one pass computes one date, a chunk of dates or many trades' entries.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.contract.levels import level_name
from pipeline.contract.schemas import metrics_columns
from pipeline.stages import consistency, density, events as events_stage, implied, liquidity, moves as moves_stage, rank
from pipeline.stages import skew, surface as surface_stage, term
from pipeline.stages.panel import AS_OF
from pipeline.stages.params import StageParams

KEY = [AS_OF, "ticker"]
EVENT = [*KEY, "report_date"]


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


# The columns of the stored chains and bars the stages read: a loader may read only these.
CHAIN_INPUTS = ("ticker", "expiration", "strike", "option_type", "bid", "ask", "volume", "open_interest",
                "underlying_price", "quote_time", "snapshot_time")
PRICE_INPUTS = ("ticker", "date", "open", "high", "low", "close")


def compute_metrics(calendar: pd.DataFrame, history: pd.DataFrame, prices: pd.DataFrame, chains: pd.DataFrame,
                    params: StageParams, vol_history: pd.DataFrame | None = None) -> MetricsResult:
    """Every metric of the events in the look-ahead window of each as-of date of the panel.

    ``calendar`` and ``chains`` hold each as-of date's snapshot with the date in the ``as_of``
    column (:func:`pipeline.stages.panel.dated`); ``history`` (earnings history) and ``prices``
    are facts of no date, read for every as-of date up to it. All outputs carry ``as_of``.
    ``vol_history``: the names' stored sessions before the panel's dates (ticker, date, iv30,
    ex_earnings_vol) for the vol percentiles (:func:`pipeline.stages.term.vol_percentiles`; the
    panel's own dates count too); None counts none."""
    upcoming = events_stage.upcoming_events(calendar, params.lookahead_days)
    # Each event's ticker's reports, once per as-of date it is wanted for.
    wanted = upcoming[KEY].merge(history, on="ticker")
    moves = moves_stage.historical_moves(wanted, prices)
    stats = consistency.history_stats(moves, move_type=params.move_type, max_events=params.max_events,
                                      min_events=params.min_events, ewm_halflife=params.ewm_halflife)
    surface = surface_stage.build_surface(chains, params.risk_free_rate)
    atm = term.atm_iv_by_expiration(surface)   # once, for the skew's moneyness and the term structure
    skews = skew.fit_skew(surface, min_points=params.skew_min_points, max_abs_x=params.skew_max_abs_x, atm=atm)
    straddles = implied.event_straddles(chains, surface, upcoming, params.max_leg_spread, skews)
    terms = term.term_structure(atm, upcoming)

    m = upcoming.merge(straddles, on=EVENT, how="left")
    m = m.merge(stats, on=KEY, how="left")
    m = m.merge(skews, on=[*KEY, "expiration"], how="left")
    m = m.merge(terms, on=EVENT, how="left")
    m = m.merge(term.iv30(atm), on=KEY, how="left")
    if vol_history is None:
        vol_history = pd.DataFrame({"ticker": pd.Series(dtype="str"), "date": pd.Series(dtype="datetime64[ns]"),
                                    "iv30": pd.Series(dtype=float), "ex_earnings_vol": pd.Series(dtype=float)})
    m = m.join(term.vol_percentiles(m, vol_history))
    history = consistency.event_history(moves, m, move_type=params.move_type, max_events=params.max_events)
    m = m.merge(consistency.exceedances(history, m), on=EVENT, how="left")
    priced = m[[*EVENT, "reaction_date", "expiration", "implied_move", "ex_earnings_vol"]]
    m = m.merge(density.event_densities(surface, atm, priced, moves, levels=params.exceed_levels,
                                        move_type=params.move_type, max_events=params.max_events),
                on=EVENT, how="left")
    m = m.merge(density.iv_crush(atm, priced), on=EVENT, how="left")
    m["n_events"] = m["n_events"].fillna(0).astype(int)
    # history_stats only sees tickers with at least one measured move.
    m["hist_reason"] = m["hist_reason"].where(m["n_events"] > 0, "no past reports with prices")
    m["skew_n"] = m["skew_n"].fillna(0).astype(int)
    if m["spot"].isna().any():       # only events without a chain; avoids a pass over every bar
        m["spot"] = m["spot"].fillna(_last_close(prices, m))

    m["vrp"] = rank.vrp(m["implied_move"], m["hist_mean_abs_move"])
    m["vrp_median"] = rank.vrp(m["implied_move"], m["hist_median_abs_move"])
    m["implied_event_move"] = implied.event_only_move(m["implied_move"], m["ex_earnings_vol"], m["t"])
    m["vrp_event"] = rank.vrp(m["implied_event_move"], m["hist_mean_abs_move"])
    signal, m["vrp_basis"] = rank.signal_vrp(m["vrp"], m["vrp_event"])
    m["vrp_tier"] = rank.vrp_tier(signal, params.vrp_tiers)
    m["vrp_reason"] = rank.skip_reason(signal, m["vrp_basis"], params.vrp_tiers)
    # Like with like: both are event-only moves; a gap means the quotes disagree with each other.
    disagrees = term.flag_disagreement(m["implied_event_move"], m["ts_implied_move"], params.disagreement_ratio)
    m["ts_flag"] = m["ts_flag"].where(~disagrees, "disagrees_with_straddle")
    m[["liquidity_tier", "liquidity_reason"]] = liquidity.liquidity_tier(
        m["straddle_spread"], m["min_leg_open_interest"], m["expiration_volume"], params.liquidity_tiers)
    m = m.join(rank.score_components(m, params.score_weights, params.vrp_tiers))
    m["status"], m["reason"] = _status(m)
    columns = [AS_OF, *metrics_columns([level_name(v) for v in params.exceed_levels])]
    metrics = m.reindex(columns=columns).sort_values(EVENT, kind="stable").reset_index(drop=True)
    return MetricsResult(moves=moves, surface=surface, metrics=metrics, term=atm, event_history=history,
                         smile=term.event_smiles(surface, straddles))


def _last_close(prices: pd.DataFrame, m: pd.DataFrame) -> pd.Series:
    """Per row of ``m`` without a spot, the close of its ticker's last bar on or before its as-of
    date (on ``m``'s index; NaN without such a bar)."""
    missing = m.loc[m["spot"].isna(), KEY]
    bars = missing.reset_index().merge(prices[["ticker", "date", "close"]], on="ticker")
    known = bars[bars["date"].to_numpy() <= bars[AS_OF].to_numpy()]
    last = known.sort_values(["index", "date"], kind="stable").drop_duplicates("index", keep="last")
    return last.set_index("index")["close"].reindex(m.index)


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
