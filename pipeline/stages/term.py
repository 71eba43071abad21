"""At-the-money IV per expiration and the term-structure estimate of the earnings move.

Units: IVs and moves are fractions (0.05 = 5%), IVs annualized, ``t`` in years.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel.black76 import MEAN_ABS_PER_STD
from pipeline.contract.sessions import covering_expirations, sessions_offset
from pipeline.stages.groups import (
    contract_runs, group_median, quote_groups, quote_key, quote_keys, run_means, run_numbers, run_starts,
)
from pipeline.stages.panel import AS_OF, key

EVENT_KEY = ["ticker", "report_date"]
TERM_COLUMNS = [*EVENT_KEY, "ts_event_std", "ts_implied_move", "ex_earnings_vol", "ts_flag"]


def otm_quotes(surface: pd.DataFrame, group: np.ndarray):
    """Out-of-the-money quotes with a usable IV, one per contract: arrays (group, t, iv, k), k = ln(K/F).

    ``group`` is :func:`pipeline.stages.groups.quote_groups` of ``surface``. Puts with K < F and
    calls with K >= F, ``iv_status == "ok"``; option_type is "C" or "P" (the Surface schema).
    A contract quoted more than once (same ticker, expiration, strike, option_type) becomes one
    quote with the mean forward, t and iv, so exact duplicates change nothing and conflicting ones
    count once. Contracts come in the order of their first row, as from groupby(sort=False).
    """
    strike = surface["strike"].to_numpy(float)
    is_put = (surface["option_type"] == "P").to_numpy(bool)
    usable = np.flatnonzero((surface["iv_status"] == "ok").to_numpy(bool) & (group >= 0) & ~np.isnan(strike))
    rows, _, start = contract_runs(group, strike, is_put, usable)
    # Runs start at their contract's first row; ordering contracts by it keeps the tie-breaks of
    # the nearest quotes and the summation order of the skew fit independent of the sort key.
    by_first_row = np.argsort(rows[start], kind="stable")
    first = rows[start][by_first_row]
    forward, t, iv = (run_means(surface[c].to_numpy(float)[rows], start)[by_first_row]
                      for c in ("forward", "t", "iv"))
    k = np.log(strike[first] / forward)
    out_of_money = np.where(is_put[first], k < 0, k >= 0)
    return group[first][out_of_money], t[out_of_money], iv[out_of_money], k[out_of_money]


def _nearest_each_side(group, k):
    """Per group present in ``group``: the group, and the index of the last quote with the largest
    k < 0 (a put) and of the first with the smallest k >= 0 (a call); -1 where a side is empty.

    Per-group maxima and minima over the quotes ordered by group (stably, so ties keep their
    order), instead of a sort of every quote by k.
    """
    order = np.argsort(group, kind="stable")
    group, k = group[order], k[order]
    start = run_starts(group)
    run = run_numbers(start, group.size)
    below_k = np.where(k < 0, k, -np.inf)
    below = (k < 0) & (below_k == np.maximum.reduceat(below_k, start)[run])
    last_below = np.maximum.reduceat(np.where(below, np.arange(k.size), -1), start)
    above_k = np.where(k >= 0, k, np.inf)
    above = (k >= 0) & (above_k == np.minimum.reduceat(above_k, start)[run])
    first_above = np.minimum.reduceat(np.where(above, np.arange(k.size), k.size), start)
    # Both "none" markers (-1 and k.size) read the trailing -1.
    index = np.append(order, -1)
    return group[start], index[last_below], index[first_above]


def expiration_times(surface: pd.DataFrame, group: np.ndarray, n_groups: int) -> np.ndarray:
    """The median time to expiry of each group's rows (``group`` from quote_groups)."""
    rows = np.flatnonzero(group >= 0)
    return group_median(group[rows], n_groups, surface["t"].to_numpy(float)[rows])


