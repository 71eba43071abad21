"""The live source: Alpha Vantage for earnings dates, Tradier for options and prices.

Call plan for one daily run (the jobs already narrow everything to the window's tickers):
- fetch-calendar: one EARNINGS_CALENDAR call covers the whole market;
- fetch-history: one EARNINGS call per ticker whose history is stale, cached for a week and
  planned against the Alpha Vantage daily budget (tickers that do not fit are deferred);
- backfill-prices: one Tradier history call per ticker for just the missing span;
- pull-chains: one expirations call per window ticker, one quotes call per 100 tickers for the
  underlying prices, and one chains call per (ticker, expiration) the metrics need.

A ticker whose call or payload fails is recorded in ``failures`` and skipped; a provider that
cannot be used any more (bad credentials, circuit open, budget spent) fails the stage.
"""
from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from pipeline.contract import sessions
from pipeline.contract.config import CALENDAR_HORIZONS
from pipeline.contract.clock import session_window_utc
from pipeline.contract.schemas import DATASETS
from pipeline.sources import alphavantage, tradier
from pipeline.sources.base import SourceError, SourceUnavailable
from pipeline.sources.http import HttpClient
from pipeline.contract.failures import Failures
from pipeline.contract.outside_text import escape_controls
from pipeline.sources.limits import Clock, ProviderUnavailable
from pipeline.contract.files import atomic_write_bytes
from pipeline.contract.layout import Layout
from pipeline.contract.tickers import is_valid_ticker

log = logging.getLogger("pipeline.live")

CREDENTIAL_RE = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")


def _columns(dataset: str) -> list[str]:
    return list(DATASETS[dataset].model.to_schema().columns)


