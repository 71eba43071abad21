"""The quote kernel of :mod:`pipeline.kernel.black76` (mids, fresh mid, discount factor, forwards) and the
rule every consumer shares with it: a stale quote is never traded, in the straddle backtest, the
structure backtest and the outcomes, exactly as ``straddle_mid`` ignores it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.kernel.black76 import (
    black76_price, carried_forward, discount_factor, fresh_mid, mid, parity_forward, quoted_mid, two_sided_mid,
)

prices = st.floats(0.01, 5000.0)
rates = st.floats(-0.02, 0.15)
years = st.floats(1.0 / 365, 3.0)


@settings(max_examples=200, deadline=None)
@given(forward=prices, strike_ratio=st.floats(0.5, 2.0), t=years, sigma=st.floats(0.05, 1.5), rate=rates)
def test_the_parity_forward_of_black76_prices_is_their_forward(forward, strike_ratio, t, sigma, rate):
    strike = forward * strike_ratio
    discount = discount_factor(rate, t)
    call = black76_price(forward, strike, t, sigma, discount, True)
    put = black76_price(forward, strike, t, sigma, discount, False)
    recovered = parity_forward(strike, call - put, discount)
    # C and P carry a rounding error of a few ulps of the larger of them; divided by D.
    assert abs(recovered - forward) <= 1e-12 * (forward + strike) / discount + 1e-9 * max(call, put) / discount


@settings(max_examples=200, deadline=None)
@given(spot=prices, rate=rates, t1=years, t2=years)
def test_carrying_and_discounting_at_the_same_rate_cancel_and_compose(spot, rate, t1, t2):
    assert np.isclose(carried_forward(spot, rate, t1) * discount_factor(rate, t1), spot, rtol=1e-13)
    assert np.isclose(discount_factor(rate, t1) * discount_factor(rate, t2), discount_factor(rate, t1 + t2), rtol=1e-13)
    assert discount_factor(rate, t1) <= 1.0 if rate >= 0 else discount_factor(rate, t1) >= 1.0
    # Parity at the carried forward: a zero-strike call is the discounted forward, the spot itself.
    assert np.isclose(parity_forward(0.0, spot, discount_factor(rate, t1)), carried_forward(spot, rate, t1), rtol=1e-13)


quotes = st.tuples(st.one_of(st.just(0.0), st.floats(0.0, 50.0), st.just(np.nan)),
                   st.one_of(st.just(0.0), st.floats(0.0, 50.0), st.just(np.nan)), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(quotes, min_size=1, max_size=20))
def test_each_mid_is_the_middle_of_the_quotes_its_rule_admits(rows):
    bid, ask, stale = (np.array(column) for column in zip(*rows))
    stale = stale.astype(bool)
    middle, quoted, two_sided, fresh = mid(bid, ask), quoted_mid(bid, ask), two_sided_mid(bid, ask), fresh_mid(bid, ask, stale)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(np.isfinite(quoted), (ask > 0) & (ask >= bid))
        np.testing.assert_array_equal(np.isfinite(two_sided), (bid > 0) & (ask >= bid))
    np.testing.assert_array_equal(np.isfinite(fresh), np.isfinite(two_sided) & ~stale)
    for derived in (quoted, two_sided, fresh):       # where a rule admits a quote, it is the quote's mid
        admitted = np.isfinite(derived)
        np.testing.assert_array_equal(derived[admitted], middle[admitted])
        assert np.all((bid[admitted] <= derived[admitted]) & (derived[admitted] <= ask[admitted]))
    assert not np.any(np.isfinite(two_sided) & ~np.isfinite(quoted))     # two-sided quotes are quoted


# ---- a stale leg is never traded ---------------------------------------------------------------------

SNAPSHOT = pd.Timestamp("2026-11-20 21:00", tz="UTC")          # the close of Friday 2026-11-20
STANDING = pd.Timestamp("2026-11-19 20:00", tz="UTC")          # last changed the session before
EXPIRATION = pd.Timestamp("2026-11-27")


def _chain(stale_legs=(), snapshot=SNAPSHOT):
    """Calls and puts of two tickers at strikes 95..105; ``stale_legs``: (ticker, strike, type)
    whose quote stands from the previous session."""
    rows = [{"ticker": ticker, "expiration": EXPIRATION, "strike": strike, "option_type": kind,
             "bid": 2.0 + 0.1 * (strike - 100) * (1 if kind == "P" else -1), "ask": 2.2 + 0.1 * (strike - 100) * (1 if kind == "P" else -1),
             "quote_time": STANDING if (ticker, strike, kind) in stale_legs else snapshot, "snapshot_time": snapshot}
            for ticker in ("AAA", "BBB") for strike in (90.0, 95.0, 100.0, 105.0, 110.0) for kind in ("C", "P")]
    return pd.DataFrame(rows).astype({"ticker": "str", "option_type": "str"})


def test_the_straddle_backtest_never_fills_a_stale_leg():
    from pipeline.stages.backtest import leg_quotes, simulate

    trades = pd.DataFrame({"ticker": ["AAA", "BBB"], "expiration": [EXPIRATION] * 2, "strike": [100.0] * 2,
                           "exit_kind": ["quote"] * 2, "exit_close": [100.0] * 2})
    fresh = simulate(leg_quotes(_chain(), leg_quotes(_chain(), trades, "entry"), "exit"), 0.5, 0.0)
    assert fresh["trade_status"].tolist() == ["ok", "ok"]
    # AAA's put stands from the previous session at entry, BBB's call at exit: neither trades.
    entry = leg_quotes(_chain({("AAA", 100.0, "P")}), trades, "entry")
    done = simulate(leg_quotes(_chain({("BBB", 100.0, "C")}), entry, "exit"), 0.5, 0.0)
    assert done["trade_status"].tolist() == ["no_entry_quote", "no_exit_quote"]
    assert done["pnl"].isna().all() and np.isnan(done.loc[0, "entry_put_mid"]) and np.isnan(done.loc[1, "exit_call_mid"])
    # Filled at f = 0, the entry credit is the straddle's fresh mid, the implied move's straddle_mid.
    at_mid = simulate(leg_quotes(_chain(), leg_quotes(_chain(), trades, "entry"), "exit"), 0.0, 0.0)
    chain = _chain()
    legs = chain[(chain["ticker"] == "AAA") & (chain["strike"] == 100.0)]
    straddle_mid = fresh_mid(legs["bid"].to_numpy(), legs["ask"].to_numpy(), np.zeros(len(legs), bool)).sum()
    assert np.isclose(at_mid.loc[0, "entry_credit"], straddle_mid, rtol=1e-15)


def test_the_structure_backtest_never_closes_at_a_stale_quote():
    from pipeline.stages.structure_trades import exit_quotes, simulate
    from pipeline.stages.structures import SLOTS

    strikes = dict(zip(SLOTS, (95.0, 105.0, 90.0, 110.0)))
    entry = _chain().set_index(["ticker", "strike", "option_type"])
    row = {"expiration": EXPIRATION, "status": "ok", "exit_kind": "quote", "exit_close": 100.0,
           "risk_kind": "defined", "margin": np.nan}
    for slot, strike in strikes.items():
        quote = entry.loc[("AAA", strike, "C" if slot.endswith("call") else "P")]
        row |= {f"{slot}_strike": strike, f"{slot}_bid": quote["bid"], f"{slot}_ask": quote["ask"]}
    trades = pd.DataFrame([{**row, "ticker": "AAA"}, {**row, "ticker": "BBB"}])
    done = simulate(exit_quotes(_chain({("BBB", 110.0, "C")}), trades), 0.5, 0.65)
    assert done["trade_status"].tolist() == ["ok", "no_exit_quote"]
    assert np.isnan(done.loc[1, "exit_long_call_bid"]) and done["pnl"].notna().tolist() == [True, False]


def test_an_outcome_is_not_marked_at_a_stale_quote():
    from pipeline.stages.outcomes import event_outcomes

    metrics = pd.DataFrame({"ticker": ["AAA", "BBB"], "report_date": [pd.Timestamp("2026-11-19")] * 2,
                            "reaction_date": [pd.Timestamp("2026-11-20")] * 2, "expiration": [EXPIRATION] * 2,
                            "straddle_strike": [100.0] * 2, "straddle_mid": [4.2] * 2, "spot": [100.0] * 2,
                            "implied_move": [0.05] * 2, "implied_event_move": [0.04] * 2, "ts_implied_move": [0.04] * 2,
                            "event_atm_iv": [0.6] * 2, "crush_expiration": [EXPIRATION] * 2,
                            "expected_iv_crush": [0.2] * 2})
    chain = _chain({("BBB", 100.0, "C")}).assign(underlying_price=101.0)
    out = event_outcomes(metrics, chain, pd.DataFrame(columns=["ticker", "date", "high", "low"]),
                         "2026-11-19", "2026-11-20", 0.04).set_index("ticker")
    assert np.isfinite(out.loc["AAA", "straddle_exit_value"]) and np.isnan(out.loc["BBB", "straddle_exit_value"])


def test_an_outcome_marks_a_leg_nobody_bids_for_at_its_mid():
    """After the move the far leg is often offered with no bid: the outcome marks it at (0 + ask)/2,
    as the backtest's exit does (it can be bought back), instead of leaving the outcome empty."""
    from pipeline.stages.outcomes import event_outcomes

    metrics = pd.DataFrame({"ticker": ["AAA"], "report_date": [pd.Timestamp("2026-11-19")],
                            "reaction_date": [pd.Timestamp("2026-11-20")], "expiration": [EXPIRATION],
                            "straddle_strike": [100.0], "straddle_mid": [4.2], "spot": [100.0],
                            "implied_move": [0.05], "implied_event_move": [0.04], "ts_implied_move": [0.04],
                            "event_atm_iv": [0.6], "crush_expiration": [EXPIRATION], "expected_iv_crush": [0.2]})
    chain = _chain().assign(underlying_price=92.0)
    call = (chain["ticker"] == "AAA") & (chain["strike"] == 100.0) & (chain["option_type"] == "C")
    chain.loc[call, ["bid", "ask"]] = [0.0, 0.06]
    put = chain[(chain["ticker"] == "AAA") & (chain["strike"] == 100.0) & (chain["option_type"] == "P")].iloc[0]
    out = event_outcomes(metrics, chain, pd.DataFrame(columns=["ticker", "date", "high", "low"]),
                         "2026-11-19", "2026-11-20", 0.04).set_index("ticker")
    assert out.loc["AAA", "straddle_exit_value"] == pytest.approx(0.03 + (put["bid"] + put["ask"]) / 2)
