"""What the operations tests share: a 120-name synthetic config with a fixed "today", and one
daily of DATE that tests copy (treat it as read-only). Import the fixtures into a test module
to use them; each module gets its own module-scoped copies."""
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from pipeline.driver.cli import main

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
    """One synthetic daily of DATE (CSV and page)."""
    root = tmp_path_factory.mktemp("ops-good")
    result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", DATE],
                                env={"PIPELINE_TODAY": TODAY})
    assert result.exit_code == 0, result.output
    return root


def copy(good_root, tmp_path):
    """A private copy of ``good_root`` to damage."""
    root = tmp_path / "data"
    shutil.copytree(good_root, root)
    return root


def last_manifest(root):
    return json.loads(sorted((root / "runs").glob("*.json"))[-1].read_text())


def cli(root, config, *args, env=None):
    """``pipeline --data-dir root --config config ARGS`` in process, on the fixed TODAY."""
    return CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), *args],
                              env={"PIPELINE_TODAY": TODAY} | (env or {}))
