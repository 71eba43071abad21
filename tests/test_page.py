"""The analyst's page of a fresh data root's first `daily`: laid out by headless Chromium at 1,400 px
without horizontal scrolling, one section per event with its past reports drawn (no "0 of 0" when
the event has history), axis labels that read back as their tick values, one unit convention."""
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from report_support import ALL_STEPS, AS_OF, run, settings_for

from tools.screenshot import find_browser, measure

DAY = AS_OF.date().isoformat()
needs_chromium = pytest.mark.skipif(find_browser() is None,
                                    reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def first_daily(tmp_path_factory):
    """One `daily` on an empty data root: the moves dataset does not exist before this run."""
    root = tmp_path_factory.mktemp("first-daily") / "data"
    run(settings_for(root), ALL_STEPS)
    page = root / "reports" / f"rank_{DAY}.html"
    return root, page, page.read_text(), pd.read_csv(root / "reports" / f"rank_{DAY}.csv")


def _sections(text: str) -> dict[str, str]:
    return dict(re.findall(r'<details class="event" id="([^"]+)".*?>(.*?)</details>', text, flags=re.S))


def test_every_event_has_its_section_with_its_past_reports(first_daily):
    _, _, text, csv = first_daily
    sections = _sections(text)
    anchors = [f"ev-{t}-{d}" for t, d in zip(csv["ticker"], csv["report_date"])]
    assert list(sections) == anchors                       # every event, in rank order
    assert (csv["n_events"] > 0).sum() >= len(csv) // 2
    for anchor, n_events in zip(anchors, csv["n_events"]):
        body = sections[anchor]
        bars = len(re.findall(r'<rect [^>]*class="bar', body))
        assert bars == n_events, (anchor, bars, n_events)
        if n_events > 0:
            assert " of 0 beyond" not in body
        title = re.search(r"past reports: (\d+) of (\d+) beyond", body)
        assert int(title.group(2)) == n_events
        assert len(re.findall(r'class="bar beyond"', body)) == int(title.group(1))


def test_each_section_has_term_structure_smile_and_every_csv_column(first_daily):
    _, _, text, csv = first_daily
    sections = _sections(text)
    with_term = sum('class="chart term"' in body for body in sections.values())
    with_smile = sum('class="chart smile"' in body for body in sections.values())
    assert with_term >= 0.8 * len(csv) and with_smile >= 0.6 * len(csv)
    for anchor, body in sections.items():
        names = re.findall(r'<td class="k"[^>]*>([^<]+)</td>', body)
        assert names == list(csv.columns), anchor


def test_axis_labels_read_back_as_their_ticks(first_daily):
    _, _, text, _ = first_daily
    labels = re.findall(r'<text [^>]*class="(t[xy])" data-value="([^"]+)">([^<]*)</text>', text)
    assert len(labels) > 100
    for _, value, label in labels:
        shown = float(label[:-1]) / 100 if label.endswith("%") else float(label)
        assert shown == pytest.approx(float(value), abs=1e-12), (label, value)
    # A whole axis: distinct labels (2.5% steps never print as "2%, 2%").
    for svg in re.findall(r"<svg .*?</svg>", text, flags=re.S):
        ys = re.findall(r'class="ty" data-value="[^"]+">([^<]*)<', svg)
        assert len(ys) == len(set(ys)), ys


@given(lo=st.floats(-0.5, 0.5), span=st.floats(1e-4, 2.0))
@settings(max_examples=200, deadline=None)
def test_percent_ticks_are_exact(lo, span):
    from pipeline.kernel.ticks import nice_ticks
    from pipeline.views.svg_charts import percent_labels

    ticks = nice_ticks(lo, lo + span)
    labels = percent_labels(ticks)
    # nice_ticks snaps a limit within 1e-9 of a step onto that tick (float noise, not a new tick).
    slack = 1e-9 * (ticks[1] - ticks[0]) + 1e-12
    assert ticks[0] <= lo + slack and ticks[-1] >= lo + span - slack
    assert np.allclose([float(x[:-1]) / 100 for x in labels], ticks, rtol=0, atol=1e-12)
    assert len(set(labels)) == len(labels)


def test_one_unit_convention(first_daily):
    """Percent for people (page, console, explain text), fractions in the CSV."""
    from click.testing import CliRunner

    from pipeline.driver.cli import main

    root, _, text, csv = first_daily
    assert csv["implied_move"].dropna().lt(1).all()        # fractions in the CSV
    row = csv.dropna(subset=["implied_move"]).iloc[0]
    assert f"{row['implied_move'] * 100:.2f}%" in text
    out = CliRunner().invoke(main, ["--data-dir", str(root), "explain", row["ticker"], "--date", DAY])
    assert out.exit_code == 0, out.output
    smile = next(line for line in out.output.splitlines() if line.startswith("Smile fit"))
    assert re.search(r"skew_atm_iv (\d+\.\d+%|-)", smile), smile
    from pipeline.views.display import console_table

    console = console_table(pd.read_csv(root / "reports" / f"rank_{DAY}.csv"))
    assert f"{row['implied_move'] * 100:.2f}%" in console


def test_daily_prints_the_page_path(first_daily):
    from click.testing import CliRunner

    from pipeline.driver.cli import main

    root, page, _, _ = first_daily
    config = root.parent / f"{root.name}-config.yaml"
    out = CliRunner().invoke(main, ["--config", str(config), "--data-dir", str(root), "rank", "--date", DAY])
    assert out.exit_code == 0, out.output
    assert f"page: {page}" in out.output


@needs_chromium
def test_page_fits_1400_px_with_fixed_row_heights(first_daily):
    _, page, _, csv = first_daily
    laid = measure(page, width=1400)
    assert laid["scrollWidth"] <= 1400 and laid["tableScrollWidth"] <= 1400, laid
    heights = set(laid["rowHeights"])
    assert len(laid["rowHeights"]) >= len(csv) and len(heights) == 1, heights


@needs_chromium
def test_page_with_every_optional_column_still_fits(first_daily, tmp_path):
    """The density's and the suggested structure's columns (later stages) appear when the frame
    has them, and the table still fits."""
    from pipeline.contract.config import Config
    from pipeline.views.html_report import render_html
    from pipeline.views.report import report_frame
    from pipeline.contract.store import Store

    root, _, _, _ = first_daily
    metrics = Store(root).read("metrics", AS_OF)
    frame = report_frame(metrics)
    extra = {"rn_p_exceed_implied": 0.41, "hist_p_exceed_implied": 0.33, "rn_p_exceed_5pct": 0.52,
             "hist_p_exceed_5pct": 0.45, "rn_p_exceed_10pct": 0.21, "hist_p_exceed_10pct": 0.18,
             "suggested_structure": "iron_condor", "suggested_credit_fill": 1.234, "suggested_risk": 3.766,
             "suggested_breakeven_low_expiry": 95.5, "suggested_breakeven_high_expiry": 104.5,
             "suggested_pop_hist": 0.72, "suggested_ev_hist": 0.15, "suggested_contracts": 3}
    frame = frame.assign(**extra)
    text = render_html(frame, metrics, root, AS_OF, Config())
    for header in ("P&gt;impl mkt/hist", "Trade", "Credit/risk", "POP/EV", "Qty"):
        assert f">{header}</th>" in text, header
    assert "41.0% / 33.0%" in text and "1.23 / 3.77" in text and "72.0% / 0.15" in text
    page = tmp_path / "page.html"
    page.write_text(text)
    laid = measure(page, width=1400)
    assert laid["scrollWidth"] <= 1400 and laid["tableScrollWidth"] <= 1400, laid
    assert len(set(laid["rowHeights"])) == 1


def test_the_readme_picture_is_from_the_current_layout(first_daily):
    """docs/report.png carries the layout version of the page that made it (`make screenshot`);
    a change of the page's layout (LAYOUT_VERSION) without a new picture fails here."""
    from pathlib import Path

    from pipeline.views.html_report import LAYOUT_VERSION
    from tools.screenshot import layout_of_page, layout_of_png

    _, page, _, _ = first_daily
    assert layout_of_page(page) == LAYOUT_VERSION
    repo = Path(__file__).resolve().parents[1]
    assert "](docs/report.png)" in (repo / "README.md").read_text()
    assert layout_of_png(repo / "docs" / "report.png") == LAYOUT_VERSION, \
        "docs/report.png is from an older report layout: run `make screenshot`"


def test_every_suggested_structure_has_its_payoff_with_breakevens(first_daily):
    """Issue 20's structures on the page: the suggested structure's P&L at exit (solid, the stored
    ``payoff`` curve, priced by the stage's exit_pnl) with a dashed marker at each stored exit
    breakeven, where that curve crosses zero; the P&L at expiry (dashed, the stage's expiry_pnl)
    crossing zero at the stored expiry breakevens; the past moves as ticks; a row per stored
    candidate in the event's table."""
    from pipeline.contract.store import Store

    root, _, text, csv = first_daily
    sections = _sections(text)
    structures = Store(root).read("structures", AS_OF)
    structures["report_date"] = pd.to_datetime(structures["report_date"]).dt.strftime("%Y-%m-%d")
    chosen = structures[structures["suggested"] & (structures["status"] == "ok")]
    assert len(chosen) >= len(csv) // 3
    assert set(zip(chosen["ticker"], chosen["report_date"])) == \
        set(zip(csv.loc[csv["suggested_structure"].notna(), "ticker"],
                csv.loc[csv["suggested_structure"].notna(), "report_date"]))
    payoffs = 0
    for anchor, body in sections.items():
        payoffs += body.count('class="chart payoff"')
    assert payoffs == len(chosen)

    def polyline(svg, cls):
        return np.array([p.split(",") for p in re.search(rf'points="([^"]+)"[^>]*class="{cls}"', svg).group(1).split()],
                        float)

    for row in chosen.itertuples():
        body = sections[f"ev-{row.ticker}-{row.report_date}"]
        svg = re.search(r'<svg [^>]*class="chart payoff".*?</svg>', body, flags=re.S).group(0)
        assert f"suggested {row.structure.replace('_', ' ')}" in svg
        marks = [float(v) for v in re.findall(r'class="breakeven" data-value="([^"]+)"', svg)]
        expected = [b / row.spot - 1 for b in (row.breakeven_low_exit, row.breakeven_high_exit) if np.isfinite(b)]
        assert expected and marks == pytest.approx(expected, abs=1e-12), (row.ticker, marks, expected)
        zero_y = float(re.search(r'<line [^>]*y1="([^"]+)" y2="\1" class="axis zero"/>', svg).group(1))
        # The exit curve (solid) passes through zero at each exit breakeven marker (pixels); the
        # stage found those on its own grid, so a pixel of slack on the smooth curve.
        at_exit = polyline(svg, "pnl")
        assert 'class="pnl"' in svg and "stroke-dasharray" not in re.search(r'<polyline[^>]*class="pnl"', svg).group(0)
        for x in re.findall(r'<line x1="([^"]+)"[^>]*class="breakeven"', svg):
            at = np.argmin(np.abs(at_exit[:, 0] - float(x)))
            assert abs(at_exit[at, 0] - float(x)) <= 0.1 and abs(at_exit[at, 1] - zero_y) <= 2.0, (row.ticker, x, at_exit[at])
        # The expiry curve (dashed) is exact: zero at the stored expiry breakevens.
        at_expiry = polyline(svg, "pnl-expiry")
        assert "stroke-dasharray" in re.search(r'<polyline[^>]*class="pnl-expiry"', svg).group(0)
        assert at_expiry[0, 0] == at_exit[0, 0] and at_expiry[-1, 0] == at_exit[-1, 0]
        n_expiry = sum(np.isfinite(b) for b in (row.breakeven_low_expiry, row.breakeven_high_expiry))
        assert (np.abs(at_expiry[:, 1] - zero_y) <= 0.6).sum() >= n_expiry, (row.ticker, at_expiry)
        ticks = re.findall(r'class="past"', svg)
        assert len(ticks) == row_n_events(csv, row)
        candidates = re.search(r'<table class="cand">.*?</table>', body, flags=re.S).group(0)
        n_candidates = ((structures["ticker"] == row.ticker) & (structures["report_date"] == row.report_date)).sum()
        assert candidates.count("<tr") - 1 == n_candidates
        assert len(re.findall(r'<tr data-suggested="yes">', candidates)) == 1


def row_n_events(csv: pd.DataFrame, row) -> int:
    match = csv[(csv["ticker"] == row.ticker) & (csv["report_date"] == row.report_date)]
    return int(match["n_events"].iloc[0])


@needs_chromium
def test_page_with_every_section_open_fits_1400_px(first_daily, tmp_path):
    """Every event section open (charts, candidate table, density line): still no horizontal scroll."""
    _, page, text, _ = first_daily
    opened = tmp_path / "open.html"
    opened.write_text(text.replace('<details class="event"', '<details open class="event"'))
    laid = measure(opened, width=1400)
    assert laid["scrollWidth"] <= 1400 and laid["tableScrollWidth"] <= 1400, laid
