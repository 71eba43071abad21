"""Issue 10: safe on every date and every failure. One test per numbered case of the issue, the
live ones against the loopback vendor serving a different day than the as-of date.

``PIPELINE_TODAY`` (pipeline/clock.py) fixes "today", so nothing here reads the wall clock."""
import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from live_support import APIKEY, TOKEN, live_source, vendor_env
from loopback import LoopbackVendor

from pipeline.cli import main
from pipeline.schemas import DATASETS
from pipeline.sources.base import SourceError
from pipeline.sources.synthetic import SyntheticMarket
from pipeline.store import CorruptPartition, Store

DATE = "2026-11-20"
TODAY = "2026-12-01"
SETTINGS = {"source": "synthetic", "synthetic": {"seed": 7, "universe_size": 120}, "lookahead_days": 7,
            "live": {"alphavantage_daily_budget": 500, "alphavantage_min_interval": 0.0}}


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch):
    monkeypatch.setenv("PIPELINE_TODAY", TODAY)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops-config") / "config.yaml"
    path.write_text(yaml.safe_dump(SETTINGS))
    return path


@pytest.fixture(scope="module")
def good_root(tmp_path_factory, config):
    """One synthetic daily of DATE; tests copy it (treat as read-only)."""
    root = tmp_path_factory.mktemp("ops-good")
    result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", DATE],
                                env={"PIPELINE_TODAY": TODAY})
    assert result.exit_code == 0, result.output
    return root


def cli(root, config, *args, env=None):
    return CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), *args],
                              env={"PIPELINE_TODAY": TODAY} | (env or {}))


def snapshot(root):
    """The stored snapshots and reports (the raw vendor archive may grow)."""
    return {str(p.relative_to(root)): p.read_bytes() for sub in ("parquet", "reports")
            for p in sorted((root / sub).rglob("*")) if p.is_file()}


def copy(good_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    return root


def last_manifest(root):
    return json.loads(sorted((root / "runs").glob("*.json"))[-1].read_text())


# ---- 1. the past is read-only for live sources -------------------------------------------------

def test_1_live_run_for_a_past_date_is_refused_and_changes_nothing(good_root, tmp_path, config):
    root = copy(good_root, tmp_path)
    before = snapshot(root)
    with LoopbackVendor(SyntheticMarket(seed=7, universe_size=120), TODAY, token=TOKEN, apikey=APIKEY) as server:
        result = cli(root, config, "--source", "live", "daily", "--date", DATE, env=vendor_env(server))
        assert server.requests == {}
    assert result.exit_code == 2, result.output
    assert f"pipeline rank --date {DATE}" in result.output and f"current session {TODAY}" in result.output
    assert snapshot(root) == before
    assert last_manifest(root)["exit_status"] == 2


def test_1_vendor_serving_another_session_is_rejected(good_root, tmp_path, config, monkeypatch):
    root = copy(good_root, tmp_path)
    before = snapshot(root)
    market = SyntheticMarket(seed=7, universe_size=120)
    with LoopbackVendor(market, DATE, token=TOKEN, apikey=APIKEY) as server:
        # The calendar the vendor serves for 2026-11-20 is not 2026-12-01's.
        result = cli(root, config, "--source", "live", "daily", "--date", TODAY, env=vendor_env(server, today=TODAY))
        assert result.exit_code == 1, result.output
        assert "alphavantage served an earnings calendar for another day" in result.output
        assert snapshot(root) == before and not (root / "parquet" / "calendar" / f"asof={TODAY}").exists()
        # Chains whose quotes are all stamped 2026-11-20 are refused for an as-of date of 2026-12-01.
        source = live_source(server, tmp_path / "live", None)
        expirations = source.expirations(sorted(market.truth_events(pd.Timestamp(DATE), 7)["ticker"])[:2],
                                         pd.Timestamp(DATE))
        with pytest.raises(SourceError, match=r"tradier served chains for another session: quote stamps 2026-11-20"):
            source.chains(expirations.groupby("ticker").head(1), pd.Timestamp(TODAY))
        source.close()


# ---- 2. doctor with each source ----------------------------------------------------------------

@pytest.mark.parametrize("source", ["synthetic", "live"])
def test_2_doctor_runs_with_each_source(good_root, config, source):
    result = cli(good_root, config, "--source", source, "doctor",
                 env={"TRADIER_TOKEN": "", "ALPHAVANTAGE_API_KEY": ""})
    assert "Traceback" not in result.output and "AttributeError" not in result.output
    assert f"source {source}" in result.output
    assert result.exit_code == (1 if source == "live" else 0), result.output   # live: keys missing
    assert "data files" in result.output


# ---- 3. corrupt and foreign files --------------------------------------------------------------

def foreign_table():
    return pa.table({"what": ["not", "this"], "n": [1, 2]})


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("damage", ["truncated", "wrong-schema"])
def test_3_every_read_and_doctor_name_a_bad_file(good_root, tmp_path, config, name, damage):
    root = copy(good_root, tmp_path)
    store = Store(root)
    value, path = store.files(name)[-1]
    if damage == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(max(path.stat().st_size // 2, 8))
    else:
        pq.write_table(foreign_table(), path)
    with pytest.raises(CorruptPartition) as raised:
        store.read(name, None if DATASETS[name].partition in (None, "year") else value)
    assert str(path) in str(raised.value) and name in str(raised.value)
    doctor = cli(root, config, "doctor")
    assert doctor.exit_code == 1 and str(path) in doctor.output, doctor.output


def test_3_a_corrupt_refetchable_file_is_quarantined_and_refetched(good_root, tmp_path, config):
    root = copy(good_root, tmp_path)
    bad = root / "parquet" / "prices" / "year=2026" / "part-0.parquet"
    original = bad.read_bytes()
    with open(bad, "r+b") as fh:
        fh.truncate(5000)
    result = cli(root, config, "rank", "--date", DATE)
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.output and str(bad) in result.output
    moved = last_manifest(root)["quarantined"]
    assert [m["dataset"] for m in moved] == ["prices"]
    kept = root / moved[0]["moved_to"].split(str(root) + "/")[1]
    assert kept.read_bytes() == original[:5000]                 # the copy is kept, byte for byte
    assert (root / f"reports/rank_{DATE}.csv").read_bytes() == (good_root / f"reports/rank_{DATE}.csv").read_bytes()
    assert "quarantined" in "".join(p.read_text() for p in (root / "logs").glob("*.log"))


def test_3_a_past_live_chain_that_cannot_be_refetched_stops_with_the_recovery(good_root, tmp_path, config):
    root = copy(good_root, tmp_path)
    bad = root / "parquet" / "chains" / f"date={DATE}" / "part-0.parquet"
    with open(bad, "r+b") as fh:
        fh.truncate(3000)
    before = snapshot(root)
    result = cli(root, config, "--source", "live", "rank", "--date", DATE)
    assert result.exit_code == 1, result.output
    assert str(bad) in result.output and f"mv {bad}" in result.output
    assert "Traceback" not in result.output and snapshot(root) == before