def interpolate_variance(k_below, iv_below, k_above, iv_above):
    """IV at the forward (k = 0) with total variance linear in k = ln(K/F) between a quote below
    the forward (k_below < 0) and one at or above it (k_above >= 0), on one expiration:

    sigma^2 = iv_below^2 + w (iv_above^2 - iv_below^2), w = -k_below / (k_above - k_below)

    (one t for both, so total variance sigma^2 t is linear in k exactly when sigma^2 is). NaN where
    either side is missing. Arrays or Series; IVs annualized fractions.
    """
    weight = -k_below / (k_above - k_below)
    return np.sqrt(iv_below * iv_below + weight * (iv_above * iv_above - iv_below * iv_below))


def interpolate_atm(group, k, iv, n_groups: int) -> np.ndarray:
    """atm_iv per group from the quotes (group, k, iv) of :func:`otm_quotes`.

    :func:`interpolate_variance` between the nearest OTM put below the forward and the nearest
    OTM call at or above it. NaN when one side has no usable quote: extrapolating a one-sided
    smile to the money is not trustworthy.
    """
    present, below, above = _nearest_each_side(group, k)
    both = (below >= 0) & (above >= 0)
    present, below, above = present[both], below[both], above[both]
    atm_iv = np.full(n_groups, np.nan)
    atm_iv[present] = interpolate_variance(k[below], iv[below], k[above], iv[above])
    return atm_iv


def atm_iv_by_expiration(surface: pd.DataFrame) -> pd.DataFrame:
    """ATM IV at K = F per (ticker, expiration): ticker, expiration, t, atm_iv.

    One row per (ticker, expiration) in ``surface``, sorted; see :func:`interpolate_atm` for the
    interpolation and :func:`expiration_times` for t.
    """
    group, n_groups = quote_groups(surface)
    quote_group, _, iv, k = otm_quotes(surface, group)
    return quote_keys(surface, group, n_groups).assign(
        t=expiration_times(surface, group, n_groups), atm_iv=interpolate_atm(quote_group, k, iv, n_groups))


SMILE_COLUMNS = ["ticker", "expiration", "k", "iv"]


def event_smiles(surface: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The smile of each event's expiration (``events``: [as_of,] ticker, expiration; a null
    expiration has none): its out-of-the-money quotes with a usable IV, one per contract
    (:func:`otm_quotes`), as k = ln(K/F) and iv (annualized fraction); sorted by [as_of,] ticker,
    expiration, k. The skew fit (:func:`pipeline.stages.skew.fit_skew`) uses those within its
    standardized-moneyness range."""
    by = quote_key(events)
    pairs = pd.MultiIndex.from_frame(events[by].dropna().drop_duplicates())
    rows = surface[pd.MultiIndex.from_frame(surface[by]).isin(pairs)]
    if rows.empty:
        empty = {"ticker": pd.Series(dtype="str"), "expiration": pd.Series(dtype="datetime64[ns]"),
                 "k": pd.Series(dtype=float), "iv": pd.Series(dtype=float)}
        return pd.DataFrame(({AS_OF: pd.Series(dtype="datetime64[ns]")} if AS_OF in by else {}) | empty)
    group, n_groups = quote_groups(rows)
    quote_group, _, iv, k = otm_quotes(rows, group)
    quotes = quote_keys(rows, group, n_groups).iloc[quote_group].reset_index(drop=True).assign(k=k, iv=iv)
    return quotes.sort_values([*by, "k"], kind="stable").reset_index(drop=True)


def _first_two_expirations(atm: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per event: sigma/T of the first two expirations on or after the reaction date (NaN if absent),
    by :func:`pipeline.contract.sessions.covering_expirations`.

    Expirations without a positive t and a finite ATM IV are skipped.
    """
    by, event = key(events), key(events, "report_date")
    usable = atm[(atm["t"] > 0) & np.isfinite(atm["atm_iv"])][[*by, "expiration", "t", "atm_iv"]]
    candidates = events[[*event, "reaction_date"]].drop_duplicates(event).merge(usable, on=by)
    chosen = covering_expirations(candidates, event, 2)
    first, second = (chosen[chosen["rank"] == r].set_index(event)[["t", "atm_iv"]] for r in (0, 1))
    pairs = first.join(second, how="outer", lsuffix="1", rsuffix="2")
    pairs.columns = ["t1", "sigma1", "t2", "sigma2"]
    return events[[*event, "reaction_date"]].merge(pairs.reset_index(), on=event, how="left")


