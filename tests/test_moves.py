"""Historical moves against the synthetic market's realized reactions."""
import numpy as np
import pandas as pd
import pytest

from pipeline.contract import sessions
from pipeline.stages.moves import historical_moves
from pipeline.stages.panel import dated

END = pd.Timestamp("2026-11-20")


@pytest.fixture(scope="module")
def recovered(market, truth):
    tickers = market.universe["ticker"].tolist()[:250]
    history = market.earnings_history(tickers, END)
    prices = market.prices(tickers, "2018-01-02", END)
    truth = truth(0)
    moves = historical_moves(dated(history, END), prices)
    return moves.merge(truth, on=["ticker", "report_date"], suffixes=("", "_true")), truth[truth.ticker.isin(tickers)]


def test_reaction_sessions_follow_timing_and_holidays():
    report = pd.to_datetime(["2026-11-25", "2026-11-25", "2026-11-27", "2026-07-02", "2026-11-21"])
    timing = ["AMC", "BMO", "AMC", "AMC", "BMO"]
    got = pd.DatetimeIndex(sessions.reaction_sessions(report.values, timing))
    # AMC before Thanksgiving reacts on the early-close Friday; AMC before July 3 (observed
    # holiday in 2026) reacts on July 6; a BMO "report" on a Saturday reacts on Monday.
    assert list(got.strftime("%Y-%m-%d")) == ["2026-11-27", "2026-11-25", "2026-11-30", "2026-07-06", "2026-11-23"]


@pytest.mark.parametrize("timing", ["BMO", "AMC", "DMH"])
def test_close_moves_equal_truth_exactly(recovered, timing):
    joined, _ = recovered
    vendor = joined[(joined["timing_source"] == "vendor") & (joined["timing_true"] == timing)]
    assert len(vendor) > (20 if timing == "DMH" else 500)
    assert (vendor["reaction_date"] == vendor["reaction_date_true"]).all()
    np.testing.assert_array_equal(vendor["close_move"].to_numpy(), vendor["realized_move"].to_numpy())


def test_holiday_and_early_close_neighbours_are_exact(recovered):
    joined, _ = recovered
    vendor = joined[joined["timing_source"] == "vendor"]
    closes = sessions.session_closes_utc(vendor["reaction_date"]).tz_convert(sessions.NEW_YORK)
    early = vendor[closes.hour < 16]
    gap_days = (vendor["reaction_date"] - vendor["ref_date"]).dt.days
    after_holiday = vendor[(gap_days > 1) & (vendor["reaction_date"].dt.dayofweek != 0)]
    assert len(early) >= 3 and len(after_holiday) >= 10
    for subset in (early, after_holiday):
        np.testing.assert_array_equal(subset["close_move"].to_numpy(), subset["realized_move"].to_numpy())


def test_every_reacted_report_is_measured(recovered):
    joined, truth = recovered
    ref = sessions.previous_sessions(truth["reaction_date"].values)
    reacted = truth[(truth["reaction_date"] <= END) & (ref >= np.datetime64("2018-01-02"))]
    vendor_timed = reacted[reacted["vendor_timing"] != "UNKNOWN"]
    assert (joined["timing_source"] == "vendor").sum() == len(vendor_timed)
    # UNKNOWN timing needs the bars of both candidate sessions; only the first report can lack them.
    unknown = reacted[reacted["vendor_timing"] == "UNKNOWN"]
    assert len(unknown) - 1 <= (joined["timing_source"] == "inferred").sum() <= len(unknown)


def test_unknown_report_on_the_as_of_date_is_not_history_yet(market):
    ticker = market.universe["ticker"].iloc[0]
    prices = market.prices([ticker], "2026-10-01", END)
    history = pd.DataFrame({"ticker": [ticker], "report_date": [END], "timing": ["UNKNOWN"]})
    # BMO would have reacted today, AMC tomorrow: undecidable today, so not a past move.
    assert historical_moves(dated(history, END), prices).empty
    assert len(historical_moves(dated(history, "2026-11-23"), market.prices([ticker], "2026-10-01", "2026-11-23"))) == 1


def test_two_reports_for_one_reaction_count_once(market):
    ticker = market.universe["ticker"].iloc[0]
    prices = market.prices([ticker], "2026-10-01", END)
    history = pd.DataFrame({"ticker": [ticker, ticker], "report_date": pd.to_datetime(["2026-11-10", "2026-11-11"]),
                            "timing": ["AMC", "BMO"]})
    moves = historical_moves(dated(history, END), prices)
    assert len(moves) == 1 and moves["report_date"].iloc[0] == pd.Timestamp("2026-11-11")


def test_reports_outside_the_calendar_range_are_ignored_not_fatal(market):
    ticker = market.universe["ticker"].iloc[0]
    prices = market.prices([ticker], "2026-10-01", END)
    history = pd.DataFrame({"ticker": [ticker, ticker], "report_date": pd.to_datetime(["1999-02-01", "2026-11-10"]),
                            "timing": ["BMO", "AMC"]})
    assert historical_moves(dated(history, END), prices)["report_date"].tolist() == [pd.Timestamp("2026-11-10")]


def test_unknown_timing_is_inferred_when_the_jump_is_visible(recovered):
    joined, _ = recovered
    inferred = joined[joined["timing_source"] == "inferred"]
    # An overnight jump well above the ordinary overnight noise identifies the reaction session.
    daily_overnight = 0.6 * np.sqrt(0.3 / 252)      # upper end of diffusive vol, overnight share
    visible = inferred[inferred["realized_jump"].abs() > 4 * daily_overnight]
    assert len(visible) >= 20
    assert (visible["timing"] == visible["timing_true"]).mean() >= 0.97


def test_gap_and_max_moves_are_consistent(recovered):
    joined, _ = recovered
    assert (joined["max_move"].abs() >= joined["close_move"].abs() - 1e-12).all()
    assert (joined["max_move"].abs() >= joined["gap_move"].abs() - 1e-12).all()


def test_missing_bars_leave_the_report_out_rather_than_guess(market):
    tickers = market.universe["ticker"].tolist()[:5]
    history = market.earnings_history(tickers, END)
    prices = market.prices(tickers, "2022-01-03", END)
    moves = historical_moves(dated(history, END), prices)
    victim = moves.iloc[-1]
    holed = prices[~((prices["ticker"] == victim["ticker"]) & (prices["date"] == victim["reaction_date"]))]
    again = historical_moves(dated(history, END), holed)
    assert len(again) == len(moves) - 1
    assert not ((again["ticker"] == victim["ticker"]) & (again["report_date"] == victim["report_date"])).any()


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.01, 1000.0))
def test_moves_are_unchanged_when_all_prices_scale(market, scale):
    tickers = market.universe["ticker"].tolist()[:3]
    history = market.earnings_history(tickers, END)
    prices = market.prices(tickers, "2025-01-02", END)
    scaled = prices.assign(**{c: prices[c] * scale for c in ("open", "high", "low", "close")})
    a, b = historical_moves(dated(history, END), prices), historical_moves(dated(history, END), scaled)
    for column in ("close_move", "gap_move", "max_move"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-9, atol=1e-12)
