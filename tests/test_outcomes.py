"""Outcomes: what each reacted event did, from stored snapshots only, whatever the run order."""
import numpy as np
import pandas as pd
import pytest

from pipeline.contract.store import Store
from conftest import daily_run

DATES = ["2026-11-19", "2026-11-20", "2026-11-23"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory, small_config):
    forward, backward = tmp_path_factory.mktemp("in-order"), tmp_path_factory.mktemp("reversed")
    for date in DATES:
        daily_run(forward, small_config, date)
    for date in reversed(DATES):
        daily_run(backward, small_config, date)
    return forward, backward


def _outcomes(root):
    frame = Store(root).scan("outcomes")
    return frame.sort_values(["ticker", "report_date"]).reset_index(drop=True)


@pytest.mark.slow
def test_outcomes_do_not_depend_on_the_run_order(roots):
    forward, backward = (_outcomes(r) for r in roots)
    assert len(forward) >= 3
    pd.testing.assert_frame_equal(forward, backward)


@pytest.mark.slow
def test_every_outcome_is_recomputed_from_stored_prices_and_chains(roots):
    root = roots[0]
    store = Store(root)
    outcomes = _outcomes(root)
    for row in outcomes.itertuples():
        entry = store.read("metrics", row.entry_date).set_index(["ticker", "report_date"]).loc[(row.ticker, row.report_date)]
        assert entry["reaction_date"] == row.exit_date
        chain = store.read("chains", row.exit_date)
        exit_close = chain.loc[chain["ticker"] == row.ticker, "underlying_price"].iloc[0]
        move = exit_close / entry["spot"] - 1
        assert row.realized_close_move == pytest.approx(move, rel=1e-12)
        assert row.realized_over_implied == pytest.approx(abs(move) / entry["implied_event_move"], rel=1e-12)
        assert row.straddle_entry_mid == pytest.approx(entry["straddle_mid"])
        legs = chain[(chain["ticker"] == row.ticker) & (chain["expiration"] == row.expiration)
                     & (chain["strike"] == row.straddle_strike)]
        if row.expiration <= row.exit_date:
            exit_value = abs(exit_close - row.straddle_strike)
        else:
            # Offered legs are marked at their mid, a zero bid included (the backtest's exit rule).
            offered = len(legs) == 2 and ((legs["ask"] > 0) & (legs["ask"] >= legs["bid"])).all()
            exit_value = ((legs["bid"] + legs["ask"]) / 2).sum() if offered else np.nan
        if np.isnan(exit_value):
            assert np.isnan(row.straddle_exit_value)
            continue
        assert row.straddle_exit_value == pytest.approx(exit_value)
        assert bool(row.short_straddle_lost) == (exit_value > row.straddle_entry_mid)
        assert row.straddle_return_mid == pytest.approx((row.straddle_entry_mid - exit_value) / row.straddle_entry_mid)


@pytest.mark.slow
def test_the_report_carries_the_past_outcomes(roots):
    root = roots[0]
    outcomes = _outcomes(root)
    report = pd.read_csv(root / "reports" / "rank_2026-11-23.csv")
    assert {"past_realized_over_implied", "past_beat_straddle"} <= set(report.columns)
    known = report.dropna(subset=["past_beat_straddle"])
    assert set(known["ticker"]) <= set(outcomes["ticker"])
    for row in known.itertuples():
        mine = outcomes[outcomes["ticker"] == row.ticker].dropna(subset=["short_straddle_lost"])
        assert row.past_beat_straddle == f"{int(mine['short_straddle_lost'].sum())}/{len(mine)}"


@pytest.mark.slow
def test_explain_lists_a_names_outcomes(roots):
    from pipeline.views.explain import name_outcomes

    root = roots[0]
    outcomes = _outcomes(root)
    ticker = outcomes["ticker"].iloc[0]
    shown = name_outcomes(Store(root), ticker, pd.Timestamp(DATES[-1]))
    assert len(shown) == (outcomes["ticker"] == ticker).sum()
    assert shown["realized_over_implied"].tolist() == outcomes.loc[outcomes["ticker"] == ticker, "realized_over_implied"].tolist()
