"""The synthetic market's tickers and their fixed parameters (vols, jump sizes, premia, timing)."""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy.special import ndtri

from pipeline.sources.draws import S_NAME, S_PARAM, uniform

CLASS_SHARES = ("BRK.B", "BF.B", "LEN.B", "MOG.A", "HEI.A", "BIO.B")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAME_ATTEMPTS_DRAWN = 8


@functools.lru_cache(maxsize=8)
def universe(seed: int, size: int) -> pd.DataFrame:
    ids = np.arange(size)
    # Name i is its first draw (attempt 0, 1, ...) not taken by an earlier name; short names
    # clash often, so the first few attempts of every name are drawn in one pass.
    attempts = np.arange(NAME_ATTEMPTS_DRAWN)
    drawn = _names(uniform(seed, S_NAME, ids[:, None, None], attempts[None, :, None], np.arange(5)).reshape(-1, 5))
    names: list[str] = []
    used: set[str] = set()
    for i in range(size):
        if i % 97 == 13 and len(names) // 97 < len(CLASS_SHARES):
            name = CLASS_SHARES[len([n for n in names if n in CLASS_SHARES])]
        else:
            attempt = 0
            name = drawn[i * NAME_ATTEMPTS_DRAWN]
            while name in used or name in CLASS_SHARES:
                attempt += 1
                name = (drawn[i * NAME_ATTEMPTS_DRAWN + attempt] if attempt < NAME_ATTEMPTS_DRAWN
                        else _names(uniform(seed, S_NAME, i, attempt, np.arange(5))[None, :])[0])
        used.add(name)
        names.append(name)
    u = [uniform(seed, S_PARAM, ids, k) for k in range(12)]
    growth = u[0] < 0.35
    liquidity = u[1] ** 0.7
    spot0 = np.exp(np.log(8.0) + (np.log(900.0) - np.log(8.0)) * u[2])
    jump_std = np.where(growth, 0.045 + 0.075 * u[3], 0.015 + 0.03 * u[3])
    # Premium lognormal around 1.2 (DESIGN §7: implied exceeds realized by 10-40% on average,
    # widely dispersed, some names underpriced).
    true_premium = np.clip(1.2 * np.exp(0.28 * ndtri(u[4])), 0.6, 2.6)
    timing_u = u[5]
    timing = np.where(timing_u < 0.47, "BMO", np.where(timing_u < 0.94, "AMC", "DMH"))
    return pd.DataFrame({
        "ticker": pd.array(names, dtype="str"),
        "ticker_id": ids,
        "growth": growth,
        "liquidity": liquidity,
        "spot0": spot0,
        "diffusive_vol": np.where(growth, 0.30 + 0.30 * u[6], 0.14 + 0.16 * u[6]),
        "jump_std": jump_std,
        # The event law's shape (DESIGN section 7): "beat or miss" (bimodal) for 45% of growth
        # names (large jumps against their diffusion) and 10% of the others, fat tails (a scale
        # mixture) for a quarter of the rest, else a normal jump: about 55% of names are normal.
        "event_law": np.where(uniform(seed, S_PARAM, ids, 22) < np.where(growth, 0.45, 0.10), "bimodal",
                              np.where(u[7] < 0.25, "fat", "normal")),
        "true_premium": true_premium,
        "usual_timing": timing,
        "vendor_knows_timing": u[8] >= 0.06,
        "fiscal_offset_months": (u[9] * 3).astype(int),
        "report_lag_days": 18 + (u[10] * 28).astype(int),
        "dividend_yield": np.where(u[11] < 0.4, 0.0, 0.035 * u[11]),
        "smile_slope": -0.04 - 0.10 * uniform(seed, S_PARAM, ids, 20),
        "smile_curvature": 0.015 + 0.04 * uniform(seed, S_PARAM, ids, 21),
        "weeklies": liquidity > 0.35,
    })


def _names(u: np.ndarray) -> list[str]:
    """A 1-4 letter name per row of five uniforms: the first sets the length, the rest the letters."""
    lengths = (1 + (u[:, 0] * 4).astype(int)).tolist()
    codes = (u[:, 1:] * 26).astype(int).tolist()
    return ["".join(_ALPHABET[c] for c in row[:n]) for row, n in zip(codes, lengths)]
