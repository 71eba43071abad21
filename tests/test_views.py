"""Views only read: compute stores what `explain`, the page and the notebook show (the ATM IV per
expiration, ``term``; the past reports behind each event's statistics, ``event_history``; the
event expiration's smile quotes, ``smile``), and the views draw those stored rows instead of
recomputing them."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from report_support import AS_OF, report_root, settings_for

from pipeline.contract.schemas import DatasetValidationError, validate
from pipeline.contract.store import Store


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return report_root(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def stored(built):
    store = Store(built)
    return {name: store.read(name, AS_OF) for name in ("metrics", "term", "event_history", "smile", "surface", "payoff")}


def test_the_view_datasets_validate_and_their_contracts_bite(built, stored):
    store = Store(built)
    for name in ("term", "event_history", "smile", "payoff"):
        assert len(stored[name])
        assert store.check_file(name, store.partition_path(name, AS_OF), values=True) is None
        validate(name, stored[name])
    history = stored["event_history"]
    with pytest.raises(DatasetValidationError, match="abs_move"):
        validate("event_history", history.assign(abs_move=-history["abs_move"] - 0.01))
    with pytest.raises(DatasetValidationError, match="past_report_date"):
        validate("event_history", pd.concat([history, history.iloc[:1]], ignore_index=True))
    with pytest.raises(DatasetValidationError, match="atm_iv"):
        validate("term", stored["term"].assign(atm_iv=-1.0))
    with pytest.raises(DatasetValidationError, match="iv"):
        validate("smile", stored["smile"].assign(iv=0.0))
    payoff = stored["payoff"]
    with pytest.raises(DatasetValidationError, match="point"):
        validate("payoff", pd.concat([payoff, payoff.iloc[:1]], ignore_index=True))
    with pytest.raises(DatasetValidationError, match="curve"):
        validate("payoff", payoff.assign(curve="mid"))
    with pytest.raises(DatasetValidationError, match="move"):
        validate("payoff", payoff.assign(move=-1.0))


def test_history_rows_recompute_the_statistics(stored):
    """The rows are the window the metrics used: their count is n_events, their mean and median
    |move| the metrics' hist_mean/median_abs_move, their exceedances hist_exceed_count/share."""
    metrics, history = stored["metrics"], stored["event_history"]
    assert (history["abs_move"] == history["close_move"].abs()).all()       # the default move_type
    by = history.groupby(["ticker", "report_date"])
    rows = pd.DataFrame({"n": by.size(), "mean": by["abs_move"].mean(), "median": by["abs_move"].median(),
                         "exceeded": by["exceeded"].sum(), "known": by["exceeded"].count()})
    joined = metrics.join(rows, on=["ticker", "report_date"])
    assert (joined["n"].fillna(0).astype(int) == joined["n_events"]).all()
    assert (joined["n_events"] > 0).sum() >= len(joined) // 2
    stats = joined[joined["hist_mean_abs_move"].notna()]
    assert len(stats) and np.allclose(stats["mean"], stats["hist_mean_abs_move"], rtol=1e-12, atol=0)
    assert np.allclose(stats["median"], stats["hist_median_abs_move"], rtol=1e-12, atol=0)
    counted = joined[joined["hist_exceed_count"].notna()]
    assert len(counted) and (counted["exceeded"] == counted["hist_exceed_count"]).all()
    assert np.allclose(counted["exceeded"] / counted["n"], counted["hist_exceed_share"], rtol=1e-12, atol=0)
    # Without an implied move nothing is said to exceed it.
    no_implied = history.merge(metrics.loc[metrics["implied_move"].isna(), ["ticker", "report_date"]])
    assert no_implied["exceeded"].isna().all()
    # Oldest first within each event, past reports only.
    assert (by["reaction_date"].apply(lambda d: d.is_monotonic_increasing)).all()
    assert (history["reaction_date"] <= AS_OF).all()


