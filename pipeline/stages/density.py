"""The priced distribution of each earnings move, from the event expiration's smile (DESIGN 11).

Per event, from the usable out-of-the-money quotes of its event expiration, all events at once:

- **the smile**: a penalized cubic spline (P-spline) in total variance w = iv^2 t against
  k = ln(K/F), on fixed knots spread evenly over the quotes' range (N_INTERVALS intervals, not a
  knot per strike: that invents modes; a quadratic cannot show a trough). Beyond the outermost
  usable quote w is linear in k with the boundary slope capped in [0, LEE_SLOPE_CAP] in absolute
  value (Lee's moment bound |dw/dk| < 2; a flat IV beyond the last quote would break the slope and
  create negative density);
- **probabilities from first differences** of undiscounted Black-76 prices c(k) of that smile:
  P(S_T > K) = -dC/dK / D; the density (second differences) only for its shape. Negative density
  is arbitrage in the fit: its mass is ``rn_arbitrage_mass``;
- ``rn_p_exceed_<level>`` = P(|S_T/F - 1| > level) at level = the implied move and the configured
  levels; ``hist_p_exceed_<level>`` its twin at the same horizon: past moves widened by the
  diffusion to expiry, mean_i P(|m_i + e| > level), e ~ N(0, ex_earnings_vol^2 (t - 1 session));
- ``rn_bimodal`` (:func:`bimodal`): the density of ln(S_T/F) has two maxima within
  +-BIMODAL_WINDOW ATM standard deviations of F with a trough at least BIMODAL_TROUGH below the
  lower peak; the synthetic market's truth applies the same function to its exact density;
- **the priced event law**: a one- or two-component normal mixture for the log jump J with the
  diffusion held at the ex-earnings vol (:func:`fit_event_law`).

Units: probabilities 0-1, moves and stds fractions (log jump), t in years.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from pipeline.contract.levels import level_name
from pipeline.kernel.bimodality import BIMODAL_WINDOW, bimodal, trough_depth
from pipeline.kernel.black76 import black76_price, discount_factor
from pipeline.kernel.event_law import martingale_means
from pipeline.stages.consistency import recent_abs_moves
from pipeline.stages.groups import quote_groups, quote_key
from pipeline.stages.panel import key
from pipeline.stages.term import otm_quotes

N_INTERVALS = 5             # spline intervals over the quotes' range: N_INTERVALS + 3 cubic B-splines
PENALTY = 3.5e-3            # weight of the squared second differences of the spline coefficients (tuned: precision/recall of rn_bimodal 0.85/0.88)
NATURAL_END_WEIGHT = 1e3     # soft constraint: zero second derivative at both ends
LEE_SLOPE_CAP = 1.98        # |dw/dk| of the linear wings, below Lee's bound of 2
MIN_QUOTES = 6              # usable OTM quotes needed on the event expiration
GRID_HALF_WIDTH = 8.0       # the price grid spans +-8 ATM standard deviations of ln(K/F)
GRID_POINTS = 401
DIGITAL_STEP = 1e-4         # central-difference step in k for the digitals at given strikes
SESSION_YEARS = 1.0 / 252   # one session's share of a year: a past move already holds it
TAIL_LEVEL = 2.0            # the event law's tail: mass beyond this many ATM standard deviations of X
TAIL_DEAD_ZONE = 0.15       # a tail within +-15% of the normal's keeps the one-component law (noise)
ATM_SCALE_RANGE = (0.3, 3.0)  # bracket of the factor that makes a two-component law reprice the ATM straddle
TAIL_SHAPES = np.linspace(0.0, 1.0, 121)[1:]   # grid of the two-component shapes tried (t in (0, 1])
LAW_COLUMNS = [f"event_law_{name}_{c}" for c in (1, 2) for name in ("weight", "mean", "std")]


def density_columns(levels) -> list[str]:
    """Columns :func:`event_densities` adds, in order."""
    names = ["implied", *(level_name(v) for v in levels)]
    return [*(f"rn_p_exceed_{n}" for n in names), *(f"hist_p_exceed_{n}" for n in names),
            "rn_bimodal", "rn_trough_depth", "rn_arbitrage_mass", "rn_mass_inside", *LAW_COLUMNS, "density_reason"]


def _basis(u: np.ndarray):
    """Uniform cubic B-splines on [0, 1] with N_INTERVALS intervals: the first of the four nonzero
    basis functions at each u, their values and their derivatives in u (u clipped to [0, 1])."""
    x = np.clip(np.nan_to_num(u), 0.0, 1.0) * N_INTERVALS     # a NaN u is masked by the caller
    first = np.minimum(np.floor(x), N_INTERVALS - 1).astype(np.int64)
    s = x - first
    s2, s3, r = s * s, s * s * s, 1.0 - s
    values = np.stack([r * r * r, 3 * s3 - 6 * s2 + 4, -3 * s3 + 3 * s2 + 3 * s + 1, s3], axis=-1) / 6.0
    slopes = np.stack([-0.5 * r * r, 1.5 * s2 - 2 * s, -1.5 * s2 + s + 0.5, 0.5 * s2], axis=-1) * N_INTERVALS
    return first, values, slopes


@dataclass
class Smiles:
    """Fitted smiles of n expirations (arrays of length n; ``coef`` n x (N_INTERVALS + 3)).

    Total variance in units of ``atm_var`` (the interpolated ATM total variance) as a spline of
    u = (z - z_lo) / (z_hi - z_lo), z = k / sqrt(atm_var); ``valid`` False where too few quotes.
    """

    atm_var: np.ndarray
    z_lo: np.ndarray
    z_hi: np.ndarray
    coef: np.ndarray
    valid: np.ndarray

    def total_variance(self, k: np.ndarray) -> np.ndarray:
        """w(k) per row (``k`` n x m, ln(K/F)): the spline inside the quotes' range, linear wings
        with the slope capped by LEE_SLOPE_CAP outside; floored at 1e-6 of the ATM variance."""
        root = np.sqrt(self.atm_var)[:, None]
        z_lo, z_hi = self.z_lo[:, None], self.z_hi[:, None]
        span = z_hi - z_lo
        u = (k / root - z_lo) / span
        # The four nonzero cubic B-splines at each point, without stacking them (grids are large).
        x = np.clip(np.nan_to_num(u), 0.0, 1.0) * N_INTERVALS
        first = np.minimum(np.floor(x), N_INTERVALS - 1).astype(np.int64)
        f = x - first
        f2 = f * f
        f3 = f2 * f
        r = 1.0 - f
        values = (r * r * r, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3)
        inner = sum(np.take_along_axis(self.coef, first + j, axis=1) * values[j] for j in range(4)) / 6.0
        # The edges: value and slope dw/dk = (dy/du) atm_var / (span sqrt(atm_var)).
        edge_first, edge_values, edge_slopes = _basis(np.array([0.0, 1.0]))
        picked = self.coef[:, edge_first[:, None] + np.arange(4)]           # n x 2 x 4
        edge_y = np.sum(picked * edge_values, axis=-1)
        edge_dk = np.sum(picked * edge_slopes, axis=-1) * root / span
        slope_lo = np.clip(edge_dk[:, :1], -LEE_SLOPE_CAP, 0.0)
        slope_hi = np.clip(edge_dk[:, 1:], 0.0, LEE_SLOPE_CAP)
        k_lo, k_hi = z_lo * root, z_hi * root
        y = np.where(u < 0, edge_y[:, :1] + slope_lo / self.atm_var[:, None] * (k - k_lo),
                     np.where(u > 1, edge_y[:, 1:] + slope_hi / self.atm_var[:, None] * (k - k_hi), inner))
        return np.maximum(y, 1e-6) * self.atm_var[:, None]

    def call(self, k: np.ndarray) -> np.ndarray:
        """Undiscounted call price per unit of forward, C(K) / (D F), at k = ln(K/F) (n x m)."""
        return black76_price(1.0, np.exp(k), 1.0, np.sqrt(self.total_variance(k)), 1.0, True)

    def prob_above(self, k: np.ndarray) -> np.ndarray:
        """P(S_T > F e^k): the digital -dC/dK / D from a central first difference of prices."""
        h = DIGITAL_STEP
        return -(self.call(k + h) - self.call(k - h)) / (np.exp(k + h) - np.exp(k - h))


def fit_smiles(group: np.ndarray, k: np.ndarray, total_var: np.ndarray, weight: np.ndarray,
               atm_var: np.ndarray) -> Smiles:
    """P-spline smiles of ``len(atm_var)`` groups from quotes (group, k, total_var, weight).

    Per group: minimize sum_j w_j (y_j - B(u_j) c)^2 + PENALTY sum (second difference of c)^2,
    y = total variance / atm_var, weights normalized to sum 1 per group; all groups' 8 x 8
    normal equations are accumulated with one bincount each and solved as one stacked solve.
    """
    n, m = len(atm_var), N_INTERVALS + 3
    ok = np.isfinite(atm_var[group]) & (atm_var[group] > 0) & np.isfinite(total_var) & (weight > 0)
    group, k, total_var, weight = group[ok], k[ok], total_var[ok], weight[ok]
    z = k / np.sqrt(atm_var[group])
    # Per-group range by one sort and reduceat (ufunc.at is slow).
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]]) if group.size else np.zeros(0, int)
    z_lo = np.full(n, np.inf)
    z_hi = np.full(n, -np.inf)
    if group.size:
        z_lo[sorted_group[starts]] = np.minimum.reduceat(z[order], starts)
        z_hi[sorted_group[starts]] = np.maximum.reduceat(z[order], starts)
    count = np.bincount(group, minlength=n)
    valid = (count >= MIN_QUOTES) & (z_lo < 0) & (z_hi > 0)
    span = np.where(valid, z_hi - z_lo, 1.0)
    u = (z - z_lo[group]) / span[group]
    first, values, _ = _basis(u)
    w = weight / np.bincount(group, weights=weight, minlength=n)[group]
    y = total_var / atm_var[group]
    a = np.arange(4)
    rows = first[:, None] + a                                            # quote x 4 basis indices
    cell = (group[:, None, None] * m + rows[:, :, None]) * m + rows[:, None, :]
    normal = np.bincount(cell.ravel(), weights=(w[:, None, None] * values[:, :, None] * values[:, None, :]).ravel(),
                         minlength=n * m * m).astype(float).reshape(n, m, m)
    rhs = np.bincount((group[:, None] * m + rows).ravel(), weights=(w[:, None] * values * y[:, None]).ravel(),
                      minlength=n * m).astype(float).reshape(n, m)
    second = np.diff(np.eye(m), 2, axis=0)
    # Natural ends: zero curvature at the outermost quotes, so the linear wings continue the
    # spline with its value, slope and curvature (a curvature jump there is a jump in density
    # that reads as a second mode).
    ends = np.zeros((2, m))
    ends[0, :3], ends[1, -3:] = (1.0, -2.0, 1.0), (1.0, -2.0, 1.0)
    normal += PENALTY * second.T @ second + NATURAL_END_WEIGHT * ends.T @ ends
    normal[~valid] = np.eye(m)
    rhs[~valid] = 1.0
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    # A wing must not fall away from the money (Lee: the wings' slopes have the sign of k). Where
    # the fit ends sloping the wrong way, its edge slope is held at zero and the fit repeated, so
    # the linear wing joins smoothly instead of with a kink (a kink is a spike of density).
    _, _, edge_slopes = _basis(np.array([0.0, 1.0]))
    slope_rows = np.zeros((2, m))
    slope_rows[0, :4], slope_rows[1, -4:] = edge_slopes[0], edge_slopes[1]
    edge = coef @ slope_rows.T
    wrong = np.stack([edge[:, 0] > 0, edge[:, 1] < 0], axis=1) & valid[:, None]
    if wrong.any():
        for side in (0, 1):
            normal[wrong[:, side]] += NATURAL_END_WEIGHT * np.outer(slope_rows[side], slope_rows[side])
        again = wrong.any(axis=1)
        coef[again] = np.linalg.solve(normal[again], rhs[again][..., None])[..., 0]
    return Smiles(atm_var=np.where(valid, atm_var, 1.0), z_lo=np.where(valid, z_lo, -1.0),
                  z_hi=np.where(valid, z_hi, 1.0), coef=coef, valid=valid)


def expiration_smiles(surface: pd.DataFrame, atm: pd.DataFrame, wanted=None) -> tuple[pd.DataFrame, Smiles]:
    """A smile per (ticker, expiration) of ``surface``: (keys with t, Smiles in the same order).

    ``atm`` is :func:`pipeline.stages.term.atm_iv_by_expiration` of ``surface``. Quotes are the
    usable OTM ones of :func:`pipeline.stages.term.otm_quotes`, weighted by normalized vega.
    ``wanted`` (a frame of ticker, expiration): fit only those expirations (the others invalid).
    """
    surface_group, n_groups = quote_groups(surface)
    if wanted is not None:
        quote = quote_key(atm)
        keys = pd.MultiIndex.from_frame(atm[quote])
        needed = np.zeros(n_groups + 1, bool)
        needed[keys.get_indexer(pd.MultiIndex.from_frame(wanted[quote]))] = True
        surface_group = np.where(needed[:-1][np.maximum(surface_group, 0)] & (surface_group >= 0), surface_group, -1)
    quote_group, t, iv, k = otm_quotes(surface, surface_group)
    atm_var = (atm["atm_iv"].to_numpy(float) ** 2) * atm["t"].to_numpy(float)
    total = iv * iv * t
    # Normalized vega phi(d1): a cent of price is many vol points in the far wings.
    d1 = -k / np.sqrt(total) + 0.5 * np.sqrt(total)
    weight = np.exp(-0.5 * d1 * d1)
    return atm[[*quote_key(atm), "t"]].reset_index(drop=True), fit_smiles(quote_group, k, total, weight, atm_var)


def _subset(smiles: Smiles, rows: np.ndarray) -> Smiles:
    return Smiles(*(getattr(smiles, f)[rows] for f in ("atm_var", "z_lo", "z_hi", "coef", "valid")))


def _query_smiles(surface: pd.DataFrame, atm: pd.DataFrame, queries: pd.DataFrame):
    """The smiles of the queries' expirations: (found mask, Smiles of the found rows, their k)."""
    keys, smiles = expiration_smiles(surface, atm, queries)
    quote = quote_key(keys)
    index = pd.MultiIndex.from_frame(keys[quote]).get_indexer(
        pd.MultiIndex.from_frame(queries[quote])) if len(keys) else np.full(len(queries), -1)
    found = index >= 0
    sub = _subset(smiles, index[found])
    found[found] = sub.valid
    sub = _subset(sub, np.flatnonzero(sub.valid))
    k = np.log(queries["strike"].to_numpy(float)[found] / queries["forward"].to_numpy(float)[found])
    return found, sub, k


