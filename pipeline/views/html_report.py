"""``reports/rank_D.html``: one self-contained page (inline CSS, inline SVG charts, no script, no
network reference) beside ``rank_D.csv``, and the write that replaces both together.

The page is rendered from the Jinja2 template ``report_page.html`` beside this module (autoescape
on): the ranked table (one line per event, human headers from :data:`pipeline.views.display.TABLE`
and a legend, grouped as ranked), a scatter of the signal-implied against the historical move
with the VRP tier lines, and for **every** event a ``<details>`` section: past reports against
today's implied band, the ATM term structure with the ex-earnings vol and the event expiration's
smile (quotes and fit), all three drawn from the rows compute stored with the metrics
(``event_history``, ``term``, ``smile``), never recomputed; the suggested structure's payoff at exit
and at expiry (the curves compute stored in ``payoff``, read by the report step with the
``structures``) with a table of every candidate structure, the priced density's numbers, its
outcomes where stored and every CSV column. Charts are small SVG drawn by :mod:`pipeline.views.svg_charts` (no matplotlib), so
thousands of events cost milliseconds each.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.contract.layout import UNFILTERED_BACKTEST_STEM, Layout

log = logging.getLogger("pipeline")

# Bumped whenever the page's layout changes; stamped in the page (meta ivcrush-layout) and by
# `make screenshot` in docs/report.png, whose test fails when the README picture is older.
LAYOUT_VERSION = "6"
TEMPLATE = "report_page.html"
GROUP_TITLES = ("Tradeable with premium (VRP tier MARGINAL or better)", "Tradeable without premium (SKIP)",
                "Not tradeable (no VRP or REJECT liquidity)")
SMILE_MAX_ABS_X = 3.0       # the smile fit's range in standardized moneyness (pipeline.stages.skew)
OUTCOME_ROWS = 8
# The candidate table of an event section: (header, structures column(s)).
CANDIDATE_COLUMNS = (("structure", ("structure",)), ("status", ("status",)), ("credit/sh", ("credit_fill",)),
                     ("risk $", ("risk",)), ("breakevens", ("breakeven_low_expiry", "breakeven_high_expiry")),
                     ("POP hist", ("pop_hist",)), ("EV hist $", ("ev_hist",)), ("POP mkt", ("pop_rn",)),
                     ("qty", ("contracts",)), ("suggested / dropped because", ("why", "reason")))
# The density's numbers of an event section (issue 19's columns, where the metrics have them).


def _template():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                      undefined=jinja2.StrictUndefined)
    return environment.get_template(TEMPLATE)


def _backtest_links(reports: Path) -> list[str]:
    # The unfiltered runs only: a filtered run (its selection in the name) is one analyst's question.
    return sorted(p.name for p in reports.glob("backtest*") if p.suffix in (".html", ".csv", ".png")
                  and UNFILTERED_BACKTEST_STEM.fullmatch(p.stem))


def _anchor(ticker, report_date) -> str:
    return f"ev-{ticker}-{report_date}".replace(" ", "_")


def _table_rows(data: pd.DataFrame, entries) -> list[dict]:
    from pipeline.views.display import cell_text, unit_of

    rows = []
    for record in data.to_dict("records"):
        cells = []
        for entry in entries:
            text = cell_text(entry, record)
            column = entry.columns[0]
            if column == "rank":
                cells.append({"kind": "rank", "text": text})
            elif entry.badge:
                css = f"st-{text}" if column == "status" else f"tier {text}"
                # The reasons are in the event's section; the status badge shows them on hover.
                why = record.get("reason") if column == "status" and isinstance(record.get("reason"), str) else ""
                cells.append({"kind": "badge", "text": text, "css": css, "title": why})
            else:
                mark = {"degraded": "\u26a0", "failed": "\u2717"}.get(record.get("status")) if column == "ticker" else None
                cells.append({"kind": "text", "text": text, "mark": mark,
                              "left": unit_of(column) in ("text", "date")})
        rows.append({"status": record.get("status"), "anchor": _anchor(record["ticker"], record["report_date"]),
                     "cells": cells})
    return rows


def _by_ticker(frame: pd.DataFrame) -> dict:
    """Row positions per ticker (one groupby instead of a filter per event)."""
    return frame.groupby("ticker", sort=False).indices if len(frame) else {}


def _by_event(frame: pd.DataFrame) -> dict:
    """Row positions per event: (ticker, report date as YYYY-MM-DD), the ranked frame's keys."""
    if not len(frame):
        return {}
    return frame.groupby([frame["ticker"], frame["report_date"].dt.strftime("%Y-%m-%d")], sort=False).indices