class LiveSource:
    """Implements :class:`pipeline.sources.base.Source` over the vendors' HTTP APIs."""

    name = "live"

    def __init__(self, http: HttpClient, tradier_client: tradier.TradierClient,
                 av_client: alphavantage.AlphaVantageClient, calendar_horizon: str = "3month",
                 stats_path: Path | None = None, failures: Failures | None = None, price_fallback: bool = False,
                 progress=None):
        self.http, self.tradier, self.av = http, tradier_client, av_client
        # The caller's progress display over the per-ticker calls (the run shows a bar on a terminal).
        self.progress = progress or (lambda items, desc, unit: items)
        self.calendar_horizon = calendar_horizon
        self.price_fallback = price_fallback      # Alpha Vantage daily bars when Tradier history fails
        self.failures = Failures() if failures is None else failures
        self.stats_path = stats_path        # the run's vendor call and cache counters, rewritten after each stage

    @classmethod
    def from_config(cls, config, root, failures: Failures | None = None, clock: Clock | None = None,
                    progress=None) -> "LiveSource":
        """The live source of ``config`` (as :func:`pipeline.contract.config.resolve` gives it: base URLs and
        credentials from the environment) over the data root ``root`` (its cache and raw folders)."""
        token, apikey = config.tradier_token, config.alphavantage_apikey
        missing = [name for name, value in ((tradier.CREDENTIAL_ENV, token), (alphavantage.CREDENTIAL_ENV, apikey))
                   if not value]
        if missing:
            raise SourceUnavailable(f"source 'live' needs the environment variable(s) {', '.join(missing)} "
                                    "(see README, 'Live data')")
        for name, value in ((tradier.CREDENTIAL_ENV, token), (alphavantage.CREDENTIAL_ENV, apikey)):
            # requests quotes a bad header value in its error message: refuse it here, unquoted.
            if not CREDENTIAL_RE.fullmatch(value):
                raise SourceUnavailable(f"environment variable {name} holds characters no API key has "
                                        "(whitespace, quotes or non-ASCII)")
        plain = getattr(config, "allow_plain_http", False)
        tradier_url = _base_url(config, "tradier_base_url", plain)
        av_url = _base_url(config, "alphavantage_base_url", plain)
        layout = Layout(root)
        clock = clock or Clock()
        providers = [
            tradier.provider(tradier_url, token, clock),
            alphavantage.provider(av_url, apikey, clock, layout.alphavantage_budget, config.alphavantage_daily_budget,
                                  config.alphavantage_min_interval),
        ]
        http = HttpClient(layout, providers, clock=clock, deadline=config.request_deadline,
                          limits=getattr(config, "max_response_bytes", None))
        return cls(http, tradier.TradierClient(http, token), alphavantage.AlphaVantageClient(http, apikey),
                   config.calendar_horizon, layout.call_counter_file(_started(), os.getpid()), failures,
                   getattr(config, "alphavantage_price_fallback", False), progress)

    # ---- bookkeeping ------------------------------------------------------------------------
    def call_counts(self) -> dict[str, int]:
        """Requests sent to each vendor endpoint this run (retries included, cache hits not)."""
        return self.http.call_counts()

    def _valid(self, tickers, stage: str) -> list[str]:
        valid = []
        for ticker in dict.fromkeys(tickers):
            if is_valid_ticker(ticker):
                valid.append(ticker)
            else:
                self.failures.add(str(ticker)[:24], stage, "invalid ticker symbol; not sent to the vendor")
        return valid

    def _per_ticker(self, items, stage: str, call, tickers_of=lambda item: [item]):
        """``call(item)`` for each item; an item's failure is recorded against its tickers and
        skipped, a provider's failure is raised."""
        results = {}
        for item in self.progress(items, stage, "call"):
            try:
                results[item] = call(item)
            except ProviderUnavailable:
                raise
            except SourceError as exc:
                for ticker in tickers_of(item):
                    self.failures.add(ticker, stage, str(exc))
        return results

    @contextmanager
    def _stage(self, stage: str):
        """Log and persist the call counters when a Source method ends, however it ends."""
        try:
            yield stage
        finally:
            counts, cache = self.call_counts(), self.http.cache_counts()
            log.info("%s: vendor calls so far %s; cache %s", stage, counts, cache)
            if self.stats_path is not None:
                text = json.dumps({"stage": stage, "calls": counts, "cache": cache,
                                   "failures": [list(f) for f in self.failures]}, indent=2)
                atomic_write_bytes(self.stats_path, lambda tmp: tmp.write_text(text))

    # ---- Source protocol --------------------------------------------------------------------
    def calendar(self, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        with self._stage("fetch-calendar") as stage:
            frame, skipped = self.av.calendar(_horizon(horizon_days, self.calendar_horizon), _day(as_of))
            for symbol, reason in skipped:
                self.failures.add(symbol, stage, reason)
        try:
            _reject_stale_calendar(frame, as_of)
        except SourceError as exc:
            raise SourceError(f"{exc}; {self._rejected_answers(alphavantage.VENDOR, 'EARNINGS_CALENDAR', as_of)}") from None
        inside = (frame["report_date"] >= as_of) & (frame["report_date"] <= as_of + pd.Timedelta(days=horizon_days))
        frame = frame[inside].drop_duplicates(["ticker", "report_date"])
        return _finish_frame(frame, "calendar", alphavantage.VENDOR, ["ticker", "report_date"])

    def earnings_history(self, tickers: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        with self._stage("fetch-history") as stage:
            planned = self._plan_earnings(self._valid(tickers, stage), stage)
            found = self._per_ticker(planned, stage, lambda t: self.av.earnings(t, _day(as_of)))
        frames = [f[f["report_date"] <= as_of] for f in found.values()]
        return _finish_frame(_concat(frames, alphavantage.HISTORY_FIELDS), "earnings_history",
                             alphavantage.VENDOR, ["ticker", "report_date"])

    def _plan_earnings(self, tickers: list[str], stage: str) -> list[str]:
        """Cached answers are free; the rest must fit the day's Alpha Vantage budget."""
        cached = [t for t in tickers if self.av.earnings_cached(t)]
        uncached = [t for t in tickers if t not in set(cached)]
        room = self.av.budget_remaining()
        for ticker in uncached[room:]:
            self.failures.add(ticker, stage, f"deferred: the Alpha Vantage daily budget has room for {room} more "
                                      f"call(s) today and {len(uncached)} tickers need one")
        return sorted(cached + uncached[:room])

    def prices(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        with self._stage("backfill-prices") as stage:
            found = {}
            for ticker in self.progress(self._valid(tickers, stage), stage, "call"):
                try:
                    found[ticker] = self.tradier.history(ticker, start, end, _day(end))
                except ProviderUnavailable:
                    raise
                except SourceError as exc:
                    bars, why = self._fallback_bars(ticker, start, end) if self.price_fallback else (None, "off")
                    if bars is None:
                        self.failures.add(ticker, stage, str(exc) if why == "off" else f"{exc}; Alpha Vantage fallback: {why}")
                    else:
                        log.warning("%s: Tradier history failed (%s); used Alpha Vantage daily bars", ticker, exc)
                        found[ticker] = bars
        frames = [f[(f["date"] >= start) & (f["date"] <= end)] for f in found.values()]
        frame = _finish_frame(_concat(frames, tradier.BAR_FIELDS), "prices", tradier.VENDOR, ["ticker", "date"])
        fallback = [t for t, f in found.items() if f.attrs.get("vendor") == alphavantage.VENDOR]
        frame.loc[frame["ticker"].isin(fallback), "source"] = alphavantage.VENDOR
        return frame

    def _fallback_bars(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp):
        """Alpha Vantage TIME_SERIES_DAILY (compact: the last 100 sessions) when Tradier's history
        fails for a ticker: (bars, None) or (None, why not). Never spends the last budget call
        needed elsewhere: only when the daily budget has room and the span fits compact."""
        from pipeline.contract.sessions import sessions_between

        if len(sessions_between(start, end)) > alphavantage.COMPACT_SESSIONS:
            return None, f"the span {start.date()}..{end.date()} exceeds the {alphavantage.COMPACT_SESSIONS} sessions of a free daily series"
        if self.av.budget_remaining() <= 0:
            return None, "the daily budget is spent"
        try:
            bars = self.av.daily(ticker, _day(end))
        except (SourceError, ProviderUnavailable) as exc:
            return None, str(exc)
        bars = bars[(bars["date"] >= start) & (bars["date"] <= end)].copy()
        bars.attrs["vendor"] = alphavantage.VENDOR
        return (bars, None) if len(bars) else (None, "no bars in the span")

    def expirations(self, tickers: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        with self._stage("pull-chains") as stage:
            found = self._per_ticker(self._valid(tickers, stage), stage,
                                     lambda t: self.tradier.expirations(t, _day(as_of)))
            for ticker in sorted(t for t, dates in found.items() if not dates):
                self.failures.add(ticker, stage, "no listed options (Tradier returned no expirations)")
        rows = [(t, d) for t, dates in found.items() for d in dates if d > as_of]
        frame = pd.DataFrame(rows, columns=["ticker", "expiration"])
        return frame.astype({"ticker": "str", "expiration": "datetime64[ns]"}).sort_values(
            ["ticker", "expiration"], kind="stable").reset_index(drop=True)

    def chains(self, wanted: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        with self._stage("pull-chains") as stage:
            spots = self._underlying_prices(self._valid(sorted(wanted["ticker"].unique()), stage), as_of, stage)
            pairs = wanted[wanted["ticker"].isin(list(spots))].sort_values(["ticker", "expiration"])
            found = self._per_ticker(
                list(pairs.itertuples(index=False, name=None)), stage,
                lambda pair: self.tradier.chain(pair[0], pair[1], _day(as_of)), tickers_of=lambda pair: pair[:1])
            for (ticker, expiration), chain in found.items():
                if chain.empty:
                    self.failures.add(ticker, stage, f"empty option chain for {pd.Timestamp(expiration).date()}")
        frame = _concat(list(found.values()), tradier.CHAIN_FIELDS)
        frame["underlying_price"] = frame["ticker"].map(spots).astype("float64")
        frame["snapshot_time"] = _snapshot_time(self.http.clock.time(), as_of)
        frame = self._reject_other_session(frame, as_of, "pull-chains")
        return _finish_frame(frame, "chains", tradier.VENDOR, ["ticker", "expiration", "option_type", "strike"])

    def _reject_other_session(self, frame: pd.DataFrame, as_of: pd.Timestamp, stage: str) -> pd.DataFrame:
        """Drop chains the vendor served for another session: every quote stamp of the ticker
        outside the as-of session. All of them stale: the stage fails, naming the vendor and the
        times, so nothing stored is replaced. (The pull time, ``snapshot_time``, is in the current
        session by construction: the run driver refuses live fetches for any other date.)"""
        if frame.empty:
            return frame
        lo, hi = session_window_utc(as_of)
        where = f"the as-of session {as_of.date()} ({lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M} UTC)"
        stamps = pd.to_datetime(frame["quote_time"], utc=True)
        current = ((stamps > lo) & (stamps < hi)).groupby(frame["ticker"]).any()
        stale = sorted(current.index[~current])
        if not stale:
            return frame
        span = stamps[frame["ticker"].isin(stale)]
        times = f"quote stamps {span.min():%Y-%m-%d %H:%M} to {span.max():%Y-%m-%d %H:%M} UTC"
        if len(stale) == len(current):
            raise SourceError(f"{tradier.VENDOR} served chains for another session: {times}, outside {where}; "
                              f"nothing stored was replaced; {self._rejected_answers(tradier.VENDOR, 'chains', as_of)}")
        for ticker in stale:
            self.failures.add(ticker, stage, f"{tradier.VENDOR} served this chain for another session ({times}, "
                                             f"outside {where})")
        return frame[~frame["ticker"].isin(stale)]

    def _rejected_answers(self, vendor: str, endpoint: str, as_of: pd.Timestamp) -> str:
        """Forget the rejected answers (never served again from the cache) and say who gave them
        and what the operator can do."""
        who = self.http.forget(vendor, endpoint)
        if who == "the vendor":
            check = ("`pipeline doctor` shows the session Tradier serves" if vendor == tradier.VENDOR
                     else "check that ALPHAVANTAGE_BASE_URL points at the vendor itself")
            return (f"answered by {vendor} itself just now (not the cache) and not kept: rerun once {vendor} serves "
                    f"the session {as_of.date()}; {check}")
        return (f"answered by {who} (an earlier {vendor} answer), now discarded: rerun the same command to ask "
                f"{vendor} again")

    def _underlying_prices(self, tickers: list[str], as_of: pd.Timestamp, stage: str) -> dict[str, float]:
        """Last price per ticker from batched quotes; tickers without one get no chains."""
        batches = [tuple(tickers[i:i + tradier.QUOTE_BATCH]) for i in range(0, len(tickers), tradier.QUOTE_BATCH)]
        answers = self._per_ticker(batches, stage, lambda batch: self.tradier.quotes(list(batch), _day(as_of)),
                                   tickers_of=list)
        spots = {t: price for prices in answers.values() for t, price in prices.items()}
        for ticker in (t for batch in answers for t in batch if t not in spots):
            self.failures.add(ticker, stage, "no underlying price in the Tradier quote; chains not pulled")
        return spots

    def close(self) -> None:
        self.http.close()


def _started() -> str:
    """Now in UTC, as a name that sorts by time."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _reject_stale_calendar(frame: pd.DataFrame, as_of: pd.Timestamp) -> None:
    """A calendar served today lists reports from about today on; one listing reports before the
    previous session was served for an earlier day (a stale cache or mirror)."""
    if frame.empty:
        return
    from pipeline.contract.sessions import previous_sessions

    earliest = pd.Timestamp(frame["report_date"].min())
    previous = pd.Timestamp(previous_sessions([as_of])[0])
    if earliest < previous:
        raise SourceError(f"{alphavantage.VENDOR} served an earnings calendar for another day: it lists reports "
                          f"from {earliest.date()}, before the as-of session {as_of.date()}; nothing stored was replaced")


def _base_url(config, name: str, allow_plain_http: bool = False) -> str:
    """The config's base URL ``name`` (the environment's, when :func:`pipeline.contract.config.with_environment`
    put it there), checked: http(s), no credentials or query, plain http only to loopback or when allowed."""
    url = getattr(config, name)
    source = getattr(config, "base_url_origins", {}).get(name) or f"config key 'live.{name}'"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.username:
        raise SourceUnavailable(f"{source}: expected an http(s) base URL without credentials or query")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_plain_http:
        raise SourceUnavailable(f"{source}: plain http to {escape_controls(parts.hostname or '')} would send the "
                                "credentials and answers unencrypted; use https (or set live.allow_plain_http: true "
                                "for a trusted network)")
    return url


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _horizon(days: int, configured: str) -> str:
    """The configured calendar horizon, widened when the run asks for a longer span."""
    for name, span in CALENDAR_HORIZONS.items():
        if span >= days and span >= CALENDAR_HORIZONS[configured]:
            return name
    return "12month"


def _snapshot_time(pulled: float, as_of: pd.Timestamp) -> pd.Timestamp:
    """When the chain was pulled (epoch seconds), capped at the as-of session's close: quotes
    pulled after the close are the closing quotes, so time to expiry runs from the close, as
    the synthetic market's does."""
    close = sessions.session_closes_utc([as_of])[0]
    return min(pd.Timestamp(pulled, unit="s", tz="UTC"), close)


def _day(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).date().isoformat()


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    return pd.concat(frames, ignore_index=True)


def _finish_frame(frame: pd.DataFrame, dataset: str, vendor: str, order: list[str]) -> pd.DataFrame:
    """Schema column order, the same dtypes the synthetic source produces, sorted like it."""
    frame = frame.assign(source=vendor)
    columns = _columns(dataset)
    schema = DATASETS[dataset].model.to_schema()
    types = {}
    for column in columns:
        dtype = str(schema.columns[column].dtype)
        types[column] = "str" if dtype.startswith(("str", "string")) else dtype   # pandas 3 default text
    frame = frame.reindex(columns=columns).astype(types)
    return frame.sort_values(order, kind="stable").reset_index(drop=True)
