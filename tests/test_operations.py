"""Issue 10: safe on every date and every failure. One test per numbered case of the issue, the
live ones against the loopback vendor serving a different day than the as-of date.

``PIPELINE_TODAY`` (pipeline/contract/clock.py) fixes "today", so nothing here reads the wall clock."""
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from live_support import APIKEY, TOKEN, live_source, vendor_env
from loopback import LoopbackVendor
from ops_support import DATE, SETTINGS, TODAY, cli, config, copy, fixed_today, good_root, last_manifest  # noqa: F401

from pipeline.driver.cli import main
from pipeline.contract.schemas import DATASETS
from pipeline.sources.base import SourceError
from pipeline.sources.synthetic import SyntheticMarket
from pipeline.contract.store import CorruptPartition, Store



@pytest.fixture(scope="module")
def two_day_root(tmp_path_factory, config):
    """Dailies of the session before DATE and of DATE: the events reacting on DATE have outcomes."""
    root = tmp_path_factory.mktemp("ops-two-days")
    for date in ("2026-11-19", DATE):
        result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", date],
                                    env={"PIPELINE_TODAY": TODAY})
        assert result.exit_code == 0, result.output
    return root


def snapshot(root):
    """The stored snapshots and reports (the raw vendor archive may grow)."""
    return {str(p.relative_to(root)): p.read_bytes() for sub in ("parquet", "reports")
            for p in sorted((root / sub).rglob("*")) if p.is_file()}


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
def test_3_every_read_and_doctor_name_a_bad_file(good_root, two_day_root, tmp_path, config, name, damage):
    root = copy(two_day_root if name == "outcomes" else good_root, tmp_path)   # outcomes need two sessions
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
    doctor = cli(root, config, "doctor", "--deep")
    assert doctor.exit_code == 1 and str(path) in doctor.output, doctor.output
    if damage == "truncated":                # the default, fast doctor reads the frame bytes only
        fast = cli(root, config, "doctor")
        assert fast.exit_code == 1 and str(path) in fast.output, fast.output


def test_3_values_changed_behind_the_store_are_caught_by_doctor_not_trusted_silently(good_root, tmp_path, config):
    # Reads check columns and types only (values were validated when written); a file rewritten
    # outside the store with the right schema but impossible values is doctor's to name.
    from pipeline.contract.store import expected_schema

    root = copy(good_root, tmp_path)
    store = Store(root)
    _, path = store.files("prices")[-1]
    table = pq.read_table(path)
    close = table.column("close").to_numpy().copy()
    close[0] = -1.0
    table = table.set_column(table.schema.get_field_index("close"), "close", pa.array(close))
    assert table.schema.equals(expected_schema("prices"), check_metadata=False)
    pq.write_table(table, path)
    assert store.check_file("prices", path) is None                   # the footer is fine
    assert "close" in store.check_file("prices", path, values=True)
    doctor = cli(root, config, "doctor", "--deep")
    assert doctor.exit_code == 1 and str(path) in doctor.output and "close" in doctor.output, doctor.output


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


# ---- 4. dates ------------------------------------------------------------------------------------

def test_4_future_and_too_early_dates_exit_2_with_the_real_range_and_write_nothing(good_root, tmp_path, config):
    root = copy(good_root, tmp_path)
    before = snapshot(root)
    future = cli(root, config, "rank", "--date", "2030-01-02")
    assert future.exit_code == 2, future.output
    assert "2030-01-02 is in the future" in future.output and f"to the current session {TODAY}" in future.output
    early = cli(root, config, "rank", "--date", "2012-01-03")
    assert early.exit_code == 2 and "supported as-of dates are 2012-01-13" in early.output, early.output
    assert snapshot(root) == before
    # A future partition (written before this rule existed) is a doctor FAIL, not "fresh".
    shutil.copytree(root / "parquet" / "calendar" / f"asof={DATE}", root / "parquet" / "calendar" / "asof=2030-01-02")
    doctor = cli(root, config, "doctor")
    assert doctor.exit_code == 1 and "after the current session" in doctor.output


