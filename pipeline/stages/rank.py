"""VRP, its tiers, the composite score and the ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.contract.config import SCORE_KEYS
from pipeline.stages.implied import FALLBACK_METHODS

LIQUIDITY_SCORE = {"EXCELLENT": 1.0, "GOOD": 0.75, "WARNING": 0.4, "REJECT": 0.0}
RR25_SCALE = 0.10            # |25-delta risk reversal| at which the skew component reaches 0
# Score kept by an event whose implied move needed a fallback: a fifth off, about what one
# liquidity step or 0.3 of VRP is worth, so a clean estimate of the same size ranks first.
FALLBACK_SCORE_FACTOR = 0.8


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


def signal_vrp(vrp_plain: pd.Series, vrp_event: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The VRP that drives the tier and the score, and ``vrp_basis`` naming it: vrp_event (the
    event-only premium, comparable whatever the gap between event and expiration) where the term
    structure gives it ("event"), else plain vrp ("plain"); null when neither exists."""
    basis = np.where(vrp_event.notna(), "event", np.where(vrp_plain.notna(), "plain", None))
    return vrp_event.fillna(vrp_plain), pd.Series(basis, index=vrp_plain.index, dtype="str")


def skip_reason(signal: pd.Series, basis: pd.Series, tiers: dict) -> pd.Series:
    """"vrp: event VRP 0.89 < 1.20 (MARGINAL)" for every SKIP (signal below the lowest tier); else null."""
    lowest_name, lowest = list(tiers.items())[-1]
    text = "vrp: " + basis + " VRP " + signal.map("{:.2f}".format).astype("str") + f" < {lowest:.2f} ({lowest_name})"
    return text.where(signal < lowest).astype("str")


def score_components(metrics: pd.DataFrame, weights: dict, vrp_tiers: dict) -> pd.DataFrame:
    """The 0-100 score and its parts: ``score_<k>`` = 100 * weight_k * component_k, components in
    [0, 1], and ``score`` = their sum:

    - vrp: (v - 1) / (2 * (EXCELLENT threshold - 1)), clipped, v the signal VRP
      (:func:`signal_vrp`): no premium scores 0
    - consistency: the consistency value
    - skew: 1 - |rr25| / 0.10, clipped: a balanced smile suits a delta-neutral short straddle;
      unknown skew counts 0.5
    - liquidity: EXCELLENT 1, GOOD 0.75, WARNING 0.4, REJECT 0
    An implied move from a fallback (``implied_method`` in FALLBACK_METHODS) has every part
    multiplied by FALLBACK_SCORE_FACTOR, so it never outranks a clean estimate of the same size.
    Events without a VRP get no score. Parts are rounded to 1e-6 and the score is their sum.
    """
    top = max(vrp_tiers.values())
    premium, _ = signal_vrp(metrics["vrp"], metrics.get("vrp_event", pd.Series(np.nan, index=metrics.index)))
    components = {
        "vrp": ((premium - 1.0) / (2.0 * (top - 1.0))).clip(0.0, 1.0),
        "consistency": metrics["consistency"].fillna(0.0),
        "skew": (1.0 - metrics["rr25"].abs() / RR25_SCALE).clip(0.0, 1.0).fillna(0.5),
        "liquidity": metrics["liquidity_tier"].map(LIQUIDITY_SCORE).astype(float),
    }
    method = metrics.get("implied_method", pd.Series(None, index=metrics.index, dtype="str"))
    factor = np.where(method.isin(FALLBACK_METHODS), FALLBACK_SCORE_FACTOR, 1.0)
    scored = metrics["vrp"].notna()
    parts = pd.DataFrame({f"score_{k}": (100.0 * weights[k] * components[k] * factor).where(scored).round(6)
                          for k in SCORE_KEYS}, index=metrics.index)
    return parts.assign(score=parts.sum(axis=1, min_count=1))


def rank_group(metrics: pd.DataFrame) -> pd.Series:
    """The rank order's first key: 0 tradeable with premium (a VRP tier MARGINAL or better),
    1 tradeable without premium (SKIP: nothing to sell), 2 not tradeable (no VRP or REJECT
    liquidity). Tradeable = a VRP and a liquidity tier other than REJECT."""
    tradeable = metrics["vrp"].notna() & (metrics["liquidity_tier"] != "REJECT")
    premium = metrics["vrp_tier"].notna() & (metrics["vrp_tier"] != "SKIP")
    return pd.Series(np.select([tradeable & premium, tradeable], [0, 1], 2), index=metrics.index)


def rank_events(metrics: pd.DataFrame) -> pd.DataFrame:
    """Best first: by :func:`rank_group` (tradeable with premium, tradeable SKIP, not tradeable),
    then by score, VRP, ticker and report date, so ties always break the same way."""
    ordered = metrics.assign(_group=rank_group(metrics)).sort_values(
        ["_group", "score", "vrp", "ticker", "report_date"],
        ascending=[True, False, False, True, True], na_position="last", kind="stable")
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered.drop(columns="_group").reset_index(drop=True)