def smile_prices(surface: pd.DataFrame, atm: pd.DataFrame, queries: pd.DataFrame) -> np.ndarray:
    """Call prices D F c(k) from the fitted smile for rows of ``queries`` (ticker, expiration,
    strike, forward, rate, t): the price the density gives (money); NaN without a smile. A put
    is the call - D (F - K)."""
    found, sub, k = _query_smiles(surface, atm, queries)
    out = np.full(len(queries), np.nan)
    if found.any():
        q = queries[found]
        money = discount_factor(q["rate"].to_numpy(float), q["t"].to_numpy(float)) * q["forward"].to_numpy(float)
        out[found] = money * sub.call(k[:, None])[:, 0]
    return out


# --- the event law ---------------------------------------------------------------------------------
def fit_event_law(weights_cells, k_cells, diffusive_var, atm_event_var, two_components):
    """A normal-mixture law of the log jump J per event from the density of X = ln(S_T/F).

    X = J + diffusion, the diffusion normal with variance ``diffusive_var`` (ex-earnings vol^2 t),
    so the cumulants of J are those of X less the diffusion's variance. One component: std from the
    ATM-equivalent event variance ``atm_event_var`` (ATM total variance - diffusive_var), which
    reprices the ATM straddle. Two components (where ``two_components``, for bimodal densities with
    negative excess kurtosis): equal stds, the weights and separation from the third and fourth
    cumulants (kappa3 = d^3 u (p - q), kappa4 = d^4 u (1 - 6u), u = pq, d the separation), the
    std from kappa2. Elsewhere, where the density's tail differs from a normal's,
    :func:`_tail_law` replaces the one component by two. Two-component laws are then scaled to
    reprice the ATM straddle (:func:`_reprice_atm_straddle`). Means are shifted so that E[e^J] = 1.
    Returns weights, means, stds (n x 2); NaN where the event variance is not positive.
    """
    mass = weights_cells / np.sum(weights_cells, axis=1, keepdims=True)
    mean = np.sum(mass * k_cells, axis=1, keepdims=True)
    centred = k_cells - mean
    weighted_sq = mass * centred * centred
    k2 = np.sum(weighted_sq, axis=1)
    m3 = np.sum(weighted_sq * centred, axis=1)
    m4 = np.sum(weighted_sq * centred * centred, axis=1)
    k4 = m4 - 3 * k2 * k2
    var_j = k2 - diffusive_var
    two = two_components & (k4 < 0) & (var_j > 0)
    # Solve r = kappa3^2 / (-kappa4)^(3/2) = u^2 (1 - 4u) / (u (6u - 1))^(3/2) for u in (1/6, 1/4].
    with np.errstate(divide="ignore", invalid="ignore"):
        target = m3 * m3 / np.abs(k4) ** 1.5
        lo, hi = np.full(len(k2), 1.0 / 6.0 + 1e-9), np.full(len(k2), 0.25)
        for _ in range(40):
            u = 0.5 * (lo + hi)
            r = u * u * (1 - 4 * u) / (u * (6 * u - 1)) ** 1.5
            lo, hi = np.where(r > target, u, lo), np.where(r > target, hi, u)
        u = 0.5 * (lo + hi)
        separation = (-k4 / (u * (6 * u - 1))) ** 0.25
        p_minus_q = np.clip(m3 / (separation ** 3 * u), -1, 1)
        p = 0.5 * (1 + p_minus_q)
        std_two = np.sqrt(np.maximum(var_j - separation ** 2 * u, 0.04 * var_j))
    std_one = np.sqrt(np.where(atm_event_var > 0, atm_event_var, np.nan))
    weights = np.where(two[:, None], np.stack([p, 1 - p], axis=1), [[1.0, 0.0]])
    means = np.where(two[:, None], np.stack([-(1 - p) * separation, p * separation], axis=1), 0.0)
    stds = np.where(two[:, None], np.stack([std_two, std_two], axis=1), np.stack([std_one, np.zeros_like(std_one)], axis=1))
    tail_fit, tail_weights, tail_means, tail_stds = _tail_law(mass, centred, diffusive_var, atm_event_var)
    tail_fit &= ~two & (atm_event_var > 0)
    weights = np.where(tail_fit[:, None], tail_weights, weights)
    means = np.where(tail_fit[:, None], tail_means, means)
    stds = np.where(tail_fit[:, None], tail_stds, stds)
    means, stds = _reprice_atm_straddle(weights, means, stds, diffusive_var, atm_event_var)
    means = martingale_means(weights, means, stds)
    bad = ~np.isfinite(stds[:, 0])
    return weights, np.where(bad[:, None], np.nan, means), stds


