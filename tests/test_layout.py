"""The data root has one owner, :class:`pipeline.contract.layout.Layout`: move its folders and every command
(replay, backtest, explain, doctor, the quarantine of a bad file, the sweep of temporaries)
follows, writing nothing where the default layout would have put it."""
from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.driver.cli import main
from pipeline.contract.layout import FOLDERS, KNOWN_TOP_LEVEL, LOCK, LOCK_HOLDER, MARKER, SWEPT_FOLDERS, Layout

AS_OF = "2026-11-20"
MOVED = {name: f"moved-{name}" for name in FOLDERS}


@pytest.fixture
def moved_layout(monkeypatch):
    """Every top-level folder of every Layout renamed (``parquet`` -> ``moved-parquet``, ...)."""
    for name, moved in MOVED.items():
        monkeypatch.setattr(Layout, name, property(lambda self, moved=moved: self.root / moved))


def _cli(root, config, *args):
    result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result


def test_every_command_follows_a_moved_layout(moved_layout, tmp_path, small_config, small_daily_root):
    from pipeline.driver.doctor import run_checks

    root = tmp_path / "root"
    _cli(root, small_config, "replay", "--start", "2026-11-19", "--end", AS_OF)
    backtest = _cli(root, small_config, "backtest", "--start", AS_OF, "--end", AS_OF)
    ranked = pd.read_csv(root / MOVED["reports"] / f"rank_{AS_OF}.csv")
    explained = _cli(root, small_config, "explain", ranked["ticker"].iloc[0], "--date", AS_OF, "--json")

    # The same report as the default layout's daily of that date, found where the layout says.
    assert (root / MOVED["reports"] / f"rank_{AS_OF}.csv").read_bytes() == \
        (small_daily_root / "reports" / f"rank_{AS_OF}.csv").read_bytes()
    assert f'"ticker": "{ranked["ticker"].iloc[0]}"' in explained.output
    assert str(root / MOVED["parquet"] / "backtest") in backtest.output
    assert any((root / MOVED["reports"]).glob("backtest_*.png"))
    assert any((root / MOVED["raw"] / "synthetic").rglob("*.parquet"))
    assert any((root / MOVED["runs"]).glob("*.json")) and any((root / MOVED["logs"]).glob("*.log"))

    # A damaged partition is quarantined and a leftover temporary swept, both where the layout says.
    calendar = root / MOVED["parquet"] / "calendar" / f"asof={AS_OF}" / "part-0.parquet"
    calendar.write_bytes(b"not parquet")
    leftover = root / MOVED["reports"] / f".tmp-{'0' * 32}-rank.csv.partial"
    leftover.write_bytes(b"half")
    _cli(root, small_config, "daily", "--date", AS_OF)
    assert not leftover.exists()
    assert [p.read_bytes() for p in (root / MOVED["quarantine"]).rglob("part-0.parquet")] == [b"not parquet"]

    checks = {c.name: c for c in run_checks(root, str(small_config), None, environ={}, today=pd.Timestamp(AS_OF))}
    assert checks["data files"].status == "ok" and not checks["data files"].detail.startswith("0 ")
    assert checks["data metrics"].detail.startswith(f"latest {AS_OF}")

    top = {p.name for p in root.iterdir()}
    assert top <= set(MOVED.values()) | {MARKER, LOCK, LOCK_HOLDER}, top


def test_the_root_check_and_the_sweep_know_the_layouts_folders(tmp_path):
    layout = Layout(tmp_path)
    assert {p.name for p in layout.folders()} == set(FOLDERS) <= KNOWN_TOP_LEVEL
    assert {p.name for p in layout.swept_folders()} == set(SWEPT_FOLDERS) == set(FOLDERS) - {"quarantine"}
    assert {layout.marker.name, layout.lock.name, layout.lock_holder.name, layout.config_file.name} <= KNOWN_TOP_LEVEL


def test_partition_files_are_hive_folders_of_one_file(tmp_path):
    layout = Layout(tmp_path)
    assert layout.partition_file("metrics", AS_OF) == tmp_path / "parquet" / "metrics" / f"date={AS_OF}" / "part-0.parquet"
    assert layout.partition_file("moves") == tmp_path / "parquet" / "moves" / "part-0.parquet"
    with pytest.raises(ValueError, match="partitioned by 'asof'"):
        layout.partition_file("calendar")
