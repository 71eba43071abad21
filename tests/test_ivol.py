"""Black-76 implied volatility: accuracy against QuantLib and an exact reference, properties,
implied forwards and the surface stage."""
import math

import numpy as np
import pandas as pd
import pytest
import QuantLib as ql
from hypothesis import given, settings, strategies as st

from pipeline.kernel.black76 import IV_STATUSES, black76_delta, black76_price, black76_vega, implied_vol
from pipeline.contract.schemas import validate
from pipeline.contract.sessions import year_fraction
from pipeline.stages.groups import group_median
from pipeline.stages.surface import SURFACE_COLUMNS, build_surface, implied_forwards

EPS = np.finfo(float).eps
VOL_TOLERANCE = 1e-10
QUOTE_TIME = pd.Timestamp("2026-11-20 15:30", tz="UTC")
RATE = 0.04


# --- helpers -------------------------------------------------------------------------------------

def exact_normal_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def reference_otm_price(forward, strike, t, sigma, discount):
    """Textbook Black-76 for the OTM option with math.erfc (accurate to an ulp in both tails)."""
    sd = sigma * math.sqrt(t)
    d1 = math.log(forward / strike) / sd + 0.5 * sd
    d2 = d1 - sd
    if strike >= forward:
        return discount * (forward * exact_normal_cdf(d1) - strike * exact_normal_cdf(d2))
    return discount * (strike * exact_normal_cdf(-d2) - forward * exact_normal_cdf(-d1))


def quote_grid():
    """Forward 100; t from one day to three years; vols 3%..400%; strikes +-8 sd; calls and puts."""
    rows = []
    for t in (1 / 365, 2 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 3.0):
        for sigma in (0.03, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0):
            sd = sigma * math.sqrt(t)
            for z in np.linspace(-8, 8, 33):
                for is_call in (True, False):
                    rows.append((100.0, 100.0 * math.exp(z * sd), t, sigma, math.exp(-RATE * t), is_call))
    grid = pd.DataFrame(rows, columns=["forward", "strike", "t", "sigma", "discount", "is_call"])
    intrinsic = np.where(grid["is_call"], np.maximum(grid["forward"] - grid["strike"], 0),
                         np.maximum(grid["strike"] - grid["forward"], 0))
    return grid.assign(intrinsic=intrinsic)


def inside_bounds(grid, price):
    """Strictly inside no-arbitrage bounds, with an OTM-equivalent price above 1e-12 of F."""
    undiscounted = price / grid["discount"]
    ceiling = np.where(grid["is_call"], grid["forward"], grid["strike"])
    return ((undiscounted - grid["intrinsic"]) / grid["forward"] > 1e-12) & (undiscounted < ceiling)


