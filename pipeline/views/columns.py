"""What every report column is: unit, CSV precision and meaning.

One table used by the CSV (rounding), the HTML report (header tooltips) and the README column
table (``python -m pipeline.views.columns`` prints it as Markdown). Parquet keeps full precision; only
the CSV text is rounded. Fractions: 0.052 = 5.2%.
"""
from __future__ import annotations

import re

from pipeline.contract.levels import EXCEED_LEVEL_COLUMN

# name: (unit, decimals in the CSV or None for text/integers, meaning)
COLUMNS: dict[str, tuple[str, int | None, str]] = {
    "rank": ("integer", None, "1 = best; tradeable (a VRP, liquidity not REJECT) with premium (VRP tier "
             "MARGINAL or better) first, then tradeable SKIP, then not tradeable; by score within each"),
    "ticker": ("text", None, "stock symbol"),
    "report_date": ("date", None, "earnings report date"),
    "timing": ("text", None, "BMO (before open), AMC (after close), DMH (during market), UNKNOWN"),
    "spot": ("price", 4, "underlying price at the chain's quote time"),
    "expiration": ("date", None, "first listed expiration whose last session is on or after the reaction session"),
    "straddle_strike": ("price", 4, "listed strike nearest the forward: the tradeable straddle"),
    "straddle_mid": ("price", 4, "mid price of the tradeable straddle (call + put)"),
    "implied_method": ("text", None, "how the implied move was obtained"),
    "implied_move": ("fraction", 6, "straddle-implied expected absolute move to expiration / spot"),
    "implied_event_move": ("fraction", 6, "implied move with the ex-earnings diffusion to expiry removed"),
    "hist_mean_abs_move": ("fraction", 6, "mean |move| over the last N past reports (move type from config)"),
    "hist_median_abs_move": ("fraction", 6, "median |move| over the same reports"),
    "n_events": ("integer", None, "past reports in the history window"),
    "hist_exceed_count": ("integer", None, "past reports in the window whose |move| exceeded today's implied move"),
    "hist_exceed_share": ("fraction", 4, "hist_exceed_count / n_events"),
    "vrp": ("ratio", 4, "implied_move / hist_mean_abs_move"),
    "vrp_median": ("ratio", 4, "implied_move / hist_median_abs_move"),
    "vrp_event": ("ratio", 4, "implied_event_move / hist_mean_abs_move"),
    "vrp_basis": ("text", None, "which VRP the tier and score use: vrp_event where available, else vrp"),
    "vrp_tier": ("text", None, "EXCELLENT / GOOD / MARGINAL / SKIP from the signal VRP and config thresholds"),
    "ts_implied_move": ("fraction", 6, "term-structure event move, sqrt(2/pi) * sigma_E"),
    "ex_earnings_vol": ("annual vol", 6, "diffusive (ex-earnings) volatility from the first two expirations"),
    "iv30": ("annual vol", 6, "30-day constant-maturity ATM IV: total variance interpolated between the expirations bracketing 30 days (contains the event)"),
    "iv30_percentile": ("0-100", 1, "percentile of iv30 within the name's stored sessions of the last 252 (null below 60)"),
    "ex_earnings_vol_percentile": ("0-100", 1, "percentile of ex_earnings_vol on the same sessions (no event in it)"),
    "vol_percentile_reason": ("text", None, "why the percentiles are null (how many stored sessions)"),
    "ts_flag": ("text", None, "why the term-structure estimate is missing, or disagrees_with_straddle"),
    "mad": ("fraction", 6, "median absolute deviation of past |moves|"),
    "consistency": ("0-1", 4, "1 - mad / median |move|, clipped to [0, 1]"),
    "ewm_mean_abs_move": ("fraction", 6, "exponentially weighted mean |move| (half-life in reports)"),
    "ewm_std_abs_move": ("fraction", 6, "exponentially weighted std of |move|"),
    "tail_ratio": ("ratio", 4, "max |move| / mean |move|"),
    "trend_slope": ("fraction per report", 6, "least-squares slope of |move| over report order (> 0: growing)"),
    "skew_atm_iv": ("annual vol", 6, "ATM IV of the smile fit at the event expiration"),
    "skew_slope": ("vol per unit x", 6, "linear term of the quadratic smile in standardized moneyness x"),
    "skew_curvature": ("vol per unit x^2", 6, "quadratic term (negative: concave pre-earnings smile)"),
    "rr25": ("vol", 6, "25-delta call IV minus 25-delta put IV"),
    "bf25": ("vol", 6, "25-delta butterfly: mean of the 25-delta wing IVs minus ATM IV"),
    "skew_r2": ("0-1", 4, "weighted R^2 of the smile fit"),
    "skew_n": ("integer", None, "quotes in the smile fit"),
    "liquidity_tier": ("text", None, "EXCELLENT / GOOD / WARNING / REJECT from spread, open interest, volume"),
    "straddle_spread": ("fraction", 4, "(call spread + put spread) / straddle mid"),
    "min_leg_open_interest": ("contracts", 0, "smaller open interest of the two straddle legs"),
    "min_leg_volume": ("contracts", 0, "smaller daily volume of the two straddle legs"),
    "expiration_volume": ("contracts", 0, "volume over every strike of the event expiration (can lower the tier one step)"),
    "score_vrp": ("points", 4, "VRP contribution to the score"),
    "score_consistency": ("points", 4, "consistency contribution to the score"),
    "score_skew": ("points", 4, "skew contribution to the score"),
    "score_liquidity": ("points", 4, "liquidity contribution to the score"),
    "score": ("0-100", 4, "weighted composite (weights in config.yaml); the sum of the score_* columns"),
    "rn_p_exceed_implied": ("probability", 4, "risk-neutral P(|S_T/F - 1| > implied_move) at the event expiration, from the smile's digitals"),
    "hist_p_exceed_implied": ("probability", 4, "share of past moves beyond implied_move, widened by the diffusion to expiry"),
    "rn_p_exceed_5pct": ("probability", 4, "risk-neutral P(|S_T/F - 1| > 5%) at the event expiration"),
    "hist_p_exceed_5pct": ("probability", 4, "past moves beyond 5%, at the same horizon"),
    "rn_p_exceed_10pct": ("probability", 4, "risk-neutral P(|S_T/F - 1| > 10%) at the event expiration"),
    "hist_p_exceed_10pct": ("probability", 4, "past moves beyond 10%, at the same horizon"),
    "rn_bimodal": ("bool", None, "the priced density has two peaks within 2 ATM std of F (beat or miss)"),
    "rn_trough_depth": ("0-1", 4, "depth of the density's trough below its lower peak (0 = unimodal)"),
    "rn_arbitrage_mass": ("0-1", 6, "negative-density mass of the fitted smile (arbitrage in the fit)"),
    "rn_mass_inside": ("0-1", 6, "density mass inside the +-8 ATM std price grid"),
    "event_law_weight_1": ("0-1", 4, "fitted event law: weight of component 1"),
    "event_law_mean_1": ("log jump", 6, "fitted event law: mean of component 1 (risk-neutral, martingale)"),
    "event_law_std_1": ("log jump", 6, "fitted event law: std of component 1"),
    "event_law_weight_2": ("0-1", 4, "fitted event law: weight of component 2 (null: one component)"),
    "event_law_mean_2": ("log jump", 6, "fitted event law: mean of component 2"),
    "event_law_std_2": ("log jump", 6, "fitted event law: std of component 2"),
    "event_atm_iv": ("annual vol", 6, "ATM IV of the event expiration (the next one if it expires on the reaction session)"),
    "expected_iv_crush": ("annual vol", 6, "event_atm_iv - ex_earnings_vol: the IV expected to leave after the report"),
    "crush_expiration": ("date", None, "the expiration event_atm_iv and the crush are measured on"),
    "past_realized_over_implied": ("ratio", 4, "mean over this name's stored outcomes of |realized move| / event-only implied move"),
    "past_beat_straddle": ("k/n", None, "k of n stored outcomes whose short straddle lost money at mid"),
    "status": ("text", None, "ok / degraded (a qualifier missing or REJECT liquidity) / failed (no VRP)"),
    "reason": ("text", None, "every stage's reason or flag that applies, '; '-separated"),
    "suggested_structure": ("text", None, "straddle / strangle / iron_condor / iron_butterfly: best ev_hist per $ of risk among liquid candidates"),
    "suggested_credit_fill": ("price", 4, "net credit per share at the fill model (mid - f x half-spread per leg)"),
    "suggested_risk": ("dollars", 2, "risk per structure: defined = 100 x (widest wing - credit) + commissions; else Reg-T style margin"),
    "suggested_breakeven_low_expiry": ("price", 4, "underlying price below which the structure loses at expiry"),
    "suggested_breakeven_high_expiry": ("price", 4, "underlying price above which the structure loses at expiry"),
    "suggested_pop_hist": ("probability", 4, "probability of profit at the reaction close over past moves + holding-period diffusion"),
    "suggested_ev_hist": ("dollars", 2, "expected P&L per structure at the reaction close over the same scenarios, after costs"),
    "suggested_contracts": ("contracts", None, "floor(risk budget / risk), optionally Kelly-scaled"),
}