def _event_sections(data: pd.DataFrame, metrics: pd.DataFrame, root: Path, as_of: pd.Timestamp, config,
                    structures: pd.DataFrame | None, outcomes: pd.DataFrame | None,
                    payoff: pd.DataFrame | None) -> list[dict]:
    """One section per event of the ranked ``data`` (display columns added), in rank order.

    The past reports, the term structure and the smile quotes are the rows compute stored with
    the metrics (``event_history``, ``term``, ``smile``); ``structures``, ``outcomes`` and the
    suggested structures' ``payoff`` curves come from the report step, which read them already."""
    from pipeline.views import svg_charts
    from pipeline.views.display import format_value
    from pipeline.contract.store import Store

    store = Store(root)
    tickers = sorted(set(data["ticker"]))
    history = store.scan("event_history", dates=[as_of], tickers=tickers)
    atm = store.scan("term", dates=[as_of], tickers=tickers)
    atm = atm[atm["atm_iv"].notna() & (atm["t"] > 0)].reset_index(drop=True)
    quotes = store.scan("smile", dates=[as_of], tickers=tickers)
    outcomes = _sorted_outcomes(outcomes)
    structures = _page_structures(structures)
    reaction_of = dict(zip(zip(metrics["ticker"], metrics["report_date"].dt.strftime("%Y-%m-%d")),
                           metrics["reaction_date"]))
    # Plain arrays and row positions per ticker or event, taken once: pandas indexing per event
    # would cost more than drawing (hundreds of events on a 5,000-name day).
    history_at, atm_at, quotes_at = _by_event(history), _by_ticker(atm), _by_ticker(quotes)
    outcomes_at = _by_ticker(outcomes) if outcomes is not None else {}
    move_values = history[config.move_type].to_numpy(float)
    move_labels = history["past_report_date"].dt.strftime("%y-%m").to_numpy()
    atm_days = ((pd.to_datetime(atm["expiration"]) - as_of).dt.days.to_numpy(float) if len(atm) else np.array([]))
    atm_iv, atm_t = atm["atm_iv"].to_numpy(float), atm["t"].to_numpy(float)
    quote = {c: quotes[c].to_numpy() for c in quotes.columns}
    quote_days = ((pd.to_datetime(quotes["expiration"]) - as_of).dt.days.to_numpy(float) if len(quotes)
                  else np.array([]))
    report_columns = [c for c in data.columns if c not in ("signal_vrp", "exceed_k_n")]
    implied_of = dict(zip(zip(data["ticker"], data["report_date"]), data["implied_move"].map(_float)))
    try:
        payoff_charts = _payoff_charts(payoff, implied_of, history_at, move_values)
        candidates = _candidate_tables(structures)
    except Exception:  # noqa: BLE001 - the structures are an optional view: the page stands without them
        log.warning("the structures could not be drawn on the page", exc_info=True)
        payoff_charts, candidates = {}, {}
    sections = []
    for record in data.to_dict("records"):
        ticker, day = record["ticker"], record["report_date"]
        implied = _float(record.get("implied_move"))
        rows = history_at.get((ticker, day), np.array([], int))
        charts = [svg_charts.past_moves(move_values[rows], [move_labels[i] for i in rows], implied,
                                        config.move_type.replace("_", " "))]
        points = atm_at.get(ticker, np.array([], int))
        reaction = reaction_of.get((ticker, day), pd.NaT)
        if len(points):
            reaction_days = float((pd.Timestamp(reaction) - as_of).days) if pd.notna(reaction) else float("nan")
            charts.append(svg_charts.term_structure(atm_days[points], atm_iv[points],
                                                    _float(record.get("ex_earnings_vol")), reaction_days,
                                                    _float(record.get("iv30"))))
        expiration = record.get("expiration")
        if ticker in quotes_at and isinstance(expiration, str):
            days = float((pd.Timestamp(expiration) - as_of).days)
            at_atm = points[atm_days[points] == days]
            on = quotes_at[ticker][quote_days[quotes_at[ticker]] == days]
            scale = float(atm_iv[at_atm[0]] * np.sqrt(atm_t[at_atm[0]])) if len(at_atm) else float("nan")
            if len(on):
                charts.append(_smile_chart({c: v[on] for c, v in quote.items()}, scale, record))
        if (ticker, day) in payoff_charts:
            charts.append(payoff_charts[(ticker, day)])
        # Every CSV column by name (the legend and README say what each is; the CSV has full text).
        fields = [{"name": c, "text": format_value(c, record.get(c))} for c in report_columns]
        sections.append({
            "anchor": _anchor(ticker, day), "charts": charts, "fields": fields,
            "n_events": record.get("n_events"),
            "reason": record.get("reason") if isinstance(record.get("reason"), str) else "",
            "outcomes": _outcome_table(outcomes.iloc[outcomes_at[ticker]]) if ticker in outcomes_at else None,
            "candidates": candidates.get((ticker, day)),
            "density": _density_line(record),
            "summary": " \u00b7 ".join(p for p in (
                f"#{record['rank']} {ticker}", f"{day} {record.get('timing') or ''}".strip(),
                f"implied {format_value('implied_move', record.get('implied_move')) or '-'} vs historical "
                f"{format_value('hist_mean_abs_move', record.get('hist_mean_abs_move')) or '-'}",
                f"VRP {format_value('vrp', record.get('signal_vrp')) or '-'} {record.get('vrp_tier') or ''}".strip(),
                f"{record.get('status')}") if p),
        })
    return sections


