"""End to end on the synthetic market, through the CLI, in-process."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline import load
from pipeline.driver.cli import main
from pipeline.views.report import REPORT_COLUMNS

DESIGN_COLUMNS = ["rank", "ticker", "report_date", "timing", "spot", "expiration", "implied_move",
                  "hist_mean_abs_move", "hist_median_abs_move", "n_events", "vrp", "vrp_tier", "ts_implied_move",
                  "mad", "consistency", "tail_ratio", "skew_slope", "skew_curvature", "rr25", "liquidity_tier",
                  "straddle_spread", "score"]
REPO = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result




def snapshot_bytes(root: Path) -> dict:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".parquet", ".csv"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_daily_writes_a_ranked_report_with_every_design_column(daily_root):
    report = pd.read_csv(daily_root / "reports" / "rank_2026-11-20.csv")
    assert list(report.columns) == REPORT_COLUMNS
    assert set(DESIGN_COLUMNS) <= set(report.columns)
    assert len(report) >= 10
    assert report["rank"].tolist() == list(range(1, len(report) + 1))
    ranked = report[report["vrp"].notna() & (report["liquidity_tier"] != "REJECT")]
    assert len(ranked) >= 10
    # Tradeable with premium first, then tradeable SKIP; by score within each (tests/test_rank_order.py).
    premium = ranked["vrp_tier"] != "SKIP"
    assert premium.is_monotonic_decreasing
    assert ranked[premium]["score"].is_monotonic_decreasing and ranked[~premium]["score"].is_monotonic_decreasing
    assert (report["implied_move"].dropna() < 1).all()          # fractions, not percent


def test_notebook_loader_returns_validated_frames(daily_root):
    metrics = load("metrics", date="2026-11-20", data_dir=daily_root)
    assert len(metrics) == len(pd.read_csv(daily_root / "reports" / "rank_2026-11-20.csv"))
    assert str(metrics["report_date"].dtype) == "datetime64[ns]"
    assert set(load("moves", data_dir=daily_root)["timing_source"]) <= {"vendor", "inferred"}


def test_truth_is_written_for_the_tests(daily_root):
    truth = pd.read_parquet(daily_root / "raw" / "synthetic" / "truth_events.parquet")
    assert {"ticker", "report_date", "timing", "true_move_std", "implied_move_std"} <= set(truth.columns)
    assert truth.duplicated(["ticker", "report_date"]).sum() == 0
    assert (truth["implied_move_std"] / truth["true_move_std"]).sub(truth["true_premium"]).abs().max() < 1e-12
    # Realized moves exist for the tickers the run priced (their paths were simulated), for all
    # their past reports. Fat-tailed names produce rare multi-fold moves; never a price <= 0.
    priced = truth.groupby("ticker")["realized_move"].transform(lambda m: m.notna().any())
    past = truth[(truth["reaction_date"] <= "2026-11-20") & priced]
    assert past["ticker"].nunique() >= 40
    assert past["realized_move"].notna().mean() > 0.99 and past["realized_move"].dropna().between(-0.99, 10).all()
    metrics = load("metrics", date="2026-11-20", data_dir=daily_root)
    assert set(metrics["ticker"]) <= set(truth.dropna(subset=["model_straddle_move"])["ticker"])


def test_same_seed_and_date_give_identical_bytes_and_reruns_are_idempotent(daily_root, tmp_path):
    result = run("--data-dir", str(tmp_path), "--config", str(REPO / "config.yaml"), "daily", "--date", "2026-11-20")
    assert result.exit_code == 0, result.output
    first, second = snapshot_bytes(daily_root), snapshot_bytes(tmp_path)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    again = run("--data-dir", str(tmp_path), "--config", str(REPO / "config.yaml"), "daily", "--date", "2026-11-20")
    assert again.exit_code == 0
    assert snapshot_bytes(tmp_path) == second


def test_rank_on_a_holiday_maps_to_the_previous_session(tmp_path):
    result = run("--data-dir", str(tmp_path), "--config", str(REPO / "config.yaml"), "rank", "--date", "2026-11-26")
    assert result.exit_code == 0, result.output
    assert "2026-11-26 is not an NYSE session; using the previous session 2026-11-25" in result.output
    assert (tmp_path / "reports" / "rank_2026-11-25.csv").exists()


def test_data_dir_from_environment_and_rank_reuses_computed_metrics(daily_root):
    result = run("--config", str(REPO / "config.yaml"), "rank", "--date", "2026-11-20",
                 env={"PIPELINE_DATA_DIR": str(daily_root)})
    assert result.exit_code == 0, result.output
    assert "events ->" in result.output


@pytest.mark.parametrize("text", ["2026-13-01", "20261120", "tomorrow", "../../etc"])
def test_malformed_dates_are_refused(tmp_path, text):
    result = run("--data-dir", str(tmp_path), "daily", "--date", text)
    assert result.exit_code == 2
    assert "is not a date in YYYY-MM-DD form" in result.output


def test_cli_start_up_does_not_import_pandas():
    code = "import sys, pipeline.driver.cli; print('pandas' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
