"""The move the options market prices for an event: the at-the-money straddle of the first
expiration that covers the reaction session."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.black76 import MEAN_ABS_PER_STD
from pipeline.sessions import year_fraction
from pipeline.stages.events import event_expirations
from pipeline.stages.surface import two_sided_mid

IMPLIED_COLUMNS = ["ticker", "report_date", "expiration", "t", "spot", "straddle_mid", "implied_move",
                   "straddle_spread", "min_leg_open_interest", "min_leg_volume", "expiration_volume",
                   "implied_reason"]


def usable_straddles(chains: pd.DataFrame, max_leg_spread: float) -> pd.DataFrame:
    """Strikes where both legs have a usable two-sided quote, with the straddle built from them.

    A leg is usable when it is two-sided (:func:`~pipeline.stages.surface.two_sided_mid`) and
    (ask - bid) / mid <= ``max_leg_spread``.
    """
    quotes = chains
    mid = pd.Series(two_sided_mid(quotes["bid"].to_numpy(float), quotes["ask"].to_numpy(float)), index=quotes.index)
    usable = mid.notna() & ((quotes["ask"] - quotes["bid"]) <= max_leg_spread * mid)
    legs = quotes[usable].assign(mid=mid[usable], spread=(quotes["ask"] - quotes["bid"])[usable])
    keys = ["ticker", "expiration", "strike"]
    fields = ["mid", "spread", "open_interest", "volume"]
    calls = legs[legs["option_type"] == "C"].set_index(keys)[fields]
    puts = legs[legs["option_type"] == "P"].set_index(keys)[fields]
    both = calls.join(puts, lsuffix="_call", rsuffix="_put", how="inner")
    return pd.DataFrame({
        "straddle_mid": both["mid_call"] + both["mid_put"],
        "spread_abs": both["spread_call"] + both["spread_put"],
        "min_oi": np.minimum(both["open_interest_call"], both["open_interest_put"]),
        "min_volume": np.minimum(both["volume_call"], both["volume_put"]),
    }).reset_index().sort_values(["strike", "ticker", "expiration"], kind="stable")


def event_straddles(chains: pd.DataFrame, events: pd.DataFrame, max_leg_spread: float) -> pd.DataFrame:
    """Straddle implied move per event.

    expiration = first listed expiration with expiration >= reaction session;
    straddle(spot) = linear interpolation of straddle mids between the usable strikes bracketing
    the spot (the nearest usable strike when the spot is outside them);
    implied_move = straddle(spot) / spot, an estimate of the expected absolute move (~0.8 sigma);
    straddle_spread = (call spread + put spread) / straddle mid, interpolated the same way.
    Events without a chain, a covering expiration or a usable strike get nulls and a reason.
    A contract quoted twice counts once (first quote kept).
    """
    if events.empty:
        dtypes = {"ticker": "str", "report_date": "datetime64[ns]", "expiration": "datetime64[ns]", "implied_reason": "str"}
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in IMPLIED_COLUMNS})
    ev = events[["ticker", "report_date", "reaction_date"]]
    # Choose each event's expiration on the small table of listed (ticker, expiration) pairs,
    # then work only on those quotes: most of a chain belongs to other expirations.
    group = chains.groupby(["ticker", "expiration"], sort=False).ngroup().to_numpy()
    _, first_row = np.unique(group, return_index=True)
    listed = chains[["ticker", "expiration"]].iloc[first_row].assign(group=np.arange(len(first_row)))
    first = event_expirations(listed, ev, count=1).merge(listed, on=["ticker", "expiration"])
    out = ev.merge(first[["ticker", "expiration"]], on="ticker", how="left")
    chains = chains[np.isin(group, first["group"].to_numpy())]
    chains = chains.drop_duplicates(["ticker", "expiration", "strike", "option_type"])
    first_quote = chains.groupby("ticker")[["underlying_price", "snapshot_time"]].first()
    per_event = first_quote.reindex(out["ticker"])      # reindex keeps the datetime dtype (NaT)
    out["spot"] = per_event["underlying_price"].to_numpy()
    out["t"] = year_fraction(per_event["snapshot_time"], out["expiration"])
    exp_volume = chains.groupby(["ticker", "expiration"])["volume"].sum().rename("expiration_volume")
    out = out.merge(exp_volume, left_on=["ticker", "expiration"], right_index=True, how="left")

    straddles = usable_straddles(chains, max_leg_spread).merge(
        out[["ticker", "expiration", "report_date", "spot"]].dropna(subset=["expiration"]),
        on=["ticker", "expiration"])
    probes = out.dropna(subset=["expiration", "spot"]).sort_values("spot")[["ticker", "report_date", "spot"]]
    by = ["ticker", "report_date"]
    cols = ["strike", "straddle_mid", "spread_abs", "min_oi", "min_volume"]
    right = straddles[by + cols].assign(key=straddles["strike"]).sort_values("key")
    below = pd.merge_asof(probes, right, left_on="spot", right_on="key", by=by, direction="backward")
    above = pd.merge_asof(probes, right, left_on="spot", right_on="key", by=by, direction="forward")
    lo, hi = below.set_index(by)[cols], above.set_index(by)[cols]
    lo, hi = lo.fillna(hi), hi.fillna(lo)          # one-sided: use the nearest usable strike
    width = hi["strike"] - lo["strike"]
    spot_at = probes.set_index(by)["spot"]
    weight = ((spot_at - lo["strike"]) / width.where(width > 0)).fillna(0.0)
    interp = lo[["straddle_mid", "spread_abs"]].mul(1 - weight, axis=0) + hi[["straddle_mid", "spread_abs"]].mul(weight, axis=0)
    result = pd.DataFrame({
        "straddle_mid": interp["straddle_mid"],
        "straddle_spread": interp["spread_abs"] / interp["straddle_mid"],
        "min_leg_open_interest": np.fmin(lo["min_oi"], hi["min_oi"]),
        "min_leg_volume": np.fmin(lo["min_volume"], hi["min_volume"]),
        "one_sided": (below.set_index(by)["strike"].isna() | above.set_index(by)["strike"].isna()).to_numpy(),
    }).reset_index()
    out = out.merge(result, on=by, how="left")
    out["implied_move"] = out["straddle_mid"] / out["spot"]
    has_chain = pd.Index(listed["ticker"].unique()).get_indexer(out["ticker"]) >= 0
    out["implied_reason"] = np.select(
        [~has_chain, out["expiration"].isna(), out["straddle_mid"].isna(), out["one_sided"].fillna(False).astype(bool)],
        ["no option chain", "no expiration covers the reaction session",
         "no usable straddle quotes (zero bid, crossed or too wide)", "spot outside usable strikes: nearest strike used"],
        None)
    return out[IMPLIED_COLUMNS]


def event_only_move(implied_move: pd.Series, ex_earnings_vol: pd.Series, t: pd.Series) -> pd.Series:
    """The straddle's implied move with the ordinary (ex-earnings) diffusion to expiry removed.

    An at-the-money straddle prices sqrt(2/pi) * sqrt(sigma_d^2 t + sigma_E^2) of the spot, so
    event_move = sqrt(max(implied_move^2 - (2/pi) sigma_d^2 t, 0)) = sqrt(2/pi) sigma_E, with
    sigma_d the ex-earnings vol from the term structure and t the straddle's years to expiry;
    sqrt(2/pi) is :data:`pipeline.black76.MEAN_ABS_PER_STD` (its square is 2/pi exactly).
    Comparable across names whatever the gap between event and expiration (fractions).
    """
    diffusion = MEAN_ABS_PER_STD ** 2 * ex_earnings_vol ** 2 * t
    return np.sqrt((implied_move ** 2 - diffusion).clip(lower=0.0))
