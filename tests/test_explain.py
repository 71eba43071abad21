"""`pipeline explain`: one event from the stored snapshots; its numbers are the metrics row's."""
import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from report_support import AS_OF, report_root

from pipeline.driver.cli import main
from pipeline.contract.config import Config
from pipeline.views.explain import explain
from pipeline.contract.store import Store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return report_root(tmp_path_factory)


@pytest.fixture(scope="module")
def metrics(built):
    return Store(built[0]).read("metrics", AS_OF)


def _cli(root, *args):
    return CliRunner().invoke(main, ["--data-dir", str(root), "explain", *args, "--date", str(AS_OF.date())])


def _same(a, b):
    if b is None or b is pd.NA or b is pd.NaT or (isinstance(b, float) and math.isnan(b)):
        return a is None
    if isinstance(b, pd.Timestamp):
        return a == b.date().isoformat()
    if isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=0)
    return a == b


@pytest.mark.parametrize("status", ["ok", "degraded", "failed"])
def test_numbers_equal_the_metrics_row(built, metrics, status):
    root, failed = built
    rows = metrics[metrics["status"] == status]
    assert len(rows), f"the test run has no {status} event"
    row = rows.iloc[0] if status != "failed" else metrics[metrics["ticker"] == failed].iloc[0]
    result = _cli(root, row["ticker"], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["status"] == status and _same(doc["reason"], row["reason"])
    sections = {"event": ["report_date", "timing", "reaction_date", "spot", "expiration"],
                "straddle": ["implied_move", "straddle_spread", "min_leg_open_interest", "liquidity_tier"],
                "term_structure": ["ts_implied_move", "ex_earnings_vol", "ts_flag"],
                "smile": ["skew_slope", "skew_curvature", "rr25", "bf25", "skew_n"],
                "vrp": ["vrp", "vrp_median", "vrp_event", "implied_event_move", "vrp_tier"],
                "history": ["n_events", "hist_mean_abs_move", "consistency", "tail_ratio"]}
    for section, fields in sections.items():
        for field in fields:
            assert _same(doc[section][field], row[field]), (section, field, doc[section][field], row[field])
    for column in [c for c in row.index if c.startswith("score_") or c.startswith("hist_exceed")]:
        where = doc["score"]["components"] if column.startswith("score_") else doc["history"]
        key = column.removeprefix("score_") if column.startswith("score_") else column
        assert _same(where[key], row[column]), column
    parts = doc["score"]["components"]
    if row["score"] is not None and pd.notna(row["score"]):
        assert sum(parts.values()) == pytest.approx(row["score"], abs=1e-5)
    else:
        assert all(v is None for v in parts.values())
    text = _cli(root, row["ticker"])
    assert text.exit_code == 0 and f"status {status}" in text.output and "Past reports" in text.output


def test_past_reports_are_the_window_of_the_stored_moves(built, metrics):
    root, _ = built
    row = metrics[metrics["status"] == "ok"].iloc[0]
    doc = explain(Store(root), row["ticker"], AS_OF, Config())
    moves = Store(root).read("moves")
    mine = moves[(moves["ticker"] == row["ticker"]) & (moves["reaction_date"] <= AS_OF)]
    mine = mine.sort_values("reaction_date").tail(12)
    assert [r["report_date"] for r in doc["history"]["reports"]] == [d.date().isoformat() for d in mine["report_date"]]
    assert len(mine) == row["n_events"]
    expected = int((mine["close_move"].abs() > row["implied_move"]).sum())
    assert doc["history"]["hist_exceed_count"] == expected
    assert doc["history"]["hist_exceed_share"] == pytest.approx(expected / len(mine))
    assert len(doc["straddle"]["legs"]) >= 2 and {l["option_type"] for l in doc["straddle"]["legs"]} == {"C", "P"}
    assert len(doc["term_structure"]["expirations"]) >= 1


def test_unknown_ticker_outside_window_and_never_run(built):
    root, _ = built
    unknown = _cli(root, "NOSUCH")
    assert unknown.exit_code == 2 and "unknown ticker NOSUCH" in unknown.output
    calendar = Store(root).read("calendar", AS_OF)
    later = calendar[calendar["report_date"] > AS_OF + pd.Timedelta(days=20)]["ticker"]
    outside = _cli(root, later.iloc[0])
    assert outside.exit_code == 2 and "no event in the window" in outside.output
    never = CliRunner().invoke(main, ["--data-dir", str(root), "explain", "AAPL", "--date", "2026-11-13"])
    assert never.exit_code == 2 and "was never run" in never.output and "pipeline daily --date 2026-11-13" in never.output


def test_global_options_after_the_sub_command(built, metrics):
    """``explain`` takes ``--data-dir`` after its name like every other command."""
    root, _ = built
    ticker = metrics["ticker"].iloc[0]
    after = CliRunner().invoke(main, ["explain", ticker, "--json", "--date", str(AS_OF.date()), "--data-dir", str(root)])
    assert after.exit_code == 0, after.output
    assert after.output == _cli(root, ticker, "--json").output


def test_explain_reads_only_snapshots(built, metrics, monkeypatch):
    """No source is made and no compute stage runs."""
    import pipeline.sources
    import pipeline.stages.metrics

    def boom(*args, **kwargs):
        raise AssertionError("explain must not fetch or recompute")
    monkeypatch.setattr(pipeline.sources, "make_source", boom)
    monkeypatch.setattr(pipeline.stages.metrics, "compute_metrics", boom)
    result = _cli(built[0], metrics["ticker"].iloc[0], "--json")
    assert result.exit_code == 0, result.output


def test_signal_vrp_is_there_for_every_event_with_a_vrp(built, metrics):
    """explain --json names the VRP that sets the tier: the event VRP where vrp_basis is event,
    else the plain VRP; never null when the event has a VRP."""
    root, _ = built
    with_vrp = metrics[metrics["vrp"].notna()]
    assert len(with_vrp) and (with_vrp["vrp_basis"] == "event").any()
    for row in with_vrp.itertuples():
        doc = json.loads(_cli(root, row.ticker, "--json").output)
        want = row.vrp_event if row.vrp_basis == "event" else row.vrp
        assert doc["vrp"]["signal_vrp"] == pytest.approx(want, rel=1e-12), row.ticker
