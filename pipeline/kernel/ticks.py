"""Axis ticks: where a chart's axis puts its labels, and so how far a chart reaches. Pure Python
and NumPy, no I/O: the page draws its axes with them and the structures stage rounds a payoff
curve's reach out to the outer tick, so the stored curve spans the drawn axis."""
from __future__ import annotations

import math

import numpy as np


def nice_ticks(lo: float, hi: float, count: int = 5) -> np.ndarray:
    """Ticks at multiples of a step of 1, 2, 2.5 or 5 x 10^k covering [lo, hi] with about ``count``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw - 1e-15)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return np.round(np.arange(first, last + 1) * step, 12)
