"""Exceedance levels from config (``density.exceed_levels``): validation, column names, the
schema's regex columns, the report / page / explain picking them up, the default unchanged."""
import pandas as pd
import pytest
import yaml

from pipeline.contract.config import ConfigError, parse_config
from pipeline.contract.schemas import contract_columns, empty, metrics_columns
from pipeline.contract.levels import level_name
from pipeline.contract.store import Store

from conftest import SMALL_SETTINGS, daily_run

AS_OF = "2026-11-20"


def test_the_default_levels_are_five_and_ten_percent():
    assert parse_config({}).exceed_levels == (0.05, 0.10)
    assert parse_config({"density": {"exceed_levels": [0.075, 0.2]}}).exceed_levels == (0.075, 0.2)
    assert [level_name(v) for v in (0.05, 0.10, 0.075, 0.0125)] == ["5pct", "10pct", "7p5pct", "1p25pct"]


@pytest.mark.parametrize("levels", [[], [0], [0.0], [1], [1.5], [-0.05], [0.05, 0.05], "0.05", [True], [None],
                                    [0.01, 0.02, 0.03, 0.04, 0.06], [0.1234567], [float("inf")]])
def test_bad_levels_are_rejected_naming_the_key(levels):
    with pytest.raises(ConfigError, match="density.exceed_levels"):
        parse_config({"density": {"exceed_levels": levels}})


def test_the_contract_expands_to_the_configured_levels_in_order():
    default = metrics_columns()
    assert [c for c in default if "p_exceed_" in c] == [
        "rn_p_exceed_implied", "rn_p_exceed_5pct", "rn_p_exceed_10pct",
        "hist_p_exceed_implied", "hist_p_exceed_5pct", "hist_p_exceed_10pct"]
    assert contract_columns("metrics") == default == list(empty("metrics").columns)
    custom = metrics_columns(["7p5pct", "20pct"])
    assert [c for c in custom if "p_exceed_" in c and "implied" not in c] == [
        "rn_p_exceed_7p5pct", "rn_p_exceed_20pct", "hist_p_exceed_7p5pct", "hist_p_exceed_20pct"]
    assert len(custom) == len(default)


@pytest.fixture(scope="module")
def custom_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("levels")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({**SMALL_SETTINGS, "density": {"exceed_levels": [0.075, 0.2]}}))
    daily_run(root / "data", config, AS_OF)
    return root


def test_configured_levels_reach_metrics_report_page_and_explain(custom_root, small_daily_root):
    from click.testing import CliRunner

    from pipeline.driver.cli import main

    data = custom_root / "data"
    metrics = Store(data).scan("metrics", dates=[AS_OF])
    default = Store(small_daily_root).scan("metrics", dates=[AS_OF])
    assert {"rn_p_exceed_7p5pct", "hist_p_exceed_20pct"} <= set(metrics.columns)
    assert not {"rn_p_exceed_5pct", "hist_p_exceed_10pct"} & set(metrics.columns)
    # The same surface at three levels: P(|move| > level) falls with the level.
    both = default.merge(metrics, on=["ticker", "report_date"], suffixes=("", "_c"))
    priced = both[both["rn_p_exceed_7p5pct"].notna()]
    assert len(priced) >= 5
    assert (priced["rn_p_exceed_5pct"] >= priced["rn_p_exceed_7p5pct"] - 1e-12).all()
    assert (priced["rn_p_exceed_7p5pct"] >= priced["rn_p_exceed_10pct"] - 1e-12).all()
    assert (priced["rn_p_exceed_20pct"] <= priced["rn_p_exceed_10pct"] + 1e-12).all()
    assert (priced["hist_p_exceed_5pct"] >= priced["hist_p_exceed_7p5pct"] - 1e-12).all()
    assert not (priced["rn_p_exceed_7p5pct"] == priced["rn_p_exceed_5pct"]).all()

    header = (data / "reports" / f"rank_{AS_OF}.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if "p_exceed_" in c] == [
        "rn_p_exceed_implied", "hist_p_exceed_implied", "rn_p_exceed_7p5pct", "hist_p_exceed_7p5pct",
        "rn_p_exceed_20pct", "hist_p_exceed_20pct"]
    page = (data / "reports" / f"rank_{AS_OF}.html").read_text()
    assert "P&gt;7.5%" in page and "P&gt;20%" in page and "P&gt;5%" not in page
    ticker = priced["ticker"].iloc[0]
    result = CliRunner().invoke(main, ["--data-dir", str(data), "--config", str(custom_root / "config.yaml"),
                                       "explain", ticker, "--date", AS_OF], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rn_p_exceed_7p5pct" in result.output and "rn_p_exceed_5pct" not in result.output


def test_the_default_report_keeps_its_columns(small_daily_root):
    from pipeline.views.report import REPORT_COLUMNS

    header = (small_daily_root / "reports" / f"rank_{AS_OF}.csv").read_text().splitlines()[0].split(",")
    assert header == REPORT_COLUMNS
    assert isinstance(pd.read_csv(small_daily_root / "reports" / f"rank_{AS_OF}.csv"), pd.DataFrame)
