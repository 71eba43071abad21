"""History statistics, VRP tiers, liquidity tiers, score and ranking."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.contract.config import DEFAULT_LIQUIDITY
from pipeline.stages.consistency import history_stats
from pipeline.stages.liquidity import liquidity_tier
from pipeline.stages.rank import rank_events, vrp, vrp_tier

TIERS = {"EXCELLENT": 1.8, "GOOD": 1.4, "MARGINAL": 1.2}


def moves_for(values, ticker="T"):
    n = len(values)
    return pd.DataFrame({"ticker": ticker, "reaction_date": pd.date_range("2020-01-01", periods=n, freq="91D"),
                         "close_move": np.asarray(values, float)})


def test_statistics_match_their_formulas():
    values = [0.02, -0.05, 0.03, -0.01, 0.08, 0.04]
    got = history_stats(moves_for(values), ewm_halflife=2.0).iloc[0]
    a = np.abs(values)
    med = np.median(a)
    assert got["hist_mean_abs_move"] == pytest.approx(a.mean())
    assert got["hist_median_abs_move"] == pytest.approx(med)
    assert got["mad"] == pytest.approx(np.median(np.abs(a - med)))
    assert got["consistency"] == pytest.approx(1 - np.median(np.abs(a - med)) / med)
    assert got["tail_ratio"] == pytest.approx(a.max() / a.mean())
    w = 0.5 ** (np.arange(len(a))[::-1] / 2.0)             # the newest report has age 0
    mean_w = (w * a).sum() / w.sum()
    assert got["ewm_mean_abs_move"] == pytest.approx(mean_w)
    assert got["ewm_std_abs_move"] == pytest.approx(np.sqrt((w * (a - mean_w) ** 2).sum() / w.sum()))
    assert got["trend_slope"] == pytest.approx(np.polyfit(np.arange(len(a)), a, 1)[0])


def test_only_the_last_max_events_count():
    got = history_stats(moves_for([0.5] * 5 + [0.01] * 12), max_events=12).iloc[0]
    assert got["n_events"] == 12 and got["hist_mean_abs_move"] == pytest.approx(0.01)


def test_fewer_than_minimum_reports_give_nulls_and_a_reason():
    got = history_stats(moves_for([0.02, 0.03, 0.04]), min_events=4).iloc[0]
    assert got["n_events"] == 3
    assert pd.isna(got["hist_mean_abs_move"]) and pd.isna(got["consistency"])
    assert got["hist_reason"] == "fewer than 4 past reports"


def test_all_zero_moves_give_zero_level_and_no_ratio():
    got = history_stats(moves_for([0.0] * 6)).iloc[0]
    assert got["hist_mean_abs_move"] == 0.0
    assert pd.isna(got["consistency"]) and pd.isna(got["tail_ratio"])
    assert got["hist_reason"] == "all past moves are zero"
    assert pd.isna(vrp(pd.Series([0.05]), pd.Series([0.0])).iloc[0])


def test_a_partition_of_tickers_gives_the_same_rows():
    rng = np.random.default_rng(1)
    frames = [moves_for(rng.normal(0, 0.05, 10), f"T{i}") for i in range(6)]
    whole = history_stats(pd.concat(frames))
    part = history_stats(pd.concat(frames[2:4]))
    pd.testing.assert_frame_equal(whole[whole.ticker.isin(["T2", "T3"])].reset_index(drop=True), part)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=4, max_size=12))
def test_consistency_is_in_unit_interval(values):
    got = history_stats(moves_for(values)).iloc[0]
    c = got["consistency"]
    assert pd.isna(c) or 0.0 <= c <= 1.0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=1, max_size=30))
def test_vrp_tiers_are_monotone(values):
    order = {"SKIP": 0, "MARGINAL": 1, "GOOD": 2, "EXCELLENT": 3}
    series = pd.Series(sorted(values))
    ranks = vrp_tier(series, TIERS).map(order).to_numpy()
    assert (np.diff(ranks) >= 0).all()


def test_liquidity_tiers_and_oi_only_mode():
    spread = pd.Series([0.03, 0.08, 0.2, 0.5, 0.03])
    oi = pd.Series([5000.0, 500, 50, 5000, 5000])
    exp_volume = pd.Series([1e4, 1e4, 1e4, 1e4, 0.0])       # last: nothing traded yet
    tiers = liquidity_tier(spread, oi, exp_volume, DEFAULT_LIQUIDITY)["liquidity_tier"]
    assert tiers.tolist() == ["EXCELLENT", "GOOD", "WARNING", "REJECT", "EXCELLENT"]


def test_rank_puts_rejected_and_failed_events_last_and_breaks_ties_by_ticker():
    metrics = pd.DataFrame({
        "ticker": ["B", "A", "C", "D"], "report_date": pd.Timestamp("2026-11-24"),
        "score": [70.0, 70.0, 90.0, np.nan], "vrp": [1.5, 1.5, 2.0, np.nan],
        "liquidity_tier": ["GOOD", "GOOD", "REJECT", "GOOD"], "vrp_tier": ["GOOD", "GOOD", "EXCELLENT", None]})
    ranked = rank_events(metrics)
    assert ranked["ticker"].tolist() == ["A", "B", "C", "D"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4]
