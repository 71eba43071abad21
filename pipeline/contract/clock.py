"""What "today" is, the current NYSE session, and the as-of date a command's ``--date`` names.

``PIPELINE_TODAY=YYYY-MM-DD`` overrides today's date in New York. It is a testing hook (the tests
never depend on the wall clock) and a way to replay an operator's view of a given day; leave it
unset in production.
"""
from __future__ import annotations

import os
from datetime import date, datetime

TODAY_ENV = "PIPELINE_TODAY"
NEW_YORK = "America/New_York"


def today_date(environ=None) -> date:
    """Today's date in New York, or ``PIPELINE_TODAY`` when set (standard library only, so a
    quick command such as ``doctor`` need not import pandas)."""
    env = os.environ if environ is None else environ
    text = env.get(TODAY_ENV, "").strip()
    if text:
        try:
            return datetime.strptime(text, "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(f"environment variable {TODAY_ENV}={text!r} is not a date in YYYY-MM-DD form") from None
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(NEW_YORK)).date()


def today(environ=None) -> pd.Timestamp:
    """Today's date in New York (midnight, naive), or ``PIPELINE_TODAY`` when set."""
    import pandas as pd

    return pd.Timestamp(today_date(environ))


def current_session(environ=None) -> pd.Timestamp:
    """The NYSE session on or before today in New York: the only one a live vendor serves."""
    from pipeline.contract import sessions

    return sessions.session_on_or_before(today(environ))


def session_window_utc(session) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(previous session's close, next session's open) in UTC: a quote stamped strictly inside
    this interval was taken during or after ``session`` and before the next one began."""
    import pandas as pd

    from pipeline.contract import sessions

    cal = sessions.table()
    session = pd.Timestamp(session)
    i = cal.index.get_loc(session)
    prev_close = cal["close"].iloc[i - 1] if i > 0 else cal["open"].iloc[i] - pd.Timedelta(hours=12)
    next_open = cal["open"].iloc[i + 1] if i + 1 < len(cal) else cal["close"].iloc[i] + pd.Timedelta(hours=12)
    return pd.Timestamp(prev_close).tz_convert("UTC"), pd.Timestamp(next_open).tz_convert("UTC")


class DateError(ValueError):
    """An as-of date the pipeline cannot use; the message says which dates it can."""


def earliest_as_of(history_years: int) -> pd.Timestamp:
    """The first as-of date a store can be built for: ``history_years`` of sessions (plus the
    backfill margin) must lie inside the supported calendar."""
    import pandas as pd

    from pipeline.contract import sessions

    first = sessions.FIRST_DATE + pd.DateOffset(years=history_years) + pd.Timedelta(days=11)
    return pd.Timestamp(sessions.sessions_offset([first], 0, strict=False)[0])


def resolve_day(text: str | None, history_years: int, environ=None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(the date ``text`` names, the NYSE session on or before it): ``YYYY-MM-DD``, ``today`` or
    ``yesterday`` (default today, New York). :class:`DateError` for text that is none of these,
    a date after today or one before :func:`earliest_as_of`."""
    import pandas as pd

    from pipeline.contract import sessions

    today_ = today(environ)
    current = sessions.session_on_or_before(today_)
    word = (text or "today").strip().lower()
    if word in ("today", "yesterday"):
        day = today_ - pd.Timedelta(days=1 if word == "yesterday" else 0)
    else:
        try:
            day = pd.Timestamp(datetime.strptime(text, "%Y-%m-%d"))
        except ValueError:
            raise DateError(f"--date {text!r} is not a date in YYYY-MM-DD form (or 'today', 'yesterday')") from None
    first = earliest_as_of(history_years)
    supported = (f"supported as-of dates are {first.date()} (history.years = {history_years} of "
                 f"sessions since {sessions.FIRST_DATE.date()}) to the current session {current.date()}")
    if day > today_:
        raise DateError(f"--date {day.date()} is in the future; {supported}")
    if day < first:
        raise DateError(f"--date {day.date()} is too early; {supported}")
    return day, sessions.session_on_or_before(day)