def _page_structures(structures: pd.DataFrame | None) -> pd.DataFrame | None:
    """The date's candidate structures (:mod:`pipeline.stages.structures`) keyed like the ranked
    frame (report date as text), or None when the day has none (a root from before that stage,
    or a page drawn without compute)."""
    if structures is None or structures.empty:
        return None
    return structures.assign(report_date=pd.to_datetime(structures["report_date"]).dt.strftime("%Y-%m-%d")) \
        .reset_index(drop=True)


def _payoff_charts(payoff: pd.DataFrame | None, implied_of: dict, history_at: dict, move_values: np.ndarray) -> dict:
    """(ticker, report date) -> payoff chart of the event's suggested structure from the date's
    stored ``payoff`` rows (:func:`pipeline.stages.structures.payoff_curves` priced them): the P&L
    at the exit close with its breakevens, and held to expiry, by move, with the event's implied
    band and past moves. None or no rows (a partition from before that dataset): no charts."""
    if payoff is None or payoff.empty:
        return {}
    from pipeline.views import svg_charts

    payoff = payoff.sort_values(["ticker", "report_date", "curve", "point"], kind="stable").reset_index(drop=True)
    moves, pnl = payoff["move"].to_numpy(float), payoff["pnl"].to_numpy(float)
    marked, at_exit = payoff["breakeven"].to_numpy(bool), (payoff["curve"] == "exit").to_numpy()
    structure = payoff["structure"].to_numpy()
    empty = np.array([], int)
    charts = {}
    for event, rows in _by_event(payoff).items():
        exit_rows, expiry_rows = rows[at_exit[rows]], rows[~at_exit[rows]]
        title = f"suggested {str(structure[rows[0]]).replace('_', ' ')}: P&L by move"
        charts[event] = svg_charts.payoff(
            moves[exit_rows], pnl[exit_rows], moves[exit_rows[marked[exit_rows]]], moves[expiry_rows],
            pnl[expiry_rows], implied_of.get(event, float("nan")), move_values[history_at.get(event, empty)], title)
    return charts


