"""Alpha Vantage: pure normalizers for EARNINGS_CALENDAR (CSV), EARNINGS and TIME_SERIES_DAILY
(JSON), the HTTP-200 error classifier, and a thin client over the HTTP layer.

Report timing: ``timeOfTheDay`` (calendar) and ``reportTime`` (history) carry ``pre-market`` ->
BMO and ``post-market`` -> AMC. Alpha Vantage documents no value for a report during market
hours; we read ``during-market`` as DMH (the loopback server uses it for DMH events) and treat
anything else, or no value at all, as UNKNOWN, which the moves stage infers from the two
candidate overnight gaps.
"""
from __future__ import annotations

import csv
import io
import json

import pandas as pd

from pipeline.contract.config import CREDENTIAL_VARIABLES
from pipeline.sources.http import DAY, HOUR, BodyProblem, HttpClient, Provider, Verdict
from pipeline.sources.limits import Clock, DailyBudget, SpacedRateLimiter
from pipeline.sources.payload import Reader, daily_bar
from pipeline.contract.tickers import from_vendor, is_valid_ticker, same_symbol, to_vendor, validate_ticker

VENDOR = "alphavantage"
AV_BAR_KEYS = {"open": "1. open", "high": "2. high", "low": "3. low", "close": "4. close", "volume": "5. volume"}
CREDENTIAL_ENV = CREDENTIAL_VARIABLES["alphavantage_apikey"]
TIMINGS = {"pre-market": "BMO", "post-market": "AMC", "during-market": "DMH"}
COMPACT_SESSIONS = 100     # TIME_SERIES_DAILY outputsize=compact; "full" is premium on free keys
ERROR_KEYS = frozenset({"Information", "Note", "Error Message"})
# The calendar is rebuilt by the vendor about daily; past earnings change once a quarter.
EXPIRY = {
    "?function=EARNINGS_CALENDAR&": 12 * HOUR,
    "?function=EARNINGS&": 7 * DAY,
    "?function=TIME_SERIES_DAILY&": 12 * HOUR,
}
CALENDAR_FIELDS = ["ticker", "report_date", "timing", "fiscal_period_end", "eps_estimate"]
HISTORY_FIELDS = ["ticker", "report_date", "timing", "fiscal_period_end", "reported_eps", "estimated_eps"]
BAR_FIELDS = ["ticker", "date", "open", "high", "low", "close", "volume"]
BURST_PAUSE = 2.0          # seconds after a "1 request per second" notice
MINUTE_PAUSE = 61.0        # after the legacy "5 calls per minute" Note


def provider(base_url: str, apikey: str, clock: Clock, ledger, daily_budget: int, min_interval: float) -> Provider:
    """The Alpha Vantage provider; ``ledger``: the file counting today's calls (:attr:`Layout.alphavantage_budget`)."""
    budget = DailyBudget(ledger, daily_budget, clock)
    limiter = SpacedRateLimiter(clock, min_interval, budget, VENDOR)
    return Provider(VENDOR, base_url, limiter, CREDENTIAL_ENV, (apikey,), EXPIRY, inspect=inspect_body)


def inspect_body(body: bytes) -> BodyProblem | None:
    """Classify the HTTP-200 JSON notices Alpha Vantage sends instead of data (even from the
    CSV endpoint); None when the body is not such a notice."""
    text = body.lstrip()
    if not text.startswith(b"{") or len(text) > 8192:   # notices are small JSON objects
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not doc or not set(doc) <= ERROR_KEYS:
        return None
    key = next(iter(doc))
    message = str(doc[key])[:300]
    lowered = message.lower()
    if key == "Error Message":
        verdict = Verdict.UNAUTHORIZED if "apikey" in lowered or "api key" in lowered else Verdict.REJECTED
        return BodyProblem(verdict, f"Error Message: {message}")
    if key == "Note":
        return BodyProblem(Verdict.THROTTLED, f"Note: {message}", MINUTE_PAUSE)
    # Every notice advertises premium plans and the burst notice also quotes the daily limit,
    # so test the burst wording first, then the daily cap, then premium.
    if "per second" in lowered or "sparingly" in lowered or "burst" in lowered:
        return BodyProblem(Verdict.THROTTLED, f"throttled: {message}", BURST_PAUSE)
    if "per day" in lowered or "daily" in lowered:
        return BodyProblem(Verdict.EXHAUSTED, f"daily request cap reached: {message}")
    if "premium" in lowered:
        return BodyProblem(Verdict.REJECTED, f"premium-only: {message}")
    return BodyProblem(Verdict.REJECTED, f"Information: {message}")


