"""NYSE trading sessions (exchange_calendars XNYS over a fixed, explicit range).

The range is fixed rather than relative to today so results never depend on the clock.
Everything here is vectorized over arrays of dates.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from pipeline.contract import session_cache
from pipeline.contract.clock import NEW_YORK  # noqa: F401 - one definition; clock imports sessions lazily

FIRST_DATE = pd.Timestamp(session_cache.FIRST_DAY)
LAST_DATE = pd.Timestamp(session_cache.LAST_DAY)
SECONDS_PER_YEAR = 365.0 * 86400.0


class OutOfRangeError(ValueError):
    """A date outside the calendar range this package supports."""


@functools.lru_cache(maxsize=1)
def table() -> pd.DataFrame:
    """XNYS sessions over the fixed range: index = session (naive date), columns ``open`` and
    ``close`` (UTC). Built by exchange_calendars (0.9 s per process: its import and holiday rules)
    and kept in ``$XDG_CACHE_HOME/ivcrush/`` (default ``~/.cache``) under its version, so later
    processes (every command, every dask worker) load it in milliseconds."""
    arrays = session_cache.load()
    if arrays is None:                     # absent or damaged: rebuild
        import exchange_calendars as xcals

        cal = xcals.get_calendar("XNYS", start=FIRST_DATE, end=LAST_DATE)
        arrays = {"sessions": cal.sessions.values.astype("datetime64[ns]"),
                  "opens": cal.opens.values.astype("datetime64[ns]"), "closes": cal.closes.values.astype("datetime64[ns]")}
        session_cache.save(arrays)
    return pd.DataFrame({"open": pd.DatetimeIndex(arrays["opens"], tz="UTC"),
                         "close": pd.DatetimeIndex(arrays["closes"], tz="UTC")},
                        index=pd.DatetimeIndex(arrays["sessions"]))


@functools.lru_cache(maxsize=1)
def _session_array() -> np.ndarray:
    return table().index.values.astype("datetime64[D]")


def _as_days(dates) -> np.ndarray:
    if np.ndim(dates) == 0:
        dates = [dates]
    arr = pd.DatetimeIndex(dates).values.astype("datetime64[D]")
    if arr.size and (arr.min() < FIRST_DATE.to_datetime64() or arr.max() > LAST_DATE.to_datetime64()):
        raise OutOfRangeError(f"dates must lie between {FIRST_DATE.date()} and {LAST_DATE.date()}")
    return arr


def sessions_between(start, end) -> pd.DatetimeIndex:
    """NYSE sessions with start <= session <= end."""
    s = _session_array()
    lo, hi = _as_days([start, end])
    return pd.DatetimeIndex(s[(s >= lo) & (s <= hi)].astype("datetime64[ns]"))


def session_on_or_before(date) -> pd.Timestamp:
    """The session itself, or the last session before a non-session date."""
    s = _session_array()
    i = np.searchsorted(s, _as_days(date)[0], side="right") - 1
    return pd.Timestamp(s[i])


def sessions_on_or_before(dates) -> np.ndarray:
    """:func:`session_on_or_before` of each date (datetime64[ns])."""
    return sessions_offset(dates, -1, strict=True)


def sessions_offset(dates, offset: int, *, strict: bool) -> np.ndarray:
    """Vectorized session arithmetic over naive dates (datetime64[ns] out).

    ``strict=False``: offset 0 is the first session on or after the date.
    ``strict=True``: offset 0 is the first session strictly after the date.
    Offset k moves k sessions further (negative k goes back).
    """
    s = _session_array()
    idx = np.searchsorted(s, _as_days(dates), side="right" if strict else "left") + offset
    out = np.full(idx.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = (idx >= 0) & (idx < len(s))
    out[ok] = s[idx[ok]].astype("datetime64[ns]")
    return out


def reaction_sessions(report_dates, timings) -> np.ndarray:
    """Session on which the market first trades on a report.

    BMO and DMH reports react on the report date (or the next session if that is not one);
    AMC reports react on the first session after the report date.
    """
    timings = np.asarray(timings, dtype=object)
    same_day = sessions_offset(report_dates, 0, strict=False)
    next_day = sessions_offset(report_dates, 0, strict=True)
    return np.where(timings == "AMC", next_day, same_day)


def previous_sessions(dates) -> np.ndarray:
    """The session before each date (dates are expected to be sessions)."""
    return sessions_offset(dates, -1, strict=False)


def session_closes_utc(dates) -> pd.DatetimeIndex:
    """Closing time (UTC) of each session; 13:00 ET on early-close days."""
    closes = table()["close"]
    return pd.DatetimeIndex(closes.reindex(pd.DatetimeIndex(dates)).values, tz="UTC")


def year_fraction(quote_time, expiration) -> np.ndarray:
    """Time to expiry in years: (close of the expiration session - quote time) / 365 days.

    This one convention is shared by the synthetic pricer and the IV stage, so the two agree.
    A chain holds few distinct expirations and quote times, so the calendar is consulted once
    per distinct value.
    """
    expiry_codes, expiries = pd.factorize(pd.DatetimeIndex(pd.to_datetime(expiration)))
    quote_codes, quotes = pd.factorize(pd.DatetimeIndex(pd.to_datetime(quote_time, utc=True)))
    closes = session_closes_utc(expiries).as_unit("ns")
    # Subtract exact integer nanoseconds (float64 cannot hold 1.8e18 ns to the nanosecond). A
    # missing value (code -1) picks the appended sentinel, masked below, as does a date that is
    # not a session (no close).
    close_ns = np.append(closes.asi8, 0)
    quote_ns = np.append(quotes.as_unit("ns").asi8, 0)
    invalid = (expiry_codes < 0) | (quote_codes < 0) | np.append(closes.isna(), True)[expiry_codes]
    nanoseconds = close_ns[expiry_codes] - quote_ns[quote_codes]
    return np.where(invalid, np.nan, nanoseconds / 1e9 / SECONDS_PER_YEAR)


def last_session_on_or_before_friday(dates) -> np.ndarray:
    """Expiration date for a Friday: the Friday, or the session before it when it is a holiday."""
    return sessions_offset(np.asarray(dates, dtype="datetime64[D]") + 1, -1, strict=False)


# The expiration rule lives with the trading calendar: the synthetic source lists expirations by it
# and the stages choose them by it (sources never import stages).
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


def chunks(dates: list, size: int) -> list[list]:
    """``dates`` cut into consecutive runs of at most ``size``: units of work that share reads."""
    return [list(dates[i:i + size]) for i in range(0, len(dates), size)]


def map_locally(task, items: list, *args) -> list:
    """``[task(*args, item) for item in items]``: the engine-free way to map a backtest's chunks of
    sessions (the run driver passes its engine's map instead)."""
    return [task(*args, item) for item in items]
