"""The surface stage: implied forwards from put-call parity, then every quote's Black-76 IV and delta.

Units: money in the quote currency, ``t`` in years (ACT/365 from the chain's ``snapshot_time`` to the
expiration session's close, see :func:`pipeline.contract.sessions.year_fraction`), IV a fraction per sqrt(year), ``rate`` a continuously
compounded annual fraction, ``discount = exp(-rate * t)``. The maths is :mod:`pipeline.kernel.black76`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel.black76 import (
    IV_STATUSES, STATUS_CODE, black76_delta, carried_forward, discount_factor, fresh_mid, implied_vol_codes,
    parity_forward, quoted_mid,
)
from pipeline.contract.schemas import DATASETS
from pipeline.contract.sessions import NEW_YORK, sessions_offset, year_fraction
from pipeline.stages.groups import (
    contract_runs, group_median, quote_groups, quote_keys, run_means, smallest_per_group, to_rows,
)
from pipeline.stages.panel import AS_OF

PARITY_STRIKES = 3   # strikes nearest the money whose parity forwards are combined (median)
SURFACE_COLUMNS = list(DATASETS["surface"].model.to_schema().columns)

# The surface's string columns are taken from these by code: building a str column from a
# million Python strings costs a quarter of a second.
_FORWARD_SOURCES = pd.array(["parity", "spot"], dtype="str")
_STATUSES = pd.array(IV_STATUSES, dtype="str")


def stale_quotes(quote_time: pd.Series, snapshot_time: pd.Series) -> np.ndarray:
    """True where a quote was last stamped before the session of its chain's snapshot.

    The snapshot's session is the last NYSE session on or before the snapshot's New York date; a
    quote is stale when quote_time < that session's midnight in New York: the vendor's bid/ask
    has not changed since an earlier session (a standing quote) and says nothing about today's
    prices. Computed per distinct snapshot time (a chain has one).
    """
    codes, snapshots = pd.factorize(pd.DatetimeIndex(pd.to_datetime(snapshot_time, utc=True)))
    local_day = snapshots.tz_convert(NEW_YORK).tz_localize(None).normalize()
    session = pd.DatetimeIndex(sessions_offset(local_day, -1, strict=True))
    session_start = session.tz_localize(NEW_YORK).tz_convert("UTC").as_unit("ns").asi8
    quoted = pd.DatetimeIndex(pd.to_datetime(quote_time, utc=True)).as_unit("ns").asi8
    # A missing snapshot (code -1) has no session: nothing is called stale against it.
    start = np.append(session_start, np.iinfo(np.int64).min)[codes]
    return quoted < start


def _parity_forwards(group, n_groups, strike, is_call, is_put, mid, t, rate):
    """Per group, the median of :func:`~pipeline.kernel.black76.parity_forward` F = K + (C - P)/D over the
    PARITY_STRIKES strikes with the smallest |C - P|.

    C, P are fresh mids (``mid``, NaN where not two-sided or stale) at the same strike (duplicate quotes
    averaged), D = exp(-rate t) with t the mean time to expiry of the two legs; only F > 0 counts
    and ties in |C - P| go to the lower strike. Near the money |C - P| is smallest and the quotes
    are tightest, so the forward is least sensitive to spreads there. NaN for a group without a pair.
    """
    legs = np.flatnonzero((group >= 0) & ~np.isnan(mid) & ~np.isnan(strike) & (is_call | is_put))
    legs, key, start = contract_runs(group, strike, is_put, legs)
    mean_mid, mean_t = run_means(mid[legs], start), run_means(t[legs], start)
    # Runs are ordered (group, strike, call before put): a pair is a call run right before the
    # put run of the same strike, and pairs come out sorted by group, then strike.
    contract = key[start]
    call = np.flatnonzero((contract[:-1] % 2 == 0) & (contract[1:] == contract[:-1] + 1))
    put = call + 1
    discount = discount_factor(rate, 0.5 * (mean_t[call] + mean_t[put]))
    call_minus_put = mean_mid[call] - mean_mid[put]
    pair_row = legs[start[call]]
    forward = parity_forward(strike[pair_row], call_minus_put, discount)
    kept = np.flatnonzero(forward > 0)
    pair_group = group[pair_row][kept]
    nearest = smallest_per_group(pair_group, np.abs(call_minus_put[kept]), PARITY_STRIKES)
    return group_median(pair_group[nearest], n_groups, forward[kept][nearest])


def _group_forwards(group, n_groups, t, strike, is_call, is_put, bid, ask, spot, stale, rate):
    """Forward per group and its source as an index into _FORWARD_SOURCES (-1: none); see implied_forwards."""
    forward = _parity_forwards(group, n_groups, strike, is_call, is_put, fresh_mid(bid, ask, stale), t, rate)
    # The carried spot only matters where parity gave nothing.
    rows = np.flatnonzero(to_rows(np.isnan(forward), group, False))
    carried = group_median(group[rows], n_groups, carried_forward(spot[rows], rate, t[rows]))
    source = np.select([~np.isnan(forward), ~np.isnan(carried)], [0, 1], default=-1)
    return np.where(np.isnan(forward), carried, forward), source


def _chain_arrays(chains: pd.DataFrame):
    """strike, is_call, is_put, bid, ask, underlying_price and :func:`stale_quotes` of every quote
    as NumPy arrays."""
    option_type = chains["option_type"]
    return (chains["strike"].to_numpy(float), (option_type == "C").to_numpy(bool),
            (option_type == "P").to_numpy(bool), chains["bid"].to_numpy(float), chains["ask"].to_numpy(float),
            chains["underlying_price"].to_numpy(float), stale_quotes(chains["quote_time"], chains["snapshot_time"]))


def implied_forwards(quotes: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Forward per (ticker, expiration) from put-call parity, C - P = D (F - K), D = exp(-rate t).

    ``quotes`` has chains columns (ticker, expiration, strike, option_type, bid, ask,
    underlying_price, quote_time, snapshot_time). Only strikes where both legs are two-sided
    (0 < bid <= ask) and fresh (not :func:`stale_quotes`) count (see :func:`_parity_forwards`).
    Without such a pair the forward is the spot carried at the
    rate, :func:`~pipeline.kernel.black76.carried_forward` underlying_price * exp(rate t) (median over the
    group), which ignores dividends.
    Returns ticker, expiration, forward (money), forward_source ("parity", "spot", or null when
    neither exists), one row per (ticker, expiration), sorted.
    """
    group, n_groups = quote_groups(quotes)
    t = year_fraction(quotes["snapshot_time"], quotes["expiration"])
    forward, source = _group_forwards(group, n_groups, t, *_chain_arrays(quotes), rate)
    return quote_keys(quotes, group, n_groups).assign(
        forward=forward, forward_source=_FORWARD_SOURCES.take(source, allow_fill=True))


