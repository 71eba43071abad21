"""A loopback vendor server: Tradier's and Alpha Vantage's wire formats over real sockets on
127.0.0.1, backed by a :class:`SyntheticMarket`, with switches for every quirk and failure in
shared/api-notes.md. Importable by tests; startable by hand for demos::

    python -m tests.loopback --port 8765                  # serves the current session
    python -m tests.loopback --port 8765 --date 2026-11-20  # another session (a live daily is refused)

Floats are serialized with ``repr`` (json does that), so a round trip through the live
normalizers gives back exactly the synthetic market's numbers.

Switches:
- one-shot faults, ``server.inject(fault, endpoint=None, symbol=None, times=1)``; see FAULTS;
- sticky quirks, attributes of ``server.quirks`` (see :class:`Quirks`).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

from pipeline.contract import sessions
from pipeline.sources.synthetic import SyntheticMarket
from pipeline.contract.tickers import from_vendor, to_vendor

TRADIER_ROUTES = {
    "/v1/markets/options/expirations": "expirations",
    "/v1/markets/options/chains": "chains",
    "/v1/markets/quotes": "quotes",
    "/v1/markets/history": "history",
    "/v1/markets/clock": "clock",
}
AV_PATH = "/query"
AV_TIMINGS = {"BMO": "pre-market", "AMC": "post-market", "DMH": "during-market", "UNKNOWN": ""}
HORIZON_MONTHS = {"3month": 3, "6month": 6, "12month": 12}
COMPACT_SESSIONS = 100

FAULTS = {
    "unauthorized": "Tradier 401 with a text body; Alpha Vantage 'Error Message' about the apikey",
    "server_error": "HTTP 500",
    "bad_request": "HTTP 400 with a text body",
    "rate_limited": "Tradier 429 with X-Ratelimit headers (Available 0, Expiry shortly)",
    "malformed": "truncated JSON, or a CSV that is not the calendar",
    "empty_body": "HTTP 200 with no body",
    "null_result": "the result key set to null, e.g. {\"options\": null}",
    "null_string": "the result key set to the string \"null\"",
    "trickle": "the right body, a few bytes at a time",
    "reset": "headers and half the body, then a TCP reset",
    "av_daily_cap": "HTTP 200 {'Information': '... 25 requests per day ...'}",
    "av_burst": "HTTP 200 {'Information': '... 1 request per second ...'}",
    "av_note": "HTTP 200 {'Note': '... 5 calls per minute ...'} (legacy)",
    "av_premium": "HTTP 200 {'Information': '... premium endpoint ...'}",
    "av_error": "HTTP 200 {'Error Message': 'Invalid API call ...'}",
    # hostile vendors (security review, issue 22)
    "slow_headers": "the status line and headers one byte every quirks.slow_header_delay seconds",
    "endless": "HTTP 200 without Content-Length, then a body that never ends",
    "huge": "HTTP 200 with a 200 MB body (Content-Length says so)",
    "nest_bomb": "HTTP 200 with 2 MB of '[' (a JSON nesting bomb)",
    "vendor_message": "an error message with a newline, CR, ESC[2J and NUL (Tradier HTTP 400, Alpha Vantage "
                      "'Error Message')",
    "echo_secret": "the right answer with the caller's token or API key echoed inside it",
}
HOSTILE_MESSAGE = "bad request\n2026-11-20 ERROR FAKE forged line\r\x1b[2J\x00 after NUL"
BOMB_BYTES = 2 * 2 ** 20
HUGE_BYTES = 200 * 2 ** 20
AV_NOTICES = {
    "av_daily_cap": ("Information", "We have detected your API key as {key} and our standard API rate limit is "
                                    "25 requests per day. Please subscribe to any of the premium plans."),
    "av_burst": ("Information", "Thank you for using Alpha Vantage! Please consider spreading out your free API "
                                "requests more sparingly (1 request per second). You may subscribe to any of the "
                                "premium plans to lift the free key rate limit (25 requests per day)."),
    "av_note": ("Note", "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per "
                        "minute and 500 calls per day."),
    "av_premium": ("Information", "Thank you for using Alpha Vantage! This is a premium endpoint. You may "
                                  "subscribe to any of the premium plans."),
    "av_error": ("Error Message", "Invalid API call. Please retry or visit the documentation for {function}."),
}


@dataclass
class Quirks:
    """Sticky quirks, all off by default (then answers round-trip to the synthetic data exactly)."""

    single_objects: bool = False    # a one-element list is sent as the bare element
    greeks_null: bool = False       # "greeks": null on every option
    zero_mid_iv: bool = False       # mid_iv 0.0 with smv_vol set (illiquid rows)
    crlf: bool = False              # calendar CSV with CRLF line endings
    no_time_of_day: bool = False    # calendar CSV without the timeOfTheDay column
    none_strings: bool = False      # EARNINGS: estimatedEPS and reportTime "None"
    invalid_symbols: bool = False   # calendar rows with symbols no exchange lists
    trickle_bytes: int = 16         # bytes per write for the "trickle" fault
    trickle_delay: float = 0.05     # seconds between writes
    slow_header_delay: float = 2.0  # seconds between header bytes for the "slow_headers" fault


class FakeClock:
    """Shared by the client (sleep advances time at once) and the server (reads the time)."""

    # 17:30 New York on 2026-11-20, when the cron job pulls that session's closing chains.
    def __init__(self, start: float = 1_795_213_800.0):
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            if seconds > 0:
                self.slept.append(seconds)
                self.now += seconds


class LoopbackVendor:
    """The server. ``with LoopbackVendor(market, as_of) as server: server.tradier_url ...``"""

    def __init__(self, market: SyntheticMarket, as_of, *, token: str = "test-tradier-token",
                 apikey: str = "test-av-key", allowed_per_window: int | None = 120, window_seconds: float = 60.0,
                 storm_seconds: float = 0.2, clock=None, port: int = 0):
        self._lock = threading.RLock()
        self.market, self.as_of = market, as_of
        self.token, self.apikey = token, apikey
        self.allowed, self.window = allowed_per_window, window_seconds
        self.storm_seconds = storm_seconds
        self.clock = clock.time if clock is not None else time.time
        self.quirks = Quirks()
        self.requests: Counter = Counter()       # endpoint -> requests received
        self.statuses: Counter = Counter()       # (endpoint, status) -> answers sent
        self._faults: list[list] = []
        self._window_start: float | None = None
        self._used = 0
        self._chains: dict[str, pd.DataFrame] = {}
        self._symbols: frozenset[str] | None = None
        self._spellings: dict[str, str] | None = None
        self._listed: dict[str, pd.DataFrame] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.vendor = self
        self._thread: threading.Thread | None = None

    # ---- the session served -----------------------------------------------------------------
    @property
    def as_of(self) -> pd.Timestamp:
        return self._as_of

    @as_of.setter
    def as_of(self, session) -> None:
        """Moving the server to another session drops the listings and chains it built for the
        previous one: they are a function of ``as_of`` (which expirations are still listed, what
        the quotes were), so serving them again would answer a later day with an earlier day's
        strikes and prices, which no vendor does (the soak moves one server across 30 sessions)."""
        with self._lock:
            self._as_of = pd.Timestamp(session)
            self._listed, self._chains = {}, {}

    # ---- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def tradier_url(self) -> str:
        return self.url + "/v1"

    @property
    def alphavantage_url(self) -> str:
        return self.url + AV_PATH

    def start(self) -> "LoopbackVendor":
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-vendor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- switches and counters --------------------------------------------------------------
    def inject(self, fault: str, endpoint: str | None = None, symbol: str | None = None, times: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.append([fault, endpoint, symbol, times])

    def _take_fault(self, endpoint: str, symbol: str | None) -> str | None:
        with self._lock:
            for entry in self._faults:
                fault, where, which, left = entry
                if left > 0 and where in (None, endpoint) and which in (None, symbol):
                    entry[3] -= 1
                    return fault
        return None

    def total_requests(self) -> int:
        return sum(self.requests.values())

    def count(self, status: int) -> int:
        return sum(n for (_, s), n in self.statuses.items() if s == status)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()

    # ---- Tradier rate window ----------------------------------------------------------------
    def _rate_window(self) -> tuple[bool, dict]:
        """Count one Tradier request; (over the limit?, X-Ratelimit headers)."""
        with self._lock:
            now = self.clock()
            if self._window_start is None or now >= self._window_start + self.window:
                self._window_start, self._used = now, 0
            allowed = self.allowed if self.allowed is not None else 10 ** 6
            over = self._used >= allowed
            if not over:
                self._used += 1
            headers = {
                "X-Ratelimit-Allowed": str(allowed),
                "X-Ratelimit-Used": str(self._used),
                "X-Ratelimit-Available": str(max(allowed - self._used, 0)),
                "X-Ratelimit-Expiry": str(int((self._window_start + self.window) * 1000)),
            }
            return over, headers

    # ---- Tradier answers --------------------------------------------------------------------
    def _listify(self, items: list):
        return items[0] if self.quirks.single_objects and len(items) == 1 else items

    def market_symbol(self, symbol: str) -> str:
        """The market's ticker for a vendor spelling of it (BRK-B, BRK.B -> BRK.B)."""
        if self._spellings is None:
            self._spellings = {from_vendor(t, ""): t for t in self.market.universe["ticker"]}
        return self._spellings.get(from_vendor(symbol, ""), symbol)

    def _known(self, symbol: str) -> bool:
        if self._symbols is None:
            self._symbols = frozenset(self.market.universe["ticker"])
        return symbol in self._symbols

    def _expirations(self, symbol: str) -> pd.DataFrame:
        """market.expirations([symbol]), for every known symbol from one call (the market answers
        ticker by ticker, so the rows are the same; one call per request cost ~20 ms each)."""
        with self._lock:
            if not self._listed:
                listed = self.market.expirations(self.market.universe["ticker"].tolist(), self.as_of)
                self._listed = {name: rows.reset_index(drop=True) for name, rows in listed.groupby("ticker")}
            return self._listed[symbol]

    def tradier_expirations(self, q: dict) -> dict:
        symbol = q.get("symbol", "")
        if not self._known(symbol):
            return {"expirations": None}
        dates = self._expirations(symbol)["expiration"]
        return {"expirations": {"date": self._listify([d.date().isoformat() for d in dates])}}

    def _full_chain(self, symbol: str) -> pd.DataFrame:
        with self._lock:
            if symbol not in self._chains:
                self._chains[symbol] = self.market.chains(self._expirations(symbol), self.as_of)
            return self._chains[symbol]

    def tradier_chains(self, q: dict) -> dict:
        symbol, expiration = q.get("symbol", ""), q.get("expiration", "")
        if not self._known(symbol):
            return {"options": None}
        chain = self._full_chain(symbol)
        rows = chain[chain["expiration"] == pd.Timestamp(expiration)]
        if rows.empty:
            return {"options": None}
        options = [self._option(row) for row in rows.itertuples(index=False)]
        return {"options": {"option": self._listify(options)}}

    def _option(self, row) -> dict:
        quote_ms = int(pd.Timestamp(row.quote_time).timestamp() * 1000)
        expiry = pd.Timestamp(row.expiration)
        kind = "call" if row.option_type == "C" else "put"
        root = row.ticker.replace(".", "").replace("-", "")
        traded = not np.isnan(row.last)
        greeks = None if self.quirks.greeks_null else {
            "delta": row.vendor_delta, "gamma": 0.01, "theta": -0.05, "vega": 0.1, "rho": 0.01, "phi": -0.01,
            "bid_iv": row.vendor_iv, "mid_iv": 0.0 if self.quirks.zero_mid_iv else row.vendor_iv,
            "ask_iv": row.vendor_iv, "smv_vol": row.vendor_iv,
            "updated_at": pd.Timestamp(row.quote_time).strftime("%Y-%m-%d %H:%M:%S"),
        }
        return {
            "symbol": f"{root}{expiry:%y%m%d}{row.option_type}{int(round(row.strike * 1000)):08d}",
            "description": f"{row.ticker} {expiry:%b %d %Y} ${row.strike:g} {kind.title()}",
            "exch": "Z", "type": "option", "underlying": to_vendor(row.ticker, "tradier"), "root_symbol": to_vendor(row.ticker, "tradier"),
            "strike": float(row.strike), "option_type": kind, "expiration_date": expiry.date().isoformat(),
            "expiration_type": "standard" if 15 <= expiry.day <= 21 else "weeklys",
            "bid": float(row.bid), "ask": float(row.ask), "last": float(row.last) if traded else None,
            "change": None, "volume": int(row.volume), "open_interest": int(row.open_interest),
            "bidsize": 10, "asksize": 10, "contract_size": 100,
            "bid_date": quote_ms, "ask_date": quote_ms, "trade_date": quote_ms if traded else 0,
            "prevclose": None, "greeks": greeks,
        }

    def _closes(self, symbols: list[str], start, end) -> pd.DataFrame:
        with self._lock:
            return self.market.prices(symbols, start, end)

    def tradier_quotes(self, q: dict) -> dict:
        asked = [s for s in q.get("symbols", "").split(",") if s]
        known = [s for s in asked if self._known(s)]
        unmatched = [s for s in asked if s not in set(known)]
        body: dict = {}
        if known:
            bars = self._closes(known, self.as_of, self.as_of).set_index("ticker")
            body["quote"] = self._listify([
                {"symbol": to_vendor(s, "tradier"), "description": f"{s} Inc", "exch": "Q", "type": "stock", "last": float(bars.at[s, "close"]),
                 "open": float(bars.at[s, "open"]), "high": float(bars.at[s, "high"]), "low": float(bars.at[s, "low"]),
                 "close": float(bars.at[s, "close"]), "volume": int(bars.at[s, "volume"]), "bid": None, "ask": None,
                 "trade_date": int(sessions.session_closes_utc([self.as_of])[0].timestamp() * 1000)}
                for s in known])
        if unmatched:
            body["unmatched_symbols"] = {"symbol": self._listify([to_vendor(s, "tradier") for s in unmatched])}
        return {"quotes": body}

    def tradier_history(self, q: dict) -> dict:
        symbol = q.get("symbol", "")
        try:
            start = max(pd.Timestamp(q["start"]), pd.Timestamp("2010-01-04"))
            end = min(pd.Timestamp(q["end"]), self.as_of)
        except (KeyError, ValueError):
            return {"history": None}
        if not self._known(symbol) or start > end:
            return {"history": None}
        bars = self._closes([symbol], start, end)
        if bars.empty:
            return {"history": None}
        days = [{"date": b.date.date().isoformat(), "open": b.open, "high": b.high, "low": b.low, "close": b.close,
                 "volume": int(b.volume)} for b in bars.itertuples(index=False)]
        return {"history": {"day": self._listify(days)}}

    def tradier_clock(self, q: dict) -> dict:
        return {"clock": {"date": self.as_of.date().isoformat(), "description": "Market is closed.",
                          "state": "closed", "timestamp": int(self.clock()), "next_change": "09:30",
                          "next_state": "premarket"}}

    # ---- Alpha Vantage answers --------------------------------------------------------------
    def av_calendar(self, q: dict) -> str:
        months = HORIZON_MONTHS.get(q.get("horizon", "3month"), 3)
        days = (self.as_of + pd.DateOffset(months=months) - self.as_of).days
        cal = self.market.calendar(self.as_of, days)
        if q.get("symbol"):
            cal = cal[cal["ticker"] == q["symbol"]]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n" if self.quirks.crlf else "\n")
        header = ["symbol", "name", "reportDate", "fiscalDateEnding", "estimate", "currency"]
        with_time = not self.quirks.no_time_of_day
        writer.writerow(header + (["timeOfTheDay"] if with_time else []))
        for row in cal.itertuples(index=False):
            line = [to_vendor(row.ticker, "alphavantage"), f"{row.ticker} Holdings, Inc.", row.report_date.date().isoformat(),
                    row.fiscal_period_end.date().isoformat(), "" if np.isnan(row.eps_estimate) else repr(row.eps_estimate),
                    "USD"]
            writer.writerow(line + ([AV_TIMINGS[row.timing]] if with_time else []))
        if self.quirks.invalid_symbols:
            for bad in ("brk/b", "TOOLONGSYM", "AB$C"):
                writer.writerow([bad, "Junk", (self.as_of + pd.Timedelta(days=2)).date().isoformat(), "", "", "USD"]
                                + ([""] if with_time else []))
        return out.getvalue()

    def av_earnings(self, q: dict) -> dict:
        symbol = q.get("symbol", "")
        if not self._known(symbol):
            return {}
        hist = self.market.earnings_history([symbol], self.as_of).iloc[::-1]   # newest first
        none = self.quirks.none_strings
        quarterly = []
        for row in hist.itertuples(index=False):
            entry = {"fiscalDateEnding": row.fiscal_period_end.date().isoformat(),
                     "reportedDate": row.report_date.date().isoformat(),
                     "reportedEPS": repr(row.reported_eps),
                     "estimatedEPS": "None" if none else repr(row.estimated_eps),
                     "surprise": repr(row.reported_eps - row.estimated_eps), "surprisePercentage": "None"}
            if none:
                entry["reportTime"] = "None"
            elif row.timing != "UNKNOWN":     # older entries carry no reportTime at all
                entry["reportTime"] = AV_TIMINGS[row.timing]
            quarterly.append(entry)
        return {"symbol": to_vendor(symbol, "alphavantage"), "annualEarnings": [], "quarterlyEarnings": quarterly}

    def av_daily(self, q: dict) -> dict:
        symbol = q.get("symbol", "")
        if q.get("outputsize") == "full":
            return {"Information": AV_NOTICES["av_premium"][1]}
        if not self._known(symbol):
            return {"Error Message": "Invalid API call. Please retry or visit the documentation for TIME_SERIES_DAILY."}
        days = sessions.sessions_between(self.as_of - pd.Timedelta(days=200), self.as_of)[-COMPACT_SESSIONS:]
        bars = self._closes([symbol], days[0], days[-1]).iloc[::-1]
        series = {b.date.date().isoformat(): {"1. open": repr(b.open), "2. high": repr(b.high), "3. low": repr(b.low),
                                              "4. close": repr(b.close), "5. volume": str(int(b.volume))}
                  for b in bars.itertuples(index=False)}
        return {"Meta Data": {"1. Information": "Daily Prices (open, high, low, close) and Volumes",
                              "2. Symbol": symbol, "3. Last Refreshed": self.as_of.date().isoformat(),
                              "4. Output Size": "Compact", "5. Time Zone": "US/Eastern"},
                "Time Series (Daily)": series}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, like the real vendors

    def log_message(self, *args):     # quiet: tests read the counters instead
        pass

    def handle(self):
        try:
            super().handle()
        except ConnectionError:        # a client that hung up mid-answer (byte limit, deadline)
            self.close_connection = True

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm holds the
        # body until the client's delayed ACK (~40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        vendor: LoopbackVendor = self.server.vendor
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        for key in ("symbol", "symbols"):        # a vendor's spelling (BRK-B at Alpha Vantage) -> the market's
            if q.get(key):
                q[key] = ",".join(vendor.market_symbol(s) for s in q[key].split(","))
        if parts.path in TRADIER_ROUTES:
            self._tradier(vendor, TRADIER_ROUTES[parts.path], q)
        elif parts.path == AV_PATH:
            self._alphavantage(vendor, q.get("function", ""), q)
        else:
            self._send(vendor, "unknown", 404, b"Not Found", "text/plain", fault=vendor._take_fault("unknown", None))

    def _tradier(self, vendor: LoopbackVendor, endpoint: str, q: dict):
        with vendor._lock:
            vendor.requests[endpoint] += 1
        symbol = q.get("symbol") or q.get("symbols")
        over, headers = vendor._rate_window()
        fault = vendor._take_fault(endpoint, symbol)
        if self.headers.get("Authorization") != f"Bearer {vendor.token}" or fault == "unauthorized":
            return self._send(vendor, endpoint, 401, b"Invalid Access Token", "text/plain", headers)
        if over or fault == "rate_limited":
            expiry = vendor.clock() + vendor.storm_seconds if fault == "rate_limited" else None
            if expiry is not None:
                headers = {**headers, "X-Ratelimit-Available": "0",
                           "X-Ratelimit-Expiry": str(int(expiry * 1000))}
            return self._send(vendor, endpoint, 429, b"Rate limit exceeded", "text/plain", headers)
        if fault in ("server_error", "bad_request"):
            status = 500 if fault == "server_error" else 400
            return self._send(vendor, endpoint, status, b"Internal Server Error" if status == 500
                              else b"Invalid Parameter: symbol", "text/plain", headers)
        answer = getattr(vendor, f"tradier_{endpoint}")(q)
        key = next(iter(answer))
        if fault == "null_result":
            answer = {key: None}
        elif fault == "null_string":
            answer = {key: "null"}
        body = json.dumps(answer).encode()
        self._send(vendor, endpoint, 200, body, "application/json", headers, fault)

    def _alphavantage(self, vendor: LoopbackVendor, function: str, q: dict):
        with vendor._lock:
            vendor.requests[function] += 1
        fault = vendor._take_fault(function, q.get("symbol"))
        notice = None
        if q.get("apikey") != vendor.apikey or fault == "unauthorized":
            notice = ("Error Message", "the parameter apikey is invalid or missing. Please claim your free API key.")
        elif fault in AV_NOTICES:
            key, text = AV_NOTICES[fault]
            notice = (key, text.format(key=q.get("apikey", ""), function=function))
        if notice is not None:
            return self._send(vendor, function, 200, json.dumps(dict([notice])).encode(), "application/json")
        if fault in ("server_error", "bad_request"):
            return self._send(vendor, function, 500 if fault == "server_error" else 400, b"error", "text/plain")
        if function == "EARNINGS_CALENDAR":
            text = vendor.av_calendar(q)
            body = b"<html><body>Service temporarily unavailable</body></html>" if fault == "malformed" \
                else text.encode()
            return self._send(vendor, function, 200, body, "application/x-download", fault=fault)
        handlers = {"EARNINGS": vendor.av_earnings, "TIME_SERIES_DAILY": vendor.av_daily}
        if function not in handlers:
            answer = {"Error Message": f"Invalid API call. Unknown function {function!r}."}
        else:
            answer = handlers[function](q)
        self._send(vendor, function, 200, json.dumps(answer).encode(), "application/json", fault=fault)

    def _send(self, vendor: LoopbackVendor, endpoint: str, status: int, body: bytes, content_type: str,
              headers: dict | None = None, fault: str | None = None):
        if fault == "malformed" and content_type == "application/json":
            body = body[: max(len(body) // 2, 1)]
        if fault == "empty_body":
            body = b""
        if fault in ("slow_headers", "endless", "huge", "nest_bomb", "vendor_message", "echo_secret"):
            return self._hostile(vendor, endpoint, fault, body)
        with vendor._lock:
            vendor.statuses[(endpoint, status)] += 1
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            if fault == "trickle":
                self._trickle(vendor, body)
            elif fault == "reset":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                # SO_LINGER 0: close() sends a TCP RST instead of a clean FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
            else:
                self.wfile.write(body)
        except OSError:
            self.close_connection = True      # the client gave up (deadline): nothing to do

    def _hostile(self, vendor: LoopbackVendor, endpoint: str, fault: str, body: bytes):
        """The hostile answers of FAULTS, written straight to the socket."""
        alpha_vantage = endpoint.isupper()        # Alpha Vantage functions are upper case
        status, length = 200, None
        if fault == "nest_bomb":
            body = b"[" * BOMB_BYTES
        elif fault == "vendor_message":
            if alpha_vantage:
                body = json.dumps({"Error Message": HOSTILE_MESSAGE}).encode()
            else:
                status, body = 400, HOSTILE_MESSAGE.encode()
        elif fault == "echo_secret":
            secret = vendor.apikey if alpha_vantage else vendor.token
            body = body.rstrip()[:-1] + b', "echo": "your key is ' + secret.encode() + b'"}'
        elif fault == "huge":
            length = HUGE_BYTES
        with vendor._lock:
            vendor.statuses[(endpoint, status)] += 1
        head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Bad Request'}", "Content-Type: application/json"]
        if fault == "endless":
            head.append("Connection: close")
            self.close_connection = True
        else:
            head.append(f"Content-Length: {length if length is not None else len(body)}")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode()
        try:
            if fault == "slow_headers":
                for i in range(len(raw_head)):
                    self.wfile.write(raw_head[i:i + 1])
                    self.wfile.flush()
                    time.sleep(vendor.quirks.slow_header_delay)
                self.wfile.write(body)
            elif fault in ("endless", "huge"):
                self.wfile.write(raw_head)
                block, sent = b"0" * 65536, 0
                while fault == "endless" or sent < HUGE_BYTES:
                    self.wfile.write(block)
                    sent += len(block)
            else:
                self.wfile.write(raw_head + body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True      # the client hung up (deadline or byte limit)

    def _trickle(self, vendor: LoopbackVendor, body: bytes):
        step = max(vendor.quirks.trickle_bytes, 1)
        for i in range(0, len(body), step):
            self.wfile.write(body[i:i + step])
            self.wfile.flush()
            time.sleep(vendor.quirks.trickle_delay)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Loopback Tradier + Alpha Vantage server backed by the synthetic market.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--date", default=None,
                        help="Session to serve (default: the current session, so a live `daily` works as is)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--universe-size", type=int, default=500)
    parser.add_argument("--token", default="test-tradier-token")
    parser.add_argument("--apikey", default="test-av-key")
    parser.add_argument("--per-minute", type=int, default=120, help="Tradier requests per window")
    args = parser.parse_args(argv)
    market = SyntheticMarket(seed=args.seed, universe_size=args.universe_size)
    if args.date is None:
        from pipeline.contract.clock import current_session

        args.date = str(current_session().date())
    server = LoopbackVendor(market, args.date, token=args.token, apikey=args.apikey,
                            allowed_per_window=args.per_minute, port=args.port).start()
    print(f"export TRADIER_BASE_URL={server.tradier_url} ALPHAVANTAGE_BASE_URL={server.alphavantage_url}")
    print(f"export TRADIER_TOKEN={args.token} ALPHAVANTAGE_API_KEY={args.apikey}")
    print(f"serving the session {args.date} on 127.0.0.1 only; Ctrl-C to stop")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
