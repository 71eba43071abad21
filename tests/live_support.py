"""Helpers shared by the tests/test_live_*.py files (not a test module)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from pipeline.contract.config import Config, with_environment
from pipeline.contract.layout import Layout
from pipeline.sources.live import LiveSource

# Distinctive values, so a byte search finds any leak.
TOKEN = "tok-SECRET-7f3a9c51e0"
APIKEY = "AVKEY-SECRET-19d2e8b4"


def vendor_env(server, token: str = TOKEN, apikey: str = APIKEY, today=None) -> dict:
    """Credentials and URLs of the loopback vendor; ``PIPELINE_TODAY`` is the day it serves unless
    ``today`` says otherwise (a live source serves only the current session)."""
    today = pd.Timestamp(server.as_of if today is None else today).date().isoformat()
    return {"TRADIER_TOKEN": token, "ALPHAVANTAGE_API_KEY": apikey, "PIPELINE_TODAY": today,
            "TRADIER_BASE_URL": server.tradier_url, "ALPHAVANTAGE_BASE_URL": server.alphavantage_url}


def live_source(server, root: Path, clock, **config) -> LiveSource:
    settings = {"source": "live", "alphavantage_daily_budget": 500} | config
    env = vendor_env(server)
    return LiveSource.from_config(with_environment(Config(**settings), env), root, clock=clock)


def cached_urls(root: Path) -> list[str]:
    """The (redacted) URLs stored in the SQLite HTTP cache, read straight from the database."""
    path = Layout(root).http_cache
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [json.loads(value)["url"] for (value,) in db.execute("select value from responses")]


def files_containing(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in Path(root).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


# The loopback vendor of the live test modules: import ``clock, server, vendor`` into a module to
# get one server per module (module-scoped) on the first 120 names, serving 2026-11-20.
@pytest.fixture(scope="module")
def clock():
    from loopback import FakeClock

    return FakeClock()


@pytest.fixture(scope="module")
def server(small_market, clock):
    from loopback import LoopbackVendor

    with LoopbackVendor(small_market, pd.Timestamp("2026-11-20"), token=TOKEN, apikey=APIKEY, clock=clock) as vendor:
        yield vendor


@pytest.fixture
def vendor(server):
    """The shared server with fresh counters, no pending faults and default quirks."""
    from loopback import Quirks

    server.reset_counts()
    server._faults.clear()
    server.quirks = Quirks()
    return server