def test_4_today_and_yesterday_are_dates():
    from pipeline.driver.cli import resolve_date
    from pipeline.contract.config import Config

    assert resolve_date("today", Config()) == pd.Timestamp(TODAY)
    assert resolve_date("yesterday", Config()) == pd.Timestamp("2026-11-30")


# ---- 5. operational errors: a message and an exit code, never a traceback -----------------------

def test_5_unwritable_lock_log_and_manifest_end_with_a_message(good_root, tmp_path, config, monkeypatch):
    import errno
    import logging

    import pipeline.driver.runlog as runlog

    root = copy(good_root, tmp_path)

    class DeniedLock:
        def __init__(self, path, timeout):
            self.path = path

        def acquire(self):
            raise PermissionError(errno.EACCES, "Permission denied", self.path)

    with monkeypatch.context() as m:
        m.setattr(runlog, "FileLock", DeniedLock)
        result = cli(root, config, "compute", "--date", DATE)
    assert result.exit_code == 1 and "Permission denied" in result.output and ".pipeline.lock" in result.output
    assert "Traceback" not in result.output

    logging.getLogger("pipeline").handlers.clear()       # the next run opens its log again
    with monkeypatch.context() as m:
        def denied(self):
            raise PermissionError(errno.EACCES, "Permission denied", self.baseFilename)
        m.setattr(runlog._QuietFileHandler, "_open", denied)
        result = cli(root, config, "compute", "--date", DATE)
    assert result.exit_code == 1 and "cannot write the log" in result.output and "Traceback" not in result.output

    real = runlog.atomic_write_bytes

    def no_runs(path, write):
        if "runs" in path.parts:
            raise PermissionError(errno.EACCES, "Permission denied", str(path.parent))
        return real(path, write)

    with monkeypatch.context() as m:
        m.setattr(runlog, "atomic_write_bytes", no_runs)
        result = cli(root, config, "compute", "--date", DATE)
    assert result.exit_code == 1 and "the run manifest could not be written" in result.output
    assert "Traceback" not in result.output


def test_5_disk_full_in_the_log_and_in_the_report_keeps_metrics_and_report_together(good_root, tmp_path, config,
                                                                                     monkeypatch):
    """Simulated ENOSPC (the suite cannot count on mounting a small tmpfs)."""
    import errno
    import logging

    import pipeline.views.report as report
    import pipeline.driver.runlog as runlog

    root = copy(good_root, tmp_path)
    before = snapshot(root)
    logging.getLogger("pipeline").handlers.clear()

    def full_log(self, record):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            self.handleError(record)

    def full_report(metrics, root, as_of, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "reports"))

    monkeypatch.setattr(runlog._QuietFileHandler, "emit", full_log)
    monkeypatch.setattr(report, "write_report", full_report)
    # A changed config would change the metrics: they must not be replaced when the report fails.
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(SETTINGS | {"score_weights": {"vrp": 0.7, "consistency": 0.1, "skew": 0.1,
                                                                     "liquidity": 0.1}}))
    result = cli(root, changed, "rank", "--date", DATE)
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "the disk is full" in result.output
    assert result.output.count("cannot write the log") == 1 and "Traceback" not in result.output
    assert snapshot(root) == before


# ---- 6. SIGINT / SIGTERM -------------------------------------------------------------------------

