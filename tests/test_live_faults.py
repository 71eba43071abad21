"""Fault matrix: every quirk and failure of shared/api-notes.md, served over real sockets by the
loopback vendor, with its documented outcome (retried and succeeded / skipped with a reason /
stage failed with a clear message) and nothing wrong cached or archived."""
import time

import numpy as np
import pandas as pd
import pytest
from live_support import clock, server, vendor  # noqa: F401 (fixtures)
from live_support import APIKEY, TOKEN, cached_urls, files_containing, live_source, vendor_env

from pipeline.contract.config import Config, with_environment
from pipeline.contract.layout import Layout
from pipeline.sources import alphavantage
from pipeline.sources.base import SourceUnavailable
from pipeline.sources.limits import BudgetExhausted, HttpError, ProviderUnavailable, RequestRejected
from pipeline.sources.live import LiveSource
from pipeline.sources.payload import PayloadError

AS_OF = pd.Timestamp("2026-11-20")
SECRETS = [TOKEN, APIKEY]


@pytest.fixture
def source(vendor, tmp_path, clock):
    src = live_source(vendor, tmp_path, clock)
    yield src
    src.close()


@pytest.fixture(scope="module")
def tickers(small_market):
    return sorted(small_market.universe["ticker"])[:6]


def no_secrets(root):
    assert files_containing(root, SECRETS) == []


def synthetic_chain(small_market, ticker):
    """The synthetic chain of the ticker's first expiration, priced with all its expirations
    listed (as the loopback server does), and that expiration."""
    listed = small_market.expirations([ticker], AS_OF)
    first = listed["expiration"].iloc[0]
    chain = small_market.chains(listed, AS_OF)
    return chain[chain["expiration"] == first].reset_index(drop=True), first


# ---- no quirk: the very frames the synthetic source returns ---------------------------------

def test_every_source_method_returns_the_synthetic_frames(vendor, source, small_market):
    from pipeline.stages.events import event_expirations, upcoming_events
    from pipeline.stages.panel import dated

    def same(got, expected):
        pd.testing.assert_frame_equal(got.drop(columns="source"), expected.drop(columns="source"))

    calendar = source.calendar(AS_OF, 90)
    same(calendar, small_market.calendar(AS_OF, 90))
    upcoming = upcoming_events(dated(calendar, AS_OF), 7)
    window = sorted(upcoming["ticker"])
    same(source.earnings_history(window, AS_OF), small_market.earnings_history(window, AS_OF))
    start = AS_OF - pd.DateOffset(years=4)
    same(source.prices(window, start, AS_OF), small_market.prices(window, start, AS_OF))
    listed = source.expirations(window, AS_OF)
    pd.testing.assert_frame_equal(listed, small_market.expirations(window, AS_OF), check_dtype=False)
    wanted = event_expirations(listed, upcoming)
    same(source.chains(wanted, AS_OF), small_market.chains(wanted, AS_OF))
    assert not source.failures
    assert source.call_counts() == {"alphavantage.EARNINGS": len(window), "alphavantage.EARNINGS_CALENDAR": 1,
                                    "tradier.chains": len(wanted), "tradier.expirations": len(window),
                                    "tradier.history": len(window), "tradier.quotes": 1}


def test_a_chain_does_not_depend_on_which_other_expirations_are_requested(vendor, source, small_market, tickers):
    first_event = small_market.events(AS_OF, AS_OF + pd.Timedelta(days=120), tickers[:1])["reaction_date"].min()
    listed = small_market.expirations(tickers[:1], AS_OF)
    after_event = listed[listed["expiration"] >= first_event]
    wanted = after_event.iloc[1:2]                  # skip the event expiration itself
    got = source.chains(wanted, AS_OF)
    pd.testing.assert_frame_equal(got.drop(columns="source"), small_market.chains(wanted, AS_OF).drop(columns="source"))


# ---- quirks: tolerated, same data ----------------------------------------------------------

