"""Which reports are upcoming on the as-of date, and which expirations their metrics need."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.contract import sessions
from pipeline.stages.panel import AS_OF
# The expiration rule lives with the trading calendar (sources use it too); named here for the stages.
from pipeline.contract.sessions import FAR_EXPIRATION_DAYS, covering_expirations, event_expirations  # noqa: F401


def upcoming_events(calendar: pd.DataFrame, lookahead_days: int) -> pd.DataFrame:
    """Per (as_of, ticker) of ``calendar`` (the calendar rows of each as-of date, ``as_of`` a
    column: :func:`pipeline.stages.panel.dated`), the reports whose reaction session is after the
    as-of session and whose report date is within ``lookahead_days`` calendar days of the as-of
    date. Columns: as_of, ticker, report_date, timing, reaction_date.

    A BMO report on the as-of date has already reacted (it is history); an AMC one is upcoming.
    UNKNOWN timing takes the later (AMC) reaction session, so the chosen expiration covers the
    event whichever way it turns out.
    """
    as_of_date = calendar[AS_OF].to_numpy(dtype="datetime64[ns]")
    near = calendar["report_date"].to_numpy() <= as_of_date + np.timedelta64(lookahead_days, "D")
    cal, as_of_date = calendar[near], as_of_date[near]
    reaction_timing = cal["timing"].where(cal["timing"] != "UNKNOWN", "AMC")
    reaction = sessions.reaction_sessions(cal["report_date"].values, reaction_timing.to_numpy())
    out = cal[[AS_OF, "ticker", "report_date", "timing"]].assign(reaction_date=reaction)
    out = out[reaction > sessions.sessions_on_or_before(as_of_date)]
    # One event per ticker and as-of date: the earliest upcoming report.
    out = out.sort_values([AS_OF, "ticker", "report_date"], kind="stable").drop_duplicates([AS_OF, "ticker"])
    return out.reset_index(drop=True)
