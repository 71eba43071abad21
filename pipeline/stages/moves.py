"""Realized stock reactions to past reports, timing-aware."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import sessions

MOVES_COLUMNS = ["ticker", "report_date", "timing", "timing_source", "ref_date", "reaction_date",
                 "ref_close", "close_move", "gap_move", "max_move"]


def _candidate_moves(history: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Moves for each (report, timing) candidate row of ``history``.

    close_move = close[reaction] / ref_close - 1
    gap_move   = open[reaction] / ref_close - 1
    max_move   = the larger in size of high[reaction] / ref_close - 1 and low[reaction] / ref_close - 1,
                 with its sign
    where ref_close is the close of the session before the reaction session.
    """
    reaction = sessions.reaction_sessions(history["report_date"].values, history["timing"].to_numpy())
    frame = history.assign(reaction_date=reaction, ref_date=sessions.previous_sessions(reaction))
    bars = prices[["ticker", "date", "open", "high", "low", "close"]]
    frame = frame.merge(bars.rename(columns={"date": "reaction_date"}), on=["ticker", "reaction_date"])
    frame = frame.merge(bars[["ticker", "date", "close"]].rename(columns={"date": "ref_date", "close": "ref_close"}),
                        on=["ticker", "ref_date"])
    up = frame["high"] / frame["ref_close"] - 1.0
    down = frame["low"] / frame["ref_close"] - 1.0
    return frame.assign(
        close_move=frame["close"] / frame["ref_close"] - 1.0,
        gap_move=frame["open"] / frame["ref_close"] - 1.0,
        max_move=np.where(up.abs() >= down.abs(), up, down),
    )


def historical_moves(history: pd.DataFrame, prices: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per past report that has reacted by ``as_of`` and has both bars.

    UNKNOWN timing is inferred: both candidates (BMO: react on the report date, AMC: the next
    session) are computed and the one with the larger overnight gap wins (``timing_source`` =
    "inferred"). Reports without the bars they need are left out, never filled.
    """
    as_of = pd.Timestamp(as_of)
    past = history[history["report_date"] <= as_of][["ticker", "report_date", "timing"]]
    unknown = past["timing"] == "UNKNOWN"
    candidates = pd.concat([
        past[~unknown].assign(timing_source="vendor"),
        past[unknown].assign(timing="BMO", timing_source="inferred"),
        past[unknown].assign(timing="AMC", timing_source="inferred"),
    ], ignore_index=True)
    moves = _candidate_moves(candidates, prices)
    moves = moves[moves["reaction_date"] <= sessions.session_on_or_before(as_of)]
    moves = (moves.assign(abs_gap=moves["gap_move"].abs())
             .sort_values(["ticker", "report_date", "abs_gap"], ascending=[True, True, False], kind="stable")
             .drop_duplicates(["ticker", "report_date"]))
    return moves[MOVES_COLUMNS].reset_index(drop=True)