def quantlib_is_exact(forward, strike, t, sigma, discount, is_call):
    """Where QuantLib's Black formula pins sigma to better than 1e-11.

    QuantLib prices as D (F N(d1) - K N(d2)), so each term carries rounding (eps) plus the
    relative error of its CumulativeNormalDistribution, which is ~1e-8 for z in about [-7, -4.5]
    (0.5 (1 + erf(z)) cancels there). Short-dated deep OTM quotes live in that band, so they are
    checked against the erfc reference instead.
    """
    sign = np.where(is_call, 1.0, -1.0)
    sd = np.asarray(sigma * np.sqrt(t), dtype=float)
    d1 = sign * (np.log(forward / strike) / sd + 0.5 * sd)
    d2 = d1 - sign * sd
    cdf = ql.CumulativeNormalDistribution()
    exact = np.vectorize(exact_normal_cdf)
    relative_error = np.vectorize(lambda z: abs(cdf(z) / exact_normal_cdf(z) - 1) + EPS if z > -37 else 0.0)
    price_error = discount * (forward * exact(d1) * relative_error(d1) + strike * exact(d2) * relative_error(d2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return price_error / black76_vega(forward, strike, t, sigma, discount) < 1e-11


def vega_of(grid):
    return black76_vega(grid["forward"], grid["strike"], grid["t"], grid["sigma"], grid["discount"])


def chain_frame(ticker, spot, carry, base_vol, expirations, strikes, rate=RATE):
    """A chain priced exactly by Black-76 on F = spot e^{carry t} with a smile; bid/ask +-2% of price."""
    frames = []
    for expiration in pd.to_datetime(expirations):
        t = year_fraction(pd.Series([QUOTE_TIME]), pd.Series([expiration]))[0]
        forward, discount = spot * math.exp(carry * t), math.exp(-rate * t)
        k = np.log(strikes / forward)
        true_iv = base_vol - 0.05 * k + 0.1 * k * k
        for kind in "CP":
            price = black76_price(forward, strikes, t, true_iv, discount, kind == "C")
            frames.append(pd.DataFrame({
                "ticker": ticker, "expiration": expiration, "strike": strikes, "option_type": kind,
                "bid": price * 0.98, "ask": price * 1.02, "last": np.nan, "volume": 10.0,
                "open_interest": 100.0, "underlying_price": spot, "quote_time": QUOTE_TIME,
                "snapshot_time": QUOTE_TIME, "vendor_iv": np.nan, "vendor_delta": np.nan, "source": "test",
                "true_iv": true_iv, "true_forward": forward,
            }))
    return pd.concat(frames, ignore_index=True)


def sample_chains():
    return pd.concat([
        chain_frame("AAA", 100.0, 0.01, 0.30, ["2026-11-27", "2026-12-18"], np.arange(60.0, 141.0, 2.5)),
        chain_frame("BBB", 20.0, -0.02, 0.55, ["2026-12-04"], np.arange(10.0, 30.5, 0.5)),
    ], ignore_index=True)


def out_of_the_money(frame):
    call = frame["option_type"] == "C"
    return (call & (frame["strike"] >= frame["true_forward"])) | (~call & (frame["strike"] < frame["true_forward"]))


# --- accuracy ------------------------------------------------------------------------------------

def test_matches_quantlib_black_formula_on_a_grid_with_short_dated_and_deep_otm_quotes():
    grid = quote_grid()
    kind = np.where(grid["is_call"], ql.Option.Call, ql.Option.Put)
    price = np.array([ql.blackFormula(int(o), k, f, s * math.sqrt(t), d) for o, k, f, s, t, d in zip(
        kind, grid["strike"], grid["forward"], grid["sigma"], grid["t"], grid["discount"])])
    use = inside_bounds(grid, price) & quantlib_is_exact(
        grid["forward"], grid["strike"], grid["t"], grid["sigma"], grid["discount"], grid["is_call"])

    iv, status = implied_vol(price, grid["forward"], grid["strike"], grid["t"], grid["discount"], grid["is_call"])

    assert use.sum() > 1000
    assert ((grid["t"] == 1 / 365) & use).sum() > 100
    assert ((price / grid["forward"] < 1e-5) & use).sum() > 50     # 4 sd out of the money
    assert (status[use] == "ok").all()
    assert np.max(np.abs(iv[use] - grid["sigma"][use])) <= VOL_TOLERANCE


def test_matches_quantlib_implied_std_dev():
    rows = [(f, k, t, s) for f in (50.0, 100.0) for k in (40.0, 80.0, 100.0, 120.0, 200.0)
            for t in (3 / 365, 0.5, 2.0) for s in (0.15, 0.4, 0.9)]
    forward, strike, t, sigma = (np.array(c) for c in zip(*rows))
    discount = np.exp(-RATE * t)
    for is_call, kind in ((True, ql.Option.Call), (False, ql.Option.Put)):
        price = black76_price(forward, strike, t, sigma, discount, is_call)
        otm = np.where(is_call, strike >= forward, strike < forward)
        inside = otm & (price / forward > 1e-12) & quantlib_is_exact(forward, strike, t, sigma, discount, is_call)
        reference = np.array([
            ql.blackFormulaImpliedStdDev(kind, k, f, p, d, 0.0, s * math.sqrt(tt) * 1.2, 1e-15, 1000) / math.sqrt(tt)
            for k, f, p, d, s, tt in zip(strike[inside], forward[inside], price[inside], discount[inside],
                                         sigma[inside], t[inside])])
        iv, status = implied_vol(price, forward, strike, t, discount, is_call)
        assert (status[inside] == "ok").all()
        assert np.max(np.abs(iv[inside] - reference)) <= VOL_TOLERANCE


def test_exact_for_every_in_bounds_price_against_an_erfc_reference():
    """Covers the band where QuantLib's normal CDF is not exact (short-dated, deep OTM)."""
    grid = quote_grid()
    otm_price = np.array([reference_otm_price(f, k, t, s, d) for f, k, t, s, d in zip(
        grid["forward"], grid["strike"], grid["t"], grid["sigma"], grid["discount"])])
    price = grid["discount"] * grid["intrinsic"] + otm_price
    # ITM prices carry rounding of size eps * price, which pins sigma only to eps * price / vega.
    use = inside_bounds(grid, price) & (EPS * price / vega_of(grid) < 1e-11)

    iv, status = implied_vol(price, grid["forward"], grid["strike"], grid["t"], grid["discount"], grid["is_call"])

    assert use.sum() > 2000
    assert (status[use] == "ok").all()
    assert np.max(np.abs(iv[use] - grid["sigma"][use])) <= VOL_TOLERANCE


# --- properties ----------------------------------------------------------------------------------

option_cases = st.lists(
    st.tuples(
        st.floats(-4.0, 4.0),                  # strike in ATM standard deviations
        st.floats(1 / 365, 3.0),              # t
        st.floats(0.01, 4.0),                 # sigma
        st.floats(1.0, 2000.0),               # forward
        st.booleans(),
    ),
    min_size=1, max_size=40,
)


def case_arrays(cases):
    z, t, sigma, forward, is_call = (np.array(c) for c in zip(*cases))
    strike = forward * np.exp(z * sigma * np.sqrt(t))
    return forward, strike, t, sigma, np.exp(-RATE * t), is_call.astype(bool)


def well_conditioned(forward, strike, t, sigma, discount, is_call, price):
    intrinsic = np.where(is_call, np.maximum(forward - strike, 0), np.maximum(strike - forward, 0))
    otm = price / discount - intrinsic
    return (otm / forward > 1e-12) & (EPS * price / black76_vega(forward, strike, t, sigma, discount) < 1e-11)


@settings(max_examples=150, deadline=None)
@given(option_cases)
def test_vol_to_price_to_vol_round_trip(cases):
    forward, strike, t, sigma, discount, is_call = case_arrays(cases)
    price = black76_price(forward, strike, t, sigma, discount, is_call)
    iv, status = implied_vol(price, forward, strike, t, discount, is_call)
    good = well_conditioned(forward, strike, t, sigma, discount, is_call, price)
    assert (status[good] == "ok").all()
    assert np.all(np.abs(iv[good] - sigma[good]) <= VOL_TOLERANCE)


@settings(max_examples=150, deadline=None)
@given(option_cases)
def test_price_to_vol_to_price_round_trip(cases):
    forward, strike, t, sigma, discount, is_call = case_arrays(cases)
    price = black76_price(forward, strike, t, sigma, discount, is_call)
    iv, status = implied_vol(price, forward, strike, t, discount, is_call)
    ok = status == "ok"
    repriced = black76_price(forward[ok], strike[ok], t[ok], iv[ok], discount[ok], is_call[ok])
    assert np.all(np.abs(repriced - price[ok]) <= 1e-12 * np.maximum(forward[ok], strike[ok]))


@settings(max_examples=100, deadline=None)
@given(option_cases, st.floats(1e-3, 1e3))
def test_scaling_forward_strike_and_price_leaves_iv_unchanged(cases, factor):
    forward, strike, t, sigma, discount, is_call = case_arrays(cases)
    price = black76_price(forward, strike, t, sigma, discount, is_call)
    iv, status = implied_vol(price, forward, strike, t, discount, is_call)
    scaled_iv, scaled_status = implied_vol(price * factor, forward * factor, strike * factor, t, discount, is_call)
    good = well_conditioned(forward, strike, t, sigma, discount, is_call, price)
    assert (scaled_status[good] == status[good]).all()
    assert np.all(np.abs(scaled_iv[good] - iv[good]) <= VOL_TOLERANCE)


@settings(max_examples=150, deadline=None)
@given(option_cases, st.floats(0.0, 0.999), st.floats(0.0, 10.0))
def test_prices_outside_bounds_give_nan_and_a_status(cases, below_fraction, above_fraction):
    forward, strike, t, sigma, discount, is_call = case_arrays(cases)
    intrinsic = np.where(is_call, np.maximum(forward - strike, 0), np.maximum(strike - forward, 0))
    ceiling = np.where(is_call, forward, strike)
    below = discount * intrinsic * below_fraction
    above = discount * ceiling * (1.0 + above_fraction)

    iv_below, status_below = implied_vol(below, forward, strike, t, discount, is_call)
    iv_above, status_above = implied_vol(above, forward, strike, t, discount, is_call)

    assert np.isnan(iv_below).all() and np.isnan(iv_above).all()
    assert set(status_below) <= {"below_intrinsic", "no_quote"}      # zero prices are "no quote"
    assert (status_below[below > 0] == "below_intrinsic").all()
    assert (status_above == "above_upper_bound").all()


def test_status_for_missing_inputs_and_expired_options():
    price = np.array([np.nan, 0.0, -1.0, 5.0, 5.0, 5.0, 5.0])
    forward = np.array([100.0, 100.0, 100.0, np.nan, 100.0, 100.0, 100.0])
    t = np.array([0.1, 0.1, 0.1, 0.1, 0.0, -0.01, np.nan])
    iv, status = implied_vol(price, forward, 100.0, t, 1.0, True)
    assert list(status) == ["no_quote", "no_quote", "no_quote", "no_forward", "expired", "expired", "expired"]
    assert np.isnan(iv).all()
    assert set(status) <= set(IV_STATUSES)


def test_at_the_money_and_tiny_vol_quotes_converge():
    forward = strike = np.full(4, 100.0)
    sigma = np.array([1e-6, 1e-3, 0.2, 3.0])
    t = np.full(4, 1 / 365)
    price = black76_price(forward, strike, t, sigma, 1.0, True)
    iv, status = implied_vol(price, forward, strike, t, 1.0, True)
    assert (status == "ok").all()
    assert np.max(np.abs(iv - sigma)) <= VOL_TOLERANCE


def test_delta_signs_and_put_call_parity():
    forward, strike, t, sigma, discount = 100.0, np.array([80.0, 100.0, 120.0]), 0.25, 0.3, math.exp(-RATE * 0.25)
    call = black76_delta(forward, strike, t, sigma, discount, True)
    put = black76_delta(forward, strike, t, sigma, discount, False)
    assert (call > 0).all() and (put < 0).all()
    np.testing.assert_allclose(call - put, discount, rtol=1e-14)
    bump = 1e-5
    numeric = (black76_price(forward + bump, strike, t, sigma, discount, True)
               - black76_price(forward - bump, strike, t, sigma, discount, True)) / (2 * bump)
    np.testing.assert_allclose(call, numeric, rtol=1e-7)


# --- forwards and surface ------------------------------------------------------------------------

def test_implied_forwards_recover_the_carry_forward_from_parity():
    chains = sample_chains()
    forwards = implied_forwards(chains, RATE)
    truth = chains.groupby(["ticker", "expiration"], as_index=False)["true_forward"].first()
    joined = forwards.merge(truth, on=["ticker", "expiration"])
    assert len(joined) == 3 and (joined["forward_source"] == "parity").all()
    # Mids are exact prices here (symmetric +-2% spreads), so parity is exact to rounding.
    np.testing.assert_allclose(joined["forward"], joined["true_forward"], rtol=1e-12)


def test_implied_forwards_ignore_one_sided_quotes_and_fall_back_to_spot():
    chains = sample_chains()
    bbb = chains["ticker"] == "BBB"
    chains.loc[bbb & (chains["option_type"] == "P"), "bid"] = 0.0        # no usable put at all
    aaa = chains["ticker"] == "AAA"
    # A crossed pair near the money must not move AAA's forward.
    chains.loc[aaa & (chains["strike"] == 100.0) & (chains["option_type"] == "C"), ["bid", "ask"]] = [9.0, 1.0]
    forwards = implied_forwards(chains, RATE).set_index(["ticker", "expiration"])

    t = year_fraction(pd.Series([QUOTE_TIME]), pd.Series([pd.Timestamp("2026-12-04")]))[0]
    spot_row = forwards.loc[("BBB", pd.Timestamp("2026-12-04"))]
    assert spot_row["forward_source"] == "spot"
    assert spot_row["forward"] == pytest.approx(20.0 * math.exp(RATE * t), rel=1e-14)
    truth = chains[aaa].groupby("expiration")["true_forward"].first()
    np.testing.assert_allclose(forwards.loc["AAA", "forward"], truth, rtol=1e-12)


def test_surface_has_the_schema_columns_and_recovers_the_smile():
    chains = sample_chains()
    surface = build_surface(chains, RATE)
    assert list(surface.columns) == SURFACE_COLUMNS
    validate("surface", surface)
    otm = out_of_the_money(chains)
    assert (surface.loc[otm, "iv_status"] == "ok").all()
    assert np.max(np.abs(surface.loc[otm, "iv"] - chains.loc[otm, "true_iv"])) <= VOL_TOLERANCE
    assert (surface["rate"] == RATE).all()
    np.testing.assert_allclose(surface["forward"], chains["true_forward"], rtol=1e-12)
    ok = surface["iv_status"] == "ok"
    call = surface["option_type"] == "C"
    assert (surface.loc[ok & call, "delta"] > 0).all() and (surface.loc[ok & ~call, "delta"] < 0).all()
    assert surface.loc[~ok, ["iv", "delta"]].isna().all().all()


def test_surface_statuses_for_bad_quotes():
    chains = sample_chains()
    first = chains.index[:5]
    chains.loc[first[0], ["bid", "ask"]] = [2.0, 1.0]            # crossed
    chains.loc[first[1], ["bid", "ask"]] = [0.0, 0.05]           # zero bid wing
    chains.loc[first[2], ["bid", "ask"]] = [np.nan, np.nan]      # no quote at all
    chains.loc[first[3], "snapshot_time"] = pd.Timestamp("2026-11-28", tz="UTC")   # after expiry close
    surface = build_surface(chains, RATE)
    assert list(surface.loc[first[:4], "iv_status"]) == ["crossed", "no_quote", "no_quote", "expired"]
    assert np.isnan(surface.loc[first[0], "mid"])
    assert surface.loc[first[1], "mid"] == pytest.approx(0.025)
    assert surface.loc[first[:4], "iv"].isna().all()


def test_surface_without_forward_marks_no_forward():
    chains = sample_chains()
    bbb = chains["ticker"] == "BBB"
    chains.loc[bbb & (chains["option_type"] == "P"), "bid"] = 0.0
    chains.loc[bbb, "underlying_price"] = np.nan
    surface = build_surface(chains, RATE)
    two_sided_calls = bbb & (chains["option_type"] == "C")
    assert (surface.loc[two_sided_calls, "iv_status"] == "no_forward").all()
    assert (surface.loc[bbb & ~two_sided_calls, "iv_status"] == "no_quote").all()


def test_surface_of_a_subset_of_tickers_equals_the_subset_of_the_surface():
    chains = sample_chains()
    whole = build_surface(chains, RATE)
    part = chains["ticker"] == "BBB"
    pd.testing.assert_frame_equal(build_surface(chains[part], RATE), whole[part])


def test_implied_forwards_use_the_three_strikes_nearest_the_money_ties_to_the_lower_strike():
    def pair(strike, call_minus_put, put=3.0):
        call = put + call_minus_put
        return [("AAA", strike, "C", call - 0.01, call + 0.01), ("AAA", strike, "P", put - 0.01, put + 0.01)]
    # |C - P| = 1 at 99, 101 and 103: the tie at 103 loses to the lower strikes; 100 (0.5) is nearest.
    rows = pair(98.0, 2.0) + pair(99.0, 1.0) + pair(100.0, 0.5) + pair(101.0, -1.0) + pair(103.0, -1.0)
    rows += [("AAA", 100.0, "C", 3.6, 3.6)]     # a duplicate call quote: the two are averaged
    chains = pd.DataFrame(rows, columns=["ticker", "strike", "option_type", "bid", "ask"]).assign(
        expiration=pd.Timestamp("2026-12-18"), underlying_price=100.0, quote_time=QUOTE_TIME,
        snapshot_time=QUOTE_TIME)
    t = year_fraction(pd.Series([QUOTE_TIME]), pd.Series([pd.Timestamp("2026-12-18")]))[0]
    discount = math.exp(-RATE * t)
    expected = np.median([99.0 + 1.0 / discount, 100.0 + 0.55 / discount, 101.0 - 1.0 / discount])
    for order in (chains.index, chains.index[::-1]):
        forwards = implied_forwards(chains.loc[order], RATE)
        assert forwards["forward"].iloc[0] == pytest.approx(expected, rel=1e-14)


def test_surface_rows_follow_chains_in_any_order():
    chains = sample_chains()
    shuffled = chains.sample(frac=1.0, random_state=5)
    pd.testing.assert_frame_equal(build_surface(shuffled, RATE), build_surface(chains, RATE).loc[shuffled.index])


def test_surface_is_independent_of_later_edits_to_chains():
    chains = sample_chains()
    surface = build_surface(chains, RATE)
    before = surface.copy()
    chains.loc[chains.index[0], ["strike", "bid", "ask", "underlying_price"]] = [1.0, 2.0, 3.0, 4.0]
    chains.loc[chains.index[0], "ticker"] = "ZZZ"
    pd.testing.assert_frame_equal(surface, before)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from([np.nan, 0.5, 1.0, 1.0, 2.0, 3.5, -1.0])), max_size=40))
def test_group_median_is_pandas_groupby_median(rows):
    group = np.array([g for g, _ in rows], dtype=np.int64)
    values = np.array([v for _, v in rows], dtype=float)
    expected = pd.Series(values).groupby(group).median().reindex(range(8))
    np.testing.assert_array_equal(group_median(group, 8, values), expected.to_numpy())
