"""ATM IV per expiration and the term-structure event move."""
import numpy as np
import pandas as pd
import pytest

from pipeline.contract.sessions import year_fraction
from pipeline.stages.term import TERM_COLUMNS, atm_iv_by_expiration, flag_disagreement, term_structure

QUOTE_TIME = pd.Timestamp("2026-11-20 15:30", tz="UTC")
EXPIRATIONS = pd.to_datetime(["2026-11-20", "2026-11-27", "2026-12-04", "2026-12-18", "2027-01-15"])


def times(expirations):
    return year_fraction(pd.Series([QUOTE_TIME] * len(expirations)), pd.Series(expirations))


def flat_smile(ticker, expiration, t, vol, forward=100.0, strikes=(90.0, 95.0, 100.0, 105.0, 110.0)):
    strikes = np.asarray(strikes)
    return pd.concat([pd.DataFrame({
        "ticker": ticker, "expiration": expiration, "strike": strikes, "option_type": kind, "forward": forward,
        "t": t, "iv": vol, "iv_status": "ok"}) for kind in "CP"], ignore_index=True)


def surface_with_atm_vols(ticker, vols, expirations=EXPIRATIONS[1:]):
    t = times(expirations)
    return pd.concat([flat_smile(ticker, e, tt, v) for e, tt, v in zip(expirations, t, vols)], ignore_index=True)


def events(*rows):
    return pd.DataFrame(rows, columns=["ticker", "report_date", "reaction_date"]).astype(
        {"report_date": "datetime64[ns]", "reaction_date": "datetime64[ns]"})


def test_recovers_a_known_event_variance_exactly():
    diffusive_vol, event_var = 0.28, 0.07**2
    t = times(EXPIRATIONS[1:])
    # Front expiration (Nov 27) is before the reaction session; the later ones contain the event.
    vols = np.sqrt(diffusive_vol**2 + event_var / t)
    vols[0] = 0.9
    surface = surface_with_atm_vols("AAA", vols)
    result = term_structure(atm_iv_by_expiration(surface), events(("AAA", "2026-11-30", "2026-12-01")))
    row = result.iloc[0]
    assert list(result.columns) == TERM_COLUMNS
    assert row["ts_event_std"] == pytest.approx(np.sqrt(event_var), rel=1e-12)
    assert row["ex_earnings_vol"] == pytest.approx(diffusive_vol, rel=1e-12)
    assert row["ts_implied_move"] == pytest.approx(np.sqrt(2 / np.pi) * np.sqrt(event_var), rel=1e-12)
    assert pd.isna(row["ts_flag"])


def test_an_expiration_on_the_reaction_date_contains_the_event():
    t = times(EXPIRATIONS[1:])
    vols = np.sqrt(0.3**2 + 0.05**2 / t)
    surface = surface_with_atm_vols("AAA", vols)
    result = term_structure(atm_iv_by_expiration(surface), events(("AAA", "2026-11-26", "2026-11-27")))
    assert result.iloc[0]["ts_event_std"] == pytest.approx(0.05, rel=1e-12)


def test_edge_cases_are_null_with_a_flag():
    t = times(EXPIRATIONS[1:])
    inverted = np.sqrt(0.3**2 + 0.05**2 / t)
    surfaces = pd.concat([
        surface_with_atm_vols("ONE", inverted[-1:], EXPIRATIONS[-1:]),
        surface_with_atm_vols("NONE", inverted[:1], EXPIRATIONS[1:2]),
        surface_with_atm_vols("FLAT", [0.3, 0.3, 0.3, 0.3]),
        surface_with_atm_vols("UPWARD", [0.3, 0.31, 0.32, 0.33]),
        # Front total variance above the back's: no non-negative diffusive variance fits both.
        surface_with_atm_vols("ARB", [0.3, 2.0, 0.3, 0.3]),
    ], ignore_index=True)
    evs = events(*[(tk, "2026-12-01", "2026-12-02") for tk in ("ONE", "NONE", "FLAT", "UPWARD", "ARB", "MISSING")],
                 ("FLAT", "2026-12-07", None))
    result = term_structure(atm_iv_by_expiration(surfaces), evs)
    assert list(result["ts_flag"]) == [
        "one_expiration", "no_expiration_after_event", "not_inverted", "not_inverted",
        "negative_diffusive_variance", "no_expiration_after_event", "no_reaction_date"]
    assert result[["ts_event_std", "ts_implied_move", "ex_earnings_vol"]].isna().all().all()


