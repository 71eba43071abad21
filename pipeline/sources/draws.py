"""Counter-based random draws for the synthetic market.

Every draw is a hash of (seed, stream, keys...), not the next state of a generator, so a value
never depends on what else was drawn before it: any day, ticker or contract can be drawn alone.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaincinv, ndtri

# Streams: one independent hash stream per kind of draw.
(S_NAME, S_PARAM, S_OVERNIGHT, S_INTRADAY, S_RANGE, S_VOLUME, S_JUMP, S_LAG, S_DMH,
 S_QUOTE, S_BAD, S_OI, S_TVOL, S_EPS) = range(1, 15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 arrays (wrapping arithmetic is intended)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def uniform(seed: int, stream: int, *keys) -> np.ndarray:
    """Uniform (0, 1) draws, a pure function of (seed, stream, keys...); keys broadcast."""
    h = _mix(np.uint64((seed * 0x9E3779B97F4A7C15 + stream) & 0xFFFFFFFFFFFFFFFF))
    for key in keys:
        with np.errstate(over="ignore"):
            h = _mix(h ^ (np.asarray(key).astype(np.int64).astype(np.uint64) + np.uint64(0x632BE59BD9B4E019)))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def normal(seed: int, stream: int, *keys) -> np.ndarray:
    """Standard normal draws: the inverse normal CDF of :func:`uniform`'s."""
    return ndtri(uniform(seed, stream, *keys))


def student_t3_unit(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit-variance Student-t(3) from two uniforms (normal / sqrt(chi2_3 / 3), chi2 via gamma)."""
    z = ndtri(u)
    chi2 = 2.0 * gammaincinv(1.5, v)
    return z / np.sqrt(chi2 / 3.0) / math.sqrt(3.0)
