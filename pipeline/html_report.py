"""``reports/rank_D.html``: one self-contained page (inline CSS, inline SVG charts, no script, no
network reference) beside ``rank_D.csv``, and the write that replaces both together.

The page: the ranked table (status and tiers colour-coded, degraded and failed rows marked), a
scatter of implied against historical move with VRP lines, and for the top events the past
reports' moves against today's implied move band and the term structure with the ex-earnings
line. Charts come from :mod:`pipeline.charts` (matplotlib, imported only when drawing).
"""
from __future__ import annotations

import html
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.columns import COLUMNS

log = logging.getLogger("pipeline")

TOP_EVENTS = 5
TABLE_COLUMNS = [
    "rank", "ticker", "report_date", "timing", "spot", "expiration", "implied_move", "hist_mean_abs_move",
    "n_events", "hist_exceed_count", "vrp", "vrp_event", "vrp_basis", "vrp_tier", "ts_implied_move",
    "consistency", "rr25", "liquidity_tier", "straddle_spread", "min_leg_open_interest", "score", "status",
    "reason",
]
PERCENT = {"implied_move", "hist_mean_abs_move", "ts_implied_move", "straddle_spread", "rr25"}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#1b2631;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}p.meta{color:#566573;margin:0 0 16px}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 6px;border-bottom:1px solid #e5e8e8;text-align:right;white-space:nowrap}
th{background:#1b2631;color:#fff;position:sticky;top:0}td.t{text-align:left}td.reason{text-align:left;white-space:normal;min-width:320px;font-size:11px;color:#566573}
tr.degraded td{background:#fef9e7}tr.failed td{background:#f2f3f4;color:#7f8c8d}
.tier{padding:1px 6px;border-radius:3px;font-weight:600;color:#fff}
.EXCELLENT{background:#1e8449}.GOOD{background:#2e86c1}.MARGINAL{background:#b7950b}.SKIP{background:#7f8c8d}
.WARNING{background:#ca6f1e}.REJECT{background:#c0392b}
.st-ok{color:#1e8449;font-weight:600}.st-degraded{color:#ca6f1e;font-weight:600}.st-failed{color:#c0392b;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{max-width:100%;height:auto}
.event{border:1px solid #e5e8e8;border-radius:6px;padding:8px;margin:10px 0}
"""


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return '<td></td>'
    if column in ("vrp_tier", "liquidity_tier"):
        return f'<td class="t"><span class="tier {html.escape(str(value))}">{html.escape(str(value))}</span></td>'
    if column == "status":
        return f'<td class="t"><span class="st-{html.escape(str(value))}">{html.escape(str(value))}</span></td>'
    if column == "reason":
        return f'<td class="reason">{html.escape(str(value))}</td>'
    if isinstance(value, (float, np.floating)):
        if column in PERCENT:
            text = f"{value:.2%}"
        elif column in ("min_leg_open_interest",):
            text = f"{value:,.0f}"
        elif column == "score":
            text = f"{value:.1f}"
        else:
            text = f"{value:.2f}" if column in ("spot", "vrp", "vrp_event", "consistency") else f"{value:.4g}"
        return f"<td>{text}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td>{value}</td>"
    return f'<td class="t">{html.escape(str(value))}</td>'


def ranked_table(frame: pd.DataFrame) -> str:
    """The ranked report as an HTML table; a row's class is its status."""
    columns = [c for c in TABLE_COLUMNS if c in frame.columns]
    head = "".join(f'<th title="{html.escape(COLUMNS.get(c, ("", None, ""))[2])}">{html.escape(c)}</th>'
                   for c in columns)
    rows = []
    for record in frame[columns].to_dict("records"):
        status = record.get("status")
        marker = {"degraded": " &#9888;", "failed": " &#10007;"}.get(status, "")
        cells = "".join(_cell(c, record[c]) for c in columns)
        if marker:      # the mark of a degraded or failed row sits after the ticker
            ticker = html.escape(str(record["ticker"]))
            cells = cells.replace(f'<td class="t">{ticker}</td>', f'<td class="t">{ticker}{marker}</td>', 1)
        rows.append(f'<tr class="{html.escape(str(status))}">{cells}</tr>')
    return f'<table id="ranked"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _backtest_links(reports: Path, as_of: str) -> str:
    from pipeline.backtest import UNFILTERED_STEM

    # The unfiltered runs only: a filtered run (its selection in the name) is one analyst's question.
    found = sorted(p.name for p in reports.glob("backtest*") if p.suffix in (".html", ".csv", ".png")
                   and UNFILTERED_STEM.fullmatch(p.stem))
    if not found:
        return ""
    links = " ".join(f'<a href="{html.escape(name)}">{html.escape(name)}</a>' for name in found)
    return f'<p class="meta">Backtest: {links}</p>'


def _event_charts(metrics: pd.DataFrame, top: pd.DataFrame, root: Path, as_of: pd.Timestamp, config) -> str:
    """Past-move bars and term structure for each of ``top`` (rows of the ranked frame)."""
    from pipeline import charts
    from pipeline.stages.term import atm_iv_by_expiration
    from pipeline.store import Store

    store = Store(root)
    tickers = top["ticker"].tolist()
    moves = store.scan("moves", tickers=tickers)
    moves = moves[moves["reaction_date"] <= as_of]
    surface = store.scan("surface", dates=[as_of], tickers=tickers)
    atm = atm_iv_by_expiration(surface.drop(columns="date")) if len(surface) else None
    by_event = metrics.set_index(["ticker", "report_date"])
    parts = []
    for i, row in enumerate(top.itertuples(index=False)):
        event = by_event.loc[(row.ticker, pd.Timestamp(row.report_date))]
        past = moves[moves["ticker"] == row.ticker].sort_values("reaction_date").tail(config.max_events)
        svg = [charts.past_moves_bars(row.ticker, past, float(event["implied_move"]), config.move_type, f"bars{i}")]
        if atm is not None:
            curve = atm[(atm["ticker"] == row.ticker) & atm["atm_iv"].notna()].sort_values("expiration")
            if len(curve):
                svg.append(charts.term_structure_chart(row.ticker, curve, as_of, event["reaction_date"],
                                                       float(event["ex_earnings_vol"]), f"term{i}"))
        title = (f"#{row.rank} {html.escape(row.ticker)} &middot; {html.escape(str(row.report_date))} "
                 f"{html.escape(str(row.timing))} &middot; implied {float(event['implied_move']):.2%} vs "
                 f"historical {float(event['hist_mean_abs_move']):.2%}")
        parts.append(f'<div class="event"><h3>{title}</h3><div class="charts">{"".join(svg)}</div></div>')
    return "".join(parts)


def render_html(frame: pd.DataFrame, metrics: pd.DataFrame, root: Path, as_of, config, top: int = TOP_EVENTS) -> str:
    """The page for the ranked ``frame`` (from :func:`pipeline.report.report_frame`) of ``metrics``."""
    from pipeline import charts

    as_of = pd.Timestamp(as_of)
    day = as_of.date().isoformat()
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "degraded", "failed"))
    body = [f"<h1>Earnings events ranked by volatility risk premium &middot; {day}</h1>",
            f'<p class="meta">{len(frame)} events ({summary}); moves and IVs in percent; data: '
            f'<a href="rank_{day}.csv">rank_{day}.csv</a></p>',
            _backtest_links(Path(root) / "reports", day)]
    body.append("<h2>Ranked events</h2>" + ranked_table(frame))
    if len(frame):
        lines = (1.0, *sorted(v for k, v in config.vrp_tiers.items() if k in ("MARGINAL", "EXCELLENT")))
        body.append('<h2>Implied against historical move</h2><div class="charts">'
                    + charts.vrp_scatter(frame, lines) + "</div>")
        tradeable = frame[frame["vrp"].notna() & frame["implied_move"].notna()].head(top)
        if len(tradeable):
            body.append(f"<h2>Top {len(tradeable)} events</h2>"
                        + _event_charts(metrics, tradeable, Path(root), as_of, config))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>ivcrush rank {day}</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def replace_together(files: dict[Path, bytes], remove: tuple[Path, ...] = ()) -> None:
    """Write every file to a hidden temporary in its directory, fsync them all, then rename each
    over its target and delete ``remove``: the renames follow each other with nothing in between,
    so readers never see one file of a new report beside a half-written other."""
    temporaries = {}
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}.partial"
            temporaries[path] = tmp
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
        for path in remove:
            path.unlink(missing_ok=True)
    finally:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
    for directory in {p.parent for p in files}:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def html_or_none(frame, metrics, root, as_of, config) -> bytes | None:
    """The page as bytes, or None (logged) when it cannot be made: the CSV is written regardless."""
    started = time.perf_counter()
    try:
        page = render_html(frame, metrics, root, as_of, config).encode()
    except Exception:  # noqa: BLE001 - the HTML is a view; its failure must not lose the CSV
        log.exception("HTML report for %s could not be made; writing the CSV only", pd.Timestamp(as_of).date())
        return None
    log.info("HTML report for %s rendered in %.2f s (%d bytes)", pd.Timestamp(as_of).date(),
             time.perf_counter() - started, len(page))
    return page