def test_term_rows_are_the_surfaces_atm_iv(stored):
    from pipeline.stages.term import atm_iv_by_expiration

    atm = atm_iv_by_expiration(stored["surface"])
    pd.testing.assert_frame_equal(stored["term"], atm[["ticker", "expiration", "t", "atm_iv"]], check_exact=True)


def test_smile_rows_are_the_event_expirations_quotes(stored):
    """One expiration per event (its straddle's), the surface's OTM quotes with a usable IV."""
    from pipeline.stages.term import event_smiles

    metrics, smile = stored["metrics"], stored["smile"]
    pairs = smile[["ticker", "expiration"]].drop_duplicates()
    assert len(pairs) == metrics["expiration"].notna().sum()
    assert set(map(tuple, pairs.to_numpy())) == set(map(tuple, metrics[["ticker", "expiration"]].dropna().to_numpy()))
    pd.testing.assert_frame_equal(smile, event_smiles(stored["surface"], metrics), check_exact=True)
    # Out of the money: puts below the forward (k < 0), calls at or above it.
    surface = stored["surface"]
    assert (smile["k"] < 0).any() and (smile["k"] >= 0).any() and (surface["iv_status"] != "ok").any()


def _tampered_root(built, tmp_path):
    """A copy of the data root whose stored view rows of one event were changed behind compute's
    back: its oldest past report now dates from July 1999 and moved 43.21%, its ATM IVs are 200%
    and its smile quotes 250%."""
    root = tmp_path / "data"
    shutil.copytree(built, root)
    store = Store(root)
    metrics = store.read("metrics", AS_OF)
    history = store.read("event_history", AS_OF)
    term = store.read("term", AS_OF)
    event = metrics[(metrics["n_events"] > 0) & metrics["ticker"].isin(term.loc[term["atm_iv"].notna(), "ticker"])
                    & metrics["implied_move"].notna() & metrics["skew_atm_iv"].notna()].iloc[0]
    first = history.index[(history["ticker"] == event["ticker"]) & (history["report_date"] == event["report_date"])][0]
    history.loc[first, ["past_report_date", "close_move", "abs_move"]] = [pd.Timestamp("1999-07-15"), 0.4321, 0.4321]
    store.write("event_history", history, AS_OF)
    store.write("term", term.assign(atm_iv=term["atm_iv"].where(term["ticker"] != event["ticker"], 2.0)), AS_OF)
    smile = store.read("smile", AS_OF)
    store.write("smile", smile.assign(iv=smile["iv"].where(smile["ticker"] != event["ticker"], 2.5)), AS_OF)
    return root, event


def test_explain_and_the_page_show_the_stored_rows(built, tmp_path):
    from pipeline.driver import jobs
    from pipeline.views.explain import explain

    root, event = _tampered_root(built, tmp_path)
    settings = settings_for(root)
    doc = explain(Store(root), event["ticker"], AS_OF, settings.config)
    oldest = doc["history"]["reports"][0]
    assert (oldest["report_date"], oldest["close_move"]) == ("1999-07-15", 0.4321)
    assert {p["atm_iv"] for p in doc["term_structure"]["expirations"]} <= {2.0, None}

    jobs.report(jobs.Context(settings.config, Store(root)), AS_OF)
    page = (root / "reports" / f"rank_{AS_OF.date()}.html").read_text()
    anchor = f"ev-{event['ticker']}-{event['report_date'].date()}"
    section = re.search(rf'<details class="event" id="{anchor}".*?</details>', page, flags=re.S).group(0)
    assert "<title>99-07: 43.21%</title>" in section
    term_chart = re.search(r'<svg [^>]*class="chart term".*?</svg>', section, flags=re.S).group(0)
    ticks = [float(v) for v in re.findall(r'class="ty" data-value="([^"]+)"', term_chart)]
    assert max(ticks) >= 2.0
    smile_chart = re.search(r'<svg [^>]*class="chart smile".*?</svg>', section, flags=re.S).group(0)
    ticks = [float(v) for v in re.findall(r'class="ty" data-value="([^"]+)"', smile_chart)]
    assert max(ticks) >= 2.5


