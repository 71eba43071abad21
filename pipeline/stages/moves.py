"""Realized stock reactions to past reports, timing-aware."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.contract import sessions
from pipeline.stages.panel import AS_OF

MOVES_COLUMNS = ["ticker", "report_date", "timing", "timing_source", "ref_date", "reaction_date",
                 "ref_close", "close_move", "gap_move", "max_move"]


def _bar_keys(ticker_codes: np.ndarray, dates) -> np.ndarray:
    """One int64 per (ticker, day): ticker code * 100000 + days since 1970 (-1 for unknown tickers)."""
    days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    return np.where(ticker_codes >= 0, ticker_codes.astype(np.int64) * 100_000 + days, -1)


def _candidate_moves(history: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Moves for each (report, timing) candidate row of ``history``.

    close_move = close[reaction] / ref_close - 1
    gap_move   = open[reaction] / ref_close - 1
    max_move   = the larger in size of high[reaction] / ref_close - 1 and low[reaction] / ref_close - 1,
                 with its sign
    where ref_close is the close of the session before the reaction session. Bars are looked up
    by integer (ticker, day) keys: joining millions of bars on string and date columns is what
    made this stage slow.
    """
    reaction = sessions.reaction_sessions(history["report_date"].values, history["timing"].to_numpy())
    ref = sessions.previous_sessions(reaction)
    price_codes, price_tickers = pd.factorize(prices["ticker"])
    history_codes = pd.Index(price_tickers).get_indexer(history["ticker"])
    bar_keys = _bar_keys(price_codes, prices["date"].values)
    order = np.argsort(bar_keys, kind="stable")
    sorted_keys = bar_keys[order]

    def bar_rows(dates):
        keys = _bar_keys(history_codes, dates)
        if not len(sorted_keys):
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        return order[at], (keys >= 0) & (sorted_keys[at] == keys)

    at_reaction, has_reaction = bar_rows(reaction)
    at_ref, has_ref = bar_rows(ref)
    keep = has_reaction & has_ref
    bars = {c: prices[c].to_numpy(float) for c in ("open", "high", "low", "close")}
    r, f = at_reaction[keep], at_ref[keep]
    ref_close = bars["close"][f]
    up = bars["high"][r] / ref_close - 1.0
    down = bars["low"][r] / ref_close - 1.0
    return history[keep].assign(
        reaction_date=reaction[keep], ref_date=ref[keep], ref_close=ref_close,
        close_move=bars["close"][r] / ref_close - 1.0,
        gap_move=bars["open"][r] / ref_close - 1.0,
        max_move=np.where(np.abs(up) >= np.abs(down), up, down),
    )


def historical_moves(history: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """One row per (as_of, ticker) and past report that has reacted by the as-of date and has
    both bars. ``history`` holds each as-of date's reports (``as_of`` a column: a ticker's reports
    once per as-of date they are wanted for); ``prices`` the bars, facts of no as-of date.

    UNKNOWN timing is inferred: both candidates (BMO: react on the report date, AMC: the next
    session) are computed and the one with the larger overnight gap wins (``timing_source`` =
    "inferred"); until both candidates have reacted the report is left out, since the choice
    cannot be made. Reports without the bars they need are left out, never filled, and two
    reports mapping to one reaction session count once (the later report).
    """
    in_range = (history["report_date"].to_numpy() <= history[AS_OF].to_numpy(dtype="datetime64[ns]")) & \
        (history["report_date"] > sessions.FIRST_DATE)
    past = history[in_range][[AS_OF, "ticker", "report_date", "timing"]]
    unknown = past["timing"] == "UNKNOWN"
    candidates = pd.concat([
        past[~unknown].assign(timing_source="vendor"),
        past[unknown].assign(timing="BMO", timing_source="inferred"),
        past[unknown].assign(timing="AMC", timing_source="inferred"),
    ], ignore_index=True)
    moves = _candidate_moves(candidates, prices)
    last_session = sessions.sessions_on_or_before(moves[AS_OF].to_numpy(dtype="datetime64[ns]"))
    reacted = moves["reaction_date"].to_numpy() <= last_session
    report = [AS_OF, "ticker", "report_date"]
    candidates = moves.groupby(report, sort=False)["reaction_date"].transform("size")
    decided = reacted & ((moves["timing_source"] == "vendor") | (candidates == 2))
    moves = moves[decided & (moves.groupby(report, sort=False)["reaction_date"]
                             .transform("max").to_numpy() <= last_session)]
    moves = (moves.assign(abs_gap=moves["gap_move"].abs())
             .sort_values([*report, "abs_gap"], ascending=[True, True, True, False], kind="stable")
             .drop_duplicates(report)
             .drop_duplicates([AS_OF, "ticker", "reaction_date"], keep="last"))
    return moves[[AS_OF, *MOVES_COLUMNS]].reset_index(drop=True)