def test_atm_iv_interpolates_total_variance_linearly_in_log_moneyness_between_the_bracketing_quotes():
    t = times(EXPIRATIONS[2:3])[0]
    forward = 100.0
    put_k, call_k = np.log(98.0 / forward), np.log(103.0 / forward)
    surface = pd.DataFrame({
        "ticker": "AAA", "expiration": EXPIRATIONS[2], "strike": [95.0, 98.0, 98.0, 103.0, 103.0, 110.0],
        "option_type": ["P", "P", "C", "C", "P", "C"], "forward": forward, "t": t,
        # ITM quotes (98 C, 103 P) and far quotes carry IVs that must not matter.
        "iv": [0.5, 0.32, 0.9, 0.30, 0.9, 0.1], "iv_status": "ok"})
    atm = atm_iv_by_expiration(surface)
    expected = np.sqrt(0.32 ** 2 + (0 - put_k) / (call_k - put_k) * (0.30 ** 2 - 0.32 ** 2))
    assert atm["atm_iv"].iloc[0] == pytest.approx(expected, rel=1e-14)
    assert atm["t"].iloc[0] == t

    calls_only = surface[surface["option_type"] == "C"]
    assert np.isnan(atm_iv_by_expiration(calls_only)["atm_iv"].iloc[0])      # one side: no ATM


def test_duplicated_quotes_are_averaged_once():
    t = times(EXPIRATIONS[2:3])[0]
    surface = flat_smile("AAA", EXPIRATIONS[2], t, 0.3, strikes=(95.0, 100.0, 105.0))
    exact_copies = pd.concat([surface, surface], ignore_index=True)
    pd.testing.assert_frame_equal(atm_iv_by_expiration(exact_copies), atm_iv_by_expiration(surface))
    # Two conflicting quotes of the ATM call count as their mean.
    conflicting = pd.concat([surface, surface[(surface["strike"] == 100.0) & (surface["option_type"] == "C")]
                             .assign(iv=0.4)], ignore_index=True)
    assert atm_iv_by_expiration(conflicting)["atm_iv"].iloc[0] == pytest.approx(0.35, rel=1e-14)


def test_unusable_quotes_are_ignored():
    t = times(EXPIRATIONS[2:3])[0]
    surface = flat_smile("AAA", EXPIRATIONS[2], t, 0.3)
    bad = surface.iloc[:4].assign(iv=np.nan, iv_status="no_quote")
    pd.testing.assert_frame_equal(atm_iv_by_expiration(pd.concat([surface, bad], ignore_index=True)),
                                  atm_iv_by_expiration(surface))


def test_a_subset_of_tickers_gives_the_same_rows():
    t = times(EXPIRATIONS[1:])
    surface = pd.concat([surface_with_atm_vols(f"T{i}", np.sqrt(0.25**2 + (0.02 * (i + 1))**2 / t))
                         for i in range(4)], ignore_index=True)
    evs = events(*[(f"T{i}", "2026-11-30", "2026-12-01") for i in range(4)])
    whole = term_structure(atm_iv_by_expiration(surface), evs)
    subset = surface["ticker"].isin(["T1", "T2"])
    part = term_structure(atm_iv_by_expiration(surface[subset]), evs.iloc[1:3])
    pd.testing.assert_frame_equal(part, whole.iloc[1:3])


def test_flag_disagreement():
    straddle = np.array([0.05, 0.05, 0.05, 0.05, np.nan, 0.0, 0.05])
    term = np.array([0.05, 0.074, 0.076, 0.03, 0.05, 0.05, np.nan])
    assert list(flag_disagreement(straddle, term, 1.5)) == [False, False, True, True, False, False, False]


def test_expiration_time_is_the_median_of_the_group_rows():
    t = times(EXPIRATIONS[2:3])[0]
    surface = flat_smile("AAA", EXPIRATIONS[2], t, 0.3)
    # Quotes taken at different times: an even count of rows takes the mean of the middle two.
    shifted = surface.assign(t=t + np.array([0.0, 0.0, 3e-4, 1e-4, 0.0, 2e-4, 0.0, 0.0, 1e-4, 5e-4]))
    atm = atm_iv_by_expiration(shifted)
    assert atm["t"].iloc[0] == shifted["t"].median()


def test_rows_in_any_order_give_the_same_atm_ivs():
    t = times(EXPIRATIONS[1:])
    surface = pd.concat([surface_with_atm_vols(f"T{i}", np.sqrt(0.25**2 + (0.02 * (i + 1))**2 / t))
                         for i in range(3)], ignore_index=True)
    surface = surface.assign(iv=surface["iv"] * (1 + 0.01 * np.sin(surface["strike"])))
    pd.testing.assert_frame_equal(atm_iv_by_expiration(surface.sample(frac=1.0, random_state=2)),
                                  atm_iv_by_expiration(surface))