def build_surface(chains: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Every quote with its forward, time to expiry, Black-76 IV and delta (the Surface columns).

    - ``mid`` = :func:`~pipeline.kernel.black76.quoted_mid`, (bid + ask)/2 whenever ask >= bid and ask > 0
      (kept for zero-bid quotes too); NaN for crossed (bid > ask) or missing quotes.
    - ``iv_status``: :func:`pipeline.kernel.black76.implied_vol`'s status on the fresh mid
      (:func:`~pipeline.kernel.black76.fresh_mid`: 0 < bid <= ask, not stale), so ``expired`` comes first, then ``crossed`` for bid > ask and ``no_quote``
      for missing quotes or bid <= 0 (a zero-bid wing quote says only that the option is worth
      less than its ask), then ``no_forward`` when the group has no forward, then the price-bound
      statuses; ``stale`` (not solved) for a quote stamped before the snapshot's session
      (:func:`stale_quotes`), unless ``expired``.
    - ``forward`` from :func:`implied_forwards` (parity, else carried spot; ``forward_source``
      says which); ``t`` = :func:`pipeline.contract.sessions.year_fraction` from the chain's
      ``snapshot_time`` (the same for every quote of a pull, whatever the quote's own stamp); ``rate`` the rate used for D = exp(-rate t).
    - ``delta`` = :func:`pipeline.kernel.black76.black76_delta` (forward delta, D N(d1) / -D N(-d1))
      where iv is ok.
    Rows keep the order of ``chains``, and its ``as_of`` column on a panel (dropped when stored).
    """
    group, n_groups = quote_groups(chains)
    t = year_fraction(chains["snapshot_time"], chains["expiration"])
    strike, is_call, is_put, bid, ask, spot, stale = _chain_arrays(chains)
    group_forward, group_source = _group_forwards(group, n_groups, t, strike, is_call, is_put, bid, ask, spot,
                                                  stale, rate)
    forward = to_rows(group_forward, group, np.nan)
    discount = discount_factor(rate, t)
    iv, status = implied_vol_codes(fresh_mid(bid, ask, stale), forward, strike, t, discount, is_call)
    status[(status == STATUS_CODE["no_quote"]) & (bid > ask)] = STATUS_CODE["crossed"]
    status[stale & (status != STATUS_CODE["expired"])] = STATUS_CODE["stale"]
    ok = np.flatnonzero(status == STATUS_CODE["ok"])
    delta = np.full(len(chains), np.nan)
    delta[ok] = black76_delta(forward[ok], strike[ok], t[ok], iv[ok], discount[ok], is_call[ok])

    columns = {
        **({AS_OF: chains[AS_OF]} if AS_OF in chains.columns else {}),
        "ticker": chains["ticker"].astype("str"),
        "expiration": chains["expiration"],
        "strike": chains["strike"].astype(float),
        "option_type": chains["option_type"].astype("str"),
        "bid": chains["bid"].astype(float),
        "ask": chains["ask"].astype(float),
        "mid": quoted_mid(bid, ask),
        "underlying_price": chains["underlying_price"].astype(float),
        "forward": forward,
        "forward_source": _FORWARD_SOURCES.take(to_rows(group_source, group, -1), allow_fill=True),
        "rate": np.full(len(chains), float(rate)),
        "t": t,
        "iv": iv,
        "delta": delta,
        "iv_status": _STATUSES.take(status),
    }
    # Columns of ``chains`` are shared, not copied (copy-on-write tracks them as for any view), and
    # the derived ones are new: consolidating the float columns into one block would only copy them.
    names = [AS_OF, *SURFACE_COLUMNS] if AS_OF in columns else SURFACE_COLUMNS
    return pd.DataFrame({name: columns[name] for name in names}, index=chains.index, copy=False)
