"""Execution quality of the event straddle as a tier."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import LIQUIDITY_TIER_NAMES



def liquidity_tier(straddle_spread: pd.Series, min_open_interest: pd.Series, min_volume: pd.Series,
                   expiration_volume: pd.Series, tiers: dict) -> pd.Series:
    """The best tier whose thresholds are all met, else REJECT.

    A tier needs straddle_spread <= max_spread, min leg open interest >= min_open_interest and
    min leg volume >= min_volume. When nothing has traded in the expiration yet (before the open)
    volume says nothing, so only spread and open interest are checked (OI-only mode).
    Missing measurements fail every threshold.
    """
    oi_only = expiration_volume.fillna(0).to_numpy() <= 0
    conditions = []
    for name in LIQUIDITY_TIER_NAMES:
        t = tiers[name]
        ok = (straddle_spread.to_numpy() <= t["max_spread"]) & (min_open_interest.to_numpy() >= t["min_open_interest"])
        ok &= oi_only | (min_volume.to_numpy() >= t["min_volume"])
        conditions.append(ok)
    return pd.Series(np.select(conditions, list(LIQUIDITY_TIER_NAMES), "REJECT"), index=straddle_spread.index, dtype="str")
