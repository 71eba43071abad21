"""Issue 18: the soak. 30 consecutive synthetic sessions through ``pipeline daily`` with a fault on
every third one, in turn: SIGKILL mid-write, a truncated partition, a read-only report folder and
a vendor 500 storm (that session runs live against the loopback vendor). Afterwards every date's
outputs equal a clean run's, no partial file is left anywhere and every fault is named in a
manifest.

Kept cheap: 40 names (about 3-5 events a day) and no HTML page; the clean baseline is one
``replay`` of the same 30 sessions (the same per-date steps as ``daily``, its once-per-range
steps done once), computed once in the test.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from live_support import APIKEY, TOKEN, vendor_env
from loopback import LoopbackVendor
from ops_support import TODAY, cli
from test_issue18 import read_only

from pipeline.contract import sessions
from pipeline.sources import limits
from pipeline.sources.synthetic import SyntheticMarket

LAST = "2026-11-20"
SETTINGS = {"source": "synthetic", "synthetic": {"seed": 7, "universe_size": 40}, "lookahead_days": 7,
            "report": {"html": False},
            "live": {"alphavantage_daily_budget": 500, "alphavantage_min_interval": 0.0}}
FAULTS = ("sigkill", "truncated", "read-only-reports", "vendor-500-storm")
DATED = ("calendar", "chains", "surface", "metrics")


def outputs(root: Path, day: str) -> dict:
    """A date's outputs: its dated partitions and its report, as bytes."""
    files = {f"{name}": root / "parquet" / name / f"{'asof' if name == 'calendar' else 'date'}={day}" / "part-0.parquet"
             for name in DATED}
    files["report"] = root / "reports" / f"rank_{day}.csv"
    return {name: path.read_bytes() if path.exists() else None for name, path in files.items()}


def same_data(name: str, ours: bytes, clean: bytes) -> bool:
    """Byte equality; for a live session's partitions (the vendors' name in ``source``) the same
    rows and values in every other column."""
    import io

    if ours == clean or name == "report":
        return ours == clean
    a, b = (pd.read_parquet(io.BytesIO(data)) for data in (ours, clean))
    if "source" in a.columns and set(a["source"]) - {"synthetic"}:
        a, b = a.drop(columns="source"), b.drop(columns="source")
    return a.equals(b)


def manifests(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*.json"))]


@pytest.mark.slow
def test_soak_30_sessions_with_a_fault_every_third(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    days = [str(d.date()) for d in sessions.sessions_between(pd.Timestamp("2026-09-01"), pd.Timestamp(LAST))[-30:]]

    clean = tmp_path / "clean"
    replay = cli(clean, config, "replay", "--start", days[0], "--end", days[-1])
    assert replay.exit_code == 0, replay.output

    root = tmp_path / "soak"
    helper = Path(__file__).with_name("signal_helper.py")
    named = {}                                  # fault session -> the manifest text naming it
    market = SyntheticMarket(seed=7, universe_size=40)
    with LoopbackVendor(market, days[0], token=TOKEN, apikey=APIKEY) as server:
        for i, day in enumerate(days, start=1):
            fault = FAULTS[(i // 3 - 1) % len(FAULTS)] if i % 3 == 0 else None
            before = len(manifests(root)) if root.exists() else 0
            if fault == "sigkill":              # killed between writing a temporary and renaming it
                died = subprocess.run([sys.executable, str(helper), "SIGKILL", str(3 + i % 5), "--", "--data-dir",
                                       str(root), "--config", str(config), "daily", "--date", day],
                                      capture_output=True, text=True, timeout=300,
                                      env={**os.environ, "PIPELINE_TODAY": TODAY})
                assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
                assert list(root.rglob(".tmp-*")), "the kill left no partial file"
            elif fault == "truncated":
                (year,) = (root / "parquet" / "prices").glob(f"year={day[:4]}/part-0.parquet")
                with open(year, "r+b") as fh:
                    fh.truncate(year.stat().st_size // 2)
            elif fault == "read-only-reports":
                with read_only(root / "reports"):
                    refused = cli(root, config, "daily", "--date", day)
                assert refused.exit_code == 1, refused.output
            if fault == "vendor-500-storm":
                server.as_of = pd.Timestamp(day)
                shutil.rmtree(root / "cache", ignore_errors=True)   # 30 sessions in seconds: no 12-hour cache
                live_env = vendor_env(server, today=day)
                monkeypatch.setattr(limits.Clock, "sleep", lambda self, seconds: None)   # backoff without waiting
                server.inject("server_error", endpoint="chains", times=6)   # two chains fail all 3 attempts
                stormed = cli(root, config, "--source", "live", "daily", "--date", day, env=live_env)
                assert stormed.exit_code == 3, stormed.output
                result = cli(root, config, "--source", "live", "daily", "--date", day, env=live_env)
                monkeypatch.undo()
            else:
                result = cli(root, config, "daily", "--date", day)
            assert result.exit_code == 0, (day, fault, result.output)
            if fault:
                named[(day, fault)] = json.dumps(manifests(root)[before:])

    assert list(root.rglob(".tmp-*")) == []                       # no partial file anywhere
    for (day, fault), text in named.items():                       # every fault named in a manifest
        expected = {"sigkill": '"removed_partials"', "truncated": f"year={day[:4]}",
                    "read-only-reports": "reports", "vendor-500-storm": "HTTP 500"}[fault]
        assert expected in text, (day, fault)
    assert {fault for _, fault in named} == set(FAULTS) and len(named) == 10
    assert all(outputs(clean, day)["report"] is not None for day in days)
    different = [(day, name) for day in days for name, data in outputs(root, day).items()
                 if not same_data(name, data, outputs(clean, day)[name])]
    assert different == []
    runs = manifests(root)
    print(f"soak: {len(days)} sessions {days[0]}..{days[-1]}, {len(named)} faults "
          f"({', '.join(f'{f} x{sum(1 for _, g in named if g == f)}' for f in FAULTS)}), {len(runs)} manifests "
          f"(exit codes {sorted({m['exit_status'] for m in runs})}); {len(days) * 5} dated outputs equal the clean run")