def test_single_object_answers_are_read_as_one_element_lists(vendor, source, small_market, tickers):
    vendor.quirks.single_objects = True
    day = AS_OF - pd.Timedelta(days=1)
    bars = source.prices(tickers[:1], day, day)             # one "day" object
    expected = small_market.prices(tickers[:1], day, day)
    pd.testing.assert_frame_equal(bars.drop(columns="source"), expected.drop(columns="source"))
    assert source.tradier.quotes(tickers[:1], "2026-11-20") == {      # one "quote" object
        tickers[0]: float(small_market.prices(tickers[:1], AS_OF, AS_OF)["close"].iloc[0])}
    assert not source.failures


def test_null_greeks_leave_vendor_iv_empty_and_the_rest_intact(vendor, source, small_market, tickers):
    vendor.quirks.greeks_null = True
    expected, expiration = synthetic_chain(small_market, tickers[0])
    got = source.chains(pd.DataFrame({"ticker": [tickers[0]], "expiration": [expiration]}), AS_OF)
    assert got["vendor_iv"].isna().all() and got["vendor_delta"].isna().all()
    columns = ["strike", "option_type", "bid", "ask", "last", "volume", "open_interest", "underlying_price"]
    pd.testing.assert_frame_equal(got[columns], expected[columns])


def test_zero_mid_iv_falls_back_to_smv_vol(vendor, source, small_market, tickers):
    vendor.quirks.zero_mid_iv = True
    expected, expiration = synthetic_chain(small_market, tickers[0])
    got = source.chains(pd.DataFrame({"ticker": [tickers[0]], "expiration": [expiration]}), AS_OF)
    np.testing.assert_array_equal(got["vendor_iv"].to_numpy(), expected["vendor_iv"].to_numpy())


@pytest.mark.parametrize("fault", ["null_result", "null_string"])
def test_null_chain_is_skipped_with_a_reason_and_not_cached(vendor, source, small_market, tickers, fault):
    _, expiration = synthetic_chain(small_market, tickers[0])
    vendor.inject(fault, endpoint="chains")
    got = source.chains(pd.DataFrame({"ticker": [tickers[0]], "expiration": [expiration]}), AS_OF)
    assert got.empty
    assert list(source.failures) == [(tickers[0], "pull-chains", f"empty option chain for {expiration.date()}")]
    assert not [u for u in cached_urls(source_root(source)) if "chains" in u]


def test_null_expirations_mean_no_listed_options(vendor, source, tickers):
    vendor.inject("null_string", endpoint="expirations", symbol=tickers[1])
    listed = source.expirations(tickers[:2], AS_OF)
    assert set(listed["ticker"]) == {tickers[0]}
    assert list(source.failures) == [(tickers[1], "pull-chains", "no listed options (Tradier returned no expirations)")]
    assert not [u for u in cached_urls(source_root(source)) if f"symbol={tickers[1]}" in u]


def test_calendar_crlf_and_missing_time_of_day(vendor, source, small_market):
    vendor.quirks.crlf = True
    got = source.calendar(AS_OF, 90)
    pd.testing.assert_frame_equal(got.drop(columns="source"), small_market.calendar(AS_OF, 90).drop(columns="source"))
    vendor.quirks.no_time_of_day = True
    source.http.session.cache.clear()
    assert set(source.calendar(AS_OF, 90)["timing"]) == {"UNKNOWN"}


def test_dmh_is_expressed_as_during_market(vendor, source, small_market):
    truth = small_market.calendar(AS_OF, 90)
    assert "DMH" in set(truth["timing"])
    got = source.calendar(AS_OF, 90)
    assert (got.loc[got["timing"] == "DMH", "ticker"].tolist() == truth.loc[truth["timing"] == "DMH", "ticker"].tolist())


def test_invalid_vendor_symbols_are_skipped_with_a_reason(vendor, source, small_market):
    vendor.quirks.invalid_symbols = True
    got = source.calendar(AS_OF, 90)
    pd.testing.assert_frame_equal(got.drop(columns="source"), small_market.calendar(AS_OF, 90).drop(columns="source"))
    skipped = {t for t, stage, reason in source.failures if stage == "fetch-calendar" and "invalid ticker" in reason}
    assert skipped == {"brk/b", "TOOLONGSYM", "AB$C"}
    assert not any("brk" in p.name.lower() or "$" in p.name for p in source_root(source).rglob("*"))


