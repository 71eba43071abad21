"""Batched quadratic smile fit: exact recovery, guards, loop reference, rr25/bf25, invariances."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import ndtr

from pipeline.stages.skew import SKEW_COLUMNS, fit_skew

EXPIRATION = pd.Timestamp("2026-12-18")
FIT = ["skew_atm_iv", "skew_slope", "skew_curvature"]


def smile(ticker, a, b, c, *, forward=100.0, t=0.1, x_grid=np.arange(-14, 15) * 0.26, noise=0.0, seed=0):
    """Calls and puts at strikes x_grid ATM-sds from F (x = 0 included, so atm_iv = a exactly)."""
    k = x_grid * a * np.sqrt(t)
    iv = a + b * x_grid + c * x_grid**2 + np.random.default_rng(seed).normal(0.0, noise, x_grid.size)
    one_side = lambda kind: pd.DataFrame({
        "ticker": ticker, "expiration": EXPIRATION, "strike": forward * np.exp(k), "option_type": kind,
        "forward": forward, "t": t, "iv": iv, "iv_status": "ok"})
    return pd.concat([one_side("C"), one_side("P")], ignore_index=True)


def surface_of(*smiles):
    return pd.concat(smiles, ignore_index=True)


def polyfit_reference(surface, max_abs_x=3.0):
    """Per-group loop: OTM quotes, x = ln(K/F) / (atm sqrt t), vega weights phi(d1), np.polyfit."""
    rows = []
    for (ticker, expiration), g in surface[surface["iv_status"] == "ok"].groupby(["ticker", "expiration"]):
        k = np.log(g["strike"] / g["forward"]).to_numpy()
        otm = np.where(g["option_type"] == "P", k < 0, k >= 0)
        k, iv, t = k[otm], g["iv"].to_numpy()[otm], g["t"].to_numpy()[otm]
        below, above = np.argmax(np.where(k < 0, k, -np.inf)), np.argmin(np.where(k >= 0, k, np.inf))
        atm = iv[below] + (0 - k[below]) / (k[above] - k[below]) * (iv[above] - iv[below])
        x = k / (atm * np.sqrt(t))
        d1 = -k / (iv * np.sqrt(t)) + 0.5 * iv * np.sqrt(t)
        weight = np.exp(-0.5 * d1**2)
        use = np.abs(x) <= max_abs_x
        c, b, a = np.polyfit(x[use], iv[use], 2, w=np.sqrt(weight[use]))
        fitted = a + b * x[use] + c * x[use] ** 2
        w = weight[use]
        mean = np.sum(w * iv[use]) / np.sum(w)
        r2 = 1 - np.sum(w * (iv[use] - fitted) ** 2) / np.sum(w * (iv[use] - mean) ** 2)
        rows.append((ticker, expiration, a, b, c, r2, use.sum()))
    return pd.DataFrame(rows, columns=["ticker", "expiration", *FIT, "skew_r2", "skew_n"])


def test_recovers_a_known_quadratic_smile_exactly():
    params = {"AAA": (0.30, -0.04, 0.010), "BBB": (0.65, -0.02, -0.015), "CCC": (0.22, 0.01, 0.004)}
    surface = surface_of(*(smile(tk, *p, t=t) for (tk, p), t in zip(params.items(), (0.02, 0.1, 1.5))))
    result = fit_skew(surface).set_index("ticker")
    assert list(fit_skew(surface).columns) == SKEW_COLUMNS
    for ticker, (a, b, c) in params.items():
        np.testing.assert_allclose(result.loc[ticker, FIT].to_numpy(float), [a, b, c], rtol=1e-10, atol=1e-13)
    assert (result["skew_curvature"].loc["BBB"] < 0)             # concave smile keeps its sign
    np.testing.assert_allclose(result["skew_r2"], 1.0, atol=1e-10)
    assert (result["skew_n"] == 23).all()                         # the 23 of 29 strikes with |x| <= 3
    assert result["skew_reason"].isna().all()


def test_groups_without_enough_points_are_null_with_a_reason():
    few = smile("FEW", 0.3, -0.05, 0.01, x_grid=np.array([-1.0, -0.5, 0.0, 0.5]))
    one_sided = smile("PUTS", 0.3, -0.05, 0.01, x_grid=np.array([-2.0, -1.5, -1.0, -0.5, -0.25, -0.1]))
    two = smile("TWO", 0.3, -0.05, 0.01, x_grid=np.array([-0.5, 0.0]))
    good = smile("GOOD", 0.3, -0.05, 0.01)
    result = fit_skew(surface_of(few, one_sided, two, good), min_points=2).set_index("ticker")
    assert result.loc["TWO", "skew_reason"] == "singular_fit"     # two strikes cannot fix three numbers
    result = fit_skew(surface_of(few, one_sided, two, good)).set_index("ticker")
    assert result.loc["FEW", "skew_reason"] == "too_few_points" and result.loc["FEW", "skew_n"] == 4
    assert result.loc["PUTS", "skew_reason"] == "no_atm_iv"
    assert result.loc["TWO", "skew_reason"] == "too_few_points"
    failed = result.loc[["FEW", "PUTS", "TWO"]]
    assert failed[[*FIT, "rr25", "bf25", "skew_r2"]].isna().all().all()
    assert pd.isna(result.loc["GOOD", "skew_reason"])


def test_batched_solve_equals_a_weighted_polyfit_loop():
    rng = np.random.default_rng(3)
    smiles = [smile(f"T{i}", rng.uniform(0.15, 0.9), rng.uniform(-0.08, 0.02), rng.uniform(-0.02, 0.03),
                    forward=rng.uniform(5, 900), t=rng.uniform(2 / 365, 2.0),
                    x_grid=np.sort(np.r_[-0.3, 0.0, rng.uniform(-4, 4, rng.integers(5, 60))]), noise=0.004, seed=i)
              for i in range(40)]
    surface = surface_of(*smiles)
    result = fit_skew(surface).set_index(["ticker", "expiration"]).sort_index()
    reference = polyfit_reference(surface).set_index(["ticker", "expiration"]).sort_index()
    np.testing.assert_allclose(result[[*FIT, "skew_r2"]], reference[[*FIT, "skew_r2"]], rtol=1e-9, atol=1e-12)
    assert (result["skew_n"] == reference["skew_n"]).all()


def test_rr25_and_bf25_match_a_brute_force_delta_search():
    surface = surface_of(smile("AAA", 0.35, -0.06, 0.012, t=0.08), smile("BBB", 0.5, -0.01, -0.01, t=0.5))
    result = fit_skew(surface)
    for _, row in result.iterrows():
        a, b, c, t = row["skew_atm_iv"], row["skew_slope"], row["skew_curvature"], surface.loc[
            surface["ticker"] == row["ticker"], "t"].iloc[0]
        x = np.linspace(-3, 3, 600_001)
        sigma = a + b * x + c * x * x
        d1 = -x * a / sigma + 0.5 * sigma * np.sqrt(t)            # atm_iv = a in these smiles
        call_delta = ndtr(d1)                                     # decreasing in x
        iv_call = np.interp(0.25, call_delta[::-1], sigma[::-1])
        iv_put = np.interp(0.25, ndtr(-d1), sigma)
        assert row["rr25"] == pytest.approx(iv_call - iv_put, abs=1e-9)
        assert row["bf25"] == pytest.approx(0.5 * (iv_call + iv_put) - a, abs=1e-9)
    assert result.set_index("ticker").loc["AAA", "rr25"] < 0         # put skew: puts richer


def test_quotes_that_are_not_usable_or_in_the_money_are_ignored():
    clean = smile("AAA", 0.3, -0.05, 0.01)
    noisy = clean.copy()
    itm = np.where(noisy["option_type"] == "P", noisy["strike"] > 100.0, noisy["strike"] < 100.0)
    noisy.loc[itm, "iv"] = 5.0
    junk = clean.iloc[:3].assign(iv=9.0, iv_status="crossed")
    pd.testing.assert_frame_equal(fit_skew(surface_of(noisy, junk)), fit_skew(clean))


def test_duplicated_quotes_do_not_change_the_fit():
    surface = surface_of(smile("AAA", 0.3, -0.05, 0.01, noise=0.003), smile("BBB", 0.4, -0.02, 0.0, noise=0.003))
    doubled = pd.concat([surface, surface.iloc[::3]], ignore_index=True)
    pd.testing.assert_frame_equal(fit_skew(doubled), fit_skew(surface), rtol=1e-12)


def test_a_subset_of_tickers_gives_the_same_rows():
    surface = surface_of(*(smile(f"T{i}", 0.2 + 0.05 * i, -0.03, 0.01, noise=0.003, seed=i) for i in range(5)))
    whole = fit_skew(surface).set_index("ticker")
    part = fit_skew(surface[surface["ticker"].isin(["T1", "T3"])]).set_index("ticker")
    pd.testing.assert_frame_equal(part, whole.loc[["T1", "T3"]])


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(0.1, 1.0), st.floats(-0.1, 0.1), st.floats(-0.03, 0.03),
       st.floats(3 / 365, 2.0))
def test_fit_is_invariant_to_scaling_forward_and_strikes(factor, a, b, c, t):
    surface = smile("AAA", a, b, c, t=t, noise=0.002)
    scaled = surface.assign(forward=surface["forward"] * factor, strike=surface["strike"] * factor)
    base, moved = fit_skew(surface), fit_skew(scaled)
    assert (base["skew_reason"].isna() == moved["skew_reason"].isna()).all()
    columns = [*FIT, "rr25", "bf25", "skew_r2"]
    np.testing.assert_allclose(moved[columns], base[columns], rtol=1e-8, atol=1e-11)
    assert (moved["skew_n"] == base["skew_n"]).all()


def test_rows_in_any_order_give_the_same_fit():
    surface = surface_of(*(smile(f"T{i}", 0.2 + 0.05 * i, -0.03, 0.01, noise=0.003, seed=i) for i in range(4)))
    shuffled = surface.sample(frac=1.0, random_state=4)
    pd.testing.assert_frame_equal(fit_skew(shuffled), fit_skew(surface), rtol=1e-12)
