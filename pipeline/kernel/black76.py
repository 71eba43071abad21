"""The numeric kernel: the prices taken from a quote (mid, quoted, two-sided and fresh mid, the
fill at a share of the spread), the discount factor, carried and put-call-parity forwards,
Black-76 prices, greeks, implied volatility with its statuses, normal constants.

NumPy and scipy.special (ndtr, ndtri: NumPy has no normal CDF) only, so the stages, the synthetic
market and the schemas can all use it. Units: money in the quote currency, ``t`` in years,
``sigma``/IV a fraction per sqrt(year), ``discount`` D = exp(-rate t); moves are fractions of spot.

The inversion works on the normalized Black function of Jäckel ("Let's Be Rational", 2015):
``x = ln(F/K)``, ``s = sigma * sqrt(t)`` and ``b(x, s) = undiscounted OTM price / sqrt(F*K)``.
Put-call parity turns every quote into an out-of-the-money call with ``x <= 0`` (the ITM price minus
its intrinsic value is the OTM price), so one monotone function of ``s`` on ``0 < b < exp(x/2)``
covers calls and puts, and no tiny time value is ever computed as a difference of large prices.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

# Outcome of an inversion in the order implied_vol checks them, then the surface's own (crossed, stale).
IV_STATUSES = (
    "ok", "no_quote", "crossed", "below_intrinsic", "above_upper_bound", "no_forward", "expired",
    "not_converged", "stale",
)
STATUS_CODE = {name: np.int8(i) for i, name in enumerate(IV_STATUSES)}   # status -> int8 code
_STATUS_ARRAY = np.array(IV_STATUSES, dtype=object)

SQRT_2PI = np.sqrt(2.0 * np.pi)
# E|Z| = sqrt(2/pi) for a standard normal Z: the expected absolute move per unit of std (both
# fractions of the spot); its square 2/pi is exact in floating point as well.
MEAN_ABS_PER_STD = np.sqrt(2.0 / np.pi)
SQRT_3 = np.sqrt(3.0)
LOWER_MAP_SCALE = 2.0 * np.pi / np.sqrt(27.0)
EPSILON = np.finfo(float).eps
TINY = np.finfo(float).tiny
# Rational-cubic control parameter limits (Delbourgo-Gregory): r -> -1 is a pole, huge r is linear.
CONTROL_MIN = -(1.0 - np.sqrt(EPSILON))
CONTROL_LINEAR = 2.0 / (EPSILON * EPSILON)

# Householder(3) converges with order 4: once a step is below 1e-7 * s the error left after it is
# far below 1e-20 * s, so the step itself is the last one needed. Steps below 1e-14 (in s) are
# accepted too: there b(s) is as flat as its own rounding (a near-zero vol at the money), and the
# error in sigma stays below 1e-14 / sqrt(t).
STEP_TOLERANCE = 1e-7
STEP_FLOOR = 1e-14
MAX_ITERATIONS = 40   # two steps normally; the rest is room for bisection fallbacks
# Options are solved in blocks of this many: the solver's temporaries then stay in cache instead of
# being fresh 8 MB arrays, which makes 1e6 options about 1.5x faster. Results do not depend on it.
BLOCK = 1 << 16


# --- quotes, discounting and forwards -------------------------------------------------------------
# The one definition of each price the pipeline derives from a quote; every stage, the backtests,
# the views and the synthetic market use these. Arrays broadcast; NaN means "no such price".

def mid(bid, ask):
    """(bid + ask) / 2, the middle of a quote, whatever the quote (money). Which quotes a price may
    be taken from is :func:`quoted_mid`, :func:`two_sided_mid` and :func:`fresh_mid`."""
    return 0.5 * (bid + ask)


def quoted_mid(bid, ask):
    """:func:`mid` where the quote has an ask at or above its bid (ask > 0, ask >= bid; a zero bid
    kept: an option nobody bids for is still offered, and can be bought back), else NaN. The
    surface's ``mid``."""
    return np.where((ask >= bid) & (ask > 0), mid(bid, ask), np.nan)