def test_none_strings_in_earnings_history(vendor, source, tickers):
    vendor.quirks.none_strings = True
    got = source.earnings_history(tickers[:1], AS_OF)
    assert len(got) > 10 and got["estimated_eps"].isna().all() and set(got["timing"]) == {"UNKNOWN"}
    assert got["reported_eps"].notna().all()


def test_unmatched_quote_symbol_skips_the_ticker(vendor, source, small_market, tickers):
    _, expiration = synthetic_chain(small_market, tickers[0])
    wanted = pd.DataFrame({"ticker": [tickers[0], "ZZZZZ"], "expiration": [expiration, expiration]})
    got = source.chains(wanted, AS_OF)
    assert set(got["ticker"]) == {tickers[0]}
    assert ("ZZZZZ", "pull-chains", "no underlying price in the Tradier quote; chains not pulled") in source.failures
    assert vendor.requests["chains"] == 1


# ---- failures: retried and succeeded -------------------------------------------------------

def test_500s_are_retried_with_backoff_then_succeed(vendor, source, small_market, tickers, clock):
    vendor.inject("server_error", endpoint="history", times=2)
    slept = len(clock.slept)
    got = source.prices(tickers[:1], AS_OF - pd.Timedelta(days=10), AS_OF)
    assert len(got) == 9 and not source.failures          # nine sessions in the span
    assert vendor.statuses[("history", 500)] == 2 and vendor.statuses[("history", 200)] == 1
    assert source.call_counts()["tradier.history"] == 3
    assert clock.slept[slept:] == [1.0, 2.0]          # backoff 1 s, 2 s (no immediate retry)
    assert len([u for u in cached_urls(source_root(source)) if "history" in u]) == 1


def test_429_storm_waits_for_the_expiry_header_then_succeeds(vendor, source, tickers, clock):
    vendor.inject("rate_limited", endpoint="expirations", times=3)
    slept = len(clock.slept)
    listed = source.expirations(tickers[:1], AS_OF)
    assert len(listed) > 5 and not source.failures
    assert vendor.statuses[("expirations", 429)] == 3
    waits = clock.slept[slept:]
    assert len(waits) == 3 and all(0.2 <= w <= 0.2 + 0.25 + 1e-6 for w in waits)   # expiry + margin
    assert source.http.stats.throttled["tradier.expirations"] == 3


def test_reset_mid_body_is_retried_by_our_loop(vendor, source, small_market, tickers):
    vendor.inject("reset", endpoint="history")
    got = source.prices(tickers[:1], AS_OF - pd.Timedelta(days=30), AS_OF)
    expected = small_market.prices(tickers[:1], AS_OF - pd.Timedelta(days=30), AS_OF)
    pd.testing.assert_frame_equal(got.drop(columns="source"), expected.drop(columns="source"))
    assert vendor.requests["history"] == 2


def test_empty_body_is_retried_and_never_cached(vendor, source, tickers):
    vendor.inject("empty_body", endpoint="expirations")
    assert len(source.expirations(tickers[:1], AS_OF)) > 5
    assert vendor.requests["expirations"] == 2 and not source.failures


def test_trickled_body_hits_the_deadline_and_is_retried(vendor, tmp_path, clock, tickers):
    source = live_source(vendor, tmp_path, clock, request_deadline=0.3)
    vendor.inject("trickle", endpoint="quotes")
    began = time.monotonic()
    prices = source.tradier.quotes(tickers[:3], "2026-11-20")
    assert set(prices) == set(tickers[:3])
    assert time.monotonic() - began < 1.5
    assert vendor.requests["quotes"] == 2


def test_a_trickling_server_cannot_hang_the_run(vendor, tmp_path, clock, tickers):
    source = live_source(vendor, tmp_path, clock, request_deadline=0.3)
    vendor.inject("trickle", endpoint="history", times=3)
    began = time.monotonic()
    got = source.prices(tickers[:1], AS_OF - pd.Timedelta(days=400), AS_OF)
    assert got.empty and time.monotonic() - began < 3.0
    [(ticker, stage, reason)] = source.failures
    assert (ticker, stage) == (tickers[0], "backfill-prices") and "deadline exceeded" in reason
    assert cached_urls(tmp_path) == []


