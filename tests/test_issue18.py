"""Issue 18: operations without surprises. One test (or a few) per numbered case of the issue;
each reproduced the case before its fix. ``PIPELINE_TODAY`` fixes "today"."""
from contextlib import contextmanager

import pandas as pd
import pytest
import yaml
from live_support import APIKEY, TOKEN, live_source, vendor_env
from loopback import LoopbackVendor
from ops_support import DATE, SETTINGS, TODAY, cli, config, copy, fixed_today, good_root, last_manifest  # noqa: F401

from pipeline.sources.base import SourceError
from pipeline.sources.synthetic import SyntheticMarket

# One worker builds the module's data roots (a daily, a 10-session replay) once, not one per worker.
pytestmark = pytest.mark.xdist_group("issue18")


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


# ---- 2. backtest selections are checked and never overwrite each other ------------------------------

BT_START, BT_END = "2026-11-09", "2026-11-20"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("i18-replay")
    result = cli(root, config, "replay", "--start", BT_START, "--end", BT_END)
    assert result.exit_code == 0, result.output
    return root


def test_2_unknown_tiers_exit_2_listing_the_valid_ones_and_write_nothing(replayed, config):
    for option, bad in (("--vrp-tier", "EXCELENT"), ("--liquidity-tier", "great")):
        result = cli(replayed, config, "backtest", "--start", "2026-11-10", "--end", BT_END, option, bad)
        assert result.exit_code == 2, result.output
        assert bad.upper() in result.output and "valid: EXCELLENT, GOOD" in result.output
        assert "Empty DataFrame" not in result.output
    assert not list((replayed / "reports").glob("backtest*"))


def test_2_selections_have_their_own_files_and_the_rank_page_links_the_unfiltered_run(replayed, config, tmp_path):
    root = copy(replayed, tmp_path)
    plain = cli(root, config, "backtest", "--start", "2026-11-10", "--end", BT_END)
    assert plain.exit_code == 0, plain.output
    unfiltered = root / "reports" / f"backtest_2026-11-10_{BT_END}.csv"
    before = unfiltered.read_bytes()
    lower = cli(root, config, "backtest", "--start", "2026-11-10", "--end", BT_END, "--vrp-tier", "excellent",
                "--vrp-tier", "Good", "--top", "3")
    assert lower.exit_code == 0, lower.output
    filtered = root / "reports" / f"backtest_2026-11-10_{BT_END}_vrp-excellent-good_top3.csv"
    assert filtered.exists() and unfiltered.read_bytes() == before
    upper = cli(root, config, "backtest", "--start", "2026-11-10", "--end", BT_END, "--vrp-tier", "GOOD",
                "--vrp-tier", "EXCELLENT", "--top", "3")
    assert filtered.read_bytes() == (root / "reports" / filtered.name).read_bytes() and upper.exit_code == 0
    # Tiers in their configured order, units in the headers.
    summary = pd.read_csv(unfiltered)
    assert "mean_pnl ($ per straddle)" in summary.columns and "win_rate (fraction)" in summary.columns
    tiers = summary.loc[summary["group"] == "liquidity_tier", "value"].tolist()
    assert tiers == [t for t in ("EXCELLENT", "GOOD", "WARNING", "REJECT") if t in tiers] and len(tiers) > 1
    page = cli(root, config, "rank", "--date", BT_END)
    assert page.exit_code == 0, page.output
    html = (root / "reports" / f"rank_{BT_END}.html").read_text()
    assert unfiltered.name in html and filtered.name not in html


def test_2_sessions_without_snapshots_are_counted_or_refused_and_dates_moved_are_said(replayed, config, tmp_path):
    root = copy(replayed, tmp_path)
    # 2026-11-04 .. 2026-11-20: 13 sessions, of which 11-04 .. 11-09 (4) lack their entry snapshots.
    some = cli(root, config, "backtest", "--start", "2026-11-04", "--end", BT_END)
    assert some.exit_code == 0, some.output
    assert "4 of 13 sessions of the range have no stored snapshots" in some.output
    most = cli(root, config, "backtest", "--start", "2026-10-01", "--end", BT_END)
    assert most.exit_code == 2, most.output
    assert "pipeline replay --start 2026-09-30 --end 2026-11-20" in most.output
    weekend = cli(root, config, "backtest", "--start", "2026-11-14", "--end", "2026-11-22")
    assert weekend.exit_code == 0, weekend.output
    assert "--start 2026-11-14 is not an NYSE session; the range starts at the next session 2026-11-16" in weekend.output
    assert "--end 2026-11-22 is not an NYSE session; the range ends at the previous session 2026-11-20" in weekend.output
    assert (root / "reports" / "backtest_2026-11-16_2026-11-20.csv").exists()


# ---- 3. an option that skips an output never deletes an existing one silently ----------------------

def test_3_no_html_says_it_removed_the_old_page(good_root, config, tmp_path):
    root = copy(good_root, tmp_path)
    page = root / "reports" / f"rank_{DATE}.html"
    assert page.exists()
    result = cli(root, config, "rank", "--date", DATE, "--no-html")
    assert result.exit_code == 0, result.output
    assert not page.exists()          # it showed the previous metrics: never left beside a newer CSV
    assert f"removed {page}" in result.output and "--no-html" in result.output
    assert any(str(page) in note for note in last_manifest(root)["notes"])
    again = cli(root, config, "rank", "--date", DATE, "--no-html")    # nothing to remove: nothing said
    assert again.exit_code == 0 and f"removed {page}" not in again.output


# ---- 4. advice is a command that would succeed ---------------------------------------------------

