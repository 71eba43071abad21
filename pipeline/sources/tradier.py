"""Tradier market data: pure normalizers for each endpoint, and a thin client over the HTTP layer.

Wire facts (shared/api-notes.md): JSON only with ``Accept: application/json``; a single result
arrives as a bare object (or bare string for ``date``) instead of a list; "nothing" arrives as
null, the string "null" or an object of nulls; option quote times are epoch milliseconds (0 = none).
"""
from __future__ import annotations

import math

import pandas as pd

from pipeline.contract.config import CREDENTIAL_VARIABLES
from pipeline.sources.http import DAY, DO_NOT_CACHE, HOUR, MINUTE, HttpClient, Provider
from pipeline.sources.limits import Clock, TradierRateLimiter
from pipeline.sources.payload import Reader, daily_bar
from pipeline.contract.tickers import same_symbol, to_vendor, validate_ticker

VENDOR = "tradier"
TRADIER_BAR_KEYS = {name: name for name in ("open", "high", "low", "close", "volume")}
CREDENTIAL_ENV = CREDENTIAL_VARIABLES["tradier_token"]
OPTION_TYPES = {"call": "C", "put": "P"}
QUOTE_BATCH = 100          # symbols per quotes call; keeps the URL well under common length limits
PATHS = {
    "expirations": "/markets/options/expirations",
    "chains": "/markets/options/chains",
    "quotes": "/markets/quotes",
    "history": "/markets/history",
    "clock": "/markets/clock",
}
# Quotes move by the second and chains by the minute; listed expirations change daily; finished
# daily bars never change (a day is long enough to cover a rerun); the clock must be live.
EXPIRY = {
    PATHS["quotes"]: MINUTE,
    PATHS["chains"]: 5 * MINUTE,
    PATHS["expirations"]: 12 * HOUR,
    PATHS["history"]: DAY,
    PATHS["clock"]: DO_NOT_CACHE,
}
CHAIN_FIELDS = ["ticker", "expiration", "strike", "option_type", "bid", "ask", "last", "volume",
                "open_interest", "quote_time", "vendor_iv", "vendor_delta"]
BAR_FIELDS = ["ticker", "date", "open", "high", "low", "close", "volume"]


def provider(base_url: str, token: str, clock: Clock) -> Provider:
    return Provider(VENDOR, base_url, TradierRateLimiter(clock), CREDENTIAL_ENV, (token,), EXPIRY)


# ---- normalizers (pure: bytes in, data out, PayloadError for anything unexpected) ----------

def _envelope(r: Reader, body: bytes, key: str) -> dict | None:
    """The object under the top-level ``key``; None when the vendor says "nothing"."""
    doc = r.json(body)
    top = r.mapping(doc, "answer")
    if top is None:
        return None
    if key not in top:
        raise r.error(f"answer has no '{key}' key (keys: {', '.join(map(str, list(top)[:5])) or 'none'})")
    return r.mapping(top[key], key)


def parse_expirations(body: bytes, symbol: str) -> list[pd.Timestamp]:
    r = Reader(VENDOR, "expirations", symbol)
    node = _envelope(r, body, "expirations")
    if not node:
        return []
    if "date" in node:
        raw = r.items(node["date"], "expirations.date", kinds=(str,))
    elif "expiration" in node:   # the strikes=true / expirationType=true shape
        raw = [r.mapping(e, "expiration") or {} for e in r.items(node["expiration"], "expirations.expiration")]
        raw = [e.get("date") for e in raw]
    else:
        raise r.error("expirations has neither 'date' nor 'expiration'")
    return sorted({r.date(d, "expiration date") for d in raw})


