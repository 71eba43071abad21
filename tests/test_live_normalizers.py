"""Vendor normalizers: every documented quirk accepted, anything else a typed error (hypothesis)."""
import json
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.sources import alphavantage as av
from pipeline.sources import tradier
from pipeline.sources.base import SourceError
from pipeline.sources.http import Verdict, is_empty_answer
from pipeline.sources.payload import PayloadError

EXP = pd.Timestamp("2026-11-27")
QUOTE_MS = 1795208400000          # 2026-11-20 21:00 UTC


def dumps(obj) -> bytes:
    return json.dumps(obj).encode()


def option(**changes):
    row = {"symbol": "AAPL261127C00100000", "underlying": "AAPL", "root_symbol": "AAPL", "strike": 100.0,
           "option_type": "call", "expiration_date": "2026-11-27", "bid": 1.5, "ask": 1.6, "last": None,
           "volume": 3, "open_interest": 40, "bid_date": QUOTE_MS, "ask_date": QUOTE_MS - 5,
           "greeks": {"delta": 0.5, "mid_iv": 0.31, "smv_vol": 0.3}}
    return row | changes


# ---- Tradier quirks ------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b'{"expirations": null}', b'{"expirations": {"date": null}}',
                                  b'{"expirations": "null"}', b"null", b'{"expirations": {}}'])
def test_empty_expirations_spellings(body):
    assert tradier.parse_expirations(body, "AAPL") == []


def test_expirations_single_date_and_strikes_shape():
    assert tradier.parse_expirations(b'{"expirations": {"date": "2026-12-04"}}', "AAPL") == [pd.Timestamp("2026-12-04")]
    body = dumps({"expirations": {"expiration": {"date": "2026-12-04", "contract_size": 100,
                                                 "expiration_type": "weeklys", "strikes": {"strike": 5.0}}}})
    assert tradier.parse_expirations(body, "AAPL") == [pd.Timestamp("2026-12-04")]


def test_chain_single_option_object_and_field_mapping():
    frame = tradier.parse_chain(dumps({"options": {"option": option()}}), "AAPL", EXP)
    row = frame.iloc[0]
    assert (row["option_type"], row["strike"], row["vendor_iv"], row["vendor_delta"]) == ("C", 100.0, 0.31, 0.5)
    assert math.isnan(row["last"]) and row["volume"] == 3.0
    assert row["quote_time"] == pd.Timestamp("2026-11-20 21:00", tz="UTC")
    assert str(frame["quote_time"].dtype) == "datetime64[ns, UTC]"


def test_chain_mid_iv_zero_uses_smv_vol_and_null_greeks_give_nan():
    rows = [option(greeks={"delta": -0.4, "mid_iv": 0.0, "smv_vol": 0.42}, option_type="put"),
            option(strike=105.0, greeks=None), option(strike=110.0, greeks="null", bid="null")]
    frame = tradier.parse_chain(dumps({"options": {"option": rows}}), "AAPL", EXP)
    assert frame["vendor_iv"].iloc[0] == 0.42 and frame["option_type"].iloc[0] == "P"
    assert frame["vendor_iv"].iloc[1:].isna().all() and math.isnan(frame["bid"].iloc[2])


def test_chain_unquoted_contract_takes_the_chain_snapshot_time_and_other_roots_are_dropped():
    rows = [option(), option(strike=105.0, bid_date=0, ask_date=0), option(root_symbol="AAPL1", strike=101.0)]
    frame = tradier.parse_chain(dumps({"options": {"option": rows}}), "AAPL", EXP)
    assert frame["strike"].tolist() == [100.0, 105.0]
    assert (frame["quote_time"] == pd.Timestamp("2026-11-20 21:00", tz="UTC")).all()


