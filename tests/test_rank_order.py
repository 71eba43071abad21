"""The rank order rule: tradeable with premium (signal VRP tier MARGINAL or better), then tradeable
without premium (SKIP), then not tradeable; by score within each. Checked on five dates in the
CSV, the page and the console, and as a property of rank_events."""
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from report_support import ALL_STEPS, run, settings_for

from pipeline.stages.rank import rank_events, rank_group

DATES = [pd.Timestamp(d) for d in ("2026-08-03", "2026-09-15", "2026-10-22", "2026-11-04", "2026-11-20")]


@pytest.fixture(scope="module")
def five_dates(tmp_path_factory):
    root = tmp_path_factory.mktemp("rank-order") / "data"
    settings = settings_for(root)
    for day in DATES:
        run(settings, ALL_STEPS, as_of=day)
    return root


def _group(csv: pd.DataFrame) -> np.ndarray:
    tradeable = csv["vrp"].notna() & csv["liquidity_tier"].ne("REJECT")
    premium = csv["vrp_tier"].notna() & csv["vrp_tier"].ne("SKIP")
    return np.select([tradeable & premium, tradeable], [0, 1], 2)


@pytest.mark.parametrize("day", DATES, ids=[d.date().isoformat() for d in DATES])
def test_rank_order_rule_in_csv_page_and_console(five_dates, day):
    from pipeline.views.display import console_table

    name = f"rank_{day.date().isoformat()}"
    csv = pd.read_csv(five_dates / "reports" / f"{name}.csv")
    assert len(csv) >= 5
    group = _group(csv)
    assert (np.diff(group) >= 0).all(), group
    assert {0, 1} <= set(group), "a date without both tradeable groups does not test the rule"
    for g in set(group):
        scores = csv.loc[group == g, "score"].dropna().to_numpy()
        assert (np.diff(scores) <= 1e-9).all()
    assert csv["rank"].tolist() == list(range(1, len(csv) + 1))
    page = (five_dates / "reports" / f"{name}.html").read_text()
    table = page[page.index('id="ranked"'):page.index("</table>")]
    assert re.findall(r'href="#ev-([^"]+)-\d{4}-\d{2}-\d{2}"', table) == csv["ticker"].tolist()
    console = console_table(csv, rows=len(csv)).splitlines()[1:]
    assert [line.split()[1] if line.startswith("!") else line.split()[0] for line in console] == \
        [str(r) for r in csv["rank"]]


@given(st.lists(st.tuples(st.sampled_from(["EXCELLENT", "GOOD", "MARGINAL", "SKIP", None]),
                          st.sampled_from(["EXCELLENT", "GOOD", "WARNING", "REJECT"]),
                          st.floats(0, 100)), min_size=1, max_size=30))
@settings(max_examples=100, deadline=None)
def test_skip_never_ranks_above_a_tradeable_event_with_premium(rows):
    tiers, liquidity, scores = zip(*rows)
    metrics = pd.DataFrame({
        "ticker": [f"T{i:02d}" for i in range(len(rows))], "report_date": pd.Timestamp("2026-11-24"),
        "vrp_tier": pd.array(tiers, dtype="str"), "liquidity_tier": liquidity,
        "vrp": [np.nan if t is None else 1.0 for t in tiers],
        "score": [np.nan if t is None else s for t, s in zip(tiers, scores)]})
    ranked = rank_events(metrics)
    group = rank_group(ranked).to_numpy()
    assert (np.diff(group) >= 0).all()
    premium = ranked[group == 0]
    assert premium["vrp_tier"].isin(["EXCELLENT", "GOOD", "MARGINAL"]).all()
    assert premium["liquidity_tier"].ne("REJECT").all()