def two_sided_mid(bid, ask):
    """:func:`mid` where the quote is two-sided (0 < bid <= ask), else NaN."""
    return np.where((bid > 0) & (ask >= bid), mid(bid, ask), np.nan)


def fresh_mid(bid, ask, stale):
    """The mid a price may be taken from: :func:`two_sided_mid` where the quote is not ``stale``
    (a standing quote of an earlier session says nothing about today's price), else NaN. The
    implied move's straddle, parity forwards, IVs and structures are priced from it, and no
    backtest ever fills at a stale quote."""
    return np.where(stale, np.nan, two_sided_mid(bid, ask))


def fill_price(bid, ask, fill_share, direction):
    """The price a leg trades at: :func:`mid` moved a share f = ``fill_share`` of the half spread
    against the trader, mid + direction * f * (ask - bid) / 2 (money). ``direction`` +1 buys (at or
    above the mid), -1 sells (at or below); f = 0 fills at the mid, 1 at the touch. Which quotes
    may be traded at all is :func:`two_sided_mid` (entry) and :func:`quoted_mid` (exit)."""
    return mid(bid, ask) + direction * fill_share * (0.5 * (ask - bid))


def discount_factor(rate, t):
    """D = exp(-rate t): today's value of 1 paid in ``t`` years at the continuously compounded
    annual ``rate`` (a fraction)."""
    return np.exp(-rate * t)


def carried_forward(spot, carry, t):
    """F = S exp(carry t): the forward of ``spot`` carried ``t`` years at the annual ``carry``
    (the rate, less any dividend yield), in the spot's money."""
    return spot * np.exp(carry * t)


def parity_forward(strike, call_minus_put, discount):
    """F = K + (C - P) / D: put-call parity C - P = D (F - K) of a call and a put at strike K,
    solved for the forward (money; C - P in money, D = :func:`discount_factor`)."""
    return strike + call_minus_put / discount


# --- normal density, d1 and the normalized Black function ----------------------------------------
def normal_pdf(z):
    """phi(z) = exp(-z^2/2) / sqrt(2 pi), the standard normal density; at z = d1 it is the
    normalized vega, Black-76 vega / (D F sqrt(t)) = phi(d1) (dimensionless)."""
    return np.exp(-0.5 * z * z) / SQRT_2PI


def black76_d1(x, s):
    """d1 = x/s + s/2 for x = ln(F/K), s = sigma sqrt(t) (dimensionless); d2 = d1 - s."""
    return x / s + 0.5 * s


def _normalized_black(x, s):
    """b(x, s) = exp(x/2) N(x/s + s/2) - exp(-x/2) N(x/s - s/2), for x = ln(F/K) <= 0, s > 0.

    The undiscounted out-of-the-money Black-76 price divided by sqrt(F*K); dimensionless.
    """
    h, half_s = x / s, 0.5 * s
    return np.exp(0.5 * x) * ndtr(h + half_s) - np.exp(-0.5 * x) * ndtr(h - half_s)


def _normalized_black_gap(x, s):
    """exp(x/2) - b(x, s) = exp(x/2) N(-x/s - s/2) + exp(-x/2) N(x/s - s/2), x <= 0.

    The distance to the price ceiling without the cancellation of exp(x/2) - b when b is near it.
    """
    h, half_s = x / s, 0.5 * s
    return np.exp(0.5 * x) * ndtr(-h - half_s) + np.exp(-0.5 * x) * ndtr(h - half_s)


def _normalized_vega(x, s):
    """db/ds = exp(-(x/s)^2/2 - s^2/8) / sqrt(2 pi): Black-76 vega / (discount * sqrt(F*K*t))."""
    h, half_s = x / s, 0.5 * s
    return np.exp(-0.5 * (h * h + half_s * half_s)) / SQRT_2PI


def _intrinsic(forward, strike, is_call):
    """Undiscounted intrinsic value: max(F - K, 0) for calls, max(K - F, 0) for puts."""
    return np.where(is_call, np.maximum(forward - strike, 0.0), np.maximum(strike - forward, 0.0))


