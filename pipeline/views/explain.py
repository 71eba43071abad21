"""``pipeline explain TICKER``: one event, from the stored snapshots of its as-of date.

Reads the date's ``metrics`` row and the ticker's rows of ``calendar``, ``event_history`` (the past
reports behind the statistics), ``term`` (ATM IV per expiration), ``chains``, ``structures`` and
``outcomes``: the rows compute stored; nothing is fetched and no stage runs. :func:`explain`
returns one JSON-ready document; :func:`render_text` lays it out for the terminal. Moves and IVs
are fractions.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.contract.levels import DEFAULT_LEVEL_SUFFIXES, exceed_levels_in, level_pairs, with_levels
from pipeline.kernel.black76 import mid
from pipeline.contract.config import Config
from pipeline.contract.store import Store

SCORE_PARTS = ("vrp", "consistency", "skew", "liquidity")
HISTORY_FIELDS = ["n_events", "hist_mean_abs_move", "hist_median_abs_move", "mad", "consistency",
                  "ewm_mean_abs_move", "ewm_std_abs_move", "tail_ratio", "trend_slope"]
SMILE_FIELDS = ["skew_atm_iv", "skew_slope", "skew_curvature", "rr25", "bf25", "skew_r2", "skew_n"]
VRP_FIELDS = ["implied_move", "implied_event_move", "hist_mean_abs_move", "vrp", "vrp_median", "vrp_event",
              "vrp_tier"]
BASIS_COLUMN = {"event": "vrp_event", "plain": "vrp"}
VOL_FIELDS = ["iv30", "iv30_percentile", "ex_earnings_vol_percentile", "vol_percentile_reason"]
# Shown in percent in the terminal (fractions and vols; JSON keeps fractions, like Parquet and CSV).
SMILE_PERCENT = ("skew_atm_iv", "skew_slope", "skew_curvature", "rr25", "bf25")
LIQUIDITY_FIELDS = ["liquidity_tier", "straddle_spread", "min_leg_open_interest", "min_leg_volume"]


class ExplainError(Exception):
    """The event cannot be explained; the message says why and what to run."""


def _value(v):
    """A JSON-ready scalar: None for missing, ISO dates, Python numbers."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return None if pd.isna(v) else pd.Timestamp(v).date().isoformat()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def _pick(row: pd.Series, fields) -> dict:
    return {f: _value(row[f]) for f in fields if f in row.index}


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _value(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def find_event(store: Store, ticker: str, as_of: pd.Timestamp, report_date, config: Config) -> pd.Series:
    """The metrics row of ``ticker``'s event on ``as_of``; ExplainError with a clear message otherwise."""
    day = as_of.date().isoformat()
    if not store.exists("metrics", as_of):
        raise ExplainError(f"{day} was never run: no metrics snapshot under {store.root}. "
                           f"Run `pipeline daily --date {day}` first.")
    metrics = store.read("metrics", as_of)
    rows = metrics[metrics["ticker"] == ticker]
    if report_date is not None:
        rows = rows[rows["report_date"] == pd.Timestamp(report_date)]
    if len(rows):
        return rows.sort_values("report_date").iloc[0]
    window = config.lookahead_days
    calendar = store.read("calendar", as_of) if store.exists("calendar", as_of) else None
    known = calendar[calendar["ticker"] == ticker] if calendar is not None else pd.DataFrame()
    if len(known):
        dates = ", ".join(sorted(d.date().isoformat() for d in known["report_date"]))
        raise ExplainError(f"{ticker} has no event in the window of {day} (reports within {window} days whose "
                           f"reaction comes after {day}); its calendar has: {dates}. Try --date closer to the report.")
    raise ExplainError(f"unknown ticker {ticker}: not in the earnings calendar of {day} "
                       f"({0 if calendar is None else calendar['ticker'].nunique()} tickers there)")


PAST_REPORT_FIELDS = ["report_date", "timing", "timing_source", "ref_date", "reaction_date", "ref_close",
                      "close_move", "gap_move", "max_move", "exceeded"]


def stored_view(store: Store, name: str, row: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """The ticker's rows of dataset ``name`` (``term`` or ``event_history``) written with the date's
    metrics; ExplainError when the metrics were computed before the dataset existed."""
    if not store.exists(name, as_of):
        day = as_of.date().isoformat()
        raise ExplainError(f"{day}'s metrics were computed before the '{name}' dataset was stored; "
                           f"`pipeline rank --date {day}` computes the date again from its stored snapshots.")
    return store.scan(name, dates=[as_of], tickers=[row["ticker"]]).drop(columns=["date", "ticker"])


def past_reports(store: Store, row: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """The reports the history statistics used (the stored ``event_history`` rows of the event:
    the last ``max_events`` reacted by ``as_of``), with ``exceeded`` = |move| > the implied move."""
    history = stored_view(store, "event_history", row, as_of)
    history = history[history["report_date"] == row["report_date"]]
    return history.drop(columns="report_date").rename(columns={"past_report_date": "report_date"})[PAST_REPORT_FIELDS]


def straddle_legs(store: Store, row: pd.Series, as_of: pd.Timestamp) -> tuple[pd.DataFrame, str]:
    """The quotes behind the implied move and a sentence on how it was obtained."""
    chains = store.scan("chains", dates=[as_of], tickers=[row["ticker"]])
    if pd.isna(row["expiration"]) or chains.empty:
        return pd.DataFrame(), str(row.get("reason") or "no straddle")
    chain = chains[chains["expiration"] == row["expiration"]]
    spot = row["spot"]
    strikes = np.sort(chain["strike"].unique())
    if "straddle_strike" in row.index and pd.notna(row["straddle_strike"]):
        used = [float(row["straddle_strike"])]
    else:
        below, above = strikes[strikes <= spot], strikes[strikes >= spot]
        used = sorted({float(x) for x in ([below[-1]] if len(below) else []) + ([above[0]] if len(above) else [])})
    legs = chain[chain["strike"].isin(used)].sort_values(["strike", "option_type"])
    legs = legs.assign(mid=mid(legs["bid"], legs["ask"]), spread=legs["ask"] - legs["bid"])
    legs = legs[["strike", "option_type", "bid", "ask", "mid", "spread", "open_interest", "volume"]]
    method = next((row[c] for c in row.index if c.startswith("implied") and c.endswith("method")), None)
    if method is None or pd.isna(method):
        shown = " and ".join(f"{k:g}" for k in used)
        method = (f"straddle mid at strike(s) {shown} around spot {spot:g}, interpolated to the spot, "
                  f"divided by the spot" if pd.notna(spot) else "no spot")
    return legs, str(method)


def term_points(store: Store, row: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    """ATM IV per expiration of the event's ticker (the stored ``term`` rows: expiration, t, atm_iv)."""
    return stored_view(store, "term", row, as_of)[["expiration", "t", "atm_iv"]]


def score_parts(row: pd.Series) -> dict:
    """Each component's points (they add up to ``score``): the metrics row's score_* columns."""
    return {k: _value(row[f"score_{k}"]) for k in SCORE_PARTS}


def structure_candidates(store: Store, row: pd.Series, as_of: pd.Timestamp) -> list[dict]:
    """Every candidate structure of the event (the date's ``structures`` rows), legs included."""
    if not store.exists("structures", as_of):
        return []
    frame = store.read("structures", as_of)
    frame = frame[(frame["ticker"] == row["ticker"]) & (frame["report_date"] == row["report_date"])]
    return _records(frame.drop(columns=["ticker", "report_date"]))


def explain(store: Store, ticker: str, as_of, config: Config, report_date=None) -> dict:
    """Everything known about one event, as one JSON-ready document."""
    as_of = pd.Timestamp(as_of)
    ticker = ticker.upper()
    row = find_event(store, ticker, as_of, report_date, config)
    calendar = store.read("calendar", as_of)
    entry = calendar[(calendar["ticker"] == ticker) & (calendar["report_date"] == row["report_date"])]
    history = past_reports(store, row, as_of)
    legs, method = straddle_legs(store, row, as_of)
    term = term_points(store, row, as_of)
    stats = _pick(row, HISTORY_FIELDS + ["hist_exceed_count", "hist_exceed_share"])
    vrp = _pick(row, VRP_FIELDS + ["vrp_basis"])
    vrp.setdefault("vrp_basis", "event" if vrp.get("vrp_event") is not None else "plain")
    # vrp_basis names the VRP by its kind (signal_vrp in pipeline.stages.rank): event | plain.
    vrp["signal_vrp"] = vrp.get(BASIS_COLUMN.get(vrp["vrp_basis"], ""))
    return {
        "as_of": as_of.date().isoformat(),
        "ticker": ticker,
        "event": {**_pick(row, ["report_date", "timing", "reaction_date", "spot", "expiration"]),
                  **(_records(entry[[c for c in ("fiscal_period_end", "source") if c in entry]])[0] if len(entry) else {})},
        "history": {"move_type": config.move_type, "reports": _records(history), **stats},
        "straddle": {"method": method, "expiration": _value(row["expiration"]),
                     **_pick(row, ["straddle_strike", "straddle_mid", "implied_move", "t"]),
                     **_pick(row, LIQUIDITY_FIELDS), "legs": _records(legs)},
        "term_structure": {"expirations": _records(term),
                           **_pick(row, ["ts_event_std", "ts_implied_move", "ex_earnings_vol", "ts_flag", *VOL_FIELDS])},
        "smile": _pick(row, SMILE_FIELDS),
        "vrp": vrp,
        "score": {"score": _value(row["score"]), "weights": dict(config.score_weights),
                  "components": score_parts(row)},
        "structures": structure_candidates(store, row, as_of),
        "distribution": _pick(row, [c for c in distribution_fields(row.index) if c in row.index]),
        "outcomes": _records(name_outcomes(store, ticker, as_of)),
        "status": _value(row["status"]),
        "reason": _value(row["reason"]),
    }


DISTRIBUTION_FIELDS = ["rn_p_exceed_implied", "hist_p_exceed_implied", *level_pairs(DEFAULT_LEVEL_SUFFIXES),
                       "rn_bimodal", "rn_arbitrage_mass",
                       "event_law_weight_1", "event_law_mean_1", "event_law_std_1", "event_law_weight_2",
                       "event_law_mean_2", "event_law_std_2", "event_atm_iv", "expected_iv_crush"]


def distribution_fields(columns) -> list[str]:
    """DISTRIBUTION_FIELDS with the exceedance columns of the levels in ``columns`` (config
    ``density.exceed_levels``) in place of the default ones."""
    return with_levels(DISTRIBUTION_FIELDS, exceed_levels_in(columns))


OUTCOME_FIELDS = ["report_date", "exit_date", "implied_event_move", "realized_close_move", "realized_over_implied",
                  "straddle_entry_mid", "straddle_exit_value", "straddle_return_mid", "expected_iv_crush",
                  "realized_iv_crush"]


def name_outcomes(store: Store, ticker: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """The name's stored outcomes (past events and what they did) that exited by ``as_of``."""
    outcomes = store.scan("outcomes", tickers=[ticker])
    return outcomes[outcomes["exit_date"] <= as_of].sort_values("exit_date")[OUTCOME_FIELDS]


def _fmt(v, kind: str = "g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and kind == "%":
        return f"{v:.2%}"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e12 else f"{v:.4g}"
    return str(v)


def _table(records: list[dict], columns: list[str], percent=()) -> list[str]:
    if not records:
        return ["    (none)"]
    cells = [[_fmt(r.get(c), "%" if c in percent else "g") for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["    " + "  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["    " + "  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return lines


def render_text(doc: dict) -> str:
    """The document for a terminal."""
    e, h, s, t, v, sc = doc["event"], doc["history"], doc["straddle"], doc["term_structure"], doc["vrp"], doc["score"]
    out = [f"{doc['ticker']} as of {doc['as_of']}: status {doc['status']}" + (f" ({doc['reason']})" if doc["reason"] else ""),
           "",
           f"Event: report {e.get('report_date')} {e.get('timing')}, reaction session {e.get('reaction_date')}, "
           f"spot {_fmt(e.get('spot'))}, source {e.get('source', '-')}, fiscal period end {e.get('fiscal_period_end', '-')}",
           "",
           f"Past reports ({h['move_type']}; exceeded = |move| > today's implied move {_fmt(s.get('implied_move'), '%')}):"]
    out += _table(h["reports"], ["report_date", "timing", "timing_source", "reaction_date", "close_move", "gap_move",
                                 "max_move", "exceeded"], percent=("close_move", "gap_move", "max_move"))
    out += ["", "History: " + ", ".join(
        f"{k} {_fmt(h.get(k), '%' if k.endswith('move') or k in ('mad', 'trend_slope', 'hist_exceed_share') else 'g')}"
        for k in HISTORY_FIELDS + ["hist_exceed_count", "hist_exceed_share"] if k in h)]
    out += ["", f"Straddle, expiration {s.get('expiration')}: {s['method']}"]
    out += ["    " + ", ".join(f"{k} {_fmt(s[k], '%' if k in ('implied_move', 'straddle_spread') else 'g')}"
                              for k in ("straddle_strike", "straddle_mid", "implied_move", "t", "straddle_spread",
                                        "min_leg_open_interest", "min_leg_volume", "liquidity_tier") if k in s)]
    out += _table(s["legs"], ["strike", "option_type", "bid", "ask", "mid", "spread", "open_interest", "volume"])
    out += ["", "Term structure (ATM IV per expiration):"]
    out += _table(t["expirations"], ["expiration", "t", "atm_iv"], percent=("atm_iv",))
    out += ["    " + ", ".join(f"{k} {_fmt(t.get(k), 'g' if k == 'ts_flag' else '%')}"
                              for k in ("ts_event_std", "ts_implied_move", "ex_earnings_vol", "ts_flag"))]
    out += ["    " + ", ".join(f"{k} {_fmt(t.get(k), '%' if k == 'iv30' else 'g')}" for k in VOL_FIELDS if k in t)]
    out += ["", "Smile fit: " + ", ".join(f"{k} {_fmt(val, '%' if k in SMILE_PERCENT else 'g')}"
                                           for k, val in doc["smile"].items())]
    out += ["", "VRP: " + ", ".join(f"{k} {_fmt(v.get(k), '%' if k.endswith('move') else 'g')}"
                                     for k in VRP_FIELDS + ["vrp_basis", "signal_vrp"] if k in v)]
    if doc.get("distribution"):
        out += ["", "Priced distribution: " + ", ".join(f"{k} {_fmt(val)}" for k, val in doc["distribution"].items())]
    out += ["", "Past outcomes (realized against implied):"]
    out += _table(doc.get("outcomes", []), OUTCOME_FIELDS, percent=("implied_event_move", "realized_close_move"))
    parts = sc["components"]
    out += ["", f"Score {_fmt(sc['score'])} = " + " + ".join(
        f"{k} {_fmt(parts[k])} (weight {sc['weights'].get(k)})" for k in SCORE_PARTS)]
    out += _structure_lines(doc.get("structures", []))
    return "\n".join(out) + "\n"


def _structure_lines(candidates: list[dict]) -> list[str]:
    """The candidate structures: strikes, credit, risk, breakevens, the two views, size."""
    out = ["", "Structures (per structure: money per share for strikes/credit, dollars for risk and EV):"]
    rows = [{**c, "strikes": "/".join(_fmt(c.get(f"{slot}_strike")) for slot in
                                      ("long_put", "short_put", "short_call", "long_call")
                                      if c.get(f"{slot}_strike") is not None)} for c in candidates]
    out += _table(rows, ["structure", "status", "strikes", "credit_fill", "risk", "breakeven_low_expiry",
                         "breakeven_high_expiry", "pop_hist", "ev_hist", "pop_rn", "ev_rn", "pop_expiry_rn",
                         "contracts", "suggested"])
    out += [f"    {c['structure']}: {c['reason']}" for c in candidates if c.get("status") != "ok"]
    out += [f"    suggested {c['structure']}: {c['why']}" for c in candidates if c.get("suggested")]
    return out
