"""Which reports are upcoming on the as-of date, and which expirations their metrics need."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import sessions


def as_of_rows(as_of, tickers: pd.Series) -> np.ndarray:
    """The as-of date of each row (datetime64[ns]): ``as_of`` itself, or, when it is a Series of
    dates indexed by ticker (one pass over many as-of dates: a backtest keys each event's rows
    by their own ticker label), each row's ticker's date."""
    if isinstance(as_of, pd.Series):
        return as_of.reindex(tickers.to_numpy()).to_numpy(dtype="datetime64[ns]")
    return np.full(len(tickers), pd.Timestamp(as_of).to_datetime64(), dtype="datetime64[ns]")


def upcoming_events(calendar: pd.DataFrame, as_of, lookahead_days: int) -> pd.DataFrame:
    """Reports whose reaction session is after the as-of session and whose report date is within
    ``lookahead_days`` calendar days of ``as_of`` (a date, or per ticker: :func:`as_of_rows`).

    A BMO report on the as-of date has already reacted (it is history); an AMC one is upcoming.
    UNKNOWN timing takes the later (AMC) reaction session, so the chosen expiration covers the
    event whichever way it turns out.
    """
    as_of_date = as_of_rows(as_of, calendar["ticker"])
    near = calendar["report_date"].to_numpy() <= as_of_date + np.timedelta64(lookahead_days, "D")
    cal, as_of_date = calendar[near], as_of_date[near]
    reaction_timing = cal["timing"].where(cal["timing"] != "UNKNOWN", "AMC")
    reaction = sessions.reaction_sessions(cal["report_date"].values, reaction_timing.to_numpy())
    out = cal[["ticker", "report_date", "timing"]].assign(reaction_date=reaction)
    out = out[reaction > sessions.sessions_on_or_before(as_of_date)]
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


# The 30-day constant-maturity IV needs an expiration beyond 30 days to interpolate to; 35 leaves
# a week's margin, so the pull always brackets 30 days whatever the weekly/monthly listing.
FAR_EXPIRATION_DAYS = 35


def event_expirations(expirations: pd.DataFrame, events: pd.DataFrame, count: int = 2,
                      as_of=None, far_days: int | None = None) -> pd.DataFrame:
    """The first ``count`` listed expirations on or after each event's reaction session
    (:func:`covering_expirations`), one event per ticker, plus (when ``far_days`` is given) the
    first expiration at least ``far_days`` calendar days after ``as_of`` when none of those is.
    Columns: ticker, expiration, sorted.
    """
    pairs = expirations.merge(events[["ticker", "reaction_date"]], on="ticker")
    chosen = covering_expirations(pairs, ["ticker"], count)[["ticker", "expiration"]]
    if far_days is not None and as_of is not None:
        far = pairs[pairs["expiration"] >= pd.Timestamp(as_of) + pd.Timedelta(days=far_days)]
        first_far = far.sort_values(["ticker", "expiration"]).drop_duplicates("ticker")[["ticker", "expiration"]]
        chosen = pd.concat([chosen, first_far]).drop_duplicates().sort_values(["ticker", "expiration"])
    return chosen.reset_index(drop=True)