VIEW_SCRIPT = """
import json, sys
from pipeline.contract.config import resolve
from pipeline.views.explain import explain
from pipeline.contract.store import Store
settings = resolve({config!r}, {root!r})
explain(Store(settings.root), {ticker!r}, {day!r}, settings.config)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("pipeline.stages"))))
"""


def test_explain_imports_no_stage(built, stored):
    """explain reads stored rows only: running it loads no pipeline.stages module."""
    settings_for(built)                       # writes the config file beside the root
    config = built.parent / f"{built.name}-config.yaml"
    ticker = stored["metrics"].loc[stored["metrics"]["n_events"] > 0, "ticker"].iloc[0]
    script = VIEW_SCRIPT.format(config=str(config), root=str(built), ticker=ticker, day=str(AS_OF.date()))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


PAGE_SCRIPT = """
import json, sys
from pipeline.contract.config import resolve
from pipeline.views.report import report_frame
from pipeline.contract.store import Store
settings = resolve({config!r}, {root!r})
store = Store(settings.root)
metrics, structures, payoff = (store.read(name, {day!r}) for name in ("metrics", "structures", "payoff"))
frame = report_frame(metrics, structures)
before = {{m for m in sys.modules if m.startswith("pipeline.stages")}}
from pipeline.views.html_report import render_html
page = render_html(frame, metrics, settings.root, {day!r}, settings.config, structures, None, payoff)
assert 'class="chart term"' in page and 'class="chart smile"' in page and 'class="chart moves"' in page
assert page.count('class="chart payoff"') >= 5 and '<table class="cand">' in page
print(json.dumps(sorted({{m for m in sys.modules if m.startswith("pipeline.stages")}} - before)))
"""


def test_the_page_draws_history_term_smile_and_payoff_without_a_stage(built):
    """Drawing the past reports, the term structure, the smile and the suggested structures'
    payoffs (the stored ``payoff`` curves) loads no pipeline.stages module, the structures
    stage included. Not covered: the ranking that orders the page is the report's (loaded before)."""
    settings_for(built)
    config = built.parent / f"{built.name}-config.yaml"
    script = PAGE_SCRIPT.format(config=str(config), root=str(built), day=str(AS_OF.date()))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_date_stored_before_the_payoff_dataset_has_its_page_without_payoff_charts(built, tmp_path):
    """A partition written before compute stored ``payoff``: the report step draws the page with
    the candidate tables and every other chart, and no payoff chart (nothing recomputed); a
    compute of the date stores the curves and the charts come back."""
    from report_support import run

    root = tmp_path / "data"
    shutil.copytree(built, root)
    settings = settings_for(root)
    page = root / "reports" / f"rank_{AS_OF.date()}.html"
    drawn = page.read_text().count('class="chart payoff"')
    assert drawn >= 5
    Store(root).partition_path("payoff", AS_OF).unlink()
    run(settings, ["report"])
    text = page.read_text()
    assert 'class="chart payoff"' not in text and '<table class="cand">' in text and 'class="chart term"' in text
    run(settings, ["compute", "report"])
    assert page.read_text().count('class="chart payoff"') == drawn


def test_explain_of_a_date_computed_before_the_view_datasets_says_what_to_run(built, stored, tmp_path):
    from click.testing import CliRunner

    from pipeline.driver.cli import main

    day = str(AS_OF.date())
    ticker = stored["metrics"]["ticker"].iloc[0]
    for name in ("event_history", "term"):
        root = tmp_path / name / "data"
        shutil.copytree(built, root)
        Store(root).partition_path(name, AS_OF).unlink()
        result = CliRunner().invoke(main, ["--data-dir", str(root), "explain", ticker, "--date", day])
        assert result.exit_code == 2 and f"'{name}' dataset" in result.output, result.output
        assert f"pipeline rank --date {day}" in result.output
