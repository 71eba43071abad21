"""30-day constant-maturity ATM IV (total variance interpolation) and the vol percentiles."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.stages.term import IV30_YEARS, iv30, vol_percentiles


def _atm(ticker, days, ivs):
    return pd.DataFrame({"ticker": ticker, "expiration": pd.Timestamp("2026-12-01"),
                         "t": np.asarray(days, float) / 365, "atm_iv": ivs})


@given(a=st.floats(0.0, 0.02), b=st.floats(0.01, 1.0), d1=st.integers(1, 29), d2=st.integers(31, 120))
@settings(max_examples=100, deadline=None)
def test_total_variance_linear_in_t_is_recovered_exactly(a, b, d1, d2):
    """w(t) = a + b t (an event variance a plus a diffusive rate b): iv30 = sqrt(w(T) / T) exactly."""
    t = np.array([d1, d2, 150]) / 365
    frame = _atm("T", t * 365, np.sqrt((a + b * t) / t))
    got = iv30(frame).set_index("ticker")["iv30"]["T"]
    assert got == pytest.approx(np.sqrt((a + b * IV30_YEARS) / IV30_YEARS), rel=1e-12)


def test_a_node_at_30_days_is_taken_and_nothing_is_extrapolated():
    frame = pd.concat([_atm("A", [10, 30, 60], [0.5, 0.4, 0.3]), _atm("B", [5, 12], [0.5, 0.4]),
                       _atm("C", [40, 70], [0.3, 0.3])])
    got = iv30(frame).set_index("ticker")["iv30"]
    assert got["A"] == pytest.approx(0.4, rel=1e-12)
    assert np.isnan(got["B"]) and np.isnan(got["C"])


def test_percentiles_need_60_sessions_and_rank_today_among_them():
    history = pd.DataFrame({"ticker": "T", "date": pd.bdate_range("2026-01-01", periods=99),
                            "iv30": np.arange(1, 100) / 100, "ex_earnings_vol": np.arange(1, 100) / 200})
    today = pd.DataFrame({"ticker": ["T", "U"], "iv30": [0.50, 0.3], "ex_earnings_vol": [0.9, 0.2]})
    short = pd.DataFrame({"ticker": "U", "date": pd.bdate_range("2026-01-01", periods=58),
                          "iv30": 0.2, "ex_earnings_vol": 0.1})
    got = vol_percentiles(today, pd.concat([history, short], ignore_index=True))
    # T: 49 past values below 0.50, one equal (0.50), today's equal: (49 + 0.5 * 2) / 100.
    assert got.loc[0, "iv30_percentile"] == pytest.approx(50.0)
    assert got.loc[0, "ex_earnings_vol_percentile"] == pytest.approx(100 * 99.5 / 100)
    assert pd.isna(got.loc[0, "vol_percentile_reason"])
    # U: 58 + today = 59 sessions < 60: null, and the reason counts them.
    assert pd.isna(got.loc[1, "iv30_percentile"]) and pd.isna(got.loc[1, "ex_earnings_vol_percentile"])
    assert got.loc[1, "vol_percentile_reason"] == "vol percentiles: fewer than 60 stored sessions with a 30-day IV"


def test_the_daily_reads_earlier_sessions_from_the_store(tmp_path):
    """jobs.vol_history: the earlier metrics partitions of the window, a partition without iv30
    (an earlier version) gives its ex_earnings_vol."""
    from pipeline.driver.jobs import vol_history
    from pipeline.contract.schemas import empty
    from pipeline.contract.store import Store

    store = Store(tmp_path)
    row = empty("metrics").reindex(range(1))
    for day, value in (("2026-11-02", 0.31), ("2026-11-03", 0.32), ("2026-11-20", 0.5)):
        frame = row.assign(ticker="T", report_date=pd.Timestamp("2026-11-24"), timing="AMC", n_events=0,
                           skew_n=0, iv30=value, ex_earnings_vol=value / 2, status="failed")
        store.write("metrics", frame.astype(empty("metrics").dtypes.to_dict()), pd.Timestamp(day), validated=True)
    import pyarrow.parquet as pq

    older = store.partition_path("metrics", pd.Timestamp("2026-11-02"))
    table = pq.read_table(older)
    pq.write_table(table.drop_columns(["iv30", "iv30_percentile", "ex_earnings_vol_percentile",
                                       "vol_percentile_reason"]), older)
    got = vol_history(store, ["T"], [pd.Timestamp("2026-11-20")])
    assert got["date"].dt.day.tolist() == [2, 3] and got["ex_earnings_vol"].tolist() == [0.155, 0.16]
    assert np.isnan(got["iv30"].iloc[0]) and got["iv30"].iloc[1] == 0.32