def _reprice_atm_straddle(weights, means, stds, diffusive_var, atm_event_var):
    """(means, stds) of two-component laws scaled so that the law reprices the ATM straddle, as
    the one-component law does by construction.

    Moment fits match the density's shape, not its ATM price. Per event one factor lambda scales
    the jump (means about their weighted average, and stds) until the mixture's straddle at K = F,
    sum_c p_c [C + P](F_c, F, nu_c) with F_c = F e^{mu_c + s_c^2/2} (martingale means) and
    nu_c^2 = diffusive_var + s_c^2, equals Black-76's at the ATM total variance
    atm_event_var + diffusive_var (bisection on lambda in ATM_SCALE_RANGE; the straddle rises
    with lambda). One-component rows are returned unchanged.
    """
    two = np.nan_to_num(weights[:, 1]) > 0
    centred = means - np.sum(weights * means, axis=1, keepdims=True)
    diffusive = diffusive_var[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        target = 2.0 * black76_price(1.0, 1.0, 1.0, np.sqrt(atm_event_var + diffusive_var), 1.0, True)

        def straddle(scale):
            s = scale[:, None] * stds
            forward = np.exp(martingale_means(weights, scale[:, None] * centred, s) + 0.5 * s * s)
            nu = np.sqrt(diffusive + s * s)
            both = black76_price(forward, 1.0, 1.0, nu, 1.0, True) + black76_price(forward, 1.0, 1.0, nu, 1.0, False)
            return np.sum(weights * both, axis=1)

        lo, hi = np.full(len(two), ATM_SCALE_RANGE[0]), np.full(len(two), ATM_SCALE_RANGE[1])
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            rich = straddle(mid) > target
            lo, hi = np.where(rich, lo, mid), np.where(rich, mid, hi)
    scale = np.where(two & np.isfinite(target), 0.5 * (lo + hi), 1.0)[:, None]
    return np.where(two[:, None], scale * centred, means), scale * stds


def _tail_law(mass, centred, diffusive_var, atm_event_var):
    """Two-component laws for densities whose tail a normal misses: (fit mask, weights, means,
    stds), n x 2, means before the martingale shift.

    The one-component law reprices the ATM straddle but not the wings: a fat-tailed event prices
    them richer, a beat-or-miss event without a visible trough poorer. Two moments of
    X = ln(S_T/F) - E[X] that the prices fix robustly are matched: the mean absolute deviation
    E|X| (the ATM straddle) and the tail mass P(|X| > L), L = TAIL_LEVEL ATM standard deviations
    (the condor's wings; the fourth cumulant is too noisy in the extrapolated wings). Where the
    tail is heavier than a normal's with the same E|X| by more than TAIL_DEAD_ZONE: a scale
    mixture, equal weights, X | c ~ N(0, sigma_c^2) with sigma_2 / sigma_1 = 1 + 3 t; where it
    is lighter: two equal-weight components at +-d with a common sigma, d / sigma = 3 t. Each shape
    t on TAIL_SHAPES fixes the scale by E|X|, the tail picks t; the jump's variances are the
    total ones less the diffusion's ``diffusive_var``. Symmetric: the smile's skew stays with the
    diffusion (the fit centres X on its mean).
    """
    n = len(diffusive_var)
    with np.errstate(divide="ignore", invalid="ignore"):   # no density: NaN, left unfitted
        deviation = np.abs(centred)
        mean_abs = np.sum(mass * deviation, axis=1)
        level = TAIL_LEVEL * np.sqrt(np.maximum(atm_event_var + diffusive_var, 0.0))
        tail = np.sum(mass * (deviation > level[:, None]), axis=1)
        root = np.sqrt(2.0 / np.pi)
        normal_tail = 2.0 * ndtr(-level * root / mean_abs)
        shape = TAIL_SHAPES[None, :]
        level_ = level[:, None]
        # Fat: sigma_1 = s, sigma_2 = s (1 + 3 t); E|X| = root s (2 + 3 t) / 2.
        low = 2.0 * mean_abs[:, None] / (root * (2.0 + 3.0 * shape))
        high = low * (1.0 + 3.0 * shape)
        fat_tail = ndtr(-level_ / low) + ndtr(-level_ / high)
        # Thin: +-d, common sigma, g = d / sigma; E|X| = sigma (2 phi(g) + g (2 N(g) - 1)).
        g = 3.0 * shape
        sigma = mean_abs[:, None] / (2.0 * np.exp(-0.5 * g * g) / np.sqrt(2.0 * np.pi) + g * (2.0 * ndtr(g) - 1.0))
        thin_tail = ndtr((g * sigma - level_) / sigma) + ndtr((-level_ - g * sigma) / sigma)
    rows = np.arange(n)
    pick_fat = np.argmin(np.abs(fat_tail - tail[:, None]), axis=1)
    pick_thin = np.argmin(np.abs(thin_tail - tail[:, None]), axis=1)
    fat_var = np.stack([low[rows, pick_fat], high[rows, pick_fat]], axis=1) ** 2 - diffusive_var[:, None]
    thin_sigma, thin_d = sigma[rows, pick_thin], (g * sigma)[rows, pick_thin]
    thin_var = thin_sigma ** 2 - diffusive_var
    with np.errstate(invalid="ignore"):
        fat = (tail > normal_tail * (1 + TAIL_DEAD_ZONE)) & (fat_var[:, 0] > 0)
        thin = (tail < normal_tail * (1 - TAIL_DEAD_ZONE)) & (thin_var > 0)
    weights = np.full((n, 2), 0.5)
    means = np.where(thin[:, None], np.stack([-thin_d, thin_d], axis=1), 0.0)
    stds = np.sqrt(np.maximum(np.where(thin[:, None], thin_var[:, None], fat_var), 0.0))
    return fat | thin, weights, means, stds


# --- per event ------------------------------------------------------------------------------------
def hist_p_exceed(abs_moves: np.ndarray, level: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(|m + e| > level) for past |moves| m, e ~ N(0, sd^2), elementwise (an indicator when sd = 0):
    N((m - level) / sd) + N((-level - m) / sd)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = ndtr((abs_moves - level) / sd) + ndtr((-level - abs_moves) / sd)
    return np.where(sd > 0, smooth, (abs_moves > level).astype(float))


def event_densities(surface: pd.DataFrame, atm: pd.DataFrame, events: pd.DataFrame, moves: pd.DataFrame, *,
                    levels=(0.05, 0.10), move_type: str = "close_move", max_events: int = 12) -> pd.DataFrame:
    """The columns of :func:`density_columns` per event.

    ``events``: ticker, report_date, expiration (the event expiration), implied_move,
    ex_earnings_vol; ``atm`` from :func:`pipeline.stages.term.atm_iv_by_expiration` of
    ``surface``; ``moves`` the past moves (their last ``max_events`` per ticker, as the history
    statistics). ``density_reason`` says why the RN columns are null: no_event_expiration,
    too_few_quotes (fewer than MIN_QUOTES usable OTM quotes or none on one side of the forward);
    the law and the historical twin also need ex_earnings_vol.
    """
    by, quote = key(events), quote_key(events)
    keys, smiles = expiration_smiles(surface, atm, events.dropna(subset=["expiration"]))
    out = events[[*by, "report_date"]].reset_index(drop=True)
    n = len(out)
    index = pd.MultiIndex.from_frame(keys[quote]).get_indexer(
        pd.MultiIndex.from_frame(events[quote])) if len(keys) else np.full(n, -1)
    has = index >= 0
    rows = np.where(has, index, 0)
    sub = _subset(smiles, rows) if len(keys) else None
    valid = has & (sub.valid if sub is not None else np.zeros(n, bool))
    t = keys["t"].to_numpy(float)[rows] if len(keys) else np.full(n, np.nan)
    implied = events["implied_move"].to_numpy(float)
    ex_vol = events["ex_earnings_vol"].to_numpy(float)
    names = ["implied", *(level_name(v) for v in levels)]
    level_values = np.stack([implied, *(np.full(n, v) for v in levels)], axis=1)        # n x L
    columns: dict[str, np.ndarray] = {}
    if sub is not None and valid.any():
        # Two-sided exceedance from the digitals at ln(1 + level) and ln(1 - level).
        with np.errstate(invalid="ignore", divide="ignore"):
            up = sub.prob_above(np.log1p(level_values))
            down = 1.0 - sub.prob_above(np.log1p(-np.minimum(level_values, 0.999)))
        rn = np.clip(up + down, 0.0, 1.0)
        # The density on the grid: digitals at cell edges from first differences of prices.
        root = np.sqrt(sub.atm_var)[:, None]
        z = np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS)
        k = root * z[None, :]
        c = sub.call(k)
        strike = np.exp(k)
        p_above = -np.diff(c, axis=1) / np.diff(strike, axis=1)               # at the cell midpoints
        cell_mass = -np.diff(p_above, axis=1)                                  # between midpoints
        arbitrage = np.sum(np.maximum(-cell_mass, 0.0), axis=1)
        inside_mass = p_above[:, 0] - p_above[:, -1]
        k_cells = 0.5 * (k[:, 1:-1] + k[:, 2:])
        atm_sd = np.sqrt(sub.total_variance(np.zeros((n, 1))))[:, 0]
        window = np.abs(k_cells) <= BIMODAL_WINDOW * atm_sd[:, None]
        depth = trough_depth(cell_mass, window)                                 # equal cell widths in k
        is_bimodal = bimodal(depth)
        diffusive_var = ex_vol ** 2 * t
        law = fit_event_law(np.maximum(cell_mass, 0.0), k_cells, diffusive_var, atm_sd ** 2 - diffusive_var, is_bimodal)
    else:
        rn = np.full((n, len(names)), np.nan)
        arbitrage = inside_mass = np.full(n, np.nan)
        is_bimodal = np.zeros(n, bool)
        depth = np.full(n, np.nan)
        law = (np.full((n, 2), np.nan),) * 3
    for j, name in enumerate(names):
        columns[f"rn_p_exceed_{name}"] = np.where(valid, rn[:, j], np.nan)
    # The historical twin at the same horizon.
    recent = recent_abs_moves(moves, move_type, max_events)
    paired = recent[[*by, "abs_move"]].merge(out[by].reset_index(), on=by)
    recent, position = paired, paired["index"].to_numpy()
    sd = ex_vol * np.sqrt(np.maximum(t - SESSION_YEARS, 0.0))
    counts = np.bincount(position, minlength=n).astype(float)
    for j, name in enumerate(names):
        p = hist_p_exceed(recent["abs_move"].to_numpy(float), level_values[position, j], sd[position])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(position, weights=p, minlength=n) / counts
        columns[f"hist_p_exceed_{name}"] = np.where(np.isfinite(sd) & (counts > 0), mean, np.nan)
    columns["rn_bimodal"] = pd.array(np.where(valid, is_bimodal, None), dtype="boolean")
    columns["rn_trough_depth"] = np.where(valid, depth, np.nan)
    columns["rn_arbitrage_mass"] = np.where(valid, arbitrage, np.nan)
    columns["rn_mass_inside"] = np.where(valid, inside_mass, np.nan)
    # No law where the event variance is not positive (fit_event_law's NaN std): a weight of 1
    # beside a null std would read as a fitted law.
    law_ok = valid & np.isfinite(ex_vol) & np.isfinite(law[2][:, 0])
    for c in range(2):
        for name, values in zip(("weight", "mean", "std"), law):
            column = np.where(law_ok, values[:, c], np.nan)
            if c == 1:   # component 2 is null for a one-component fit
                column = np.where(law_ok & (law[0][:, 1] > 0), column, np.nan)
            columns[f"event_law_{name}_{c + 1}"] = column
    reason = np.select([~has, ~valid], ["no_event_expiration", f"too_few_quotes (< {MIN_QUOTES} usable OTM or one side)"],
                       default="")
    columns["density_reason"] = pd.array(np.where(reason == "", None, reason), dtype="str")
    return out.assign(**columns)[[*by, "report_date", *density_columns(levels)]]


# --- the IV crush ---------------------------------------------------------------------------------
def iv_crush(atm: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The IV expected to leave the event expiration after the report, per event.

    With flat diffusion and no second event before expiry the post-event ATM IV is the
    ex-earnings vol, so ``expected_iv_crush = event_atm_iv - ex_earnings_vol`` (annualized vols,
    fractions). ``event_atm_iv`` is the ATM IV (``atm``, from
    :func:`pipeline.stages.term.atm_iv_by_expiration`) of the event expiration, or of the next
    listed expiration when the event expiration expires on the reaction session (nothing of it
    is left to crush); ``crush_expiration`` says which. ``events``: ticker, report_date,
    reaction_date, expiration, ex_earnings_vol. ``crush_reason`` when null.
    """
    by = key(events)
    keys = events[[*by, "report_date", "reaction_date", "expiration"]].reset_index(drop=True)
    later = keys.merge(atm[[*by, "expiration", "atm_iv"]].rename(columns={"expiration": "candidate"}), on=by)
    expires_on_reaction = later["expiration"] <= later["reaction_date"]
    wanted = np.where(expires_on_reaction, later["candidate"] > later["expiration"], later["candidate"] == later["expiration"])
    later = later[wanted & np.isfinite(later["atm_iv"].to_numpy(float))]
    chosen = later.sort_values("candidate", kind="stable").drop_duplicates([*by, "report_date"])
    out = keys.merge(chosen[[*by, "report_date", "candidate", "atm_iv"]], on=[*by, "report_date"], how="left")
    crush = out["atm_iv"].to_numpy(float) - events["ex_earnings_vol"].to_numpy(float)
    reason = np.select([keys["expiration"].isna().to_numpy(), out["atm_iv"].isna().to_numpy(), np.isnan(crush)],
                       ["no event expiration", "no ATM IV on the event expiration (or the next one)",
                        "no ex-earnings vol"], default="")
    return pd.DataFrame({
        **{c: keys[c] for c in [*by, "report_date"]},
        "event_atm_iv": out["atm_iv"].to_numpy(float), "expected_iv_crush": crush,
        "crush_expiration": out["candidate"].to_numpy(dtype="datetime64[ns]"),
        "crush_reason": pd.array(np.where(reason == "", None, reason), dtype="str"),
    })
