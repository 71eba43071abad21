"""Event laws as finite normal mixtures of the log jump J, and their closed-form option prices.

A law is arrays ``weights``, ``means``, ``stds`` of shape (n, C): component c has probability
p_c and J | c ~ N(mu_c, s_c^2) (log jump, fractions). Given a component, S_T is exactly lognormal,
so an expiration holding the event is a mixture of Black-76 prices (DESIGN section 7):

    C(K) = sum_c p_c Black76(F e^{mu_c + s_c^2/2}, K, sqrt((w_diff(K) + s_c^2) / t), t)

with w_diff(K) the diffusive total variance at strike K (annualized variance times t). No
quadrature: each component is priced exactly. A component with p_c = 0 contributes nothing
(its other fields may be anything finite), so one-component laws pad to C = 2.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from pipeline.kernel.black76 import black76_d1, black76_price, normal_pdf


def martingale_means(weights, means, stds):
    """Means shifted by one constant so that sum_c p_c exp(mu_c + s_c^2/2) = 1 (E[e^J] = 1):
    the risk-neutral law of the jump then leaves the forward unchanged and put-call parity holds."""
    weights, means, stds = (np.asarray(a, dtype=float) for a in (weights, means, stds))
    shift = -np.log(np.sum(weights * np.exp(means + 0.5 * stds * stds), axis=-1, keepdims=True))
    return means + shift


def mixture_price(forward, strike, t, diffusive_variance, discount, is_call, weights, means, stds):
    """Option prices under a mixture event law (money, per unit of underlying).

    ``forward``, ``strike``, ``t``, ``diffusive_variance`` (total variance w_diff(K), a fraction^2),
    ``discount``, ``is_call``: shape (n,); ``weights``, ``means``, ``stds``: (n, C), means
    already martingale (:func:`martingale_means`). Each component is Black-76 at the forward
    F e^{mu_c + s_c^2/2} with total variance w_diff + s_c^2.
    """
    forward, strike, t, diffusive_variance, discount = (
        np.asarray(a, dtype=float)[:, None] for a in (forward, strike, t, diffusive_variance, discount))
    is_call = np.asarray(is_call, dtype=bool)[:, None]
    total = diffusive_variance + stds * stds
    sigma = np.sqrt(total / t)
    prices = black76_price(forward * np.exp(means + 0.5 * stds * stds), strike, t, sigma, discount, is_call)
    return np.sum(weights * prices, axis=1)


def mixture_exceedance(forward, strike, diffusive_variance, variance_slope, weights, means, stds):
    """P(S_T > K) under a mixture law: the analytic digital -dC/dK / D, dimensionless.

    Per component, with nu = sqrt(w_diff(K) + s_c^2), F_c = F e^{mu_c + s_c^2/2} and the smile's
    slope w' = dw_diff/dk at k = ln(K/F):  N(d2) - F_c phi(d1) w' / (2 nu K)  (the second term is
    the smile's vega correction). ``variance_slope`` is w' (shape (n,)); other shapes as in
    :func:`mixture_price`.
    """
    forward, strike, diffusive_variance, variance_slope = (
        np.asarray(a, dtype=float)[:, None] for a in (forward, strike, diffusive_variance, variance_slope))
    nu = np.sqrt(diffusive_variance + stds * stds)
    forward_c = forward * np.exp(means + 0.5 * stds * stds)
    d1 = black76_d1(np.log(forward_c / strike), nu)
    per_component = ndtr(d1 - nu) - forward_c * normal_pdf(d1) * variance_slope / (2.0 * nu * strike)
    return np.sum(weights * per_component, axis=1)


def mixture_variance(weights, means, stds):
    """Var(J) = sum p (s^2 + mu^2) - (sum p mu)^2 of a mixture law (fraction^2), per row."""
    mean = np.sum(weights * means, axis=-1)
    return np.sum(weights * (stds * stds + means * means), axis=-1) - mean * mean