def _broadcast(*floats, is_call=None):
    """Float arrays (and a boolean is_call) broadcast to one shape."""
    arrays = [np.asarray(a, dtype=float) for a in floats]
    if is_call is not None:
        arrays.append(np.asarray(is_call, dtype=bool))
    return np.broadcast_arrays(*arrays)


def _otm_log_moneyness(forward, strike):
    """x = -|ln(F/K)|: the log-moneyness of the out-of-the-money call equivalent to the quote."""
    return -np.abs(np.log(forward / strike))


# --- public pricing and greeks -------------------------------------------------------------------
def black76_price(forward, strike, t, sigma, discount, is_call):
    """Black-76 option price (money, per unit of underlying).

    call = D [F N(d1) - K N(d2)], put = D [K N(-d2) - F N(-d1)],
    d1,2 = ln(F/K) / (sigma sqrt(t)) +/- sigma sqrt(t) / 2, D = discount factor.
    Evaluated as D * (intrinsic + sqrt(F K) b(-|ln(F/K)|, sigma sqrt(t))), the same normalized
    function the inversion uses, so price -> implied_vol -> price round-trips to rounding.
    Arguments broadcast; ``is_call`` is boolean.
    """
    forward, strike, t, sigma, discount, is_call = _broadcast(forward, strike, t, sigma, discount, is_call=is_call)
    s = sigma * np.sqrt(np.maximum(t, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        time_value = np.sqrt(forward * strike) * _normalized_black(_otm_log_moneyness(forward, strike), s)
    # A zero total volatility leaves only the intrinsic value (0/0 at the money otherwise); 0 * s keeps a NaN vol NaN.
    return discount * (_intrinsic(forward, strike, is_call) + np.where(s > 0, time_value, 0.0 * s))


def black76_vega(forward, strike, t, sigma, discount):
    """Black-76 vega dPrice/dsigma = D F phi(d1) sqrt(t) (money per 1.00 of volatility)."""
    forward, strike, t, sigma, discount = _broadcast(forward, strike, t, sigma, discount)
    root_t = np.sqrt(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        vega = _normalized_vega(np.log(forward / strike), sigma * root_t)
    return discount * np.sqrt(forward * strike) * vega * root_t


def black76_delta(forward, strike, t, sigma, discount, is_call):
    """Black-76 delta with respect to the forward: call D N(d1), put -D N(-d1) (dimensionless).

    This is the hedge ratio in the forward (or future); for a stock it equals the spot delta
    e^{-qt} N(d1) times S/F, and it needs no dividend assumption beyond the implied forward.
    """
    forward, strike, t, sigma, discount, is_call = _broadcast(forward, strike, t, sigma, discount, is_call=is_call)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = sigma * np.sqrt(t)
        d1 = black76_d1(np.log(forward / strike), s)
    sign = np.where(is_call, 1.0, -1.0)   # one N() per quote, not one per side
    return sign * discount * ndtr(sign * d1)


def atm_straddle(forward, t, sigma, discount):
    """At-the-forward straddle (call + put at K = F, worth the same there): 2 D F (2 N(sigma sqrt(t)/2) - 1)
    in money, ~ D F MEAN_ABS_PER_STD sigma sqrt(t); over the spot, the expected |move| to expiry."""
    return 2 * black76_price(forward, forward, t, sigma, discount, True)


# --- initial guess: Jäckel's four-branch rational-cubic interpolation ----------------------------
def _rational_cubic(z, z_left, z_right, y_left, y_right, d_left, d_right, control):
    """Delbourgo-Gregory rational cubic through (z_l, y_l), (z_r, y_r) with end slopes d_l, d_r;
    control r = 3 is the plain Hermite cubic, larger r bends towards the chord (shape preserving)."""
    width = z_right - z_left
    u = (z - z_left) / width
    v = 1.0 - u
    cubic = (
        y_right * u * u * u + (control * y_right - width * d_right) * u * u * v
        + (control * y_left + width * d_left) * u * v * v + y_left * v * v * v
    ) / (1.0 + (control - 3.0) * u * v)
    return np.where(control >= CONTROL_LINEAR, y_right * u + y_left * v, cubic)


def _shape_preserving_control(d_left, d_right, slope, prefer_shape):
    """Smallest control keeping the interpolant monotone/convex like its data (D&G 1985, (3.8), (3.18))."""
    monotone = (d_left * slope >= 0) & (d_right * slope >= 0)
    convex = (d_left <= slope) & (slope <= d_right)
    concave = (d_left >= slope) & (slope >= d_right)
    fallback = CONTROL_LINEAR if prefer_shape else -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        for_monotone = np.where(slope != 0, (d_right + d_left) / slope, fallback)
        spread = d_right - d_left
        for_convexity = np.maximum(np.abs(spread / (d_right - slope)), np.abs(spread / (slope - d_left)))
    for_convexity = np.where(np.isfinite(for_convexity), for_convexity, fallback)
    r1 = np.where(monotone, for_monotone, -np.inf)
    r2 = np.where(convex | concave, for_convexity, np.where(monotone & prefer_shape, CONTROL_LINEAR, -np.inf))
    return np.maximum(CONTROL_MIN, np.maximum(r1, r2))


def _control_for_curvature(z_left, z_right, y_left, y_right, d_left, d_right, curvature, at_right, prefer_shape):
    """Control parameter matching a second derivative at one end, floored for shape preservation."""
    width = z_right - z_left
    slope = (y_right - y_left) / width
    numerator = 0.5 * width * curvature + (d_right - d_left)
    denominator = (d_right - slope) if at_right else (slope - d_left)
    with np.errstate(divide="ignore", invalid="ignore"):
        fitted = np.where(numerator == 0, 0.0, numerator / denominator)
    fitted = np.where((denominator == 0) & (numerator != 0),
                      np.where(numerator > 0, CONTROL_LINEAR, CONTROL_MIN), fitted)
    return np.maximum(fitted, _shape_preserving_control(d_left, d_right, slope, prefer_shape))


def _lower_map(x, s):
    """f(s) = 2 pi |x| / sqrt(27) * N(-|x| / (sqrt(3) s))^3 with df/db and d2f/db2: Jäckel's
    transform of b for tiny prices (f ~ b as b -> 0, f nearly linear in b below b_l)."""
    ax = -x
    z = ax / (SQRT_3 * s)
    z2 = z * z
    s2 = s * s
    tail = ndtr(-z)
    density = normal_pdf(z)
    f = LOWER_MAP_SCALE * ax * tail * tail * tail
    df = 2.0 * np.pi * z2 * tail * tail * np.exp(z2 + 0.125 * s2)
    d2f = (np.pi / 6.0) * z2 / (s2 * s) * tail * (
        8.0 * SQRT_3 * s * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * tail / density
    ) * np.exp(2.0 * z2 + 0.25 * s2)
    return f, df, d2f


def _inverse_lower_map(x, f):
    """s with lower map f(s) = f: s = |x| / (sqrt(3) |N^-1((f sqrt(27) / (2 pi |x|))^(1/3))|)."""
    return np.abs(x / (SQRT_3 * ndtri(np.cbrt(f / (LOWER_MAP_SCALE * np.abs(x))))))


def _upper_map(x, s):
    """f(s) = N(-s/2) with df/db and d2f/db2: Jäckel's transform of b_max - b near the maximum."""
    w = (x / s) ** 2
    return ndtr(-0.5 * s), -0.5 * np.exp(0.5 * w), np.sqrt(0.5 * np.pi) * np.exp(w + 0.125 * s * s) * w / s


def _guess_lower_tail(beta, x, s_l, b_l):
    """beta < b_l: interpolate the lower map on [0, b_l] (f(0) = 0, f'(0) = 1), then invert it."""
    f_l, df_l, d2f_l = _lower_map(x, s_l)
    control = _control_for_curvature(0.0, b_l, 0.0, f_l, 1.0, df_l, d2f_l, at_right=True, prefer_shape=True)
    f = _rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, df_l, control)
    u = beta / b_l
    # Round-off can push the cubic to <= 0 for extreme |x|; the quadratic through the same data cannot.
    f = np.where(f > 0, f, (f_l * u + b_l * (1.0 - u)) * u)
    return _inverse_lower_map(x, f)


def _guess_upper_tail(beta, x, s_h, b_h, b_max):
    """beta > b_h: interpolate the upper map on [b_h, b_max] (f(b_max) = 0, f' = -1/2), invert it."""
    f_h, df_h, d2f_h = _upper_map(x, s_h)
    control = _control_for_curvature(b_h, b_max, f_h, 0.0, df_h, -0.5, d2f_h, at_right=False, prefer_shape=True)
    f = _rational_cubic(beta, b_h, b_max, f_h, 0.0, df_h, -0.5, control)
    width = b_max - b_h
    u = (beta - b_h) / width
    f = np.where(f > 0, f, (f_h * (1.0 - u) + 0.5 * width * u) * (1.0 - u))
    return -2.0 * ndtri(f)


def _guess_between(beta, b_left, b_right, s_left, s_right, v_left, v_right, at_right):
    """Interpolate s(b) between two points of the curve with slopes 1/vega (zero end curvature)."""
    control = _control_for_curvature(b_left, b_right, s_left, s_right, 1.0 / v_left, 1.0 / v_right, 0.0,
                                     at_right=at_right, prefer_shape=False)
    return _rational_cubic(beta, b_left, b_right, s_left, s_right, 1.0 / v_left, 1.0 / v_right, control)


# --- Householder(3) iterations ---------------------------------------------------------------------
# Each objective g returns newton = -g/g', halley = g''/g', hh3 = g'''/g' (Jäckel 2015, sec. 4/5).
def _curvature_terms(x, s):
    """b''/b' and b'''/b' of the normalized Black function in s."""
    h = x / s
    halley = h * h / s - 0.25 * s
    return halley, halley * halley - 3.0 * (h / s) ** 2 - 0.25


def _price_objective(beta, x, s, b, vega):
    """g = b(s) - beta: for the middle of the curve, where b is nearly linear in s."""
    halley, hh3 = _curvature_terms(x, s)
    return (beta - b) / vega, halley, hh3


def _lower_objective(beta, x, s, b, vega):
    """g = 1/ln b(s) - 1/ln beta: nearly linear in s^2 where b ~ exp(-x^2 / (2 s^2)) is tiny."""
    b_halley, b_hh3 = _curvature_terms(x, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_b = np.log(b)
        ln_beta = np.log(beta)
        vega_over_b = vega / b
        k = 1.0 + 2.0 / ln_b
        newton = (ln_beta - ln_b) * ln_b / ln_beta / vega_over_b
        halley = b_halley - vega_over_b * k
        hh3 = (b_hh3 + 2.0 * vega_over_b ** 2 * (1.0 + 3.0 / ln_b * (1.0 + 1.0 / ln_b))
               - 3.0 * b_halley * vega_over_b * k)
    return newton, halley, hh3


def _upper_objective(beta, x, s, b, vega):
    """g = ln((b_max - beta) / (b_max - b(s))): flat b near its maximum becomes a straight line."""
    b_halley, b_hh3 = _curvature_terms(x, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = _normalized_black_gap(x, s)
        g = np.log((np.exp(0.5 * x) - beta) / gap)
        slope = vega / gap
    return -g / slope, b_halley + slope, b_hh3 + slope * (2.0 * slope + 3.0 * b_halley)


def _householder(beta, x, s, left, right, objective):
    """Iterate s on one objective; NaN where it has not converged within MAX_ITERATIONS. [left, right]
    brackets the root and shrinks as b(s) is evaluated; a step that would leave it (or is not finite
    after underflow) is replaced by bisection, so progress is guaranteed."""
    result = np.full(s.shape, np.nan)
    members = np.arange(s.size)
    for _ in range(MAX_ITERATIONS):
        if members.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            b = _normalized_black(x, s)
            vega = _normalized_vega(x, s)
            newton, halley, hh3 = objective(beta, x, s, b, vega)
            # All objectives are monotone in s, so newton > 0 means the root lies above s: its sign
            # tightens the bracket using the objective's own, most accurate residual.
            right = np.where(newton < 0, np.minimum(right, s), right)
            left = np.where(newton > 0, np.maximum(left, s), left)
            step = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))
            step = np.maximum(step, -0.5 * s)
            proposal = s + step
            converged = np.abs(step) <= np.maximum(STEP_TOLERANCE * s, STEP_FLOOR)
            inside = (proposal > left) & (proposal < right)
            bisection = np.where(np.isfinite(right), 0.5 * (left + right), 2.0 * np.maximum(s, left))
        s = np.where(inside | converged, proposal, bisection)
        result[members[converged]] = s[converged]
        keep = np.flatnonzero(~converged)
        members, beta, x, s, left, right = (a[keep] for a in (members, beta, x, s, left, right))
    return result


def _inflection_point(x):
    """s_c = sqrt(2|x|), where b(s) turns from convex to concave, with b(s_c) and b'(s_c)."""
    s_c = np.sqrt(-2.0 * x)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_c = _normalized_black(x, s_c)
        v_c = _normalized_vega(x, s_c)
    # At the money s_c = 0 and b(0, 0) is 0/0; the limits are b = 0 and b' = 1/sqrt(2 pi).
    at_money = s_c == 0
    return s_c, np.where(at_money, 0.0, b_c), np.where(at_money, 1.0 / SQRT_2PI, v_c)


def _solve_below_inflection(beta, x, s_c, b_c, v_c):
    """beta < b_c. The tangent at s_c meets zero at s_l: below b(s_l) the lower map, above it s(b)."""
    s_l = s_c - b_c / v_c
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        b_l = _normalized_black(x, s_l)
    s = np.empty(beta.shape)
    tail = np.flatnonzero(beta < b_l)
    s0 = _guess_lower_tail(beta[tail], x[tail], s_l[tail], b_l[tail])
    s[tail] = _householder(beta[tail], x[tail], s0, np.zeros(tail.size), s_l[tail], _lower_objective)
    mid = np.flatnonzero(beta >= b_l)
    v_l = _normalized_vega(x[mid], s_l[mid])
    s0 = _guess_between(beta[mid], b_l[mid], b_c[mid], s_l[mid], s_c[mid], v_l, v_c[mid], at_right=True)
    s[mid] = _householder(beta[mid], x[mid], s0, s_l[mid], s_c[mid], _price_objective)
    return s


def _solve_above_inflection(beta, x, s_c, b_c, v_c):
    """beta >= b_c. The tangent at s_c reaches b_max at s_h: above b(s_h) the upper map, below it s(b)."""
    b_max = np.exp(0.5 * x)
    s_h = np.where(v_c > TINY, s_c + (b_max - b_c) / v_c, s_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_h = _normalized_black(x, s_h)
    s = np.empty(beta.shape)
    mid = np.flatnonzero(beta <= b_h)
    v_h = _normalized_vega(x[mid], s_h[mid])
    s0 = _guess_between(beta[mid], b_c[mid], b_h[mid], s_c[mid], s_h[mid], v_c[mid], v_h, at_right=False)
    s[mid] = _householder(beta[mid], x[mid], s0, s_c[mid], s_h[mid], _price_objective)
    tail = np.flatnonzero(beta > b_h)
    s0 = _guess_upper_tail(beta[tail], x[tail], s_h[tail], b_h[tail], b_max[tail])
    # Only near the maximum does the log objective help; below half of it b - beta is better.
    near_max = beta[tail] > 0.5 * b_max[tail]
    for subset, objective in ((near_max, _upper_objective), (~near_max, _price_objective)):
        k = tail[subset]
        s[k] = _householder(beta[k], x[k], s0[subset], s_h[k], np.full(k.size, np.inf), objective)
    return s


def _normalized_implied_vol(beta, x):
    """s = sigma sqrt(t) with b(x, s) = beta, for x <= 0 and 0 < beta < exp(x/2); NaN if no convergence.

    Jäckel's four branches [0, b_l], [b_l, b_c], [b_c, b_h], [b_h, b_max] each get a rational-cubic
    guess good to a few percent, then Householder(3) steps (two, normally) on the objective that
    is nearly linear in that branch.
    """
    s_c, b_c, v_c = _inflection_point(x)
    s = np.empty(beta.shape)
    low = np.flatnonzero(beta < b_c)
    s[low] = _solve_below_inflection(beta[low], x[low], s_c[low], b_c[low], v_c[low])
    high = np.flatnonzero(beta >= b_c)
    s[high] = _solve_above_inflection(beta[high], x[high], s_c[high], b_c[high], v_c[high])
    return s


# --- public inversion ------------------------------------------------------------------------------
def _bound_status(price, forward, strike, t, discount, is_call):
    """Status codes from the inputs alone (``ok`` = to be solved) and the undiscounted time value."""
    with np.errstate(divide="ignore", invalid="ignore"):
        intrinsic = _intrinsic(forward, strike, is_call)
        ceiling = np.where(is_call, forward, strike)
        time_value = price / discount - intrinsic
        code = np.select(
            # Bounds compared on the quoted (discounted) price: dividing by D first can round a
            # price quoted exactly at a bound to just inside it.
            [~(t > 0), ~(price > 0), ~(forward > 0), price >= discount * ceiling,
             ~(price > discount * intrinsic) | ~(time_value > 0)],
            [STATUS_CODE[name] for name in ("expired", "no_quote", "no_forward", "above_upper_bound",
                                            "below_intrinsic")],
            default=STATUS_CODE["ok"],
        ).astype(np.int8)
    return code, time_value


def _solve_in_blocks(beta, x):
    return np.concatenate([np.empty(0)] + [
        _normalized_implied_vol(beta[i:i + BLOCK], x[i:i + BLOCK]) for i in range(0, beta.size, BLOCK)
    ])


def implied_vol_codes(price, forward, strike, t, discount, is_call):
    """:func:`implied_vol` on 1-d arrays, with the status as an index into IV_STATUSES.

    The surface keeps these codes until it writes its status column: string comparisons over a
    million quotes would cost more than the bounds checks themselves.
    """
    code, time_value = _bound_status(price, forward, strike, t, discount, is_call)
    solvable = np.flatnonzero(code == STATUS_CODE["ok"])
    x = _otm_log_moneyness(forward[solvable], strike[solvable])
    beta = time_value[solvable] / np.sqrt(forward[solvable] * strike[solvable])
    # Normalizing can round a price just under the ceiling onto b_max = exp(x/2).
    at_ceiling = beta >= np.exp(0.5 * x)
    code[solvable[at_ceiling]] = STATUS_CODE["above_upper_bound"]
    solvable, x, beta = solvable[~at_ceiling], x[~at_ceiling], beta[~at_ceiling]
    iv = np.full(price.shape, np.nan)
    iv[solvable] = _solve_in_blocks(beta, x) / np.sqrt(t[solvable])
    code[solvable[np.isnan(iv[solvable])]] = STATUS_CODE["not_converged"]
    return iv, code


def implied_vol(price, forward, strike, t, discount, is_call):
    """Black-76 implied volatility of option prices, all at once.

    Inverts price = D * Black76(F, K, sigma, t) for sigma (fraction per sqrt(year)); arguments
    broadcast, ``is_call`` is boolean. Returns ``(iv, status)``: ``iv`` float array, NaN unless
    status is ``"ok"``; ``status`` an object array of IV_STATUSES, first match wins: ``expired``
    (t <= 0 or missing), ``no_quote`` (price missing or <= 0), ``no_forward`` (forward missing or
    <= 0), ``above_upper_bound`` (price >= D F for a call, >= D K for a put), ``below_intrinsic``
    (price <= D * intrinsic: no time value to invert), ``not_converged`` (the solver gave up; not
    expected for representable prices). ``crossed`` is the surface's, for bid > ask.

    Accuracy: the solver stops when a Householder(3) step is below 1e-7 * sigma sqrt(t), after
    which its error is at the level of the price's own rounding (about 1e-16 / vega).
    """
    price, forward, strike, t, discount, is_call = _broadcast(price, forward, strike, t, discount, is_call=is_call)
    iv, code = implied_vol_codes(*(a.ravel() for a in (price, forward, strike, t, discount, is_call)))
    return iv.reshape(price.shape), _STATUS_ARRAY[code].reshape(price.shape)
