"""Issue 18: operations without surprises. One test (or a few) per numbered case of the issue;
each reproduced the case before its fix. ``PIPELINE_TODAY`` fixes "today"."""
import json
import shutil

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from live_support import APIKEY, TOKEN, live_source, vendor_env
from loopback import LoopbackVendor

from pipeline.cli import main
from pipeline.sources.base import SourceError
from pipeline.sources.synthetic import SyntheticMarket

DATE = "2026-11-20"
TODAY = "2026-12-01"
SETTINGS = {"source": "synthetic", "synthetic": {"seed": 7, "universe_size": 120}, "lookahead_days": 7,
            "live": {"alphavantage_daily_budget": 500, "alphavantage_min_interval": 0.0}}


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch):
    monkeypatch.setenv("PIPELINE_TODAY", TODAY)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("i18-config") / "config.yaml"
    path.write_text(yaml.safe_dump(SETTINGS))
    return path


@pytest.fixture(scope="module")
def good_root(tmp_path_factory, config):
    """One synthetic daily of DATE (CSV and page); tests copy it."""
    root = tmp_path_factory.mktemp("i18-good")
    result = cli(root, config, "daily", "--date", DATE)
    assert result.exit_code == 0, result.output
    return root


def cli(root, config, *args, env=None):
    return CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), *args],
                              env={"PIPELINE_TODAY": TODAY} | (env or {}))


def copy(good_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    return root


def last_manifest(root):
    return json.loads(sorted((root / "runs").glob("*.json"))[-1].read_text())


# ---- 1. a rejected vendor answer never sticks ------------------------------------------------------

def test_1_a_rejected_calendar_is_not_served_again_once_the_vendor_is_current(tmp_path, config):
    market = SyntheticMarket(seed=7, universe_size=120)
    with LoopbackVendor(market, DATE, token=TOKEN, apikey=APIKEY) as server:
        env = vendor_env(server, today=TODAY)
        refused = cli(tmp_path / "data", config, "--source", "live", "daily", "--date", TODAY, env=env)
        assert refused.exit_code == 1, refused.output
        assert "another day" in refused.output and "answered by alphavantage itself" in refused.output
        server.as_of = pd.Timestamp(TODAY)           # the vendor now serves the current session
        calls = server.requests["EARNINGS_CALENDAR"]
        rerun = cli(tmp_path / "data", config, "--source", "live", "daily", "--date", TODAY, env=env)
        assert server.requests["EARNINGS_CALENDAR"] == calls + 1       # asked the vendor, not the cache
        assert rerun.exit_code in (0, 3), rerun.output
        assert (tmp_path / "data" / "reports" / f"rank_{TODAY}.csv").exists()


def test_1_a_cached_answer_of_another_day_is_named_as_the_cache_and_discarded(tmp_path):
    market = SyntheticMarket(seed=7, universe_size=120)
    with LoopbackVendor(market, DATE, token=TOKEN, apikey=APIKEY) as server:
        source = live_source(server, tmp_path / "live", None)
        assert len(source.calendar(pd.Timestamp(DATE), 7))             # accepted for DATE, cached
        with pytest.raises(SourceError, match="answered by the HTTP cache .*rerun the same command"):
            source.calendar(pd.Timestamp(TODAY), 7)
        calls = server.requests["EARNINGS_CALENDAR"]
        server.as_of = pd.Timestamp(TODAY)
        assert len(source.calendar(pd.Timestamp(TODAY), 7))
        assert server.requests["EARNINGS_CALENDAR"] == calls + 1
        # Chains of another session: rejected, named, and dropped from the cache as well.
        tickers = sorted(market.truth_events(pd.Timestamp(TODAY), 7)["ticker"])[:2]
        server.as_of = pd.Timestamp(DATE)
        expirations = source.expirations(tickers, pd.Timestamp(DATE)).groupby("ticker").head(1)
        with pytest.raises(SourceError, match="served chains for another session.*answered by tradier itself"):
            source.chains(expirations, pd.Timestamp(TODAY))
        before = server.requests["chains"]
        with pytest.raises(SourceError, match="another session"):
            source.chains(expirations, pd.Timestamp(TODAY))
        assert server.requests["chains"] == before + len(expirations)  # not from the cache
        source.close()
