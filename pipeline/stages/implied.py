"""The move the options market prices for an event: the at-the-forward straddle of the first
expiration that covers the reaction session, priced from the smile at the forward; and the
tradeable straddle beside it (the listed strike nearest the forward, as quoted)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel.black76 import MEAN_ABS_PER_STD, atm_straddle, discount_factor, fresh_mid, two_sided_mid
from pipeline.contract.sessions import covering_expirations
from pipeline.stages.groups import quote_key
from pipeline.stages.panel import key
from pipeline.stages.term import interpolate_variance

IMPLIED_COLUMNS = [
    "ticker", "report_date", "expiration", "t", "spot", "forward", "implied_vol", "implied_move",
    "implied_method", "straddle_strike", "straddle_mid", "straddle_spread", "min_leg_open_interest",
    "min_leg_volume", "expiration_volume", "implied_reason",
]
EVENT_KEY = ["ticker", "report_date"]
# A fitted smile prices the forward when it explains the quotes this well (weighted R^2); else the
# bracketing strikes do.
SMILE_MIN_R2 = 0.9
# With quotes on one side of the forward only, the nearest strike's vol stands in for the forward's
# when that strike is within this many ATM standard deviations of it (|ln(K/F)| / (iv sqrt t)).
ONE_SIDED_MAX_STD = 0.5
# How the volatility at the forward was had (schemas.IMPLIED_METHODS); these are fallbacks and
# degrade the event.
FALLBACK_METHODS = ("parity-rebuilt", "one-sided")


def _event_quotes(chains: pd.DataFrame, surface: pd.DataFrame, events: pd.DataFrame):
    """Each event's expiration (first listed one covering the reaction session) and the surface
    rows of those expirations joined with their open interest and volume (first quote of a
    contract kept). ``surface`` is :func:`pipeline.stages.surface.build_surface` of ``chains``
    (same rows, same order). Keyed by (as_of, ticker) on a panel (:func:`pipeline.stages.panel.key`)."""
    by, quote = key(events), quote_key(chains)
    ev = events[[*by, "report_date", "reaction_date"]]
    group = chains.groupby(quote, sort=False).ngroup().to_numpy()
    _, first_row = np.unique(group, return_index=True)
    listed = chains[quote].iloc[first_row].assign(group=np.arange(len(first_row)))
    pairs = listed[quote].merge(ev[[*by, "reaction_date"]], on=by)
    first = covering_expirations(pairs, by, 1)[quote].merge(listed, on=quote)
    out = ev.merge(first[quote], on=by, how="left")
    rows = np.isin(group, first["group"].to_numpy())
    quotes = surface[rows].assign(open_interest=chains["open_interest"].to_numpy()[rows],
                                  volume=chains["volume"].to_numpy()[rows])
    quotes = quotes.drop_duplicates([*quote, "strike", "option_type"])
    has_chain = pd.MultiIndex.from_frame(out[by]).isin(pd.MultiIndex.from_frame(listed[by]))
    return out, quotes, has_chain


def _strike_vols(quotes: pd.DataFrame, max_leg_spread: float) -> pd.DataFrame:
    """Per ([as_of,] ticker, strike) of the event expirations: k = ln(K/F) and the IV there, from the
    out-of-the-money leg (put below F, call at or above) when it is usable, else from the other
    leg, which is the OTM leg rebuilt from put-call parity C - P = D (F - K) (a parity-rebuilt
    leg has exactly the other leg's Black-76 IV). Usable: ``iv_status`` ok and
    (ask - bid) / mid <= ``max_leg_spread``. Column ``rebuilt`` marks the parity strikes."""
    mid = two_sided_mid(quotes["bid"].to_numpy(float), quotes["ask"].to_numpy(float))
    usable = (quotes["iv_status"] == "ok").to_numpy() & ((quotes["ask"] - quotes["bid"]).to_numpy() <= max_leg_spread * mid)
    legs = quotes[usable]
    k = np.log(legs["strike"] / legs["forward"])
    otm = np.where(legs["option_type"] == "P", k < 0, k >= 0)
    by = key(quotes)
    per_leg = legs[by].assign(strike=legs["strike"], k=k, iv=legs["iv"], otm=otm)
    by_side = per_leg.pivot_table(index=[*by, "strike", "k"], columns="otm", values="iv", aggfunc="first")
    by_side = by_side.reindex(columns=[True, False])
    vols = pd.DataFrame({"iv": by_side[True].fillna(by_side[False]), "rebuilt": by_side[True].isna()})
    return vols.reset_index().sort_values([*by, "k"], kind="stable")


def _vol_at_forward(vols: pd.DataFrame, t: pd.Series) -> pd.DataFrame:
    """Per ([as_of,] ticker): the IV at k = 0 (the forward) from the strikes bracketing it
    (:func:`pipeline.stages.term.interpolate_variance`), or, with strikes on one side only, the
    nearest one's IV when within ONE_SIDED_MAX_STD; and the method that gave it."""
    by = key(vols)
    below = vols[vols["k"] < 0].groupby(by).tail(1).set_index(by)
    above = vols[vols["k"] >= 0].groupby(by).head(1).set_index(by)
    tickers = below.index.union(above.index)
    below, above = below.reindex(tickers), above.reindex(tickers)
    bracketed = interpolate_variance(below["k"], below["iv"], above["k"], above["iv"])
    nearest = above.where(above["k"].notna(), below)        # one side only: that side's nearest strike
    near = (nearest["k"].abs() / (nearest["iv"] * np.sqrt(t.reindex(tickers)))) <= ONE_SIDED_MAX_STD
    one_sided = bracketed.isna() & near
    method = np.select([bracketed.notna() & (below["rebuilt"].astype(bool) | above["rebuilt"].astype(bool)),
                        bracketed.notna(), one_sided], ["parity-rebuilt", "interpolated", "one-sided"], None)
    vol = bracketed.where(bracketed.notna(), nearest["iv"].where(one_sided))
    return pd.DataFrame({"implied_vol": vol, "implied_method": method}, index=tickers)


def _tradeable_straddle(quotes: pd.DataFrame) -> pd.DataFrame:
    """Per ([as_of,] ticker), at the listed strike nearest the forward (ties to the lower strike): the quoted
    straddle mid = call mid + put mid (each the leg's :func:`~pipeline.kernel.black76.fresh_mid`: two-sided,
    not stale), straddle_spread = (call ask - bid +
    put ask - bid) / straddle mid, the smaller leg open interest and volume."""
    by = key(quotes)
    distance = (quotes["strike"] - quotes["forward"]).abs()
    nearest = quotes.assign(distance=distance).sort_values([*by, "distance", "strike"], kind="stable")
    strike = nearest.groupby(by)["strike"].first().rename("straddle_strike")
    legs = quotes.merge(strike.reset_index(), left_on=[*by, "strike"], right_on=[*by, "straddle_strike"])
    legs = legs.assign(mid=fresh_mid(legs["bid"].to_numpy(float), legs["ask"].to_numpy(float),
                                     (legs["iv_status"] == "stale").to_numpy()),
                       spread=legs["ask"] - legs["bid"])
    calls = legs[legs["option_type"] == "C"].set_index(by)
    puts = legs[legs["option_type"] == "P"].set_index(by)
    calls, puts = calls.reindex(strike.index), puts.reindex(strike.index)
    straddle = calls["mid"] + puts["mid"]
    return pd.DataFrame({
        "straddle_strike": strike,
        "straddle_mid": straddle,
        "straddle_spread": (calls["spread"] + puts["spread"]) / straddle.where(straddle > 0),
        "min_leg_open_interest": np.fmin(calls["open_interest"], puts["open_interest"]),
        "min_leg_volume": np.fmin(calls["volume"], puts["volume"]),
    })


def event_straddles(chains: pd.DataFrame, surface: pd.DataFrame, events: pd.DataFrame, max_leg_spread: float,
                    smiles: pd.DataFrame) -> pd.DataFrame:
    """Implied move per event, at the forward of the event expiration:

    implied_move = atm_straddle(F, t, sigma_F, D) / spot = 2 D F (2 N(sigma_F sqrt(t) / 2) - 1) / spot
    (:func:`pipeline.kernel.black76.atm_straddle`; fraction of spot, the expected absolute move to
    expiry, ~0.8 sigma), with F the surface's parity forward, t its years from the snapshot,
    D = exp(-rate t) and sigma_F (``implied_vol``) the IV at K = F from, first that applies
    (``implied_method``):

    - ``smile``: the fitted smile's IV at x = 0 (``skew_atm_iv`` of ``smiles``, from
      :func:`pipeline.stages.skew.fit_skew`) when its weighted R^2 >= SMILE_MIN_R2;
    - ``interpolated``: total variance linear in ln(K/F) between the usable strikes bracketing F;
    - ``parity-rebuilt``: the same, with a bracketing OTM leg rebuilt from put-call parity
      (see :func:`_strike_vols`);
    - ``one-sided``: the nearest usable strike's IV, quotes on one side of F only.
    Never a straddle at another strike (it contains intrinsic value) and never an interpolation
    of straddle prices across strikes (the straddle is convex in strike: that overstates it).
    The last two are fallbacks (FALLBACK_METHODS). The tradeable straddle is beside it
    (:func:`_tradeable_straddle`) and ``expiration_volume`` = volume of every quote of the
    expiration. Events without a chain, a covering expiration or a volatility near F get a null
    implied move and ``implied_reason``; a fallback gets a reason too.
    """
    by = key(events)
    if events.empty:
        dtypes = {"as_of": "datetime64[ns]", "ticker": "str", "report_date": "datetime64[ns]",
                  "expiration": "datetime64[ns]", "implied_method": "str", "implied_reason": "str"}
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in [*by[:-1], *IMPLIED_COLUMNS]})
    out, quotes, has_chain = _event_quotes(chains, surface, events)
    per_ticker = quotes.assign(stale=quotes["iv_status"] == "stale").groupby(by).agg(
        spot=("underlying_price", "first"), forward=("forward", "first"), t=("t", "first"), rate=("rate", "first"),
        expiration_volume=("volume", "sum"), stale=("stale", "sum"))
    at_forward = _vol_at_forward(_strike_vols(quotes, max_leg_spread), per_ticker["t"])
    smile = smiles.merge(out[[*by, "expiration"]].dropna(), on=[*by, "expiration"]).set_index(by)
    good_smile = smile["skew_atm_iv"].where(smile["skew_r2"] >= SMILE_MIN_R2).dropna()
    at_forward = at_forward.reindex(at_forward.index.union(good_smile.index))
    at_forward.loc[good_smile.index, "implied_vol"] = good_smile
    at_forward.loc[good_smile.index, "implied_method"] = "smile"
    per_ticker = per_ticker.join(at_forward).join(_tradeable_straddle(quotes))
    out = out.join(per_ticker, on=by)
    discount = discount_factor(out["rate"], out["t"])
    out["implied_move"] = atm_straddle(out["forward"], out["t"], out["implied_vol"], discount) / out["spot"]
    stale = out["stale"].fillna(0).astype(int)
    stale_note = ("; " + stale.astype(str) + " stale quotes excluded").where(stale > 0, "")
    out["implied_reason"] = pd.Series(np.select(
        [~has_chain, out["expiration"].isna(), out["implied_move"].isna(),
         out["implied_method"] == "parity-rebuilt", out["implied_method"] == "one-sided"],
        ["no option chain", "no expiration covers the reaction session",
         "no volatility near the forward (no usable quote within "
         f"{ONE_SIDED_MAX_STD} ATM std, zero bids, crossed or too wide)" + stale_note,
         "a bracketing OTM leg rebuilt from put-call parity" + stale_note,
         "usable quotes on one side of the forward only: nearest strike's vol" + stale_note],
        None), index=out.index)
    return out[[*by[:-1], *IMPLIED_COLUMNS]].astype({"implied_method": "str", "implied_reason": "str"})


def event_only_move(implied_move: pd.Series, ex_earnings_vol: pd.Series, t: pd.Series) -> pd.Series:
    """The straddle's implied move with the ordinary (ex-earnings) diffusion to expiry removed.

    An at-the-money straddle prices sqrt(2/pi) * sqrt(sigma_d^2 t + sigma_E^2) of the spot, so
    event_move = sqrt(max(implied_move^2 - (2/pi) sigma_d^2 t, 0)) = sqrt(2/pi) sigma_E, with
    sigma_d the ex-earnings vol from the term structure and t the straddle's years to expiry;
    sqrt(2/pi) is :data:`pipeline.kernel.black76.MEAN_ABS_PER_STD` (its square is 2/pi exactly).
    Comparable across names whatever the gap between event and expiration (fractions).
    """
    diffusion = MEAN_ABS_PER_STD ** 2 * ex_earnings_vol ** 2 * t
    return np.sqrt((implied_move ** 2 - diffusion).clip(lower=0.0))