@pytest.mark.parametrize("name,n", [("SIGINT", 1), ("SIGTERM", 4), ("SIGTERM", 9), ("SIGINT", 12)])
def test_6_signals_leave_a_manifest_and_a_rerun_equals_an_uninterrupted_run(good_root, tmp_path, config, name, n):
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path / "data"
    helper = Path(__file__).with_name("signal_helper.py")
    env = {**__import__("os").environ, "PIPELINE_TODAY": TODAY}
    cmd = [sys.executable, str(helper), name, str(n), "--", "--data-dir", str(root), "--config", str(config),
           "daily", "--date", DATE]
    died = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert died.returncode == {"SIGINT": 130, "SIGTERM": 143}[name], died.stderr[-3000:]
    assert "Traceback" not in died.stderr and f"interrupted by {name}" in died.stderr
    manifest = last_manifest(root)
    assert manifest["interrupted"] == name and manifest["exit_status"] == died.returncode
    assert list(root.rglob(".tmp-*")) == []
    rerun = cli(root, config, "daily", "--date", DATE)             # the lock was released
    assert rerun.exit_code == 0, rerun.output
    assert snapshot(root) == snapshot(good_root)


# ---- 7. exit 3 is explained ----------------------------------------------------------------------

def test_7_exhausted_budget_exits_3_with_one_record_per_ticker_and_a_paragraph(tmp_path, config):
    settings = SETTINGS | {"source": "live", "live": {"alphavantage_daily_budget": 4, "alphavantage_min_interval": 0.0}}
    live_config = tmp_path / "live.yaml"
    live_config.write_text(yaml.safe_dump(settings))
    with LoopbackVendor(SyntheticMarket(seed=7, universe_size=120), DATE, token=TOKEN, apikey=APIKEY) as server:
        result = cli(tmp_path / "data", live_config, "daily", "--date", DATE, env=vendor_env(server))
    assert result.exit_code == 3, result.output
    failures = last_manifest(tmp_path / "data")["failures"]
    keys = [(f["ticker"], f["stage"]) for f in failures]
    assert len(keys) == len(set(keys))
    deferred = [f for f in failures if f["stage"] == "fetch-history"]
    assert deferred and all(f["reason"].startswith("deferred") for f in deferred)
    assert "partial run (exit 3)" in result.output and "Alpha Vantage" in result.output
    assert "budget resets" in result.output and deferred[0]["ticker"] in result.output
    # The deferred names that reached the report say why, naming the budget.
    report = pd.read_csv(tmp_path / "data" / "reports" / f"rank_{DATE}.csv").set_index("ticker")
    reasons = report.loc[sorted({f["ticker"] for f in deferred} & set(report.index)), "reason"]
    assert len(reasons) and reasons.str.contains("Alpha Vantage daily budget").all(), reasons.tolist()


# ---- 8. rank names inputs that were never fetched ---------------------------------------------

def test_8_rank_after_widening_the_window_names_what_was_never_fetched(good_root, tmp_path):
    root = copy(good_root, tmp_path)
    wider = tmp_path / "wider.yaml"
    wider.write_text(yaml.safe_dump(SETTINGS | {"lookahead_days": 14}))
    result = cli(root, wider, "rank", "--date", DATE)
    assert result.exit_code == 3, result.output
    assert f"never fetched for {DATE}" in "".join(f["reason"] for f in last_manifest(root)["failures"])
    assert "partial run (exit 3)" in result.output and "rank-inputs" in result.output


# ---- 9. friction ---------------------------------------------------------------------------------

