"""One bad ticker never sinks the run; hostile input is refused with a clear message."""
import contextlib

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

import pipeline.sources
from pipeline.driver.cli import main
from pipeline.contract.config import ConfigError, parse_config
from pipeline.views.report import neutralize_text
from pipeline.sources.synthetic import SyntheticMarket
from pipeline.contract.tickers import InvalidTickerError, validate_ticker

DATE = "2026-11-20"


class BrokenMarket(SyntheticMarket):
    """The synthetic market with one kind of damage per chosen ticker."""

    def __init__(self, damage: dict, **kw):
        super().__init__(**kw)
        self.damage = damage              # kind -> ticker

    def chains(self, wanted, as_of):
        quotes = super().chains(wanted, as_of)
        gone = quotes["ticker"] == self.damage["no_chain"]
        crossed = quotes["ticker"] == self.damage["crossed_chain"]
        quotes.loc[crossed, ["bid", "ask"]] = quotes.loc[crossed, ["ask", "bid"]].to_numpy() + [0.05, 0.0]
        quotes.loc[quotes["ticker"] == self.damage["nan_spot"], "underlying_price"] = np.nan
        return quotes[~gone].reset_index(drop=True)

    def prices(self, tickers, start, end):
        bars = super().prices(tickers, start, end)
        bars = bars[bars["ticker"] != self.damage["missing_prices"]]
        absurd = bars["ticker"] == self.damage["absurd_prices"]
        bars.loc[absurd & (bars["date"] == bars.loc[absurd, "date"].max()), ["high", "close"]] = 5e12
        return bars.reset_index(drop=True)


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    window = ["IFEB", "YY", "ZVYR", "KIQ", "NST", "GZ"]
    damage = dict(zip(["no_chain", "crossed_chain", "nan_spot", "missing_prices", "absurd_prices"], window))
    original = pipeline.sources.make_source
    pipeline.sources.make_source = lambda config, r, failures, progress=None: BrokenMarket(damage, archive=None)
    try:
        result = CliRunner().invoke(main, ["--data-dir", str(root), "daily", "--date", DATE])
    finally:
        pipeline.sources.make_source = original
    metrics = pd.read_csv(root / "reports" / f"rank_{DATE}.csv").set_index("ticker")
    return result, metrics, damage


def test_the_run_finishes_partial_and_healthy_tickers_are_ranked(broken_run):
    result, metrics, damage = broken_run
    assert result.exit_code == 3, result.output                      # partial: some fetches failed
    healthy = metrics.drop(index=list(damage.values()))
    assert (healthy["status"] != "failed").sum() >= 30
    assert metrics.loc[list(damage.values()), "rank"].min() > (healthy["vrp"].notna()).sum() - 5
    assert metrics.loc[damage["no_chain"], "spot"] > 0           # from the last close instead


@pytest.mark.parametrize("kind,reason", [
    ("no_chain", "implied: no option chain"),
    ("crossed_chain", "implied: no volatility near the forward"),
    ("nan_spot", "implied: no option chain"),
    ("missing_prices", "history: no past reports with prices"),
    ("absurd_prices", "history: no past reports with prices"),
])
def test_each_broken_ticker_has_a_status_and_reason(broken_run, kind, reason):
    _, metrics, damage = broken_run
    row = metrics.loc[damage[kind]]
    assert row["status"] == "failed"
    assert reason in row["reason"]
    assert pd.isna(row["vrp"]) and pd.isna(row["score"])


def test_the_manifest_names_the_quarantined_tickers(broken_run):
    result, _, damage = broken_run
    import json
    from pathlib import Path

    manifest = json.loads(Path(result.output.strip().splitlines()[-1].split("manifest: ")[1]).read_text())
    failed = {(f["ticker"], f["stage"]) for f in manifest["failures"]}
    assert (damage["nan_spot"], "pull-chains") in failed
    assert (damage["absurd_prices"], "backfill-prices") in failed
    reasons = {(f["ticker"], f["stage"]): f["reason"] for f in manifest["failures"]}
    assert "underlying_price" in reasons[(damage["nan_spot"], "pull-chains")]
    assert manifest["exit_status"] == 3


@pytest.mark.parametrize("symbol", ["../etc", "A/B", "..", "", "TOOLONGSYMBOL", "aapl", "A B", "A;rm", "BRK..B", None, 7])
def test_hostile_ticker_symbols_are_refused(symbol):
    with pytest.raises(InvalidTickerError, match="invalid ticker symbol"):
        validate_ticker(symbol)


@pytest.mark.parametrize("symbol", ["A", "BRK.B", "BF-B", "GOOGL", "MOG-A"])
def test_real_symbols_pass(symbol):
    assert validate_ticker(symbol) == symbol


@pytest.mark.parametrize("text,key", [
    ("bogus: 1\n", "'bogus': unknown key"),
    ("history:\n  max_events: twelve\n", "'history.max_events': expected int"),
    ("lookahead_days: -3\n", "'lookahead_days': invalid value -3"),
    ("history:\n  ewm_halflife: -1\n", "'history.ewm_halflife': invalid value"),
    ("vrp_tiers: {EXCELLENT: 1.2, GOOD: 1.4, MARGINAL: 1.1}\n", "'vrp_tiers': thresholds must be strictly decreasing"),
    ("score_weights: {vrp: 0.5, consistency: 0.5, skew: 0.5, liquidity: 0.5}\n", "'score_weights': weights must sum to 1"),
    ("universe:\n  symbols: ['../x']\n", "universe.symbols"),
    ("source: cloud\n", "'source': invalid value"),
    ("- a list\n", "top level must be a mapping"),
    ("history: [1, 2]\n", "'history': expected a mapping"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "--config", str(path), "daily", "--date", DATE])
    assert result.exit_code == 2
    assert key in result.output


def test_unreadable_and_invalid_yaml_are_config_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    for path in (tmp_path / "bad.yaml", tmp_path / "missing.yaml"):
        result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "--config", str(path), "daily"])
        assert result.exit_code == 2 and "config file" in result.output


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
known_keys = st.sampled_from(["source", "synthetic", "history", "vrp_tiers", "liquidity_tiers", "score_weights",
                              "lookahead_days", "risk_free_rate", "implied", "skew", "term_structure", "live", "universe"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(known_keys | st.text(max_size=10), yaml_values, max_size=5) | yaml_values)
def test_any_config_document_is_accepted_or_refused_with_a_config_error(raw):
    with contextlib.suppress(ConfigError):
        parse_config(yaml.safe_load(yaml.safe_dump(raw)))


def test_empty_universe_and_empty_window_give_a_header_only_report(tmp_path):
    for name, text in [("empty", "synthetic:\n  universe_size: 0\n"), ("window", "universe:\n  symbols: [ZZZZ]\n")]:
        root = tmp_path / name
        config = tmp_path / f"{name}.yaml"
        config.write_text(text)
        result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", DATE])
        assert result.exit_code == 0, result.output
        assert "no upcoming events in the window" in result.output
        report = (root / "reports" / f"rank_{DATE}.csv").read_text().splitlines()
        assert len(report) == 1 and report[0].startswith("rank,ticker,report_date")


def test_formula_like_text_cells_are_neutralised_but_numbers_are_not():
    frame = pd.DataFrame({"ticker": ["=CMD", "+A", "-B", "@C", "\tD", "\rE", "OK"], "vrp": [-1.5] * 7})
    out = neutralize_text(frame)
    assert out["ticker"].tolist() == ["'=CMD", "'+A", "'-B", "'@C", "'\tD", "'\rE", "OK"]
    assert out["vrp"].tolist() == [-1.5] * 7
