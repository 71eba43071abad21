"""Upcoming-event rule, expiration choice, tier boundaries, score and status."""
import numpy as np
import pandas as pd
import pytest

from pipeline.contract import sessions
from pipeline.contract.config import Config
from pipeline.stages.events import event_expirations, upcoming_events
from pipeline.stages.panel import dated
from pipeline.stages.metrics import _status
from pipeline.stages.rank import score_components, vrp_tier

AS_OF = pd.Timestamp("2026-11-20")      # a Friday


def calendar(rows):
    return pd.DataFrame(rows, columns=["ticker", "report_date", "timing"]).assign(
        report_date=lambda f: pd.to_datetime(f["report_date"]))


def test_upcoming_rule_on_the_as_of_date_and_at_the_window_edge():
    cal = calendar([
        ("BMOT", "2026-11-20", "BMO"),      # reacted today: history
        ("AMCT", "2026-11-20", "AMC"),      # reacts Monday: upcoming
        ("UNKT", "2026-11-20", "UNKNOWN"),  # may react Monday: upcoming, conservatively
        ("DMHT", "2026-11-20", "DMH"),      # reacted today
        ("EDGE", "2026-11-27", "BMO"),      # exactly 7 calendar days ahead: in
        ("OUT", "2026-11-30", "BMO"),       # 10 days: out
        ("PAST", "2026-11-19", "AMC"),      # reacted today
    ])
    got = upcoming_events(dated(cal, AS_OF), 7).set_index("ticker")
    assert sorted(got.index) == ["AMCT", "EDGE", "UNKT"]
    assert got.loc["AMCT", "reaction_date"] == pd.Timestamp("2026-11-23")
    assert got.loc["EDGE", "reaction_date"] == pd.Timestamp("2026-11-27")   # early-close Friday


def test_only_the_earliest_upcoming_report_of_a_ticker_counts():
    cal = calendar([("T", "2026-11-24", "BMO"), ("T", "2026-11-26", "BMO")])
    assert upcoming_events(dated(cal, AS_OF), 7)["report_date"].tolist() == [pd.Timestamp("2026-11-24")]


def test_event_expirations_are_the_first_two_on_or_after_the_reaction():
    listed = pd.DataFrame({"ticker": "T", "expiration": pd.to_datetime(
        ["2026-11-20", "2026-11-24", "2026-11-27", "2026-12-04", "2026-12-18"])})
    events = pd.DataFrame({"ticker": ["T"], "reaction_date": [pd.Timestamp("2026-11-24")]})
    got = event_expirations(listed, events)["expiration"].dt.strftime("%Y-%m-%d").tolist()
    assert got == ["2026-11-24", "2026-11-27"]    # an expiration on the reaction session holds the event


def test_the_pull_adds_one_expiration_at_least_35_days_out_when_the_first_ones_end_sooner():
    listed = pd.DataFrame({"ticker": "T", "expiration": pd.to_datetime(
        ["2026-11-20", "2026-11-24", "2026-11-27", "2026-12-04", "2026-12-11", "2026-12-18", "2027-01-15",
         "2027-02-19"])})
    events = pd.DataFrame({"ticker": ["T"], "reaction_date": [pd.Timestamp("2026-11-24")]})
    got = event_expirations(listed, events, 4, AS_OF, 35)["expiration"].dt.strftime("%Y-%m-%d").tolist()
    assert got == ["2026-11-24", "2026-11-27", "2026-12-04", "2026-12-11", "2027-01-15"]
    got = event_expirations(listed, events, 6, AS_OF, 35)["expiration"].dt.strftime("%Y-%m-%d").tolist()
    assert got[-1] == "2027-01-15" and len(got) == 6     # already far enough: nothing added


@pytest.mark.parametrize("value,tier", [(1.8, "EXCELLENT"), (1.7999, "GOOD"), (1.4, "GOOD"), (1.2, "MARGINAL"),
                                        (1.1999, "SKIP"), (0.3, "SKIP")])
def test_vrp_tier_boundaries_are_inclusive(value, tier):
    assert vrp_tier(pd.Series([value]), Config().vrp_tiers).iloc[0] == tier


def test_vrp_tier_of_a_missing_vrp_is_missing():
    assert pd.isna(vrp_tier(pd.Series([np.nan]), Config().vrp_tiers).iloc[0])