@pytest.mark.parametrize("fault,pause", [("av_burst", alphavantage.BURST_PAUSE), ("av_note", alphavantage.MINUTE_PAUSE)])
def test_alpha_vantage_throttle_notices_pause_and_retry(vendor, source, tickers, clock, fault, pause):
    vendor.inject(fault, endpoint="EARNINGS", times=2)
    slept = len(clock.slept)
    got = source.earnings_history(tickers[:1], AS_OF)
    assert len(got) > 10 and not source.failures
    assert clock.slept[slept:].count(pause) == 2
    assert len(cached_urls(source_root(source))) == 1


def test_throttle_notice_from_the_csv_endpoint_is_not_cached(vendor, source, small_market):
    vendor.inject("av_burst", endpoint="EARNINGS_CALENDAR")
    got = source.calendar(AS_OF, 90)
    assert len(got) == len(small_market.calendar(AS_OF, 90))
    assert vendor.requests["EARNINGS_CALENDAR"] == 2
    assert len(cached_urls(source_root(source))) == 1


# ---- failures: skipped with a reason -------------------------------------------------------

def test_malformed_chain_json_is_skipped_dropped_from_cache_and_not_archived(vendor, source, small_market, tickers):
    _, expiration = synthetic_chain(small_market, tickers[0])
    vendor.inject("malformed", endpoint="chains")
    got = source.chains(pd.DataFrame({"ticker": [tickers[0]], "expiration": [expiration]}), AS_OF)
    assert got.empty
    [(ticker, stage, reason)] = source.failures
    assert ticker == tickers[0] and stage == "pull-chains"
    assert reason.startswith(f"tradier chains {tickers[0]} {expiration.date()}: malformed JSON")
    assert not [u for u in cached_urls(source_root(source)) if "chains" in u]
    assert not (source_root(source) / "raw" / "tradier" / "chains").exists()


def test_persistent_500s_skip_the_ticker_and_the_rest_continue(vendor, source, tickers):
    vendor.inject("server_error", endpoint="history", symbol=tickers[0], times=3)
    got = source.prices(tickers[:3], AS_OF - pd.Timedelta(days=10), AS_OF)
    assert set(got["ticker"]) == set(tickers[1:3])
    [(ticker, stage, reason)] = source.failures
    assert (ticker, stage) == (tickers[0], "backfill-prices") and "HTTP 500" in reason


def test_a_failed_quotes_batch_skips_its_tickers_without_pulling_chains(vendor, source, small_market, tickers):
    _, expiration = synthetic_chain(small_market, tickers[0])
    vendor.inject("server_error", endpoint="quotes", times=3)
    got = source.chains(pd.DataFrame({"ticker": tickers[:2], "expiration": [expiration] * 2}), AS_OF)
    assert got.empty and vendor.requests["chains"] == 0
    assert [(t, stage) for t, stage, _ in source.failures] == [(tickers[0], "pull-chains"), (tickers[1], "pull-chains")]
    assert all("tradier quotes 2 symbols: gave up: HTTP 500" in reason for _, _, reason in source.failures)


def test_premium_and_error_message_notices_reject_one_call(vendor, source, tickers):
    vendor.inject("av_premium", endpoint="EARNINGS", symbol=tickers[0])
    vendor.inject("av_error", endpoint="EARNINGS", symbol=tickers[1])
    got = source.earnings_history(tickers[:3], AS_OF)
    assert set(got["ticker"]) == {tickers[2]}
    reasons = dict((t, r) for t, _, r in source.failures)
    assert "premium-only" in reasons[tickers[0]] and "Invalid API call" in reasons[tickers[1]]
    with pytest.raises(RequestRejected, match="premium-only"):
        source.http.get(alphavantage.VENDOR, "TIME_SERIES_DAILY", "",
                        {"function": "TIME_SERIES_DAILY", "symbol": tickers[0], "outputsize": "full", "apikey": APIKEY})
    assert len(cached_urls(source_root(source))) == 1
    no_secrets(source_root(source))