@pytest.mark.parametrize("change,message", [
    ({"option_type": "straddle"}, "neither call nor put"),
    ({"strike": -5}, "strike must be positive"),
    ({"bid": -0.01}, "bid is negative"),
    ({"expiration_date": "2026-12-04"}, "in the chain for 2026-11-27"),
    ({"volume": "lots"}, "not a number"),
    ({"bid_date": 0, "ask_date": 0}, "no option in the chain carries a quote time"),
])
def test_chain_rejects_nonsense_with_vendor_endpoint_and_symbol(change, message):
    with pytest.raises(PayloadError, match=f"tradier chains AAPL 2026-11-27: .*{message}"):
        tradier.parse_chain(dumps({"options": {"option": [option(**change)]}}), "AAPL", EXP)


def test_quotes_single_object_and_unmatched_symbols():
    body = dumps({"quotes": {"quote": {"symbol": "AAPL", "last": 190.5},
                             "unmatched_symbols": {"symbol": "XYZ"}}})
    assert tradier.parse_quotes(body, ["AAPL", "XYZ"]) == {"AAPL": 190.5}
    assert tradier.parse_quotes(dumps({"quotes": {"unmatched_symbols": {"symbol": ["X", "Y"]}}}), ["X", "Y"]) == {}


def test_history_single_day_and_null_history():
    body = dumps({"history": {"day": {"date": "2026-11-20", "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                                      "volume": 100}}})
    frame = tradier.parse_history(body, "AAPL")
    assert frame.iloc[0].tolist()[:2] == ["AAPL", pd.Timestamp("2026-11-20")] and frame["volume"].iloc[0] == 100.0
    assert tradier.parse_history(b'{"history": null}', "AAPL").empty
    assert tradier.parse_history(b'{"history": "null"}', "AAPL").empty


# ---- Alpha Vantage quirks ------------------------------------------------------------------

CAL_HEADER = "symbol,name,reportDate,fiscalDateEnding,estimate,currency,timeOfTheDay"


def test_calendar_timing_mapping_crlf_and_empty_estimate():
    text = "\r\n".join([CAL_HEADER, "AAA,A Inc,2026-11-23,2026-09-30,1.25,USD,pre-market",
                        "BBB,B Inc,2026-11-24,2026-09-30,,USD,post-market",
                        "CCC,C Inc,2026-11-24,2026-09-30,0.1,USD,during-market",
                        'DDD,"D, Inc",2026-11-25,,0.2,USD,', "EEE,E Inc,2026-11-25,2026-09-30,0.3,USD,lunchtime", ""])
    frame, skipped = av.parse_calendar(text.encode())
    assert frame["timing"].tolist() == ["BMO", "AMC", "DMH", "UNKNOWN", "UNKNOWN"]
    assert math.isnan(frame["eps_estimate"].iloc[1]) and pd.isna(frame["fiscal_period_end"].iloc[3])
    assert skipped == []


def test_calendar_without_time_column_header_only_and_bad_symbols():
    frame, _ = av.parse_calendar(b"symbol,name,reportDate,fiscalDateEnding,estimate,currency\nAAA,A,2026-11-23,,1,USD\n")
    assert frame["timing"].tolist() == ["UNKNOWN"]
    assert av.parse_calendar(CAL_HEADER.encode() + b"\r\n")[0].empty
    frame, skipped = av.parse_calendar(f"{CAL_HEADER}\nbrk/b,x,2026-11-23,,,USD,\n".encode())
    assert frame.empty and skipped == [("brk/b", "invalid ticker symbol in the vendor calendar")]


@pytest.mark.parametrize("body,message", [
    (b'{"Information": "rate limit is 25 requests per day"}', "vendor notice"),
    (b"<html>busy</html>", "CSV header lacks"),
    (b"", "empty answer"),
    (CAL_HEADER.encode() + b"\nAAA,A,2026-11-23\n", "line 2 has 3 fields"),
    (CAL_HEADER.encode() + b"\nAAA,A,23/11/2026,,,USD,\n", "reportDate: not a YYYY-MM-DD date"),
])
def test_calendar_rejects_nonsense(body, message):
    with pytest.raises(PayloadError, match=f"alphavantage EARNINGS_CALENDAR: .*{message}"):
        av.parse_calendar(body)


def test_earnings_none_strings_and_missing_report_time():
    body = dumps({"symbol": "IBM", "quarterlyEarnings": [
        {"fiscalDateEnding": "2024-12-31", "reportedDate": "2025-01-29", "reportedEPS": "3.92",
         "estimatedEPS": "None", "reportTime": "post-market"},
        {"fiscalDateEnding": "2024-09-30", "reportedDate": "2024-10-23", "reportedEPS": "None", "estimatedEPS": "2.2"},
        {"fiscalDateEnding": "2025-03-31", "reportedDate": "None", "reportedEPS": "None"}]})
    frame = av.parse_earnings(body, "IBM")
    assert frame["timing"].tolist() == ["AMC", "UNKNOWN"] and frame["reported_eps"].iloc[0] == 3.92
    assert math.isnan(frame["estimated_eps"].iloc[0]) and math.isnan(frame["reported_eps"].iloc[1])
    with pytest.raises(PayloadError, match="alphavantage EARNINGS IBM: answer is for symbol 'MSFT'"):
        av.parse_earnings(dumps({"symbol": "MSFT", "quarterlyEarnings": []}), "IBM")


def test_daily_series_is_read_oldest_first():
    body = dumps({"Meta Data": {}, "Time Series (Daily)": {
        "2026-11-20": {"1. open": "10.0", "2. high": "11.0", "3. low": "9.5", "4. close": "10.5", "5. volume": "1000"},
        "2026-11-19": {"1. open": "9.0", "2. high": "10.0", "3. low": "8.5", "4. close": "9.9", "5. volume": "900"}}})
    frame = av.parse_daily(body, "IBM")
    assert frame["date"].dt.day.tolist() == [19, 20] and frame["close"].tolist() == [9.9, 10.5]


@pytest.mark.parametrize("body,verdict", [
    (b'{"Information": "We have detected your API key as X and our standard API rate limit is 25 requests per day. '
     b'Please subscribe to any of the premium plans"}', Verdict.EXHAUSTED),
    (b'{"Information": "Please consider spreading out your free API requests more sparingly (1 request per second). '
     b'You may subscribe to any of the premium plans to lift the free key rate limit (25 requests per day)"}',
     Verdict.THROTTLED),
    (b'{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute"}',
     Verdict.THROTTLED),
    (b'{"Information": "This is a premium endpoint."}', Verdict.REJECTED),
    (b'{"Error Message": "Invalid API call."}', Verdict.REJECTED),
    (b'{"Error Message": "the parameter apikey is invalid or missing."}', Verdict.UNAUTHORIZED),
])
def test_http_200_notices_are_classified(body, verdict):
    assert av.inspect_body(body).verdict is verdict


def test_data_is_not_a_notice_and_empty_answers_are_recognised():
    assert av.inspect_body(b'{"symbol": "IBM", "quarterlyEarnings": []}') is None
    assert av.inspect_body(CAL_HEADER.encode()) is None
    for empty in (b"", b"null", b'{"options": null}', b'{"expirations": {"date": null}}', CAL_HEADER.encode() + b"\r\n"):
        assert is_empty_answer(empty), empty
    assert not is_empty_answer(b'{"expirations": {"date": "2026-12-04"}}')


# ---- hypothesis: arbitrary payloads give data or the typed error, nothing else -------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**15, 10**15), st.floats(allow_nan=False),
                    st.sampled_from(["null", "None", "", "2026-11-27", "1.5", "call", "put", "AAPL", "pre-market",
                                     "9999-99-99", "abc"]),
                    st.text(max_size=12))
KEYS = ["expirations", "date", "expiration", "options", "option", "quotes", "quote", "symbol", "history", "day",
        "clock", "strike", "option_type", "bid", "ask", "last", "volume", "open_interest", "bid_date", "ask_date",
        "greeks", "mid_iv", "smv_vol", "delta", "expiration_date", "root_symbol", "open", "high", "low", "close",
        "timestamp", "state", "quarterlyEarnings", "reportedDate", "reportedEPS", "estimatedEPS", "reportTime",
        "fiscalDateEnding", "Time Series (Daily)", "1. open", "2. high", "3. low", "4. close", "5. volume",
        "Information", "Note", "Error Message"]
trees = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5)), max_leaves=30)

