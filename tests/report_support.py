"""One real daily run shared by the explain, HTML and notebook tests (built once per process).

The small synthetic market (120 names, seed 7, one-week window) is run for 2026-11-20 with every
stage; then one event's option chain is dropped and compute + report rerun, so the date has ok,
degraded and failed events.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pipeline.driver.steps import NAMES

AS_OF = pd.Timestamp("2026-11-20")
SETTINGS = {"source": "synthetic", "synthetic": {"seed": 7, "universe_size": 120}, "lookahead_days": 7}
ALL_STEPS = list(NAMES)
_BUILT: dict = {}


def settings_for(root: Path):
    from pipeline.contract.config import resolve

    config = root.parent / f"{root.name}-config.yaml"
    config.write_text(yaml.safe_dump(SETTINGS, sort_keys=False))
    return resolve(str(config), root)


def run(settings, steps, as_of=AS_OF):
    from pipeline.driver.run import execute

    outcome = execute("test", [as_of], steps, settings)
    assert outcome.exit_status == 0, outcome.message
    return outcome


def report_root(tmp_path_factory) -> tuple[Path, str]:
    """(data root, ticker of the failed event)."""
    if "root" not in _BUILT:
        from pipeline.contract.store import Store

        root = tmp_path_factory.mktemp("report-daily") / "data"
        settings = settings_for(root)
        run(settings, ALL_STEPS)
        store = Store(root)
        metrics = store.read("metrics", AS_OF)
        victim = metrics.loc[metrics["status"] == "ok", "ticker"].iloc[-1]
        chains = store.read("chains", AS_OF)
        store.write("chains", chains[chains["ticker"] != victim], AS_OF)
        run(settings, ["compute", "report"])
        _BUILT["root"], _BUILT["failed"] = root, victim
    return _BUILT["root"], _BUILT["failed"]