def test_alpha_vantage_daily_prices_are_the_last_100_sessions(vendor, source, small_market, tickers):
    got = source.av.daily(tickers[0], "2026-11-20")
    expected = small_market.prices(tickers[:1], got["date"].iloc[0], AS_OF)
    assert len(got) == alphavantage.COMPACT_SESSIONS and got["date"].iloc[-1] == AS_OF
    pd.testing.assert_frame_equal(got, expected.drop(columns="source"))


def test_invalid_requested_ticker_never_reaches_the_vendor(vendor, source):
    got = source.prices(["bad/../x"], AS_OF - pd.Timedelta(days=5), AS_OF)
    assert got.empty and vendor.total_requests() == 0
    assert list(source.failures) == [("bad/../x", "backfill-prices", "invalid ticker symbol; not sent to the vendor")]


# ---- failures: the stage fails with a clear message ----------------------------------------

def test_tradier_401_stops_the_stage_naming_the_variable(vendor, source, tickers):
    vendor.inject("unauthorized", endpoint="expirations")
    with pytest.raises(ProviderUnavailable, match="TRADIER_TOKEN") as caught:
        source.expirations(tickers[:3], AS_OF)
    assert TOKEN not in str(caught.value)
    assert vendor.requests["expirations"] == 1
    with pytest.raises(ProviderUnavailable, match="not called"):   # fail fast for the rest of the run
        source.prices(tickers[:1], AS_OF - pd.Timedelta(days=5), AS_OF)
    assert vendor.requests["history"] == 0 and cached_urls(source_root(source)) == []


def test_wrong_alpha_vantage_key_stops_the_stage(vendor, tmp_path, clock):
    env = vendor_env(vendor, apikey="AVKEY-WRONG-0000")
    source = LiveSource.from_config(with_environment(Config(source="live"), env), tmp_path, clock=clock)
    with pytest.raises(ProviderUnavailable, match="ALPHAVANTAGE_API_KEY") as caught:
        source.calendar(AS_OF, 90)
    assert "AVKEY-WRONG-0000" not in str(caught.value)
    assert cached_urls(tmp_path) == [] and files_containing(tmp_path, ["AVKEY-WRONG-0000"]) == []


def test_daily_cap_notice_stops_alpha_vantage_and_never_leaks_the_key(vendor, source, tickers):
    vendor.inject("av_daily_cap", endpoint="EARNINGS")      # the notice quotes the API key
    with pytest.raises(ProviderUnavailable, match="daily request cap") as caught:
        source.earnings_history(tickers[:3], AS_OF)
    assert APIKEY not in str(caught.value) and "***" in str(caught.value)
    assert vendor.requests["EARNINGS"] == 1
    assert cached_urls(source_root(source)) == []
    no_secrets(source_root(source))


def test_circuit_opens_after_consecutive_failures(vendor, source, tickers):
    vendor.inject("server_error", endpoint="history", times=1000)
    with pytest.raises(ProviderUnavailable, match="circuit open after 5 consecutive failures"):
        source.prices(tickers, AS_OF - pd.Timedelta(days=10), AS_OF)
    assert vendor.requests["history"] == 5 * 3          # five tickers, three attempts each, then no more
    assert len(source.failures) == 5


def test_malformed_calendar_csv_fails_the_stage(vendor, source):
    vendor.inject("malformed", endpoint="EARNINGS_CALENDAR")
    with pytest.raises(PayloadError, match="alphavantage EARNINGS_CALENDAR: CSV header lacks"):
        source.calendar(AS_OF, 90)
    assert cached_urls(source_root(source)) == []
    assert not (source_root(source) / "raw" / "alphavantage").exists()


def test_400_rejects_one_call_without_retrying(vendor, source, tickers):
    vendor.inject("bad_request", endpoint="expirations", symbol=tickers[0])
    source.expirations(tickers[:2], AS_OF)
    assert vendor.requests["expirations"] == 2
    [(ticker, _, reason)] = source.failures
    assert ticker == tickers[0] and "HTTP 400: Invalid Parameter" in reason


# ---- budget, spacing and credentials -------------------------------------------------------