JSON_PARSERS = [
    lambda b: tradier.parse_expirations(b, "AAPL"),
    lambda b: tradier.parse_chain(b, "AAPL", EXP),
    lambda b: tradier.parse_quotes(b, ["AAPL", "MSFT"]),
    lambda b: tradier.parse_history(b, "AAPL"),
    tradier.parse_clock,
    lambda b: av.parse_earnings(b, "AAPL"),
    lambda b: av.parse_daily(b, "AAPL"),
    av.parse_calendar,
]


def _survives(parse, body: bytes) -> None:
    try:
        parse(body)
    except PayloadError as exc:
        assert isinstance(exc, SourceError) and exc.vendor in ("tradier", "alphavantage") and exc.endpoint


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(tree=trees, which=st.integers(0, len(JSON_PARSERS) - 1))
def test_arbitrary_json_trees_never_crash_a_normalizer(tree, which):
    _survives(JSON_PARSERS[which], json.dumps(tree).encode())


@FUZZ
@given(inner=trees, which=st.sampled_from([("expirations", 0), ("options", 1), ("quotes", 2), ("history", 3)]))
def test_vendor_shaped_trees_never_crash_tradier_normalizers(inner, which):
    key, index = which
    child = {"expirations": "date", "options": "option", "quotes": "quote", "history": "day"}[key]
    body = json.dumps({key: {child: inner}}).encode()
    _survives(JSON_PARSERS[index], body)