def _candidate_tables(structures: pd.DataFrame | None) -> dict:
    """(ticker, report date) -> the event's candidate structures as rows of formatted cells
    (:data:`CANDIDATE_COLUMNS`), formatted a column at a time."""
    from pipeline.views.display import format_value

    if structures is None:
        return {}
    text = {}
    for _, names in CANDIDATE_COLUMNS:
        for name in names:
            if name not in text:
                values = structures[name].to_numpy(object) if name in structures else [None] * len(structures)
                text[name] = [format_value(name, v) for v in values]
    cells = []
    for header, names in CANDIDATE_COLUMNS:
        if names == ("why", "reason"):
            dropped = (structures["status"] != "ok").to_numpy()
            column = [(r if d else w) for w, r, d in zip(text["why"], text["reason"], dropped)]
        elif len(names) == 2:
            column = [f"{a} \u2013 {b}" if a or b else "" for a, b in zip(text[names[0]], text[names[1]])]
        else:
            column = text[names[0]]
        cells.append(column)
    rows = list(zip(*cells))
    suggested = structures["suggested"].to_numpy(bool)
    tables = {}
    for key, at in structures.groupby(["ticker", "report_date"], sort=False).indices.items():
        tables[key] = {"header": [h for h, _ in CANDIDATE_COLUMNS],
                       "rows": [{"cells": rows[i], "suggested": bool(suggested[i])} for i in at]}
    return tables


def _density_line(record: dict) -> str:
    """The density's numbers where the metrics have them: market (risk-neutral) against history
    exceedance, the bimodal flag and the expected IV crush."""
    from pipeline.views.display import format_value

    from pipeline.views.columns import level_percent
    from pipeline.contract.levels import exceed_levels_in

    pairs = [("P>implied", "implied")] + [(f"P>{level_percent(x)}%", x) for x in exceed_levels_in(record)]
    parts = [f"{label} market {format_value(f'rn_p_exceed_{x}', record.get(f'rn_p_exceed_{x}'))} / history "
             f"{format_value(f'hist_p_exceed_{x}', record.get(f'hist_p_exceed_{x}'))}"
             for label, x in pairs
             if not (pd.isna(record.get(f"rn_p_exceed_{x}", np.nan)) and pd.isna(record.get(f"hist_p_exceed_{x}", np.nan)))]
    bimodal = record.get("rn_bimodal")
    if bimodal is not None and not pd.isna(bimodal):
        parts.append(f"priced density bimodal: {'yes' if bool(bimodal) else 'no'}")
    crush = format_value("expected_iv_crush", record.get("expected_iv_crush"))
    if crush:
        parts.append(f"expected IV crush {crush}")
    return " \u00b7 ".join(parts)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _smile_chart(on: dict, scale: float, record: dict):
    """The event expiration's quotes (arrays of the ``smile`` dataset's columns) against k = ln(K/F)
    and the fitted quadratic iv = a + b x + c x^2 in x = k / (atm_iv sqrt(t)) = k / ``scale``
    (:func:`pipeline.stages.skew.fit_skew`), over |x| <= 3."""
    from pipeline.views import svg_charts

    a, b, c = (_float(record.get(name)) for name in ("skew_atm_iv", "skew_slope", "skew_curvature"))
    quotes_k = on["k"].astype(float)
    grid_k, grid_iv = np.array([]), np.array([])
    if np.isfinite([a, b, c, scale]).all() and scale > 0:
        grid_k = np.linspace(quotes_k.min(), quotes_k.max(), 60)
        x = grid_k / scale
        inside = np.abs(x) <= SMILE_MAX_ABS_X
        grid_k, grid_iv = grid_k[inside], a + b * x[inside] + c * x[inside] ** 2
    return svg_charts.smile(quotes_k, on["iv"].astype(float), grid_k, grid_iv)


