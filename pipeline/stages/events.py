"""Which reports are upcoming on the as-of date, and which expirations their metrics need."""
from __future__ import annotations

import pandas as pd

from pipeline import sessions


def upcoming_events(calendar: pd.DataFrame, as_of: pd.Timestamp, lookahead_days: int) -> pd.DataFrame:
    """Reports whose reaction session is after the as-of session and whose report date is within
    ``lookahead_days`` calendar days of ``as_of``.

    A BMO report on the as-of date has already reacted (it is history); an AMC one is upcoming.
    UNKNOWN timing takes the later (AMC) reaction session, so the chosen expiration covers the
    event whichever way it turns out.
    """
    as_of = pd.Timestamp(as_of)
    cal = calendar[calendar["report_date"] <= as_of + pd.Timedelta(days=lookahead_days)]
    reaction_timing = cal["timing"].where(cal["timing"] != "UNKNOWN", "AMC")
    reaction = sessions.reaction_sessions(cal["report_date"].values, reaction_timing.to_numpy())
    out = cal[["ticker", "report_date", "timing"]].assign(reaction_date=reaction)
    out = out[out["reaction_date"] > sessions.session_on_or_before(as_of)]
    # One event per ticker: the earliest upcoming report.
    out = out.sort_values(["ticker", "report_date"], kind="stable").drop_duplicates("ticker")
    return out.reset_index(drop=True)


def event_expirations(expirations: pd.DataFrame, events: pd.DataFrame, count: int = 2) -> pd.DataFrame:
    """The first ``count`` listed expirations on or after each event's reaction session.

    The first is the straddle/skew expiration; the first two bracket the event for the
    term-structure estimate. Columns: ticker, expiration.
    """
    pairs = expirations.merge(events[["ticker", "reaction_date"]], on="ticker")
    pairs = pairs[pairs["expiration"] >= pairs["reaction_date"]].sort_values(["ticker", "expiration"])
    pairs = pairs[pairs.groupby("ticker").cumcount() < count]
    return pairs[["ticker", "expiration"]].reset_index(drop=True)