def term_structure(atm: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Event move implied by the ATM term structure, one row per event.

    With the first two expirations whose date is on or after the reaction date (IV sigma1 at T1,
    sigma2 at T2, T1 < T2, both containing the event, constant diffusive vol assumed):

    - event variance   sigma_E^2 = (sigma1^2 - sigma2^2) * T1 * T2 / (T2 - T1)   (fraction^2)
    - diffusive variance         = (sigma1^2 T1 - sigma2^2 T2) / (T1 - T2)        (per year)
    - ``ts_event_std`` = sigma_E, ``ts_implied_move`` = sqrt(2/pi) * sigma_E (expected |move|),
      ``ex_earnings_vol`` = sqrt(diffusive variance) (annualized).

    ``atm``: [as_of,] ticker, expiration, t, atm_iv (see :func:`atm_iv_by_expiration`); ``events``:
    [as_of,] ticker, report_date, reaction_date; one row per event, keyed like ``events``. Values are null and ``ts_flag`` says why, first match wins:
    ``no_reaction_date``, ``no_expiration_after_event``, ``one_expiration``, ``not_inverted``
    (sigma1 <= sigma2: no event premium to extract), ``negative_diffusive_variance`` (the front
    expiration has more total variance than the back: calendar arbitrage or bad quotes).
    """
    pairs = _first_two_expirations(atm, events)
    t1, t2, sigma1, sigma2 = (pairs[c].to_numpy(float) for c in ("t1", "t2", "sigma1", "sigma2"))
    var1, var2 = sigma1 * sigma1, sigma2 * sigma2
    with np.errstate(divide="ignore", invalid="ignore"):
        event_var = (var1 - var2) * t1 * t2 / (t2 - t1)
        diffusive_var = (var1 * t1 - var2 * t2) / (t1 - t2)
    flag = np.select(
        [pairs["reaction_date"].isna().to_numpy(), np.isnan(t1), np.isnan(t2), ~(sigma1 > sigma2),
         ~(diffusive_var >= 0)],
        ["no_reaction_date", "no_expiration_after_event", "one_expiration", "not_inverted",
         "negative_diffusive_variance"],
        default="",
    )
    valid = flag == ""
    event_std = np.sqrt(np.where(valid, event_var, np.nan))
    return pd.DataFrame({
        **{c: pairs[c].to_numpy() for c in key(events, "report_date")},
        "ts_event_std": event_std,
        "ts_implied_move": MEAN_ABS_PER_STD * event_std,
        "ex_earnings_vol": np.sqrt(np.where(valid, diffusive_var, np.nan)),
        "ts_flag": pd.array(np.where(valid, None, flag), dtype="str"),
    }, index=events.index)


def flag_disagreement(implied_move, ts_implied_move, ratio: float) -> np.ndarray:
    """True where the two move estimates differ by more than ``ratio`` either way.

    max(a/b, b/a) > ratio for positive a, b; False where either is missing or not positive
    (nothing to compare). The caller turns True into ts_flag "disagrees_with_straddle".
    """
    a = np.asarray(implied_move, dtype=float)
    b = np.asarray(ts_implied_move, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.maximum(a / b, b / a)
    return (a > 0) & (b > 0) & (spread > ratio)


IV30_YEARS = 30 / 365          # the constant maturity, ACT/365 like the surface's t
PERCENTILE_SESSIONS = 252      # window of a name's stored sessions for the vol percentiles
PERCENTILE_MIN_SESSIONS = 60   # fewer stored sessions: no percentile, and a reason


def iv30(atm: pd.DataFrame) -> pd.DataFrame:
    """30-day constant-maturity ATM IV per (as_of, ticker): [as_of,] ticker, iv30.

    Total variance w = atm_iv^2 t is interpolated linearly in t between the expirations bracketing
    T = 30/365 (the last with t <= T and the first with t >= T), iv30 = sqrt(w(T) / T). It contains
    the coming event when the event is inside 30 days (the ex-earnings vol does not). NaN when no
    expiration lies on one side of 30 days (nothing is extrapolated).
    """
    by = key(atm)
    usable = atm[(atm["t"] > 0) & np.isfinite(atm["atm_iv"])].sort_values([*by, "t"], kind="stable")
    below = usable[usable["t"] <= IV30_YEARS].groupby(by)[["t", "atm_iv"]].last()
    above = usable[usable["t"] >= IV30_YEARS].groupby(by)[["t", "atm_iv"]].first()
    pairs = below.join(above, how="outer", lsuffix="1", rsuffix="2")
    t1, t2, s1, s2 = (pairs[c].to_numpy(float) for c in ("t1", "t2", "atm_iv1", "atm_iv2"))
    w1, w2 = s1 * s1 * t1, s2 * s2 * t2
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(t2 > t1, (IV30_YEARS - t1) / (t2 - t1), 0.0)
        value = np.sqrt((w1 + weight * (w2 - w1)) / IV30_YEARS)
    return pairs.index.to_frame(index=False).assign(iv30=value)


def vol_percentiles(today: pd.DataFrame, history: pd.DataFrame,
                    min_sessions: int = PERCENTILE_MIN_SESSIONS) -> pd.DataFrame:
    """Percentiles (0-100) of today's ``iv30`` and ``ex_earnings_vol`` within the name's stored
    sessions: ``today`` has one row per event ([as_of,] ticker, iv30, ex_earnings_vol), ``history``
    the stored sessions before them (ticker, date, iv30, ex_earnings_vol; one row per ticker and
    date).

    percentile = 100 x (values < x + 0.5 x values == x) / n over the n sessions with a value,
    today's included; null when n < ``min_sessions``, and ``vol_percentile_reason`` says how many
    sessions there are. On a panel (``as_of`` a column) the rows of ``today`` count as the
    sessions of their as-of dates, and a row's sessions are those of the last PERCENTILE_SESSIONS
    sessions to its as-of date, its own included: a chunk of dates computed in one pass sees the
    earlier dates of the chunk as a run of those dates one by one would have stored them.
    Without ``as_of``, ``history`` is the window already. Returns iv30_percentile,
    ex_earnings_vol_percentile, vol_percentile_reason, on today's index.
    """
    by = key(today)
    out = pd.DataFrame(index=today.index)
    for column in ("iv30", "ex_earnings_vol"):
        past = history[["ticker", "date", column]].dropna()
        own = today[[*by, column]].dropna()
        own = own.rename(columns={AS_OF: "date"}) if AS_OF in by else own.assign(date=pd.NaT)
        sample = pd.concat([past, own[["ticker", "date", column]]], ignore_index=True)
        merged = today[[*by, column]].reset_index().merge(sample, on="ticker", how="left", suffixes=("", "_s"))
        x, s = merged[column].to_numpy(float), merged[f"{column}_s"].to_numpy(float)
        if AS_OF in by:
            as_of = merged[AS_OF].to_numpy(dtype="datetime64[ns]")
            first = sessions_offset(as_of, -(PERCENTILE_SESSIONS - 1), strict=False)
            date = merged["date"].to_numpy(dtype="datetime64[ns]")
            s = np.where((date >= first) & (date <= as_of), s, np.nan)
        merged["below"] = (s < x) + 0.5 * (s == x)
        merged["n"] = np.isfinite(s)
        grouped = merged.groupby("index")[["below", "n"]].sum()
        n = grouped["n"].reindex(today.index).fillna(0).astype(int)
        share = 100.0 * grouped["below"].reindex(today.index) / n.where(n > 0)
        out[f"{column}_percentile"] = share.where((n >= min_sessions) & today[column].notna())
    # The reason does not carry the count: which earlier sessions are stored depends on which
    # dates were run before this one, and a date's outputs must not (tests/test_seams.py).
    short = out["iv30_percentile"].isna() & today["iv30"].notna()
    out["vol_percentile_reason"] = pd.Series(
        np.where(short, f"vol percentiles: fewer than {min_sessions} stored sessions with a 30-day IV", None),
        index=today.index, dtype="str")
    return out[["iv30_percentile", "ex_earnings_vol_percentile", "vol_percentile_reason"]]