def _sorted_outcomes(outcomes: pd.DataFrame | None) -> pd.DataFrame | None:
    """The names' stored ``outcomes`` by ticker and report date; None when there are none."""
    if outcomes is None or outcomes.empty:
        return None
    return outcomes.sort_values([c for c in ("ticker", "report_date") if c in outcomes], kind="stable") \
        .reset_index(drop=True)


def _outcome_table(frame: pd.DataFrame) -> dict:
    from pipeline.views.display import format_value

    frame = frame.drop(columns=[c for c in ("ticker",) if c in frame]).tail(OUTCOME_ROWS)
    return {"header": list(frame.columns),
            "rows": [[format_value(c, v) for c, v in rec.items()] for rec in frame.to_dict("records")]}


def render_html(frame: pd.DataFrame, metrics: pd.DataFrame, root: Path, as_of, config,
                structures: pd.DataFrame | None = None, outcomes: pd.DataFrame | None = None,
                payoff: pd.DataFrame | None = None) -> str:
    """The page for the ranked ``frame`` (from :func:`pipeline.views.report.report_frame`) of ``metrics``,
    with the date's candidate ``structures``, their ``payoff`` curves and the names' stored
    ``outcomes`` where given."""
    from pipeline.views import display, svg_charts
    from pipeline.stages.rank import rank_group

    as_of = pd.Timestamp(as_of)
    day = as_of.date().isoformat()
    data = display.with_display_columns(frame)
    entries = display.shown(data)
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    group = rank_group(frame).to_numpy() if len(frame) else np.array([], int)
    rows = _table_rows(data, entries)
    groups = [{"title": title, "rows": [r for r, g in zip(rows, group) if g == i]}
              for i, title in enumerate(GROUP_TITLES)]
    scatter = None
    if len(frame):
        lines = {"VRP": 1.0, **{k: v for k, v in config.vrp_tiers.items() if k in ("MARGINAL", "EXCELLENT")}}
        # The tiers use the signal VRP, so the scatter's y is signal VRP x historical mean: a
        # point sits above a tier's line exactly when its tier is that tier or better.
        signal_implied = (data["signal_vrp"] * data["hist_mean_abs_move"]).to_numpy(float)
        scatter = svg_charts.vrp_scatter(data["hist_mean_abs_move"].to_numpy(float), signal_implied,
                                         data["vrp_tier"].tolist(), data["ticker"].tolist(), lines)
    columns = [{"header": e.header, "legend": e.legend,
                "left": display.unit_of(e.columns[0]) in ("text", "date")} for e in entries]
    return _template().render(
        layout=LAYOUT_VERSION, day=day, page_width=display.PAGE_WIDTH, n_events=len(frame),
        summary=", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "degraded", "failed")),
        backtest=_backtest_links(Layout(root).reports), columns=columns,
        widths=display.widths(entries), groups=groups, scatter=scatter,
        events=_event_sections(data, metrics, Path(root), as_of, config, structures, outcomes, payoff)
        if len(frame) else [])


def html_or_none(frame, metrics, root, as_of, config, structures=None, outcomes=None, payoff=None) -> bytes | None:
    """The page as bytes, or None (logged) when it cannot be made: the CSV is written regardless."""
    started = time.perf_counter()
    try:
        page = render_html(frame, metrics, root, as_of, config, structures, outcomes, payoff).encode()
    except Exception:  # noqa: BLE001 - the HTML is a view; its failure must not lose the CSV
        log.exception("HTML report for %s could not be made; writing the CSV only", pd.Timestamp(as_of).date())
        return None
    log.info("HTML report for %s rendered in %.2f s (%d bytes)", pd.Timestamp(as_of).date(),
             time.perf_counter() - started, len(page))
    return page
