"""Quadratic smile fit per (ticker, expiration), all groups solved together.

Model: iv = a + b x + c x^2 in standardized moneyness x = ln(K/F) / (atm_iv sqrt(t)), where
atm_iv is :func:`pipeline.stages.term.atm_iv_by_expiration` (so x is in "ATM standard
deviations" and comparable across names and maturities). IVs are fractions; a is an IV,
b and c are IV per unit x and per unit x^2.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from pipeline.kernel.black76 import black76_d1, normal_pdf
from pipeline.stages.groups import QUOTE_KEY, quote_groups, quote_key
from pipeline.stages.term import atm_iv_by_expiration, otm_quotes

SKEW_VALUES = ["skew_atm_iv", "skew_slope", "skew_curvature", "rr25", "bf25", "skew_r2", "skew_n", "skew_reason"]
SKEW_COLUMNS = [*QUOTE_KEY, *SKEW_VALUES]
# Below this determinant of the normalized normal matrix (see _solve_quadratic) the points cannot
# separate three coefficients; any three distinct, weighted strikes give far more.
SINGULAR_DET = 1e-9
D1_AT_25_DELTA = ndtri(0.25)   # call: N(d1) = 0.25; put: N(-d1) = 0.25, i.e. d1 = -D1_AT_25_DELTA
DELTA_ITERATIONS = 50
DELTA_TOLERANCE = 1e-12


def _fit_points(group, t, iv, k, atm_iv, max_abs_x: float):
    """The quotes a smile fit uses: (group, x, iv, weight) arrays.

    Quotes (group, t, iv, k) from :func:`pipeline.stages.term.otm_quotes`, ``atm_iv`` per group.
    x = k / (atm_iv sqrt(t)), kept when |x| <= ``max_abs_x``. Weight = normalized vega
    phi(d1) = vega / (D F sqrt(t)), d1 = -k / (iv sqrt(t)) + iv sqrt(t) / 2 (see
    :mod:`pipeline.kernel.black76`): IV noise from a price tick scales like 1/vega, so far wings, where a
    cent is a lot of vol, count less.
    """
    root_t = np.sqrt(t)
    x = k / (atm_iv[group] * root_t)
    weight = normal_pdf(black76_d1(-k, iv * root_t))
    kept = np.abs(x) <= max_abs_x
    return group[kept], x[kept], iv[kept], weight[kept]


def _group_sums(group, n_groups, *weights):
    return [np.bincount(group, weights=w, minlength=n_groups) for w in weights]


def _solve_quadratic(group, n_groups, x, y, w, eligible):
    """Weighted least squares of y on (1, u, u^2) per group, u = (x - mean) / std within group.

    Centring and scaling makes the normal matrix sum(w) * [[1, 0, 1], [0, 1, m3], [1, m3, m4]]
    (m = standardized moments), well conditioned, with determinant sum(w)^3 (m4 - 1 - m3^2),
    which is 0 when fewer than three distinct x carry weight. Eligible groups above
    SINGULAR_DET are solved in one stacked np.linalg.solve.
    Returns a, b, c in x (not u; NaN where not solved), the fitted value per point and the
    solved mask.
    """
    total, wx = _group_sums(group, n_groups, w, w * x)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = wx / total
        offset = x - centre[group]
        (wxx,) = _group_sums(group, n_groups, w * offset**2)
        scale = np.sqrt(wxx / total)
        u = offset / scale[group]
    wu, wu2 = w * u, w * u**2
    s0, s1, s2, s3, s4, r0, r1, r2 = _group_sums(
        group, n_groups, w, wu, wu2, w * u**3, w * u**4, w * y, wu * y, wu2 * y)
    normal = np.stack([np.stack([s0, s1, s2], -1), np.stack([s1, s2, s3], -1), np.stack([s2, s3, s4], -1)], -2)
    with np.errstate(divide="ignore", invalid="ignore"):
        determinant = np.linalg.det(normal / s0[:, None, None])
    solved = eligible & (determinant > SINGULAR_DET)
    alpha_beta_gamma = np.full((n_groups, 3), np.nan)
    rhs = np.stack([r0, r1, r2], -1)
    alpha_beta_gamma[solved] = np.linalg.solve(normal[solved], rhs[solved, :, None])[..., 0]
    alpha, beta, gamma = alpha_beta_gamma.T
    fitted = alpha[group] + beta[group] * u + gamma[group] * u * u
    # Back from u = (x - m)/s to x: expand a' + b'(x - m)/s + c'(x - m)^2/s^2.
    a = alpha - beta * centre / scale + gamma * (centre / scale) ** 2
    b = beta / scale - 2.0 * gamma * centre / scale**2
    c = gamma / scale**2
    return a, b, c, fitted, solved


def _weighted_r2(group, n_groups, y, w, fitted):
    """1 - sum w (y - fit)^2 / sum w (y - mean)^2; 1 for a perfectly flat smile."""
    total, wy = _group_sums(group, n_groups, w, w * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = wy / total
        residual, spread = _group_sums(group, n_groups, w * (y - fitted) ** 2, w * (y - mean[group]) ** 2)
        return np.where(spread > 0, 1.0 - residual / spread, 1.0)


def _x_at_d1(target_d1, a, b, c, atm_iv, root_t, max_abs_x):
    """x where the fitted smile's forward delta has d1 = target (Newton, all groups at once).

    d1(x) = -x atm_iv / sigma(x) + sigma(x) sqrt(t) / 2 with sigma(x) = a + b x + c x^2, from
    k = x atm_iv sqrt(t). NaN where the smile goes non-positive, Newton does not settle, or the
    point lies beyond ``max_abs_x`` (outside the fitted data).
    """
    x = -target_d1 * a / atm_iv   # exact for a flat smile with negligible sigma sqrt(t)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(DELTA_ITERATIONS):
            sigma = a + (b + c * x) * x
            slope = b + 2.0 * c * x
            miss = -x * atm_iv / sigma + 0.5 * sigma * root_t - target_d1
            derivative = -atm_iv / sigma + x * atm_iv * slope / sigma**2 + 0.5 * slope * root_t
            x = x - miss / derivative
        sigma = a + (b + c * x) * x
        miss = -x * atm_iv / sigma + 0.5 * sigma * root_t - target_d1
    found = (np.abs(miss) <= DELTA_TOLERANCE) & (sigma > 0) & (np.abs(x) <= max_abs_x)
    return np.where(found, x, np.nan)


def _risk_reversal_and_butterfly(a, b, c, atm_iv, t, max_abs_x):
    """rr25 = iv(25d call) - iv(25d put); bf25 = (iv(25d call) + iv(25d put))/2 - a.

    25-delta points are read off the fitted curve, with forward (undiscounted) delta N(d1) = 0.25
    for the call and N(-d1) = 0.25 for the put: independent of the rate and of quote noise at
    any single strike.
    """
    root_t = np.sqrt(t)
    x_call = _x_at_d1(D1_AT_25_DELTA, a, b, c, atm_iv, root_t, max_abs_x)
    x_put = _x_at_d1(-D1_AT_25_DELTA, a, b, c, atm_iv, root_t, max_abs_x)
    iv_call = a + (b + c * x_call) * x_call
    iv_put = a + (b + c * x_put) * x_put
    return iv_call - iv_put, 0.5 * (iv_call + iv_put) - a


def fit_skew(surface: pd.DataFrame, min_points: int = 5, max_abs_x: float = 3.0,
             atm: pd.DataFrame | None = None) -> pd.DataFrame:
    """Weighted quadratic smile per (ticker, expiration) in surface (per (as_of, ticker, expiration)
    on a panel: :func:`pipeline.stages.groups.quote_key`); one row each, sorted.

    ``atm`` is :func:`pipeline.stages.term.atm_iv_by_expiration` of this ``surface`` (its t and
    atm_iv standardize x); computed here when not given.

    Points: OTM quotes with a usable IV (:func:`pipeline.stages.term.otm_quotes`) with
    |x| <= ``max_abs_x``, weighted by normalized vega (see :func:`_fit_points`). All groups are
    solved at once: per-point design terms are summed per group (``np.bincount``) into 3x3
    normal equations, solved as one stacked ``np.linalg.solve``. Columns:

    - ``skew_atm_iv`` = a (fitted IV at x = 0), ``skew_slope`` = b, ``skew_curvature`` = c
      (negative for the concave smile seen before earnings; the sign is kept);
    - ``rr25``, ``bf25`` from the fitted curve (see :func:`_risk_reversal_and_butterfly`);
    - ``skew_r2`` weighted R^2, ``skew_n`` points used;
    - ``skew_reason``: null when everything is there, else ``no_atm_iv`` (no quotes both sides of
      the forward to standardize with), ``too_few_points`` (< ``min_points``), ``singular_fit``
      (fewer than three distinct weighted strikes, possible with ``min_points`` < 3) -- all
      outputs null -- or ``no_25_delta`` (fit kept; a 25-delta point is off the fitted range or
      the curve is not usable there).
    """
    surface_group, n_groups = quote_groups(surface)
    atm = atm_iv_by_expiration(surface) if atm is None else atm
    if len(atm) != n_groups:
        raise ValueError(f"atm has {len(atm)} rows for the {n_groups} (ticker, expiration) groups of surface")
    atm_iv = atm["atm_iv"].to_numpy(float)
    quote_group, quote_t, quote_iv, k = otm_quotes(surface, surface_group)
    group, x, y, w = _fit_points(quote_group, quote_t, quote_iv, k, atm_iv, max_abs_x)

    count = np.bincount(group, minlength=n_groups)
    no_atm = ~np.isfinite(atm_iv)
    too_few = count < min_points
    a, b, c, fitted, solved = _solve_quadratic(group, n_groups, x, y, w, ~no_atm & ~too_few)
    r2 = _weighted_r2(group, n_groups, y, w, fitted)
    rr25, bf25 = _risk_reversal_and_butterfly(a, b, c, atm_iv, atm["t"].to_numpy(float), max_abs_x)

    reason = np.select([no_atm, too_few, ~solved, np.isnan(rr25)],
                       ["no_atm_iv", "too_few_points", "singular_fit", "no_25_delta"], default="")
    # a, b, c are NaN already for unsolved groups; R^2 of an empty group would read as 1.
    return atm[quote_key(atm)].assign(
        skew_atm_iv=a,
        skew_slope=b,
        skew_curvature=c,
        skew_r2=np.where(solved, r2, np.nan),
        rr25=rr25,
        bf25=bf25,
        skew_n=count,
        skew_reason=pd.array(np.where(reason == "", None, reason), dtype="str"),
    )[[*quote_key(atm), *SKEW_VALUES]]
