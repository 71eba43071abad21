"""Time to expiry from the chain's snapshot; quotes stamped before the snapshot's session are stale."""
import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st
from test_ivol import QUOTE_TIME, RATE, sample_chains

from pipeline.contract.schemas import validate
from pipeline.contract.sessions import year_fraction
from pipeline.stages.surface import build_surface, stale_quotes

EARLIER = pd.Timestamp("2026-11-17 19:00", tz="UTC")       # three sessions before the snapshot


def test_stale_stamps_change_no_t_and_no_fresh_iv_and_are_excluded():
    chains = sample_chains()
    stale_rows = chains.index[::7]
    stamped = chains.copy()
    stamped.loc[stale_rows, "quote_time"] = EARLIER
    surface = build_surface(stamped, RATE)
    # t is one number per expiration: the snapshot's, whatever each quote's own stamp.
    expected_t = year_fraction(stamped["snapshot_time"], stamped["expiration"])
    np.testing.assert_array_equal(surface["t"].to_numpy(), expected_t)
    assert surface.groupby("expiration")["t"].nunique().eq(1).all()
    assert (surface.loc[stale_rows, "iv_status"] == "stale").all()
    assert surface.loc[stale_rows, ["iv", "delta"]].isna().all().all()
    # The fresh quotes' IVs are those of the chain without the stale quotes.
    fresh = build_surface(chains.drop(stale_rows), RATE)
    pd.testing.assert_series_equal(surface.drop(stale_rows)["iv"], fresh["iv"], rtol=0, atol=0)
    validate("surface", surface)


def test_quotes_of_the_snapshot_session_are_fresh_and_earlier_ones_stale():
    snapshot = pd.Series([QUOTE_TIME] * 4)
    stamps = pd.Series([QUOTE_TIME, pd.Timestamp("2026-11-20 14:31", tz="UTC"),   # today's session
                        pd.Timestamp("2026-11-19 21:00", tz="UTC"), EARLIER])      # earlier sessions
    assert stale_quotes(stamps, snapshot).tolist() == [False, False, True, True]


@settings(max_examples=25, deadline=None)
@given(days_back=st.integers(0, 10), hour=st.integers(0, 23))
def test_a_quote_is_stale_exactly_when_its_new_york_date_precedes_the_snapshot_session(days_back, hour):
    snapshot = pd.Timestamp("2026-11-23 22:00", tz="UTC")      # Monday evening: session 2026-11-23
    stamp = (pd.Timestamp("2026-11-23", tz="America/New_York") - pd.Timedelta(days=days_back)
             + pd.Timedelta(hours=hour)).tz_convert("UTC")
    stale = stale_quotes(pd.Series([stamp]), pd.Series([snapshot]))[0]
    assert stale == (days_back > 0)