def level_percent(suffix: str) -> str:
    """The level of a column suffix in percent, as text: '7p5pct' -> '7.5'."""
    return suffix.removesuffix("pct").replace("p", ".")


def column_info(name: str) -> tuple[str, int | None, str]:
    """(unit, CSV decimals, meaning) of a report column; level columns of any configured level
    are described like the default 5% ones."""
    if name in COLUMNS:
        return COLUMNS[name]
    m = EXCEED_LEVEL_COLUMN.match(name)
    if m:
        level = level_percent(m.group(2))
        return ("probability", 4, f"risk-neutral P(|S_T/F - 1| > {level}%) at the event expiration" if m.group(1) == "rn"
                else f"past moves beyond {level}%, at the same horizon")
    return ("?", None, "undocumented")


def round_for_csv(frame):
    """A copy of ``frame`` with float columns rounded to their CSV precision (6 decimals when the
    column is not in :data:`COLUMNS`)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind == "f":
            decimals = column_info(column)[1]
            out[column] = out[column].round(6 if decimals is None else decimals)
    return out


def markdown_table(columns) -> str:
    """The README table: one row per report column, in the order of ``columns``."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    for name in columns:
        unit, _, meaning = column_info(name)
        lines.append(f"| `{name}` | {unit} | {meaning} |")
    return "\n".join(lines)