def test_4_live_rank_of_a_date_never_stored_does_not_advise_itself(good_root, config, tmp_path):
    root = copy(good_root, tmp_path)
    with LoopbackVendor(SyntheticMarket(seed=7, universe_size=120), TODAY, token=TOKEN, apikey=APIKEY) as server:
        result = cli(root, config, "--source", "live", "rank", "--date", "2026-11-18", env=vendor_env(server))
        stored = cli(root, config, "--source", "live", "daily", "--date", DATE, env=vendor_env(server))
    assert result.exit_code == 2, result.output
    assert "pipeline rank --date 2026-11-18" not in result.output
    assert f"never stored" in result.output and f"`pipeline rank --date {DATE}`" in result.output
    advised = cli(root, config, "--source", "live", "rank", "--date", DATE)      # the advice works
    assert advised.exit_code == 0, advised.output
    assert stored.exit_code == 2 and f"`pipeline rank --date {DATE}` recomputes" in stored.output


# ---- 5. an interrupted dask run: one line per cause, 130, the session being worked on ---------------

def test_5_ctrl_c_during_a_dask_replay_prints_one_line_per_cause_and_exits_130(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(SETTINGS | {"synthetic": {"seed": 7, "universe_size": 60}}))
    root = tmp_path / "data"
    from pathlib import Path

    cmd = [str(Path(sys.executable).with_name("pipeline")), "--data-dir", str(root), "--config", str(config), "replay",
           "--start", "2026-11-02", "--end", "2026-11-13", "--engine", "dask"]
    env = {**os.environ, "PIPELINE_TODAY": TODAY}
    # A session of its own, like a terminal's foreground group: Ctrl-C reaches every process in it.
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((root / "reports").glob("rank_*.csv")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)                      # the cluster is up and sessions are being written
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "distributed" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 3, err            # the replay plan, the manifest, the one error line
    named = re.search(r"error: replay (\d{4}-\d{2}-\d{2}) .*interrupted by SIGINT", err)
    assert named, err
    # The first session whose task had not come back (its report may just have been written), not
    # the range end that the local engine's message would name after the per-date steps.
    assert "2026-11-02" <= named.group(1) < "2026-11-13" and "sessions unfinished, to 2026-11-13" in err
    assert last_manifest(root)["interrupted"] == "SIGINT"


# ---- 6. doctor: an unwritable root fails, another session warns, vendors checked at once, fast ------

@contextmanager
def read_only(path):
    """``path`` made unwritable: mode bits, or for root (whom they do not stop) the immutable flag."""
    import os
    import subprocess

    mode = path.stat().st_mode
    path.chmod(0o555)
    flagged = False
    if os.access(path, os.W_OK):
        flagged = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        probe = path / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a folder read-only here (neither mode bits nor chattr apply)")
        yield path
    finally:
        if flagged:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


def test_6_doctor_fails_on_a_data_root_it_cannot_write(good_root, config, tmp_path):
    root = copy(good_root, tmp_path)
    assert cli(root, config, "doctor").exit_code == 0
    for folder in (root, root / "reports"):
        with read_only(folder):
            result = cli(root, config, "doctor")
        assert result.exit_code == 1, result.output
        assert "data root" in result.output and "FAIL" in result.output and str(folder) in result.output


def test_6_doctor_warns_when_tradier_serves_another_session(tmp_path, config):
    from pipeline.driver.doctor import WARN, run_checks

    with LoopbackVendor(SyntheticMarket(seed=7, universe_size=60), DATE, token=TOKEN, apikey=APIKEY) as server:
        checks = {c.name: c for c in run_checks(tmp_path / "data", str(config), "live",
                                                 environ=vendor_env(server, today=TODAY))}
    assert checks["tradier"].status == WARN, checks["tradier"]
    assert f"not the current session {TODAY}" in checks["tradier"].detail and DATE in checks["tradier"].detail


def test_6_vendor_checks_run_at_once_within_the_probe_timeout(tmp_path, config, monkeypatch):
    import socket
    import time

    from pipeline.driver import doctor
    from pipeline.driver.doctor import FAIL, run_checks

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                     # connections are accepted by the kernel, never answered
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setattr(doctor, "PROBE_TIMEOUT", 1.0)
    env = {"TRADIER_TOKEN": TOKEN, "ALPHAVANTAGE_API_KEY": APIKEY, "PIPELINE_TODAY": TODAY,
           "TRADIER_BASE_URL": url + "/v1", "ALPHAVANTAGE_BASE_URL": url + "/query"}
    started = time.monotonic()
    checks = {c.name: c for c in run_checks(tmp_path / "data", str(config), "live", environ=env)}
    elapsed = time.monotonic() - started
    silent.close()
    assert checks["tradier"].status == FAIL and checks["alphavantage"].status == FAIL
    assert "no answer within 1 s" in checks["tradier"].detail
    assert elapsed < 1.9, elapsed        # one timeout for both, not one after the other


def test_6_the_fast_doctor_imports_no_pandas_and_deep_still_validates(good_root, config):
    import os
    import subprocess
    import sys

    code = ("import sys; from pipeline.driver.cli import main\n"
            "try: main()\nexcept SystemExit as e: code = e.code\n"
            "print('heavy:', sorted(m for m in ('pandas', 'pyarrow', 'pandera', 'numpy') if m in sys.modules))\n"
            "sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code, "--data-dir", str(good_root), "--config", str(config), "doctor"],
                         capture_output=True, text=True, env={**os.environ, "PIPELINE_TODAY": TODAY}, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "heavy: []" in run.stdout and "Parquet files whole" in run.stdout
    deep = cli(good_root, config, "doctor", "--deep")
    assert deep.exit_code == 0 and "the newest validate" in deep.output
