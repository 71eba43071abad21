"""A whole daily run with ``source: live`` against the loopback vendors, driven through the CLI:
the same metrics and report as the synthetic source, the planned number of calls, a warm rerun
that asks the vendors nothing, and no credential anywhere on disk."""
import json

import pandas as pd
import yaml
from click.testing import CliRunner
from live_support import APIKEY, TOKEN, cached_urls, files_containing, vendor_env
from loopback import LoopbackVendor

from pipeline.driver.cli import main
from pipeline.stages.events import upcoming_events
from pipeline.stages.panel import dated
from pipeline.contract.store import Store

DATE = "2026-11-20"
LIVE_SETTINGS = {"source": "live", "live": {"alphavantage_daily_budget": 500, "alphavantage_min_interval": 0.0}}


def daily(root, config_path, env=None):
    result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config_path), "daily", "--date", DATE],
                                env=env)
    assert result.exit_code == 0, result.output
    return result


def live_and_synthetic_runs(base, small_config, small_daily_root, small_market):
    """Live runs with the settings of the shared synthetic run (conftest's small_daily_root), the
    loopback vendors serving the same synthetic market."""
    settings = yaml.safe_load(small_config.read_text()) | LIVE_SETTINGS
    config = base / "live.yaml"
    config.write_text(yaml.safe_dump(settings))
    with LoopbackVendor(small_market, DATE, token=TOKEN, apikey=APIKEY) as server:
        env = vendor_env(server)
        cold = daily(base / "live", config, env)
        cold_requests = dict(server.requests)
        server.reset_counts()
        warm = daily(base / "live", config, env)
        warm_requests = dict(server.requests)
        rate_limited = server.count(429)
    return {"synthetic_root": small_daily_root, "live_root": base / "live", "outputs": [cold, warm],
            "cold": cold_requests, "warm": warm_requests, "429": rate_limited,
            "lookahead_days": settings["lookahead_days"]}


def test_live_daily_run(tmp_path, small_config, small_daily_root, small_market):
    """One cold live run and one warm rerun, compared with the shared synthetic run, feed every
    check below (separate tests sharing a fixture would repeat the runs on each xdist worker)."""
    runs = live_and_synthetic_runs(tmp_path, small_config, small_daily_root, small_market)
    live_metrics_and_report_equal_the_synthetic_run(runs)
    a_cold_run_makes_exactly_the_planned_calls(runs)
    a_warm_rerun_asks_the_vendors_nothing(runs)
    no_credential_is_written_or_printed(runs)


def live_metrics_and_report_equal_the_synthetic_run(runs):
    live, synthetic = Store(runs["live_root"]), Store(runs["synthetic_root"])
    got, expected = live.read("metrics", DATE), synthetic.read("metrics", DATE)
    assert len(got) >= 8
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-12)
    report = f"reports/rank_{DATE}.csv"
    pd.testing.assert_frame_equal(pd.read_csv(runs["live_root"] / report), pd.read_csv(runs["synthetic_root"] / report),
                                  check_exact=False, rtol=0, atol=1e-12)
    sources = set(live.read("chains", DATE)["source"]) | set(live.read("calendar", DATE)["source"])
    assert sources == {"tradier", "alphavantage"}


def a_cold_run_makes_exactly_the_planned_calls(runs):
    store = Store(runs["live_root"])
    calendar = store.read("calendar", DATE)
    events = upcoming_events(dated(calendar, DATE), runs["lookahead_days"])
    window = len(events)
    # One chains call per (ticker, expiration) pulled: term_expirations (4) from the reaction
    # session on, plus one >= 35 days out when those end sooner (no exit marks on a first day).
    pulled = store.read("chains", DATE).groupby("ticker")["expiration"].agg(["nunique", "max"])
    assert set(pulled.index) == set(events["ticker"])
    assert pulled["nunique"].between(4, 5).all()
    assert (pulled["max"] >= pd.Timestamp(DATE) + pd.Timedelta(days=35)).all()
    assert runs["cold"] == {"EARNINGS_CALENDAR": 1, "EARNINGS": window, "history": window,
                            "expirations": window, "quotes": 1, "chains": int(pulled["nunique"].sum())}
    assert runs["429"] == 0
    manifest = sorted((runs["live_root"] / "runs").glob("*.json"))[0]
    assert json.loads(manifest.read_text())["exit_status"] == 0


def a_warm_rerun_asks_the_vendors_nothing(runs):
    assert runs["warm"] == {}
    stats = sorted((runs["live_root"] / "cache" / "runs").glob("*.json"))
    assert json.loads(stats[-1].read_text())["cache"]["misses"] == 0


def no_credential_is_written_or_printed(runs):
    root = runs["live_root"]
    assert (root / "cache" / "http_cache.sqlite").exists() and any((root / "logs").iterdir())
    assert any((root / "raw" / "tradier").rglob("*.json")) and cached_urls(root)
    assert files_containing(root, [TOKEN, APIKEY]) == []
    for result in runs["outputs"]:
        assert TOKEN not in result.output and APIKEY not in result.output