def parse_chain(body: bytes, symbol: str, expiration: pd.Timestamp) -> pd.DataFrame:
    """Option rows for one (symbol, expiration); columns CHAIN_FIELDS."""
    r = Reader(VENDOR, "chains", f"{symbol} {pd.Timestamp(expiration).date()}")
    node = _envelope(r, body, "options")
    options = r.items(node.get("option"), "options.option") if node else []
    rows = []
    for option in options:
        root = option.get("root_symbol")
        if isinstance(root, str) and root and not same_symbol(root, symbol):
            continue      # adjusted/non-standard roots (e.g. after a split) are other contracts
        rows.append(_option_row(r, option, expiration))
    frame = pd.DataFrame(rows, columns=["strike", "option_type", "bid", "ask", "last", "volume",
                                        "open_interest", "quote_ms", "vendor_iv", "vendor_delta"])
    if frame.duplicated(["strike", "option_type"]).any():
        raise r.error("duplicate contracts (same strike and type) in one chain")
    quoted = frame["quote_ms"] > 0
    if len(frame) and not quoted.any():
        raise r.error("no option in the chain carries a quote time (bid_date/ask_date)")
    # A contract never quoted today takes the chain's snapshot time.
    quote_ms = frame["quote_ms"].where(quoted, frame["quote_ms"].max())
    frame["quote_time"] = pd.to_datetime(quote_ms.astype("int64"), unit="ms", utc=True).astype("datetime64[ns, UTC]")
    frame["ticker"] = pd.array([symbol] * len(frame), dtype="str")
    frame["expiration"] = pd.Series(pd.Timestamp(expiration), index=frame.index, dtype="datetime64[ns]")
    return frame[CHAIN_FIELDS]


def _option_row(r: Reader, option: dict, expiration: pd.Timestamp) -> dict:
    expiry = r.date(option.get("expiration_date"), "expiration_date", nullable=True)
    if expiry is not pd.NaT and expiry != expiration:
        raise r.error(f"option expiring {expiry.date()} in the chain for {pd.Timestamp(expiration).date()}")
    kind = option.get("option_type")
    kind = OPTION_TYPES.get(kind) if isinstance(kind, str) else None
    if kind is None:
        raise r.error(f"option_type {str(option.get('option_type'))[:20]!r} is neither call nor put")
    strike = r.number(option.get("strike"), "strike")
    if not strike > 0:
        raise r.error(f"strike must be positive, got {option.get('strike')!r}")
    row = {"strike": strike, "option_type": kind}
    for name in ("bid", "ask", "last"):
        row[name] = r.number(option.get(name), name)
        if row[name] < 0:
            raise r.error(f"{name} is negative ({row[name]!r})")
    for name in ("volume", "open_interest"):
        value = r.number(option.get(name), name)
        if value < 0:
            raise r.error(f"{name} is negative ({value!r})")
        row[name] = 0.0 if math.isnan(value) else value     # no trades reported = none happened
    stamps = [r.number(option.get(name), name) for name in ("bid_date", "ask_date")]
    row["quote_ms"] = max((s for s in stamps if not math.isnan(s)), default=0.0)
    greeks = r.mapping(option.get("greeks"), "greeks") or {}
    mid_iv, smv = r.number(greeks.get("mid_iv"), "greeks.mid_iv"), r.number(greeks.get("smv_vol"), "greeks.smv_vol")
    # mid_iv is 0.0 on illiquid rows while ORATS' smoothed smv_vol is still set.
    iv = mid_iv if mid_iv > 0 else smv
    delta = r.number(greeks.get("delta"), "greeks.delta")
    row["vendor_iv"] = iv if iv > 0 else math.nan
    row["vendor_delta"] = delta if abs(delta) <= 1 else math.nan
    return row


def parse_quotes(body: bytes, symbols: list[str]) -> dict[str, float]:
    """Last trade price per requested symbol (symbols without a usable price are left out)."""
    r = Reader(VENDOR, "quotes", ",".join(symbols)[:60])
    node = _envelope(r, body, "quotes")
    if not node:
        return {}
    wanted = set(symbols)
    prices = {}
    for quote in r.items(node.get("quote"), "quotes.quote"):
        symbol = quote.get("symbol")
        if not isinstance(symbol, str) or symbol not in wanted:
            continue
        last = r.number(quote.get("last"), f"{symbol} last")
        if last > 0:
            prices[symbol] = last
    return prices


