"""rank_D.html: self-contained, parseable, with the table and charts; written with the CSV;
rendered by a real headless Chromium to a non-blank screenshot."""
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from report_support import AS_OF, report_root, run, settings_for

from tools.screenshot import blank_share, find_browser, screenshot

DAY = AS_OF.date().isoformat()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return report_root(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def page(root):
    return (root / "reports" / f"rank_{DAY}.html").read_text()


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.refs, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [value for name, value in attrs if name in ("src", "href", "xlink:href", "action") and value]


def test_self_contained_and_parseable(page):
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    external = [r for r in parser.refs if re.match(r"(?i)\s*(https?:)?//", r)]
    assert not external, external
    # CSS: no url()/@import from the network, no web fonts.
    assert not re.search(r"(?i)(@import|url\(\s*['\"]?\s*(https?:)?//|@font-face)", page)
    assert parser.refs and all(r.startswith("#") or r.endswith((".csv", ".html", ".png")) for r in parser.refs)


def test_table_and_charts(root, page):
    csv = pd.read_csv(root / "reports" / f"rank_{DAY}.csv")
    assert page.count("<tr class=") == len(csv) and 'id="ranked"' in page
    for ticker in csv["ticker"].head(10):
        assert f">{ticker}" in page
    assert 'class="failed"' in page and 'class="degraded"' in page and "\u26a0" in page
    assert page.count("<svg") >= 1 + 2 * 3      # the scatter, then bars and term structure of the top events


def test_csv_and_html_replaced_together_and_no_html(root, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    settings = settings_for(copy)
    html = copy / "reports" / f"rank_{DAY}.html"
    from dataclasses import replace

    run(replace(settings, config=replace(settings.config, report_html=False)), ["report"])
    assert not html.exists() and (copy / "reports" / f"rank_{DAY}.csv").exists()
    run(settings, ["report"])
    assert html.exists()
    assert not list((copy / "reports").glob(".tmp-*"))


def test_html_failure_keeps_the_csv(root, tmp_path, monkeypatch):
    import shutil

    import pipeline.views.html_report as hr

    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    monkeypatch.setattr(hr, "render_html", lambda *a, **k: 1 / 0)
    csv = copy / "reports" / f"rank_{DAY}.csv"
    csv.unlink()
    run(settings_for(copy), ["report"])
    assert csv.exists() and not (copy / "reports" / f"rank_{DAY}.html").exists()


def test_csv_is_rounded_parquet_is_not(root):
    from pipeline.contract.store import Store

    text = (root / "reports" / f"rank_{DAY}.csv").read_text().splitlines()
    header = text[0].split(",")
    row = dict(zip(header, text[1].split(",")))
    assert len(row["implied_move"].split(".")[-1]) <= 6 and len(row["vrp"].split(".")[-1]) <= 4
    metrics = Store(root).read("metrics", AS_OF)
    assert (metrics["implied_move"].dropna().round(6) != metrics["implied_move"].dropna()).any()


def test_every_report_column_is_documented():
    from pipeline.views.columns import COLUMNS
    from pipeline.views.report import REPORT_COLUMNS

    assert set(REPORT_COLUMNS) <= set(COLUMNS)


def test_chromium_renders_a_non_blank_page(root, tmp_path):
    if find_browser() is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    png = screenshot(root / "reports" / f"rank_{DAY}.html", tmp_path / "shot.png", 1200, 1400)
    share = blank_share(png)
    assert share < 0.97, f"screenshot is {share:.1%} one colour"