def frame(**columns):
    base = {"vrp": [1.9], "consistency": [0.5], "rr25": [-0.02], "liquidity_tier": ["GOOD"]}
    base.update({k: [v] for k, v in columns.items()})
    return pd.DataFrame(base)


def test_composite_score_follows_its_formula():
    weights = Config().score_weights       # vrp .5, consistency .2, skew .1, liquidity .2
    got = score_components(frame(), weights, Config().vrp_tiers)["score"].iloc[0]
    vrp_part = (1.9 - 1) / (2 * (1.8 - 1))
    expected = 100 * (0.5 * vrp_part + 0.2 * 0.5 + 0.1 * (1 - 0.02 / 0.10) + 0.2 * 0.75)
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("change,direction", [
    ({"vrp": 2.2}, +1), ({"consistency": 0.9}, +1), ({"rr25": -0.08}, -1), ({"liquidity_tier": "EXCELLENT"}, +1),
    ({"liquidity_tier": "REJECT"}, -1), ({"vrp": 0.9}, -1)])
def test_score_moves_the_right_way(change, direction):
    config = Config()
    base = score_components(frame(), config.score_weights, config.vrp_tiers)["score"].iloc[0]
    moved = score_components(frame(**change), config.score_weights, config.vrp_tiers)["score"].iloc[0]
    assert np.sign(moved - base) == direction


def test_score_stays_in_0_100_and_is_null_without_vrp():
    config = Config()
    extreme = pd.DataFrame({"vrp": [50.0, 0.0, np.nan], "consistency": [1.0, 0.0, 1.0], "rr25": [0.0, 1.0, 0.0],
                            "liquidity_tier": ["EXCELLENT", "REJECT", "EXCELLENT"]})
    score = score_components(extreme, config.score_weights, config.vrp_tiers)["score"]
    assert score.iloc[0] == pytest.approx(100.0) and score.iloc[1] == pytest.approx(0.0) and pd.isna(score.iloc[2])


def test_status_and_reason():
    m = pd.DataFrame({
        "implied_move": [0.05, 0.05, np.nan, 0.05], "hist_mean_abs_move": [0.03, 0.03, 0.03, 0.03],
        "ts_implied_move": [0.04, np.nan, 0.04, 0.04], "skew_slope": [-0.1, -0.1, -0.1, -0.1],
        "vrp": [1.6, 1.6, np.nan, 1.6], "liquidity_tier": ["GOOD", "GOOD", "GOOD", "REJECT"],
        "implied_reason": [None, None, "no option chain", None], "hist_reason": [None] * 4,
        "ts_flag": ["disagrees_with_straddle", "one_expiration", None, None], "skew_reason": [None] * 4,
        "implied_method": ["smile", "interpolated", None, "smile"], "vrp_reason": [None] * 4,
        "liquidity_reason": [None, None, None, "liquidity: straddle spread 0.3 > 0.25"],
    })
    status, reason = _status(m)
    assert list(status) == ["ok", "degraded", "failed", "degraded"]
    assert reason.iloc[0] == "term: disagrees_with_straddle"      # a flag, not a missing number
    assert reason.iloc[1] == "term: one_expiration"
    assert reason.iloc[2] == "implied: no option chain"
    assert reason.iloc[3] == "liquidity: straddle spread 0.3 > 0.25"      # every REJECT says why


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_the_session_table_cache_is_rebuilt_when_absent_or_damaged(tmp_path, monkeypatch, damage):
    # The cache only saves start-up time: whatever state it is in, the sessions are XNYS's.
    import exchange_calendars as xcals

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sessions.table.cache_clear()
    try:
        sessions.table()                                   # writes the cache
        (cached,) = (tmp_path / "ivcrush").glob("xnys-*.npz")
        if damage == "missing":
            cached.unlink()
        elif damage == "truncated":
            cached.write_bytes(cached.read_bytes()[:200])
        else:
            cached.write_bytes(b"not a numpy archive")
        sessions.table.cache_clear()
        table = sessions.table()
        cal = xcals.get_calendar("XNYS", start=sessions.FIRST_DATE, end=sessions.LAST_DATE)
        assert table.index.equals(cal.sessions)
        assert (table["close"].to_numpy() == cal.closes.to_numpy()).all()
        assert (table["open"].to_numpy() == cal.opens.to_numpy()).all()
        assert len(list((tmp_path / "ivcrush").glob("xnys-*.npz"))) == 1
    finally:
        sessions.table.cache_clear()
