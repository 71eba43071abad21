"""Execution quality of the event straddle as a tier, with the threshold that set it."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.contract.config import LIQUIDITY_TIER_NAMES

TIERS = (*LIQUIDITY_TIER_NAMES, "REJECT")
REJECT = len(LIQUIDITY_TIER_NAMES)          # index of REJECT in TIERS


def _join_reasons(parts: pd.DataFrame, prefix: str) -> pd.Series:
    """Per row, ``prefix`` + the non-null cells of ``parts`` joined by "; "; null when none."""
    joined = parts.stack().dropna().groupby(level=0).agg("; ".join)
    return (prefix + joined).reindex(parts.index).astype("str")


def liquidity_tier(straddle_spread: pd.Series, min_open_interest: pd.Series, expiration_volume: pd.Series,
                   tiers: dict) -> pd.DataFrame:
    """``liquidity_tier`` and ``liquidity_reason`` per event, at the tradeable straddle.

    The spread tier is the best tier (EXCELLENT, GOOD, WARNING) with straddle_spread <= max_spread
    and min leg open interest >= min_open_interest, else REJECT. Volume is counted over the whole
    event expiration (all strikes): below the spread tier's min_volume it lowers the tier by one
    step, so a name whose spread and open interest meet GOOD is never REJECT; zero volume (before
    the open, or no prints yet) says nothing and is not checked. Missing measurements fail every
    threshold. ``liquidity_reason`` names each threshold failed with the numbers, for every tier
    below GOOD (the thresholds of the tier above its spread tier) and for every volume step down;
    null otherwise.
    """
    spread = straddle_spread.to_numpy(float)
    oi = min_open_interest.to_numpy(float)
    volume = expiration_volume.fillna(0).to_numpy(float)
    levels = {key: np.array([tiers[name][key] for name in LIQUIDITY_TIER_NAMES] + [np.nan])
              for key in ("max_spread", "min_open_interest", "min_volume")}
    meets = [(spread <= tiers[n]["max_spread"]) & (oi >= tiers[n]["min_open_interest"]) for n in LIQUIDITY_TIER_NAMES]
    base = np.argmax(np.column_stack([*meets, np.ones(len(spread), bool)]), axis=1)
    lowered = (base < REJECT) & (volume > 0) & (volume < levels["min_volume"][base])
    final = base + lowered
    # Below GOOD by spread or open interest: name the thresholds of the next tier up.
    above = np.maximum(base - 1, 0)
    short = base >= LIQUIDITY_TIER_NAMES.index("WARNING")
    max_spread, min_oi = levels["max_spread"][above], levels["min_open_interest"][above]
    index = straddle_spread.index
    fmt = lambda values, digits: pd.Series(values, index=index, dtype=float).map(f"{{:.{digits}f}}".format).astype("str")
    parts = pd.DataFrame({
        "quote": pd.Series("no two-sided straddle quote at the traded strike", index=index).where(short & np.isnan(spread)),
        "spread": ("straddle spread " + fmt(spread, 3) + " > " + fmt(max_spread, 3)).where(short & (spread > max_spread)),
        "oi": ("leg open interest " + fmt(oi, 0) + " < " + fmt(min_oi, 0)).where(short & ~(oi >= min_oi)),
        "volume": ("expiration volume " + fmt(volume, 0) + " < " + fmt(levels["min_volume"][base], 0)
                   + ": one tier down").where(lowered),
    }, index=index)
    return pd.DataFrame({"liquidity_tier": pd.Series(np.array(TIERS)[final], index=index, dtype="str"),
                         "liquidity_reason": _join_reasons(parts, "liquidity: ")}, index=index)
