"""SIGKILL at stage boundaries and mid-write, then rerun: the outputs equal an uninterrupted run.
Also: no overlapping runs, and a lock left by a killed run is taken over."""
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.driver.cli import main

HELPER = Path(__file__).with_name("crash_helper.py")
DATE = "2026-11-20"


def daily(root, config):
    return CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", DATE])


def outputs(root: Path) -> dict:
    keep = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".parquet", ".csv")]
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(keep)}


@pytest.fixture(scope="module")
def reference(small_daily_root):
    """The outputs of an uninterrupted run of small_config (conftest)."""
    return outputs(small_daily_root)


def killed_run(root, config, mode, n):
    cmd = [sys.executable, str(HELPER), mode, str(n), "--", "--data-dir", str(root), "--config", str(config),
           "daily", "--date", DATE]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mode,n", [("mid", 1), ("after", 3), ("mid", 6), ("mid", 12), ("after", 14), ("mid", 16)])
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, small_config, reference, mode, n):
    died = killed_run(tmp_path, small_config, mode, n)
    assert died.returncode == -9, died.stderr[-2000:]
    # Whatever a reader can see right now is whole: every file a "*.parquet" glob matches
    # (DuckDB and polars do not skip dot-files) parses.
    for path in tmp_path.rglob("*.parquet"):
        pq.read_table(path)
    assert list((tmp_path / "reports").glob("*.csv")) == [] or (tmp_path / "reports" / f"rank_{DATE}.csv").read_bytes() == \
        reference[f"reports/rank_{DATE}.csv"]
    assert daily(tmp_path, small_config).exit_code == 0
    assert outputs(tmp_path) == reference
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_a_second_run_exits_75_while_the_first_holds_the_lock(tmp_path, small_config):
    cmd = [sys.executable, str(HELPER), "hold", "0", "--hold", "20", "--", "--data-dir", str(tmp_path),
           "--config", str(small_config), "daily", "--date", DATE]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "holding"
        second = daily(tmp_path, small_config)
        assert second.exit_code == 75
        assert "another pipeline run holds" in second.output and f"pid {first.pid}" in second.output
    finally:
        first.kill()
        first.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, small_config):
    cmd = [sys.executable, str(HELPER), "hold", "0", "--hold", "60", "--", "--data-dir", str(tmp_path),
           "--config", str(small_config), "daily", "--date", DATE]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "holding"
    first.kill()
    first.wait()
    assert (tmp_path / ".pipeline.lock.holder").exists()        # the dead run's note is still there
    started = time.monotonic()
    result = daily(tmp_path, small_config)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 120