entries = st.dictionaries(st.sampled_from(KEYS), scalars, max_size=8)


@FUZZ
@given(rows=st.lists(entries, max_size=5), symbol=st.sampled_from(["AAPL", "MSFT", None, 3]))
def test_vendor_shaped_earnings_and_chains_never_crash(rows, symbol):
    _survives(JSON_PARSERS[5], json.dumps({"symbol": symbol, "quarterlyEarnings": rows}).encode())
    _survives(JSON_PARSERS[1], json.dumps({"options": {"option": rows}}).encode())
    _survives(JSON_PARSERS[6], json.dumps({"Time Series (Daily)": {"2026-11-20": rows[0] if rows else {}}}).encode())


@FUZZ
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_any_normalizer(data):
    for parse in JSON_PARSERS:
        _survives(parse, data)
    av.inspect_body(data)
    is_empty_answer(data)


cells = st.one_of(st.sampled_from(["", "None", "AAPL", "brk/b", "2026-11-23", "2026-13-01", "1.5", "x",
                                   "pre-market", "post-market", '"quoted, cell"']), st.text(max_size=8))


@FUZZ
@given(header=st.lists(st.sampled_from(["symbol", "name", "reportDate", "fiscalDateEnding", "estimate", "currency",
                                        "timeOfTheDay", "other"]), min_size=1, max_size=8),
       rows=st.lists(st.lists(cells, max_size=8), max_size=5), newline=st.sampled_from(["\n", "\r\n"]))
def test_arbitrary_csv_never_crashes_the_calendar_normalizer(header, rows, newline):
    text = newline.join([",".join(header)] + [",".join(r) for r in rows])
    _survives(av.parse_calendar, text.encode())


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_calendar_normalizer(text):
    _survives(av.parse_calendar, text.encode("utf-8", "surrogatepass"))