def test_9_options_after_the_sub_command_symbols_load_and_defaults(good_root, tmp_path, config, monkeypatch):
    from pipeline import load
    from pipeline.contract.config import parse_config

    result = CliRunner().invoke(main, ["doctor", "--data-dir", str(good_root), "--config", str(config),
                                       "--source", "synthetic"], env={"PIPELINE_TODAY": TODAY})
    assert result.exit_code == 0 and str(config) in result.output, result.output
    assert parse_config({"universe": {"symbols": ["brk.b", " aapl", "AAPL"]}}).symbols == ("BRK.B", "AAPL")
    with pytest.raises(ValueError, match="unknown dataset 'metric'.*metrics"):
        load("metric", data_dir=good_root)
    sunday = load("metrics", date="2026-11-22", data_dir=good_root)
    pd.testing.assert_frame_equal(sunday, load("metrics", date=DATE, data_dir=good_root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIPELINE_CONFIG", raising=False)
    monkeypatch.delenv("PIPELINE_DATA_DIR", raising=False)
    elsewhere = CliRunner().invoke(main, ["rank", "--date", "2030-01-01"], env={"PIPELINE_TODAY": TODAY})
    assert "using built-in defaults" in elsewhere.output and elsewhere.exit_code == 2


def test_9_a_rejected_key_is_reported_as_rejected_not_as_not_called(tmp_path):
    from pipeline.sources.limits import ProviderUnavailable

    with LoopbackVendor(SyntheticMarket(seed=7, universe_size=20), DATE, token=TOKEN, apikey=APIKEY) as server:
        source = live_source(server, tmp_path, None)
        server.inject("unauthorized", endpoint="expirations")
        with pytest.raises(ProviderUnavailable) as first:
            source.expirations(["AAA"], pd.Timestamp(DATE))
        assert "not called" not in str(first.value) and "TRADIER_TOKEN" in str(first.value)
        with pytest.raises(ProviderUnavailable, match="not called"):
            source.expirations(["AAB"], pd.Timestamp(DATE))
        source.close()


# ---- 10. vendor symbols and the Alpha Vantage price fallback ----------------------------------

def test_10_symbol_mapping_round_trips_at_both_vendors():
    from pipeline.sources.alphavantage import parse_calendar
    from pipeline.contract.tickers import from_vendor, to_vendor

    assert to_vendor("BRK.B", "alphavantage") == "BRK-B" and to_vendor("BRK.B", "tradier") == "BRK.B"
    assert from_vendor("BRK-B", "alphavantage") == "BRK.B"
    for symbol in ("BRK.B", "MOG.A", "AAPL", "X", "HEI.A"):
        for vendor in ("tradier", "alphavantage"):
            assert from_vendor(to_vendor(symbol, vendor), vendor) == symbol
    frame, skipped = parse_calendar(b"symbol,name,reportDate,fiscalDateEnding,estimate,currency\n"
                                    b"BRK-B,Berkshire,2026-12-03,2026-09-30,4.1,USD\n")
    assert list(frame["ticker"]) == ["BRK.B"] and skipped == []


def test_10_live_clients_speak_each_vendors_spelling_and_fall_back_to_alpha_vantage_bars(tmp_path):
    market = SyntheticMarket(seed=7, universe_size=120)          # holds BRK.B and BF-B
    as_of = pd.Timestamp(DATE)
    with LoopbackVendor(market, DATE, token=TOKEN, apikey=APIKEY) as server:
        source = live_source(server, tmp_path, None, alphavantage_min_interval=0.0, alphavantage_price_fallback=True)
        calendar = source.calendar(as_of, 90)
        assert {"BRK.B", "BF.B"} <= set(calendar["ticker"]) and "BF-B" not in set(calendar["ticker"])
        history = source.earnings_history(["BRK.B", "BF.B"], as_of)
        assert set(history["ticker"]) == {"BRK.B", "BF.B"}
        bars = source.prices(["BF.B"], as_of - pd.Timedelta(days=20), as_of)
        assert set(bars["ticker"]) == {"BF.B"} and set(bars["source"]) == {"tradier"}
        # Tradier's history fails for one ticker: Alpha Vantage's daily bars stand in, same values.
        server.inject("bad_request", endpoint="history", symbol="BRK.B", times=20)
        start = as_of - pd.Timedelta(days=20)
        got = source.prices(["BRK.B"], start, as_of)
        assert server.requests["TIME_SERIES_DAILY"] == 1 and list(source.failures) == []
        assert set(got["source"]) == {"alphavantage"}
        expected = market.prices(["BRK.B"], start, as_of) if hasattr(market, "prices") else None
        if expected is not None:
            pd.testing.assert_frame_equal(got.drop(columns="source").reset_index(drop=True),
                                          expected[got.drop(columns="source").columns].reset_index(drop=True),
                                          check_exact=False, rtol=0, atol=1e-9, check_dtype=False)
        source.close()