def test_alpha_vantage_budget_is_planned_and_never_exceeded(vendor, tmp_path, clock, tickers):
    source = live_source(vendor, tmp_path, clock, alphavantage_daily_budget=4)
    first = source.earnings_history(tickers[:3], AS_OF)
    assert set(first["ticker"]) == set(tickers[:3]) and vendor.requests["EARNINGS"] == 3
    got = source.earnings_history(tickers[:5], AS_OF)       # 3 cached (free) + room for 1 more
    assert set(got["ticker"]) == set(tickers[:4]) and vendor.requests["EARNINGS"] == 4
    [(ticker, _, reason)] = source.failures
    assert ticker == tickers[4] and reason.startswith("deferred: the Alpha Vantage daily budget has room for 1 more call(s) today and 2")
    with pytest.raises(BudgetExhausted, match="live.alphavantage_daily_budget"):
        source.calendar(AS_OF, 90)
    assert vendor.requests["EARNINGS_CALENDAR"] == 0
    again = live_source(vendor, tmp_path, clock, alphavantage_daily_budget=4)   # the ledger persists
    assert again.av.budget_remaining() == 0


def test_an_unreadable_budget_ledger_counts_as_spent(vendor, tmp_path, clock, tickers):
    ledger = Layout(tmp_path).alphavantage_budget
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text('{"day": "2026-11')                   # cut short by a full disk, say
    source = live_source(vendor, tmp_path, clock, alphavantage_daily_budget=4)
    assert source.av.budget_remaining() == 0 and str(ledger) in source.av.budget_problem()
    with pytest.raises(BudgetExhausted, match="unreadable"):
        source.calendar(AS_OF, 90)
    assert vendor.requests["EARNINGS_CALENDAR"] == 0
    ledger.unlink()                                         # the advice in the message works
    assert live_source(vendor, tmp_path, clock, alphavantage_daily_budget=4).av.budget_remaining() == 4


def test_alpha_vantage_requests_are_spaced(vendor, tmp_path, clock, tickers):
    source = live_source(vendor, tmp_path, clock, alphavantage_min_interval=1.0)
    slept = len(clock.slept)
    source.earnings_history(tickers[:4], AS_OF)
    waits = clock.slept[slept:]
    assert len(waits) == 3 and all(abs(w - 1.0) < 1e-9 for w in waits)


@pytest.mark.parametrize("missing", ["TRADIER_TOKEN", "ALPHAVANTAGE_API_KEY"])
def test_missing_credentials_name_the_variable_only(vendor, tmp_path, missing):
    env = vendor_env(vendor)
    del env[missing]
    with pytest.raises(SourceUnavailable, match=missing) as caught:
        LiveSource.from_config(with_environment(Config(source="live"), env), tmp_path)
    assert TOKEN not in str(caught.value) and APIKEY not in str(caught.value)


def test_a_credential_with_control_characters_is_refused_unquoted(vendor, tmp_path):
    env = vendor_env(vendor) | {"TRADIER_TOKEN": "abc\r\nX-Injected: 1"}
    with pytest.raises(SourceUnavailable, match="TRADIER_TOKEN holds characters") as caught:
        LiveSource.from_config(with_environment(Config(source="live"), env), tmp_path)
    assert "Injected" not in str(caught.value)


def test_base_url_with_credentials_or_bad_scheme_is_refused(vendor, tmp_path):
    env = vendor_env(vendor) | {"TRADIER_BASE_URL": "ftp://example.com/v1"}
    with pytest.raises(SourceUnavailable, match="TRADIER_BASE_URL"):
        LiveSource.from_config(with_environment(Config(source="live"), env), tmp_path)


def test_transport_errors_never_show_the_url(vendor, tmp_path, clock):
    env = vendor_env(vendor) | {"ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9/query"}   # nothing listens
    source = LiveSource.from_config(with_environment(Config(source="live"), env), tmp_path, clock=clock)
    with pytest.raises(HttpError) as caught:
        source.av.earnings("AAPL", "2026-11-20")
    assert "connection failed" in str(caught.value) and "apikey" not in str(caught.value)
    assert APIKEY not in str(caught.value)


def source_root(source):
    return source.http.layout.root
