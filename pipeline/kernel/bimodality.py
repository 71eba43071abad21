"""The bimodality rule (DESIGN section 11) on a density sampled on an increasing grid of
k = ln(K/F): the density stage applies it to the fitted density, the synthetic market's truth to
the exact one, so both sides of the recovery test use one rule."""
from __future__ import annotations

import numpy as np

BIMODAL_WINDOW = 2.0        # ATM standard deviations either side of the forward
BIMODAL_TROUGH = 0.10       # the trough is at least this far below the lower peak (fraction)


def trough_depth(density: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Per row of ``density`` (on an increasing grid, only cells where ``inside`` count): the
    deepest trough between two maxima, 1 - f(j) / min(max f left of j, max f right of j) over the
    cells j (0 for a unimodal density)."""
    f = np.where(inside, density, -np.inf)
    left = np.maximum.accumulate(f, axis=1)
    right = np.maximum.accumulate(f[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(inside, 1.0 - density / np.minimum(left, right), 0.0)
    # Negative density (arbitrage in a fit) would read deeper than empty: a trough is at most 1.
    return np.clip(np.max(np.where(np.isfinite(depth), depth, 0.0), axis=1, initial=0.0), 0.0, 1.0)


def bimodal(depth: np.ndarray) -> np.ndarray:
    """Two maxima within +-BIMODAL_WINDOW ATM standard deviations with a trough at least
    BIMODAL_TROUGH below the lower peak: :func:`trough_depth` >= BIMODAL_TROUGH."""
    return depth >= BIMODAL_TROUGH
