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


def covering_expirations(pairs: pd.DataFrame, key: list[str], count: int) -> pd.DataFrame:
    """The expiration rule: per event (rows sharing ``key``), the first ``count`` expirations on or
    after its reaction session.

    ``pairs`` has one row per candidate (event, expiration) with columns ``key``, expiration and
    reaction_date. Returns those rows sorted by ``key`` then expiration, with ``rank`` (0 for the
    first: the straddle/skew expiration; the first two bracket the event for the term structure).
    """
    pairs = pairs[pairs["expiration"] >= pairs["reaction_date"]].sort_values([*key, "expiration"])
    rank = pairs.groupby(key, sort=False).cumcount()
    return pairs[rank < count].assign(rank=rank[rank < count])


def event_expirations(expirations: pd.DataFrame, events: pd.DataFrame, count: int = 2) -> pd.DataFrame:
    """The first ``count`` listed expirations on or after each event's reaction session
    (:func:`covering_expirations`), one event per ticker. Columns: ticker, expiration.
    """
    pairs = expirations.merge(events[["ticker", "reaction_date"]], on="ticker")
    return covering_expirations(pairs, ["ticker"], count)[["ticker", "expiration"]].reset_index(drop=True)