def parse_history(body: bytes, symbol: str) -> pd.DataFrame:
    """Daily bars; columns BAR_FIELDS."""
    r = Reader(VENDOR, "history", symbol)
    node = _envelope(r, body, "history")
    days = r.items(node.get("day"), "history.day") if node else []
    rows = []
    for day in days:
        date = r.date(day.get("date"), "date")
        rows.append({"date": date, **daily_bar(r, day, TRADIER_BAR_KEYS, str(date.date()))})
    frame = pd.DataFrame(rows, columns=BAR_FIELDS[1:])
    if frame["date"].duplicated().any():
        raise r.error("the same session appears twice")
    frame["date"] = frame["date"].astype("datetime64[ns]")
    frame.insert(0, "ticker", pd.array([symbol] * len(frame), dtype="str"))
    return frame.astype({c: "float64" for c in BAR_FIELDS[2:]})


def parse_clock(body: bytes) -> dict:
    r = Reader(VENDOR, "clock")
    node = _envelope(r, body, "clock")
    if not node:
        raise r.error("empty clock")
    return {"date": r.date(node.get("date"), "clock.date"), "state": str(node.get("state")),
            "timestamp": r.number(node.get("timestamp"), "clock.timestamp")}


# ---- client --------------------------------------------------------------------------------

class TradierClient:
    """One method per endpoint; symbols are validated before they reach a URL or a file name."""

    def __init__(self, http: HttpClient, token: str):
        self.http = http
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _fetch(self, endpoint: str, params: dict, parse, symbol: str | None, archive_as=None):
        return self.http.fetch(VENDOR, endpoint, PATHS[endpoint], params, parse, symbol=symbol,
                               headers=self._headers, archive_as=archive_as)

    def expirations(self, symbol: str, day: str) -> list[pd.Timestamp]:
        validate_ticker(symbol, what="tradier expirations")
        return self._fetch("expirations", {"symbol": to_vendor(symbol, VENDOR), "includeAllRoots": "true"},
                           lambda body: parse_expirations(body, symbol), symbol, (day, f"{symbol}.json"))

    def chain(self, symbol: str, expiration: pd.Timestamp, day: str) -> pd.DataFrame:
        validate_ticker(symbol, what="tradier chains")
        exp = pd.Timestamp(expiration).date().isoformat()
        return self._fetch("chains", {"symbol": to_vendor(symbol, VENDOR), "expiration": exp, "greeks": "true"},
                           lambda body: parse_chain(body, symbol, pd.Timestamp(exp)), symbol,
                           (day, f"{symbol}_{exp}.json"))

    def quotes(self, symbols: list[str], day: str) -> dict[str, float]:
        """Last prices for up to QUOTE_BATCH symbols in one call (callers batch)."""
        symbols = sorted({validate_ticker(s, what="tradier quotes") for s in symbols})
        if len(symbols) > QUOTE_BATCH:
            raise ValueError(f"tradier quotes: at most {QUOTE_BATCH} symbols per call, got {len(symbols)}")
        spelled = {to_vendor(s, VENDOR): s for s in symbols}      # the vendor's spelling -> ours
        return self._fetch("quotes", {"symbols": ",".join(spelled), "greeks": "false"},
                           lambda body: {spelled[s]: p for s, p in parse_quotes(body, list(spelled)).items()},
                           f"{len(symbols)} symbols",
                           (day, f"quotes_{symbols[0]}_{symbols[-1]}_{len(symbols)}.json"))

    def history(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, day: str) -> pd.DataFrame:
        validate_ticker(symbol, what="tradier history")
        lo, hi = pd.Timestamp(start).date().isoformat(), pd.Timestamp(end).date().isoformat()
        return self._fetch("history", {"symbol": to_vendor(symbol, VENDOR), "interval": "daily", "start": lo, "end": hi},
                           lambda body: parse_history(body, symbol), symbol, (day, f"{symbol}_{lo}_{hi}.json"))

    def clock(self) -> dict:
        return self._fetch("clock", {}, parse_clock, None)
