"""Straddle implied move: truth recovery, interpolation, guards and properties."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.stages.events import event_expirations, upcoming_events
from pipeline.stages.implied import event_straddles

AS_OF = pd.Timestamp("2026-11-20")
EXP = pd.Timestamp("2026-11-27")
EVENT = pd.DataFrame({"ticker": ["TEST"], "report_date": [pd.Timestamp("2026-11-24")],
                      "reaction_date": [pd.Timestamp("2026-11-25")]})


def chain(strikes, call_bid, call_ask, put_bid, put_ask, spot=100.0, ticker="TEST", volume=10.0):
    frame = lambda kind, bid, ask: pd.DataFrame({
        "ticker": ticker, "expiration": EXP, "strike": np.asarray(strikes, float), "option_type": kind,
        "bid": np.asarray(bid, float), "ask": np.asarray(ask, float), "last": np.nan,
        "volume": volume, "open_interest": 500.0, "underlying_price": spot,
        "quote_time": pd.Timestamp("2026-11-20 21:00", tz="UTC"),
        "snapshot_time": pd.Timestamp("2026-11-20 21:00", tz="UTC"), "vendor_iv": np.nan,
        "vendor_delta": np.nan, "source": "test"})
    return pd.concat([frame("C", call_bid, call_ask), frame("P", put_bid, put_ask)], ignore_index=True)


def test_recovers_the_model_straddle_within_quote_noise(market):
    calendar = market.calendar(AS_OF, 90)
    events = upcoming_events(calendar, AS_OF, 7)
    events = events[events["timing"] != "UNKNOWN"]        # truth uses the true reaction session
    wanted = event_expirations(market.expirations(events["ticker"].tolist(), AS_OF), events)
    result = event_straddles(market.chains(wanted, AS_OF), events, 0.5)
    truth = market.truth_events(AS_OF, 7)
    joined = result.merge(truth, on=["ticker", "report_date"])
    clean = joined[joined["implied_reason"].isna()]
    assert len(clean) >= 30
    assert (clean["expiration"] == clean["event_expiration"]).all()
    ratio = clean["implied_move"] / clean["model_straddle_move"]
    # Quotes are rounded to a cent around a mid jittered by 0.2%, and linear interpolation
    # between strikes overstates a convex straddle slightly: a few percent at most.
    assert abs(ratio.median() - 1) < 0.02
    assert (ratio - 1).abs().max() < 0.08


def test_interpolation_is_exact_when_the_straddle_is_linear_in_strike():
    strikes = [95, 100, 105]
    # straddle(K) = 10 + 0.2 * (K - 95): linear, so the value at any spot is exact.
    calls = np.array([6.0, 6.5, 7.0])
    puts = np.array([4.0, 4.5, 5.0])
    frame = chain(strikes, calls - 0.05, calls + 0.05, puts - 0.05, puts + 0.05, spot=101.3)
    out = event_straddles(frame, EVENT, 0.5).iloc[0]
    assert out["straddle_mid"] == pytest.approx(10.0 + 0.2 * 6.3, abs=1e-12)
    assert out["implied_move"] == pytest.approx((10.0 + 0.2 * 6.3) / 101.3, abs=1e-12)
    assert pd.isna(out["implied_reason"])


def test_only_bad_quotes_give_null_with_a_reason():
    strikes = [95, 100, 105]
    zero_bids = chain(strikes, [0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1])
    crossed = chain(strikes, [3, 3, 3], [2, 2, 2], [3, 3, 3], [2, 2, 2])
    for frame in (zero_bids, crossed):
        out = event_straddles(frame, EVENT, 0.5).iloc[0]
        assert pd.isna(out["implied_move"]) and "no usable straddle quotes" in out["implied_reason"]


def test_missing_chain_and_uncovered_event_are_reasons_not_numbers():
    frame = chain([100], [5], [5.1], [5], [5.1])
    late = EVENT.assign(reaction_date=pd.Timestamp("2026-12-01"))
    assert event_straddles(frame, late, 0.5).iloc[0]["implied_reason"] == "no expiration covers the reaction session"
    other = EVENT.assign(ticker="NONE")
    assert event_straddles(frame, other, 0.5).iloc[0]["implied_reason"] == "no option chain"


def test_crossed_atm_leg_falls_back_to_the_nearest_usable_strike():
    strikes = [95, 100, 105]
    frame = chain(strikes, [7, 3.1, 1], [7.2, 3.0, 1.1], [1, 3, 6], [1.1, 3.1, 6.2], spot=101.0)
    out = event_straddles(frame, EVENT, 0.5).iloc[0]
    # 100 is crossed (call bid > ask): bracket becomes 95..105 around the spot.
    expected = 0.4 * (7.1 + 1.05) + 0.6 * (1.05 + 6.1)      # weight 0.6 on the upper strike
    assert out["straddle_mid"] == pytest.approx(expected, abs=1e-12)


def test_duplicated_quotes_do_not_change_the_answer():
    strikes = [95, 100, 105]
    frame = chain(strikes, [6, 3, 1], [6.2, 3.1, 1.1], [1, 3, 6], [1.1, 3.1, 6.2])
    doubled = pd.concat([frame, frame], ignore_index=True)
    a, b = event_straddles(frame, EVENT, 0.5), event_straddles(doubled, EVENT, 0.5)
    pd.testing.assert_frame_equal(a, b)


def test_too_wide_legs_are_not_used():
    strikes = [100]
    frame = chain(strikes, [1.0], [3.0], [2.0], [2.1])      # call spread 2.0 on a mid of 2.0
    out = event_straddles(frame, EVENT, 0.5).iloc[0]
    assert pd.isna(out["implied_move"])


prices = st.floats(0.5, 50.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(call=prices, put=prices, bump=st.floats(0.01, 5.0), spot=st.floats(96.0, 104.0), scale=st.floats(0.01, 100.0))
def test_properties_monotone_and_scale_invariant(call, put, bump, spot, scale):
    strikes = np.array([95.0, 100.0, 105.0])
    calls = call + np.array([2.0, 1.0, 0.0])
    puts = put + np.array([0.0, 1.0, 2.0])
    base = chain(strikes, calls, calls * 1.01, puts, puts * 1.01, spot=spot)
    raised = chain(strikes, calls + bump, (calls + bump) * 1.01, puts + bump, (puts + bump) * 1.01, spot=spot)
    scaled = chain(strikes * scale, calls * scale, calls * 1.01 * scale, puts * scale, puts * 1.01 * scale,
                   spot=spot * scale)
    move = event_straddles(base, EVENT, 0.5).iloc[0]["implied_move"]
    assert event_straddles(raised, EVENT, 0.5).iloc[0]["implied_move"] > move
    assert event_straddles(scaled, EVENT, 0.5).iloc[0]["implied_move"] == pytest.approx(move, rel=1e-9)


def test_event_only_move_removes_exactly_the_diffusion_to_expiry():
    from pipeline.stages.implied import event_only_move

    sigma_d, sigma_e, t = 0.3, 0.06, 20 / 365
    straddle = np.sqrt(2 / np.pi) * np.sqrt(sigma_d ** 2 * t + sigma_e ** 2)
    got = event_only_move(pd.Series([straddle]), pd.Series([sigma_d]), pd.Series([t])).iloc[0]
    assert got == pytest.approx(np.sqrt(2 / np.pi) * sigma_e, rel=1e-12)
    # Never negative: more diffusion than the straddle holds leaves no event move.
    assert event_only_move(pd.Series([0.01]), pd.Series([0.9]), pd.Series([0.5])).iloc[0] == 0.0