def timing_from_vendor(value) -> str:
    if Reader.is_null(value) or not isinstance(value, str):
        return "UNKNOWN"
    return TIMINGS.get(value.strip().lower(), "UNKNOWN")


# ---- normalizers --------------------------------------------------------------------------

def _reject_notice(r: Reader, body: bytes) -> None:
    problem = inspect_body(body)
    if problem is not None:
        raise r.error(f"vendor notice instead of data: {problem.verdict.value}")


def parse_calendar(body: bytes) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The EARNINGS_CALENDAR CSV -> (CALENDAR_FIELDS frame, [(symbol, reason skipped)])."""
    r = Reader(VENDOR, "EARNINGS_CALENDAR")
    _reject_notice(r, body)
    text = r.text(body)
    if text.lstrip().startswith(("{", "[")):
        raise r.error("JSON where the CSV calendar was expected")
    try:
        lines = list(csv.reader(io.StringIO(text)))   # csv handles CRLF and quoted commas
    except csv.Error as exc:
        raise r.error(f"malformed CSV ({exc})") from None
    lines = [line for line in lines if any(cell.strip() for cell in line)]
    if not lines:
        raise r.error("empty answer (not even a header)")
    header = [h.strip() for h in lines[0]]
    missing = {"symbol", "reportDate"} - set(header)
    if missing:
        raise r.error(f"CSV header lacks {', '.join(sorted(missing))} (got {','.join(header)[:80]!r})")
    at = {name: i for i, name in enumerate(header)}
    rows, skipped = [], []
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            raise r.error(f"CSV line {number} has {len(line)} fields, the header has {len(header)}")
        cell = lambda name: line[at[name]].strip() if name in at else None
        symbol = from_vendor(cell("symbol"), VENDOR)          # BRK-B -> BRK.B
        if not is_valid_ticker(symbol):
            skipped.append((symbol[:24], "invalid ticker symbol in the vendor calendar"))
            continue
        rows.append({
            "ticker": symbol,
            "report_date": r.date(cell("reportDate"), f"line {number} reportDate"),
            "timing": timing_from_vendor(cell("timeOfTheDay")),
            "fiscal_period_end": r.date(cell("fiscalDateEnding"), f"line {number} fiscalDateEnding", nullable=True),
            "eps_estimate": r.number(cell("estimate"), f"line {number} estimate"),
        })
    frame = pd.DataFrame(rows, columns=CALENDAR_FIELDS)
    return _typed(frame, dates=("report_date", "fiscal_period_end"), text=("ticker", "timing")), skipped


def parse_earnings(body: bytes, symbol: str) -> pd.DataFrame:
    """EARNINGS quarterlyEarnings -> HISTORY_FIELDS frame (all reported quarters)."""
    r = Reader(VENDOR, "EARNINGS", symbol)
    _reject_notice(r, body)
    doc = r.mapping(r.json(body), "answer")
    if doc is None or not doc:
        raise r.error("empty answer")
    if "symbol" in doc and not same_symbol(doc["symbol"], symbol):
        raise r.error(f"answer is for symbol {str(doc['symbol'])[:12]!r}")
    if "quarterlyEarnings" not in doc:
        raise r.error("answer has no quarterlyEarnings")
    rows = []
    for entry in r.items(doc["quarterlyEarnings"], "quarterlyEarnings"):
        reported = r.date(entry.get("reportedDate"), "reportedDate", nullable=True)
        if reported is pd.NaT:
            continue      # a quarter listed before its report is not a past report
        rows.append({
            "ticker": symbol, "report_date": reported, "timing": timing_from_vendor(entry.get("reportTime")),
            "fiscal_period_end": r.date(entry.get("fiscalDateEnding"), "fiscalDateEnding", nullable=True),
            "reported_eps": r.number(entry.get("reportedEPS"), "reportedEPS"),
            "estimated_eps": r.number(entry.get("estimatedEPS"), "estimatedEPS"),
        })
    frame = pd.DataFrame(rows, columns=HISTORY_FIELDS).drop_duplicates("report_date")
    return _typed(frame, dates=("report_date", "fiscal_period_end"), text=("ticker", "timing"))


def parse_daily(body: bytes, symbol: str) -> pd.DataFrame:
    """TIME_SERIES_DAILY (keyed by date, newest first, strings) -> BAR_FIELDS frame."""
    r = Reader(VENDOR, "TIME_SERIES_DAILY", symbol)
    _reject_notice(r, body)
    doc = r.mapping(r.json(body), "answer")
    if doc is None or "Time Series (Daily)" not in doc:
        raise r.error("answer has no 'Time Series (Daily)'")
    series = r.mapping(doc["Time Series (Daily)"], "Time Series (Daily)") or {}
    rows = []
    for day, bar in series.items():
        bar = r.mapping(bar, f"bar {str(day)[:12]}")
        if bar is None:
            raise r.error(f"bar {str(day)[:12]} is empty")
        rows.append({"ticker": symbol, "date": r.date(day, "date"),
                     **daily_bar(r, bar, AV_BAR_KEYS, str(day)[:10])})
    frame = pd.DataFrame(rows, columns=BAR_FIELDS).sort_values("date", kind="stable")
    return _typed(frame, dates=("date",), text=("ticker",)).reset_index(drop=True)


def _typed(frame: pd.DataFrame, dates: tuple, text: tuple) -> pd.DataFrame:
    types = {c: "datetime64[ns]" for c in dates} | {c: "str" for c in text}
    types |= {c: "float64" for c in frame.columns if c not in types}
    return frame.astype(types)


# ---- client ---------------------------------------------------------------------------------

class AlphaVantageClient:
    def __init__(self, http: HttpClient, apikey: str):
        self.http = http
        self._apikey = apikey

    def _params(self, function: str, **extra) -> dict:
        # function first: the per-endpoint cache expiry patterns match on it.
        return {"function": function, **extra, "apikey": self._apikey}

    def calendar(self, horizon: str, day: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
        return self.http.fetch(VENDOR, "EARNINGS_CALENDAR", "", self._params("EARNINGS_CALENDAR", horizon=horizon),
                               parse_calendar, archive_as=(day, f"calendar_{horizon}.csv"))

    def earnings(self, symbol: str, day: str) -> pd.DataFrame:
        validate_ticker(symbol, what="alphavantage EARNINGS")
        return self.http.fetch(VENDOR, "EARNINGS", "", self._params("EARNINGS", symbol=to_vendor(symbol, VENDOR)),
                               lambda body: parse_earnings(body, symbol), symbol=symbol,
                               archive_as=(day, f"{symbol}.json"))

    def earnings_cached(self, symbol: str) -> bool:
        return self.http.cached(VENDOR, "", self._params("EARNINGS", symbol=to_vendor(validate_ticker(symbol), VENDOR)))

    def daily(self, symbol: str, day: str) -> pd.DataFrame:
        """The last COMPACT_SESSIONS daily bars (the free tier's limit)."""
        validate_ticker(symbol, what="alphavantage TIME_SERIES_DAILY")
        return self.http.fetch(VENDOR, "TIME_SERIES_DAILY", "",
                               self._params("TIME_SERIES_DAILY", symbol=to_vendor(symbol, VENDOR), outputsize="compact"),
                               lambda body: parse_daily(body, symbol), symbol=symbol,
                               archive_as=(day, f"{symbol}.json"))

    def budget_remaining(self) -> int:
        return self.http.providers[VENDOR].limiter.budget.remaining()

    def budget_problem(self) -> str | None:
        """Why the budget ledger could not be trusted, if it could not."""
        return self.http.providers[VENDOR].limiter.budget.problem
