"""``pipeline doctor`` against the loopback vendors: a table, never a credential, non-zero on problems."""
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from live_support import APIKEY, TOKEN, vendor_env
from loopback import LoopbackVendor

from pipeline.driver.cli import main
from pipeline.driver.doctor import FAIL, OK, WARN, run_checks
from pipeline.sources.synthetic import SyntheticMarket

DATE = "2026-11-20"


@pytest.fixture(scope="module")
def server():
    with LoopbackVendor(SyntheticMarket(seed=7, universe_size=60), DATE, token=TOKEN, apikey=APIKEY) as vendor:
        yield vendor


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"source": "live", "synthetic": {"universe_size": 60},
                                    "live": {"alphavantage_min_interval": 0.0}}))
    return path


def doctor(root, config, env):
    return CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "doctor"], env=env)


def by_name(checks):
    return {c.name: c for c in checks}


def test_healthy_live_setup_after_a_run(server, config, tmp_path):
    env = vendor_env(server)
    run = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "--config", str(config), "daily",
                                    "--date", DATE], env=env)
    assert run.exit_code == 0, run.output
    before = server.requests["EARNINGS"] + server.requests["EARNINGS_CALENDAR"]
    result = doctor(tmp_path / "data", config, env)
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and APIKEY not in result.output
    checks = by_name(run_checks(tmp_path / "data", str(config), None, environ=env, today=pd.Timestamp(DATE)))
    assert checks["env TRADIER_TOKEN"].detail == "set" and checks["env ALPHAVANTAGE_API_KEY"].detail == "set"
    assert checks["tradier"].status == OK and "market closed on 2026-11-20" in checks["tradier"].detail
    assert checks["alphavantage"].status == OK and "no key sent" in checks["alphavantage"].detail
    assert server.requests["EARNINGS"] + server.requests["EARNINGS_CALENDAR"] == before   # budget untouched
    assert "hits" in checks["cache hit rate"].detail and checks["http cache"].status == OK
    assert checks["data metrics"].status == OK and "latest 2026-11-20 (0 sessions behind" in checks["data metrics"].detail


def test_missing_credential_is_named_never_shown(server, config, tmp_path):
    env = vendor_env(server) | {"TRADIER_TOKEN": ""}
    result = doctor(tmp_path, config, env)
    assert result.exit_code == 1
    assert "env TRADIER_TOKEN" in result.output and "missing" in result.output
    assert APIKEY not in result.output


def test_refused_token_and_stale_data(server, config, tmp_path):
    env = vendor_env(server, token="tok-WRONG-123456")
    checks = by_name(run_checks(tmp_path, str(config), None, environ=env, today=pd.Timestamp(DATE)))
    assert checks["tradier"].status == FAIL and "TRADIER_TOKEN" in checks["tradier"].detail
    assert "tok-WRONG-123456" not in checks["tradier"].detail
    assert checks["data metrics"].status == WARN and checks["data metrics"].detail == "no data yet"


def test_unreachable_vendor_and_bad_config(config, tmp_path):
    env = {"TRADIER_TOKEN": TOKEN, "ALPHAVANTAGE_API_KEY": APIKEY,
           "TRADIER_BASE_URL": "http://127.0.0.1:9/v1", "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9/query"}
    checks = by_name(run_checks(tmp_path, str(config), None, environ=env))
    assert checks["tradier"].status == FAIL and checks["alphavantage"].status == FAIL
    bad = tmp_path / "bad.yaml"
    bad.write_text("live: {request_deadline: -1}\n")
    result = doctor(tmp_path, bad, {})
    assert result.exit_code == 1 and "config key 'live.request_deadline'" in result.output


def test_unreadable_budget_ledger_is_named(server, config, tmp_path):
    from pipeline.contract.layout import Layout
    ledger = Layout(tmp_path).alphavantage_budget
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"\x00\xff not json")
    checks = by_name(run_checks(tmp_path, str(config), None, environ=vendor_env(server), today=pd.Timestamp(DATE)))
    assert checks["alphavantage"].status == FAIL
    assert str(ledger) in checks["alphavantage"].detail and "counts as spent" in checks["alphavantage"].detail
