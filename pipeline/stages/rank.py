"""VRP, its tiers, the composite score and the ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd

LIQUIDITY_SCORE = {"EXCELLENT": 1.0, "GOOD": 0.75, "WARNING": 0.4, "REJECT": 0.0}
RR25_SCALE = 0.10            # |25-delta risk reversal| at which the skew component reaches 0


def vrp(implied_move: pd.Series, hist_abs_move: pd.Series) -> pd.Series:
    """Volatility risk premium = implied move / historical absolute move (null when either is
    missing or the historical move is zero)."""
    return implied_move / hist_abs_move.where(hist_abs_move > 0)


def vrp_tier(vrp_values: pd.Series, tiers: dict) -> pd.Series:
    """First tier (in config order, thresholds decreasing) with vrp >= threshold; else SKIP; null vrp -> null."""
    values = vrp_values.to_numpy(dtype=float)
    tier = np.select([values >= level for level in tiers.values()], list(tiers), "SKIP").astype(object)
    tier[np.isnan(values)] = None
    return pd.Series(tier, index=vrp_values.index, dtype="str")


def composite_score(metrics: pd.DataFrame, weights: dict, vrp_tiers: dict) -> pd.Series:
    """0-100 score = 100 * sum(weight_k * component_k) with components in [0, 1]:

    - vrp: (v - 1) / (2 * (EXCELLENT threshold - 1)), clipped, with v = vrp_event (the event-only
      premium, comparable whatever the gap between event and expiration) where the term
      structure gives it, else vrp: no premium scores 0
    - consistency: the consistency value
    - skew: 1 - |rr25| / 0.10, clipped: a balanced smile suits a delta-neutral short straddle;
      unknown skew counts 0.5
    - liquidity: EXCELLENT 1, GOOD 0.75, WARNING 0.4, REJECT 0
    Events without a VRP get no score.
    """
    top = max(vrp_tiers.values())
    premium = metrics["vrp_event"].fillna(metrics["vrp"]) if "vrp_event" in metrics else metrics["vrp"]
    components = {
        "vrp": ((premium - 1.0) / (2.0 * (top - 1.0))).clip(0.0, 1.0),
        "consistency": metrics["consistency"].fillna(0.0),
        "skew": (1.0 - metrics["rr25"].abs() / RR25_SCALE).clip(0.0, 1.0).fillna(0.5),
        "liquidity": metrics["liquidity_tier"].map(LIQUIDITY_SCORE).astype(float),
    }
    score = 100.0 * sum(weights[k] * components[k] for k in weights)
    return score.where(metrics["vrp"].notna()).round(6)


def rank_events(metrics: pd.DataFrame) -> pd.DataFrame:
    """Best first: tradeable events (a VRP and a liquidity tier other than REJECT) before the rest,
    then by score, VRP, ticker and report date, so ties always break the same way."""
    tradeable = metrics["vrp"].notna() & (metrics["liquidity_tier"] != "REJECT")
    ordered = metrics.assign(_tradeable=tradeable).sort_values(
        ["_tradeable", "score", "vrp", "ticker", "report_date"],
        ascending=[False, False, False, True, True], na_position="last", kind="stable")
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered.drop(columns="_tradeable").reset_index(drop=True)
