"""How report columns are shown to people: the one formatting table of the page, the console and
the per-event details.

Units: Parquet, CSV and ``explain --json`` keep fractions (0.052); people read percent (5.20%).
A column's display follows its unit in :data:`pipeline.views.columns.COLUMNS`; columns other stages
add later without an entry there get their unit from :data:`UNIT_PATTERNS` (by name).

:data:`TABLE` is the ranked table of the page and the console: one entry per shown column, with
its header, legend text, width on the page and the report columns it reads. An entry appears
when the frame has its first column, so columns of later stages (the density's
``rn_p_exceed_*``, the suggested structure) show up when present and are simply absent otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

import pandas as pd

from pipeline.views.columns import COLUMNS

# unit -> (kind, decimals). percent: value x 100 with a % sign; vol points the same.
UNIT_FORMAT: dict[str, tuple[str, int]] = {
    "fraction": ("percent", 2),
    "probability": ("percent", 1),
    "annual vol": ("percent", 1),
    "vol": ("percent", 2),
    "fraction per report": ("percent", 3),
    "vol per unit x": ("percent", 2),
    "vol per unit x^2": ("percent", 2),
    "ratio": ("number", 2),
    "0-1": ("number", 2),
    "0-100": ("number", 1),
    "points": ("number", 1),
    "price": ("number", 2),
    "dollars": ("number", 2),
    "contracts": ("integer", 0),
    "integer": ("integer", 0),
}
# Units of columns not (yet) in COLUMNS, by name: first match wins.
UNIT_PATTERNS: list[tuple[str, str]] = [
    ("signal_vrp", "ratio"), ("exceed_k_n", "text"), ("suggested_structure", "text"),
    ("*p_exceed*", "probability"), ("pop_*", "probability"), ("*_pop_*", "probability"),
    ("*percentile*", "0-100"), ("*iv_crush*", "fraction"), ("*_iv", "annual vol"), ("iv30*", "annual vol"),
    ("*credit*", "price"), ("*risk*", "price"), ("ev_*", "price"), ("*_ev_*", "price"),
    ("*breakeven*", "price"), ("*contracts*", "contracts"), ("*_move", "fraction"),
]


@lru_cache(maxsize=4096)
def unit_of(column: str) -> str | None:
    # Cached: the page formats tens of thousands of cells and the patterns are fnmatch calls.
    if column in COLUMNS:
        return COLUMNS[column][0]
    return next((unit for pattern, unit in UNIT_PATTERNS if fnmatchcase(column, pattern)), None)


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_value(column: str, value) -> str:
    """``value`` of ``column`` for people: percent for fractions and vols, 2 decimals for prices
    and ratios, integers with thousands separators; '' when missing."""
    if _missing(value):
        return ""
    if hasattr(value, "date") and not isinstance(value, str):
        return value.date().isoformat() if hasattr(value, "hour") else str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "dtype"):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    kind, decimals = UNIT_FORMAT.get(unit_of(column), ("general", 4))
    if kind == "percent":
        return f"{number * 100:.{decimals}f}%"
    if kind == "integer":
        return f"{number:,.0f}" if math.isfinite(number) else str(number)
    if kind == "number":
        return f"{number:,.{decimals}f}"
    return f"{number:.4g}"


@dataclass(frozen=True)
class Shown:
    """One column of the ranked table: ``columns`` are the report columns it shows (the first
    decides whether it appears; the others are joined with ``joiner`` when present)."""

    header: str
    columns: tuple[str, ...]
    legend: str
    width: int                      # px on the page
    joiner: str = " / "
    badge: bool = False             # tier or status, drawn as a coloured label
    console: bool = True


TABLE: list[Shown] = [
    Shown("#", ("rank",), "rank: tradeable with premium (VRP tier MARGINAL or better) first, then tradeable "
          "without premium (SKIP), then not tradeable; by score within each", 28),
    Shown("Ticker", ("ticker",), "stock symbol; \u26a0 degraded (a qualifier missing), \u2717 failed", 58),
    Shown("Report", ("report_date", "timing"), "report date and timing (BMO before open, AMC after close, "
          "DMH during market)", 106, joiner=" "),
    Shown("Implied", ("implied_move",), "straddle-implied expected move to expiration, percent of spot", 56),
    Shown("Method", ("implied_method",), "how the implied move was obtained (smile fit, interpolated; "
          "fallbacks degrade the event)", 78, console=False),
    Shown("Hist. mean", ("hist_mean_abs_move",), "mean absolute move over the last reports", 76),
    Shown("VRP", ("signal_vrp",), "signal VRP: event-only VRP where the term structure gives it, else "
          "implied / historical", 38),
    Shown("Tier", ("vrp_tier",), "VRP tier from the signal VRP (EXCELLENT / GOOD / MARGINAL / SKIP)", 88, badge=True),
    Shown("Beyond", ("exceed_k_n",), "past reports whose move exceeded today's implied move, k of n", 56),
    Shown("P>impl mkt/hist", ("rn_p_exceed_implied", "hist_p_exceed_implied"),
          "probability of a move beyond the implied move: market density / history at the same horizon", 108),
    Shown("Straddle", ("straddle_strike", "straddle_mid"), "the tradeable straddle: strike @ mid price "
          "(call + put)", 98, joiner=" @ "),
    Shown("Liquidity", ("liquidity_tier",), "liquidity tier at the straddle (spread, open interest, volume)",
          88, badge=True),
    Shown("Score", ("score",), "0-100 composite: VRP, consistency, skew, liquidity points", 44),
    Shown("Status", ("status",), "ok / degraded / failed", 70, badge=True),
    Shown("Trade", ("suggested_structure",), "suggested structure", 96),
    Shown("Credit/risk", ("suggested_credit_fill", "suggested_risk"), "suggested structure: credit and risk "
          "per contract", 116),
    Shown("POP/EV", ("suggested_pop_hist", "suggested_ev_hist"), "suggested structure: probability of "
          "profit and expected value from history", 110),
    Shown("Qty", ("suggested_contracts",), "contracts for the risk budget", 34),
]
PAGE_WIDTH = 1350       # px the table may use at a 1,400 px window (body margins 24 + 24)


def with_display_columns(frame):
    """``frame`` plus the derived columns the table shows: ``signal_vrp`` (the VRP of
    ``vrp_basis``) and ``exceed_k_n`` ("k/n")."""
    import numpy as np

    out = frame.copy()
    if "vrp" in out:
        event = out["vrp_event"] if "vrp_event" in out else pd.Series(np.nan, index=out.index)
        basis = out["vrp_basis"] if "vrp_basis" in out else pd.Series("plain", index=out.index)
        out["signal_vrp"] = np.where(basis == "event", event, out["vrp"]).astype(float)
    if "hist_exceed_count" in out and "n_events" in out:
        k, n = out["hist_exceed_count"], out["n_events"]
        out["exceed_k_n"] = [f"{int(a)}/{int(b)}" if not (_missing(a) or _missing(b)) else ""
                             for a, b in zip(k, n)]
    return out


def shown(frame, console: bool = False) -> list[Shown]:
    """The entries of :data:`TABLE` whose first column ``frame`` has."""
    return [s for s in TABLE if s.columns[0] in frame and (s.console or not console)]


def widths(entries: list[Shown], budget: int = PAGE_WIDTH) -> list[int]:
    """Pixel width per entry; every column shrinks in proportion when they would not fit ``budget``."""
    fixed = sum(s.width for s in entries)
    scale = min(1.0, budget / fixed) if fixed else 1.0
    return [int(s.width * scale) for s in entries]


def cell_text(entry: Shown, record: dict) -> str:
    parts = [format_value(c, record.get(c)) for c in entry.columns if c in record]
    parts = [p for p in parts if p]
    return entry.joiner.join(parts)


def console_table(frame, rows: int = 15) -> str:
    """The top ``rows`` of the ranked frame as plain text, formatted like the page."""
    data = with_display_columns(frame.head(rows))
    entries = shown(data, console=True)
    records = data.to_dict("records")
    header = ["", *(s.header for s in entries)]
    body = [["!" if r.get("status") not in ("ok", None) else "", *(cell_text(s, r) for s in entries)]
            for r in records]
    width = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    left = {0} | {i + 1 for i, s in enumerate(entries) if unit_of(s.columns[0]) in ("text", "date")}
    lines = []
    for row in [header, *body]:
        lines.append("  ".join((v.ljust(w) if i in left or i == 0 else v.rjust(w)) for i, (v, w) in
                               enumerate(zip(row, width))).rstrip())
    return "\n".join(lines)
