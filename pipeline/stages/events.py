"""Which reports are upcoming on the as-of date, and which expirations their metrics need."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import sessions
# The expiration rule lives with the trading calendar (sources use it too); named here for the stages.
from pipeline.sessions import FAR_EXPIRATION_DAYS, covering_expirations, event_expirations  # noqa: F401


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
