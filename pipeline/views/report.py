"""The ranked CSV report: ``<root>/reports/rank_YYYY-MM-DD.csv``, best event first."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.contract.levels import DEFAULT_LEVEL_SUFFIXES, exceed_levels_in, level_pairs, with_levels
from pipeline.stages.rank import rank_events

# The suggested structure's key numbers (pipeline.stages.structures), prefixed ``suggested_``.
SUGGESTED_FIELDS = ("structure", "credit_fill", "risk", "breakeven_low_expiry", "breakeven_high_expiry",
                    "pop_hist", "ev_hist", "contracts")
SUGGESTED_COLUMNS = [f"suggested_{f}" if f != "structure" else "suggested_structure" for f in SUGGESTED_FIELDS]
REPORT_COLUMNS = [
    "rank", "ticker", "report_date", "timing", "spot", "expiration", "straddle_strike", "straddle_mid",
    "implied_move", "implied_method", "implied_event_move", "hist_mean_abs_move", "hist_median_abs_move",
    "n_events", "hist_exceed_count", "hist_exceed_share", "vrp", "vrp_median", "vrp_event", "vrp_basis", "vrp_tier",
    "ts_implied_move", "ex_earnings_vol", "ts_flag", "iv30", "iv30_percentile", "ex_earnings_vol_percentile",
    "vol_percentile_reason", "mad", "consistency", "ewm_mean_abs_move",
    "ewm_std_abs_move", "tail_ratio", "trend_slope", "skew_atm_iv", "skew_slope", "skew_curvature",
    "rr25", "bf25", "skew_r2", "skew_n", "liquidity_tier", "straddle_spread", "min_leg_open_interest",
    "min_leg_volume", "expiration_volume", "score_vrp", "score_consistency", "score_skew", "score_liquidity",
    "score", "rn_p_exceed_implied", "hist_p_exceed_implied", *level_pairs(DEFAULT_LEVEL_SUFFIXES), "rn_bimodal", "rn_arbitrage_mass", "event_law_weight_1",
    "event_law_mean_1", "event_law_std_1", "event_law_weight_2", "event_law_mean_2", "event_law_std_2",
    "event_atm_iv", "expected_iv_crush", "past_realized_over_implied", "past_beat_straddle", "status", "reason",
    *SUGGESTED_COLUMNS,
]
# Spreadsheets execute cells starting with these; text cells are defused with a leading quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would treat as a formula; numeric columns untouched."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_string_dtype(out[column]) and not pd.api.types.is_datetime64_any_dtype(out[column]):
            text = out[column]
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False)
            out[column] = text.where(~risky, "'" + text)
    return out


def suggested_structures(structures: pd.DataFrame | None) -> pd.DataFrame:
    """Per event (ticker, report_date), the suggested structure's SUGGESTED_COLUMNS."""
    keys = ["ticker", "report_date"]
    if structures is None or structures.empty:
        return pd.DataFrame(columns=[*keys, *SUGGESTED_COLUMNS])
    chosen = structures.loc[structures["suggested"], [*keys, *SUGGESTED_FIELDS]]
    return chosen.rename(columns={f: f"suggested_{f}" for f in SUGGESTED_FIELDS if f != "structure"} | {
        "structure": "suggested_structure"})


def report_columns(levels) -> list[str]:
    """REPORT_COLUMNS with the exceedance columns of the move levels ``levels`` (suffixes such as
    ``5pct``, config ``density.exceed_levels``) in place of the default ones."""
    return with_levels(REPORT_COLUMNS, levels)


def report_frame(metrics: pd.DataFrame, structures: pd.DataFrame | None = None) -> pd.DataFrame:
    ranked = rank_events(metrics)
    if structures is not None and len(structures):
        ranked = ranked.merge(suggested_structures(structures), on=["ticker", "report_date"], how="left")
    # The levels the metrics were computed at.
    out = ranked.reindex(columns=report_columns(exceed_levels_in(metrics.columns)))
    for column in ("report_date", "expiration"):
        out[column] = out[column].dt.strftime("%Y-%m-%d")
    return neutralize_text(out)


def write_report(metrics: pd.DataFrame, root: Path, as_of: pd.Timestamp, config,
                 structures: pd.DataFrame | None = None,
                 outcomes: pd.DataFrame | None = None,
                 payoff: pd.DataFrame | None = None) -> tuple[Path, pd.DataFrame]:
    """Write rank_D.csv and (unless ``config.report_html`` is off) rank_D.html, replaced together;
    the page shows the date's ``structures`` with their ``payoff`` curves and the names' stored
    ``outcomes``.

    Floats in the CSV are rounded (:func:`pipeline.views.columns.round_for_csv`); Parquet keeps full
    precision. When the HTML cannot be made the CSV is still written and a stale rank_D.html of
    the date is removed, so a page never disagrees with the CSV beside it.
    """
    from pipeline.views.columns import round_for_csv
    from pipeline.contract.files import replace_together
    from pipeline.views.html_report import html_or_none
    from pipeline.contract.layout import Layout

    frame = report_frame(metrics, structures)
    day = pd.Timestamp(as_of).date().isoformat()
    path, page_path = Layout(root).rank_csv(day), Layout(root).rank_html(day)
    text = round_for_csv(frame).to_csv(index=False, float_format="%.10g", lineterminator="\n")
    files = {path: text.encode()}
    page = html_or_none(frame, metrics, root, as_of, config, structures, outcomes, payoff) if config.report_html else None
    if page is not None:
        files[page_path] = page
    replace_together(files, remove=() if page is not None else (page_path,))
    return path, frame


if __name__ == "__main__":      # the README's table of report columns
    from pipeline.views.columns import markdown_table

    print(markdown_table(REPORT_COLUMNS))
