"""Shared synthetic universes, their truth and data roots.

Every fixture here is session-scoped: built once per test process (once per xdist worker) and
shared by all modules, so treat what they return as read-only. Modules whose tests share a
costly fixture of their own mark those tests ``xdist_group`` so that, under ``-n``, one worker
builds it (``--dist loadgroup`` in pyproject.toml).
"""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.sources.synthetic import SyntheticMarket

AS_OF = pd.Timestamp("2026-11-20")
REPO = Path(__file__).resolve().parents[1]
TRUTH_HORIZON = 14              # days: the longest window any test asks the truth for
# The small synthetic run: the first 120 names of the default universe, a one-week window.
SMALL_SETTINGS = {"source": "synthetic", "synthetic": {"seed": 7, "universe_size": 120}, "lookahead_days": 7}


def daily_run(root: Path, config: Path, date: str = "2026-11-20"):
    """``pipeline daily`` in-process; fails the caller when it does not exit 0."""
    from click.testing import CliRunner

    from pipeline.driver.cli import main

    result = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", date],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="session")
def market():
    """The default universe of config.yaml: 500 names, seed 7."""
    return SyntheticMarket(seed=7, universe_size=500)


@pytest.fixture(scope="session")
def small_market():
    """120 names, seed 7 (the same names and parameters as the first 120 of ``market``): for the
    loopback vendors and small end-to-end runs, where every name costs requests."""
    return SyntheticMarket(seed=7, universe_size=120)


@pytest.fixture(scope="session")
def truth(market):
    """``truth(h)`` equals ``market.truth_events(AS_OF, h)`` for 0 <= h <= 14, from one call.

    Each call simulates the whole universe's price paths since 2010 (seconds); a shorter horizon
    only drops the reports dated after AS_OF + h: realized moves do not depend on the horizon,
    and the model straddle columns belong to each name's first upcoming report, which is the same
    in any window that holds it (reports are a quarter apart).
    test_truth_recovery.py checks the equality against a direct call.
    """
    full = market.truth_events(AS_OF, TRUTH_HORIZON)

    def upto(horizon: int) -> pd.DataFrame:
        assert 0 <= horizon <= TRUTH_HORIZON, horizon
        return full[full["report_date"] <= AS_OF + pd.Timedelta(days=horizon)].reset_index(drop=True)

    return upto


@pytest.fixture(scope="session")
def small_config(tmp_path_factory) -> Path:
    """Config file of the small synthetic run (SMALL_SETTINGS)."""
    path = tmp_path_factory.mktemp("small-config") / "config.yaml"
    path.write_text(yaml.safe_dump(SMALL_SETTINGS, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_daily_root(tmp_path_factory, small_config) -> Path:
    """Data root of one uninterrupted synthetic ``pipeline daily`` of ``small_config`` on AS_OF."""
    root = tmp_path_factory.mktemp("small-daily")
    daily_run(root, small_config)
    return root


@pytest.fixture(scope="session")
def daily_root(tmp_path_factory) -> Path:
    """Data root of a ``pipeline daily`` with the repository's config.yaml (500 names) on AS_OF.
    test_pipeline_run.py runs ``rank`` on it, which rewrites the same report."""
    root = tmp_path_factory.mktemp("daily")
    daily_run(root, REPO / "config.yaml")
    return root
