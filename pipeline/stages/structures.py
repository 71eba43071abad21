"""From an event to a trade: candidate short-volatility structures per event, priced, scored by
history and by the market, and sized (DESIGN section 12). Pure: DataFrames and the plain parameters (:class:`pipeline.stages.params.StageParams`) in,
one DataFrame out, vectorized over events x structures (no loop per event).

Structures on the event expiration, at listed strikes (m = implied_move, c = strangle multiple,
w = wing multiple > c, F = the parity forward, K0 = straddle_strike):

- ``straddle``: sell the put and the call at K0;
- ``strangle``: sell the put at the largest listed strike <= F (1 - c m) below K0 and the call at
  the smallest >= F (1 + c m) above K0;
- ``iron_condor``: the strangle, plus buy the put at the largest strike <= F (1 - w m) below the
  short put and the call at the smallest >= F (1 + w m) above the short call;
- ``iron_butterfly``: the straddle with the condor's wings.

Legs sit in four slots (short_put, short_call, long_put, long_call); an empty slot is null. A
candidate whose legs collapse (no listed strike where the rule needs one) or lack a two-sided
fresh quote (the rule of ``straddle_mid``: 0 < bid <= ask, not stale) is kept with
``status = dropped`` and the reason. Money per share for prices and credits; P&L, risk and
expected values in dollars per structure (one contract per leg, 100 shares).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel import payoffs
from pipeline.kernel.black76 import black76_delta, black76_vega, discount_factor, fresh_mid
from pipeline.kernel.ticks import nice_ticks
from pipeline.contract.schemas import STRUCTURE_NAMES as STRUCTURES, contract_columns
from pipeline.stages.groups import quote_key
from pipeline.stages.panel import key

SLOTS = ("short_put", "short_call", "long_put", "long_call")
SLOT_IS_CALL = np.array([False, True, False, True])
SLOT_SIDE = np.array([-1.0, -1.0, 1.0, 1.0])
# Which slots each structure fills.
PRESENT = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=bool)
DEFINED_RISK = np.array([False, False, True, True])
# An event's six distinct legs (straddle put and call, strangle put and call, wing put and call)
# and, per structure, the leg in each slot (empty slots point anywhere: their side is 0).
EVENT_LEG_IS_CALL = np.array([False, True, False, True, False, True])
EVENT_LEGS_OF = np.array([[0, 1, 4, 5], [2, 3, 4, 5], [2, 3, 4, 5], [0, 1, 4, 5]])
LEG_FIELDS = ("strike", "bid", "ask", "mid", "iv")
EVENT_LAW_COMPONENTS = 2
# Shift that keeps a strike strictly below / above another one in a "<=" / ">=" search.
STRIKE_EPS = 1e-6

# The per-event inputs of the exit valuation (:func:`exit_pnl`), stored so the dataset's rows can be
# repriced at the exit: years from the reaction close to expiry, the ex-earnings vol, the next
# expiration's relative skew slope and curvature (b/a, c/a).
EXIT_INPUTS = ["t_exit", "exit_ex_vol", "exit_skew_b", "exit_skew_c"]
PAYOFF_EXIT_POINTS = 121    # even moves of a P&L-at-exit curve (payoff_curves)
# A payoff curve's reach (fraction move each side): enough for the implied band, the past moves,
# the breakevens and the strikes; a price cannot fall 100%.
PAYOFF_REACH_IMPLIED, PAYOFF_REACH_MARGIN, PAYOFF_MIN_REACH, PAYOFF_MAX_REACH = 1.6, 1.15, 0.02, 0.95
NUMBERS = [
    "n_legs", "credit_mid", "credit_fill", "risk", "breakeven_low_expiry", "breakeven_high_expiry",
    "breakeven_low_exit", "breakeven_high_exit", "delta_shares", "gamma", "vega", "theta",
    "pop_hist", "ev_hist", "pop_rn", "ev_rn", "ev_rn_mid", "pop_expiry_rn", "return_on_risk",
    "contracts",
]
STRUCTURE_COLUMNS = contract_columns("structures")


def slot_values(rows: pd.DataFrame, field: str) -> np.ndarray:
    """(rows, 4) matrix of a per-slot column, ``field`` naming it with ``{slot}`` (e.g.
    ``"{slot}_strike"``, ``"exit_{slot}_bid"``), slots in SLOTS order; an empty slot is NaN."""
    return np.column_stack([rows[field.format(slot=slot)].to_numpy(float) for slot in SLOTS])


def event_law(metrics: pd.DataFrame, event_std: np.ndarray):
    """The risk-neutral law of the log jump J per event as a normal mixture: arrays (n, 2) of
    weight, mean, std (fractions).

    Read from ``event_law_{weight,mean,std}_{1,2}`` of the density stage
    (:func:`pipeline.stages.density.fit_event_law`: log jump, risk-neutral, means already
    martingale, E[e^J] = 1; component 2 null for one component) where component 1 is present;
    otherwise (no usable smile, e.g. fewer than 6 OTM quotes) the one-component normal law with
    the ATM-equivalent event std ``event_std`` (from the term structure, see
    :func:`_event_inputs`) and mean -std^2/2, the same convention.
    """
    n = len(metrics)
    if all(f"event_law_{p}_{i}" in metrics for p in ("weight", "mean", "std") for i in (1, 2)):
        weight, mean, std = (np.column_stack([metrics[f"event_law_{p}_{i}"].to_numpy(float) for i in (1, 2)])
                             for p in ("weight", "mean", "std"))
        # Fitted where component 1 is complete (component 2 is null for a one-component law).
        fitted = (weight[:, 0] > 0) & np.isfinite(mean[:, 0]) & (std[:, 0] > 0)
        if fitted.all():
            return weight, mean, std
    else:
        fitted = np.zeros(n, bool)
        weight = mean = std = np.full((n, EVENT_LAW_COMPONENTS), np.nan)
    normal_w = np.column_stack([np.ones(n), np.full(n, np.nan)])
    normal_m = np.column_stack([-0.5 * event_std ** 2, np.full(n, np.nan)])
    normal_s = np.column_stack([event_std, np.full(n, np.nan)])
    pick = fitted[:, None]
    return np.where(pick, weight, normal_w), np.where(pick, mean, normal_m), np.where(pick, std, normal_s)


def _smiles(surface: pd.DataFrame, pairs: pd.DataFrame, params) -> pd.DataFrame:
    """ATM IV, t and the fitted quadratic smile (a, b, c) of the (ticker, expiration) ``pairs``."""
    from pipeline.stages.skew import fit_skew
    from pipeline.stages.term import atm_iv_by_expiration

    quote = quote_key(surface)
    wanted = pd.MultiIndex.from_frame(pairs[quote].drop_duplicates())
    rows = pd.MultiIndex.from_frame(surface[quote]).isin(wanted)
    sub = surface[rows]
    atm = atm_iv_by_expiration(sub)
    fits = fit_skew(sub, min_points=params.skew_min_points, max_abs_x=params.skew_max_abs_x, atm=atm)
    return atm.merge(fits[[*quote, "skew_atm_iv", "skew_slope", "skew_curvature"]], on=quote)


def _event_inputs(metrics: pd.DataFrame, surface: pd.DataFrame, params) -> pd.DataFrame:
    """Per event: t of the event expiration, its smile (falling back to flat at implied_vol), the
    next expiration's relative smile shape (b/a, c/a; flat without one), the ex-earnings vol and
    the ATM-equivalent event std: ``ts_event_std``, else sqrt(implied_vol^2 t - ex_vol^2 t)."""
    ev = metrics.reset_index(drop=True)
    by, quote = key(ev), quote_key(ev)
    expirations = surface[quote].drop_duplicates().sort_values(quote, kind="stable")
    later = expirations.merge(ev[quote].drop_duplicates(), on=by, suffixes=("", "_event"))
    later = later[later["expiration"] > later["expiration_event"]]
    following = later.groupby([*by, "expiration_event"], as_index=False)["expiration"].min()
    following = following.rename(columns={"expiration": "next_expiration", "expiration_event": "expiration"})
    ev = ev.merge(following, on=quote, how="left")
    smiles = _smiles(surface, pd.concat([ev[quote], following[[*by, "next_expiration"]].rename(
        columns={"next_expiration": "expiration"})], ignore_index=True).dropna(), params)
    event = ev[quote].merge(smiles, on=quote, how="left")
    nxt = ev[[*by, "next_expiration"]].rename(columns={"next_expiration": "expiration"}).merge(
        smiles, on=quote, how="left")
    fitted = event["skew_atm_iv"].notna().to_numpy() & event["atm_iv"].notna().to_numpy()
    iv0 = ev["implied_vol"].to_numpy(float)
    t0 = event["t"].to_numpy(float)
    ex_vol = ev["ex_earnings_vol"].to_numpy(float)
    ex_vol = np.where(np.isfinite(ex_vol) & (ex_vol > 0), ex_vol, nxt["atm_iv"].to_numpy(float))
    ex_vol = np.where(np.isfinite(ex_vol) & (ex_vol > 0), ex_vol, iv0)
    event_std = ev["ts_event_std"].to_numpy(float)
    fallback_std = np.sqrt(np.maximum(iv0 ** 2 * t0 - ex_vol ** 2 * t0, 0.0))
    next_a = nxt["skew_atm_iv"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_b = np.nan_to_num(nxt["skew_slope"].to_numpy(float) / next_a)
        rel_c = np.nan_to_num(nxt["skew_curvature"].to_numpy(float) / next_a)
    return ev.assign(
        t0=t0,
        smile_atm=np.where(fitted, event["atm_iv"], iv0),
        smile_a=np.where(fitted, event["skew_atm_iv"], iv0),
        smile_b=np.where(fitted, event["skew_slope"], 0.0),
        smile_c=np.where(fitted, event["skew_curvature"], 0.0),
        exit_b=rel_b, exit_c=rel_c, ex_vol=ex_vol,
        event_std=np.where(np.isfinite(event_std), event_std, fallback_std),
        # Reaction close to expiration close, ACT/365 like the surface's t; 0: expires on the exit.
        t_exit=np.maximum((ev["expiration"] - ev["reaction_date"]).dt.days.to_numpy(float), 0.0) / payoffs.DAYS_PER_YEAR,
    )


def _event_quotes(surface: pd.DataFrame, ev: pd.DataFrame) -> pd.DataFrame:
    """The event expirations' quotes, one per contract: event (row of ``ev``), strike, is_call,
    bid, ask, fresh mid (:func:`~pipeline.kernel.black76.fresh_mid`, as ``straddle_mid``) and IV."""
    quote = quote_key(ev)
    keys = ev[quote].assign(event=np.arange(len(ev)))
    quotes = surface[[*quote, "strike", "option_type", "bid", "ask", "iv", "iv_status"]].merge(keys, on=quote)
    quotes = quotes.drop_duplicates(["event", "strike", "option_type"])
    mid = fresh_mid(quotes["bid"].to_numpy(float), quotes["ask"].to_numpy(float), (quotes["iv_status"] == "stale").to_numpy())
    return pd.DataFrame({"event": quotes["event"].to_numpy(), "strike": quotes["strike"].to_numpy(float),
                         "is_call": (quotes["option_type"] == "C").to_numpy(), "bid": quotes["bid"].to_numpy(float),
                         "ask": quotes["ask"].to_numpy(float), "mid": mid, "iv": quotes["iv"].to_numpy(float)})


def _listed(quotes: pd.DataFrame, target: np.ndarray, is_call: bool, direction: str) -> np.ndarray:
    """Per event, the largest listed strike <= target (``backward``) or the smallest >= target
    (``forward``) of that option type; NaN where none (or target is NaN)."""
    right = quotes.loc[quotes["is_call"] == is_call, ["event", "strike"]].sort_values("strike", kind="stable")
    left = pd.DataFrame({"event": np.arange(len(target)), "target": target})
    valid = left["target"].notna()
    found = pd.merge_asof(left[valid].sort_values("target", kind="stable"), right.rename(columns={"strike": "found"}),
                          left_on="target", right_on="found", by="event", direction=direction)
    out = np.full(len(target), np.nan)
    out[found["event"].to_numpy()] = found["found"].to_numpy(float)
    return out


def _strikes(ev: pd.DataFrame, quotes: pd.DataFrame, strangle_multiple: float, wing_multiple: float):
    """(n, 4 structures, 4 slots) strikes by the rules of the module docstring."""
    f, m, k0 = (ev[c].to_numpy(float) for c in ("forward", "implied_move", "straddle_strike"))
    short_put = _listed(quotes, np.minimum(f * (1 - strangle_multiple * m), k0 - STRIKE_EPS), False, "backward")
    short_call = _listed(quotes, np.maximum(f * (1 + strangle_multiple * m), k0 + STRIKE_EPS), True, "forward")
    inner_put = np.where(np.isnan(short_put), k0, short_put)
    inner_call = np.where(np.isnan(short_call), k0, short_call)
    long_put = _listed(quotes, np.minimum(f * (1 - wing_multiple * m), inner_put - STRIKE_EPS), False, "backward")
    long_call = _listed(quotes, np.maximum(f * (1 + wing_multiple * m), inner_call + STRIKE_EPS), True, "forward")
    nan = np.full_like(k0, np.nan)
    return np.stack([
        np.stack([k0, k0, nan, nan], -1),
        np.stack([short_put, short_call, nan, nan], -1),
        np.stack([short_put, short_call, long_put, long_call], -1),
        np.stack([k0, k0, long_put, long_call], -1),
    ], axis=1)


def _drop_reasons(strikes, mid, present, ev_ok):
    """Why a candidate is dropped (None when it is kept), per (n, 4 structures)."""
    slot_names = np.array([s.replace("_", " ") for s in SLOTS], dtype=object)
    no_strike = present & np.isnan(strikes)
    no_quote = present & ~np.isnan(strikes) & np.isnan(mid)
    first_strike = no_strike.argmax(-1)
    first_quote = no_quote.argmax(-1)
    strike_text = np.take_along_axis(strikes, first_quote[..., None], -1)[..., 0]
    reason = np.where(
        ~ev_ok[:, None], "no straddle or implied move at the event expiration",
        np.where(no_strike.any(-1), "legs collapse: no listed strike for the " + slot_names[first_strike],
                 np.where(no_quote.any(-1), "no two-sided fresh quote: " + slot_names[first_quote] + " "
                          + pd.Series(strike_text.ravel()).map("{:g}".format).to_numpy().reshape(strike_text.shape),
                          None)))
    return reason


def _history_moves(moves: pd.DataFrame, events: pd.DataFrame, move_type: str, max_events: int, min_events: int):
    """(n, max_events) signed past moves of each event's ([as_of,] ticker) key (the last
    ``max_events`` reports, NaN-padded) and a mask of the events with at least ``min_events``."""
    by = key(events)
    ordered = moves.sort_values([*by, "reaction_date"], kind="stable")
    age = ordered.groupby(by).cumcount(ascending=False).to_numpy()
    keep = age < max_events
    recent = ordered[by][keep].assign(age=age[keep], move=ordered[move_type].to_numpy(float)[keep])
    table = recent.pivot(index=by, columns="age", values="move").reindex(
        index=pd.MultiIndex.from_frame(events[by]), columns=range(max_events))
    values = table.to_numpy(float)
    return values, np.isfinite(values).sum(axis=1) >= min_events


def _pnl(side, mid, half, exit_values, expiring, fill_share, commission, exercise_fee):
    """Dollar P&L per structure of selling at entry and closing at the exit values.

    ``side``, ``mid``, ``half`` (n, 4); ``exit_values`` (n, 4, G) per share; ``expiring`` (n,)
    True when the legs settle at intrinsic on the exit session. Entry per leg at
    mid - side f half (short legs sell below mid, long legs buy above); exit at V + f h_exit
    against the position, h_exit = V half / mid (the entry's relative half-spread). Commission
    per contract at entry and at a quoted exit; an expiring leg settles at intrinsic with no
    spread and no commission, plus ``exercise_fee`` when in the money.
    """
    legs = side != 0
    rel = np.where(legs, half / np.where(mid > 0, mid, np.nan), 0.0)
    entry = -(side * mid).sum(-1) - fill_share * np.where(legs, half, 0.0).sum(-1)
    quoted_exit = (side[..., None] * exit_values).sum(1) - fill_share * (np.abs(side)[..., None] * rel[..., None]
                                                                          * exit_values).sum(1)
    settled = (side[..., None] * exit_values).sum(1)
    n_legs = legs.sum(-1)[:, None]
    itm = (legs[..., None] & (exit_values > 0)).sum(1)
    exit_cash = np.where(expiring[:, None], settled, quoted_exit)
    costs = commission * np.where(expiring[:, None], n_legs, 2 * n_legs) + np.where(expiring[:, None], exercise_fee * itm, 0.0)
    return payoffs.CONTRACT_SIZE * (entry[:, None] + exit_cash) - costs


def _exit_values(spot, strike, is_call, t_exit, ex_vol, skew_b, skew_c, log_returns, params) -> np.ndarray:
    """Per-share value at the exit close of legs ``strike`` (rows, L) at the exit spots
    spot e^r, r = ``log_returns`` (rows, G): :func:`pipeline.kernel.payoffs.exit_leg_values` on the
    diffusive smile (per-row ``t_exit``, ``ex_vol``, relative skew ``skew_b``, ``skew_c``; rate and
    clip from ``params``), floored at intrinsic -> (rows, L, G), undefined values as 0."""
    s1 = spot[:, None, None] * np.exp(log_returns)[:, None, :]
    values = payoffs.exit_leg_values(
        s1, strike[..., None], is_call[..., None], t_exit[:, None, None], params.risk_free_rate,
        ex_vol[:, None, None], skew_b[:, None, None], skew_c[:, None, None], params.skew_max_abs_x)
    return np.nan_to_num(values)


def exit_pnl(rows: pd.DataFrame, moves, params) -> np.ndarray:
    """Dollar P&L at the exit close (the reaction session) of each structure row of the
    dataset at the underlying moves ``moves`` (fractions of ``spot``): the stored legs repriced by
    :func:`_exit_values` with the row's EXIT_INPUTS, then :func:`_pnl` at the parameters' fill share,
    commission and exercise fee (the rules of ``ev_hist``): (rows, G). ``moves`` is (G,) for
    every row or (rows, G) per row. The stage's scenario views use the same two functions."""
    s = params.structures
    strike = slot_values(rows, "{slot}_strike")
    side = np.where(np.isfinite(strike), SLOT_SIDE, 0.0)
    legs = side != 0
    mid = np.where(legs, slot_values(rows, "{slot}_mid"), 0.0)
    bid = slot_values(rows, "{slot}_bid")
    ask = slot_values(rows, "{slot}_ask")
    half = np.where(legs, 0.5 * (ask - bid), 0.0)
    t_exit = rows["t_exit"].to_numpy(float)
    log_returns = np.log1p(np.asarray(moves, float))
    log_returns = np.broadcast_to(log_returns, (len(rows), log_returns.shape[-1]))
    values = _exit_values(rows["spot"].to_numpy(float), np.where(legs, strike, 1.0), SLOT_IS_CALL[None, :], t_exit,
                          *(rows[c].to_numpy(float) for c in ("exit_ex_vol", "exit_skew_b", "exit_skew_c")),
                          log_returns, params)
    return _pnl(side, mid, half, values, t_exit <= 0, s.fill_share, s.commission, s.exercise_fee)


def _margin(side, strikes, mid, spot):
    """Reg-T style margin for naked short options (dollars per structure): per short leg the
    greater of 20% of the underlying minus the out-of-the-money amount plus the premium, and 10%
    of the underlying (call) or of the strike (put) plus the premium; for two short legs the
    larger requirement plus the other leg's premium."""
    put_k, call_k = strikes[:, 0], strikes[:, 1]
    put_p, call_p = mid[:, 0], mid[:, 1]
    put_req = np.maximum(0.2 * spot - np.maximum(spot - put_k, 0.0) + put_p, 0.1 * put_k + put_p)
    call_req = np.maximum(0.2 * spot - np.maximum(call_k - spot, 0.0) + call_p, 0.1 * spot + call_p)
    return payoffs.CONTRACT_SIZE * np.where(put_req >= call_req, put_req + call_p, call_req + put_p)


def build_structures(metrics: pd.DataFrame, surface: pd.DataFrame, moves: pd.DataFrame, params) -> pd.DataFrame:
    """Every candidate structure of every event of ``metrics`` (one row per event x structure,
    STRUCTURE_COLUMNS), priced from ``surface`` (the same date's) and scored with ``moves``.

    Per candidate (``ok`` rows):

    - legs: strike, bid, ask, fresh mid, IV per slot; ``credit_mid`` = sum of short mids - long
      mids; ``credit_fill`` = credit_mid - f * sum of the legs' half-spreads (f =
      ``structures.fill_share``), per share;
    - ``risk`` (dollars, one measure for all): defined (``iron_condor``, ``iron_butterfly``) =
      100 (widest wing - credit_fill) + round-trip commissions; undefined (``straddle``,
      ``strangle``) = :func:`_margin` (``risk_kind`` says which);
    - ``breakeven_{low,high}_expiry``: underlying prices where the at-expiry P&L (credit at fill
      net of entry commissions) is zero: short put strike - credit, short call strike + credit;
      ``breakeven_{low,high}_exit``: exit-close prices where the modelled P&L at exit (below)
      is zero, nearest the entry spot;
    - greeks at entry (Black-76 at each leg's IV, else the fitted smile's): ``delta_shares``
      (dV/dS x 100), ``gamma`` (per $1), ``vega`` (per vol point), ``theta`` (per day), all
      dollars per structure;
    - the two views of holding from the entry close to the reaction close (dt = t0 - t1, a
      weekend counts), legs repriced by :func:`pipeline.kernel.payoffs.exit_leg_values` (diffusive smile,
      floored at intrinsic), P&L by :func:`_pnl` at the fill (after costs):
      history: log return ln(1 + m_i) + e over the last ``max_events`` past moves m_i, e ~ N(0,
      ex_vol^2 dt) by Gauss-Hermite -> ``pop_hist``, ``ev_hist``; market: J from
      :func:`event_law` plus e (mean -ex_vol^2 dt / 2) on a grid -> ``pop_rn``, ``ev_rn``, and
      ``ev_rn_mid`` (mid fills, no costs: near zero when the model matches the quotes);
    - ``pop_expiry_rn`` = P(be_low < S_T < be_high) from :func:`pipeline.kernel.payoffs.expiry_exceedance`
      (the digitals of the event expiration's fitted quadratic smile; measured closer to the
      source's analytic digitals than the density's spline digitals, see that docstring);
    - ``return_on_risk`` = ev_hist / risk; ``contracts`` = floor(risk_budget / risk), or with
      ``kelly_cap`` > 0, floor(risk_budget * clip(k, 0, kelly_cap) / risk) where k = E[R]/E[R^2]
      of R = P&L / risk over the history scenarios (the small-edge Kelly fraction);
    - ``suggested``: per event, the ok candidate with the best ev_hist per unit of risk among
      those meeting the liquidity tier (event tier not REJECT, every leg's (ask - bid) / mid <=
      ``implied.max_leg_spread``) and sized to at least one contract by the risk budget (all
      liquid ones when none is), with ``why``.
    """
    if metrics.empty:
        from pipeline.contract.schemas import empty

        return empty("structures")[STRUCTURE_COLUMNS].reindex(columns=[*key(metrics)[:-1], *STRUCTURE_COLUMNS])
    s = params.structures
    # Only the events' chains matter; a surface can hold other names' quotes too.
    surface = surface[pd.MultiIndex.from_frame(surface[key(metrics)]).isin(
        pd.MultiIndex.from_frame(metrics[key(metrics)].drop_duplicates()))]
    ev = _event_inputs(metrics, surface, params)
    n = len(ev)
    quotes = _event_quotes(surface, ev)
    strikes = _strikes(ev, quotes, s.strangle_multiple, s.wing_multiple)        # (n, 4, 4)
    present = np.broadcast_to(PRESENT, strikes.shape)
    index = pd.MultiIndex.from_arrays([quotes["event"], quotes["strike"], quotes["is_call"]])
    flat = pd.MultiIndex.from_arrays([np.repeat(np.arange(n), 16), strikes.ravel(),
                                      np.tile(SLOT_IS_CALL, 4 * n)])
    at = index.get_indexer(flat).reshape(strikes.shape)
    found = (at >= 0) & present

    def leg(column):
        values = np.append(quotes[column].to_numpy(float), np.nan)    # at = -1 reads the NaN
        return np.where(found, values[at], np.nan)

    bid, ask, mid, iv = leg("bid"), leg("ask"), leg("mid"), leg("iv")
    ev_ok = (ev["straddle_strike"].notna() & ev["implied_move"].notna() & ev["forward"].notna()
             & np.isfinite(ev["t0"])).to_numpy()
    reason = _drop_reasons(np.where(present, strikes, np.nan), np.where(found, mid, np.nan), present, ev_ok)
    ok = pd.isna(reason)

    # Flatten to candidates c = event * 4 + structure.
    e_of = np.repeat(np.arange(n), 4)
    structure = np.tile(np.arange(4), n)
    side = np.where(present, SLOT_SIDE, 0.0).reshape(-1, 4)
    leg_strike = np.where(present, strikes, np.nan).reshape(-1, 4)
    mid_c, bid_c, ask_c = mid.reshape(-1, 4), bid.reshape(-1, 4), ask.reshape(-1, 4)
    half = np.where(side != 0, 0.5 * (ask_c - bid_c), 0.0)
    mid0 = np.where(side != 0, mid_c, 0.0)
    priced_strike = np.where(side != 0, leg_strike, ev["forward"].to_numpy(float)[e_of, None])   # harmless stand-in for empty slots
    cand_ok = ok.ravel()
    out = {}
    spot = ev["spot"].to_numpy(float)[e_of]
    forward = ev["forward"].to_numpy(float)[e_of]
    t0 = ev["t0"].to_numpy(float)[e_of]
    t1 = ev["t_exit"].to_numpy(float)[e_of]
    rate = params.risk_free_rate
    n_legs = (side != 0).sum(-1)
    out["n_legs"] = n_legs.astype(float)
    out["credit_mid"] = -(side * mid0).sum(-1)
    out["credit_fill"] = out["credit_mid"] - s.fill_share * half.sum(-1)
    defined = DEFINED_RISK[structure]
    out["risk"] = np.where(defined, payoffs.defined_risk(leg_strike, out["credit_fill"], n_legs, s.commission),
                           _margin(side, leg_strike, mid0, spot))
    per_share = out["credit_fill"] - n_legs * s.commission / payoffs.CONTRACT_SIZE
    out["breakeven_low_expiry"] = leg_strike[:, 0] - per_share
    out["breakeven_high_expiry"] = leg_strike[:, 1] + per_share

    # Greeks at entry.
    smile = {c: ev[c].to_numpy(float)[e_of, None] for c in ("smile_atm", "smile_a", "smile_b", "smile_c")}
    iv_c = iv.reshape(-1, 4)
    sigma = np.where(np.isfinite(iv_c), iv_c, payoffs.quadratic_smile(
        priced_strike, forward[:, None], t0[:, None], smile["smile_atm"], smile["smile_a"], smile["smile_b"], smile["smile_c"],
        params.skew_max_abs_x))
    disc0 = discount_factor(rate, t0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        to_spot = (forward / spot)[:, None]
        delta = black76_delta(forward[:, None], priced_strike, t0[:, None], sigma, disc0, SLOT_IS_CALL) * to_spot
        gamma = payoffs.black76_gamma(forward[:, None], priced_strike, t0[:, None], sigma, disc0) * to_spot ** 2
        vega = black76_vega(forward[:, None], priced_strike, t0[:, None], sigma, disc0) * payoffs.VOL_POINT
        theta = payoffs.black76_theta(forward[:, None], priced_strike, t0[:, None], sigma, disc0, SLOT_IS_CALL) / payoffs.DAYS_PER_YEAR
    for name, values in (("delta_shares", delta), ("gamma", gamma), ("vega", vega), ("theta", theta)):
        out[name] = payoffs.CONTRACT_SIZE * np.nansum(side * values, axis=-1)

    # Scenario views, per event (both views share the event's legs): exit spot S1 = spot e^r, the
    # six distinct legs repriced on the diffusive smile, then gathered into each structure's slots.
    spot_e, t0_e, t1_e, ex_vol_e = (ev[c].to_numpy(float) for c in ("spot", "t0", "t_exit", "ex_vol"))
    diffusion_e = ex_vol_e * np.sqrt(np.maximum(t0_e - t1_e, 0.0))
    event_leg_strikes = np.column_stack([strikes[:, 0, :2], strikes[:, 2, :4]])   # (n, 6)
    event_leg_strikes = np.where(np.isfinite(event_leg_strikes), event_leg_strikes, ev["forward"].to_numpy(float)[:, None])
    event_leg_strikes = np.where(np.isfinite(event_leg_strikes), event_leg_strikes, 1.0)      # no forward: the event is dropped
    slot_legs = EVENT_LEGS_OF[structure]                                    # (nc, 4) into the six legs
    expiring = t1 <= 0

    def values_at(log_returns):
        values = _exit_values(spot_e, event_leg_strikes, EVENT_LEG_IS_CALL[None, :], t1_e, ex_vol_e,
                              ev["exit_b"].to_numpy(float), ev["exit_c"].to_numpy(float), log_returns, params)
        return values[e_of[:, None], slot_legs]

    past, enough = _history_moves(moves, ev, params.move_type, params.max_events, params.min_events)
    z, wz = payoffs.hermite_nodes()
    hist_r = (np.log1p(past)[:, :, None] + diffusion_e[:, None, None] * z).reshape(n, -1)
    hist_w = (np.isfinite(past)[:, :, None] * wz).reshape(n, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        hist_w = (hist_w / hist_w.sum(1, keepdims=True))[e_of]
    hist_pnl = _pnl(side, mid0, half, values_at(np.nan_to_num(hist_r)), expiring, s.fill_share, s.commission,
                    s.exercise_fee)
    has_hist = enough[e_of]
    out["pop_hist"] = np.where(has_hist, (hist_w * (hist_pnl > 0)).sum(1), np.nan)
    out["ev_hist"] = np.where(has_hist, (hist_w * hist_pnl).sum(1), np.nan)

    law_w, law_m, law_s = event_law(ev, ev["event_std"].to_numpy(float))
    total_s = np.sqrt(law_s ** 2 + diffusion_e[:, None] ** 2)
    nodes, probs = payoffs.mixture_grid(law_w, law_m - 0.5 * diffusion_e[:, None] ** 2, total_s)
    market_values = values_at(np.nan_to_num(nodes))
    nodes, probs = nodes[e_of], probs[e_of]
    rn_pnl = _pnl(side, mid0, half, market_values, expiring, s.fill_share, s.commission, s.exercise_fee)
    out["pop_rn"] = (probs * (rn_pnl > 0)).sum(1)
    out["ev_rn"] = (probs * rn_pnl).sum(1)
    out["ev_rn_mid"] = (probs * _pnl(side, mid0, half, market_values, expiring, 0.0, 0.0, 0.0)).sum(1)
    low, high = payoffs.zero_crossings(nodes, rn_pnl)
    out["breakeven_low_exit"], out["breakeven_high_exit"] = spot * np.exp(low), spot * np.exp(high)

    smile_args = [smile[c][:, 0] for c in ("smile_atm", "smile_a", "smile_b", "smile_c")]
    above_low = payoffs.expiry_exceedance(out["breakeven_low_expiry"], forward, t0, *smile_args, params.skew_max_abs_x)
    above_high = payoffs.expiry_exceedance(out["breakeven_high_expiry"], forward, t0, *smile_args, params.skew_max_abs_x)
    out["pop_expiry_rn"] = above_low - above_high

    with np.errstate(invalid="ignore", divide="ignore"):
        out["return_on_risk"] = out["ev_hist"] / out["risk"]
        if s.kelly_cap > 0:
            r = hist_pnl / out["risk"][:, None]
            kelly = (hist_w * r).sum(1) / (hist_w * r * r).sum(1)
            budget = s.risk_budget * np.clip(np.nan_to_num(kelly), 0.0, s.kelly_cap)
        else:
            budget = np.full(len(e_of), s.risk_budget)
        out["contracts"] = np.floor(budget / out["risk"])
    # Probabilities stay in [0, 1] whatever the quotes (rounding in the sums; a non-monotone
    # digital from an arbitrageable smile); no size without a positive risk.
    for name in ("pop_hist", "pop_rn", "pop_expiry_rn"):
        out[name] = np.clip(out[name], 0.0, 1.0)
    out["contracts"] = np.where(out["risk"] > 0, out["contracts"], np.nan)
    for name in NUMBERS:
        out[name] = np.where(cand_ok, out[name], np.nan)

    legs = {}
    for j, slot in enumerate(SLOTS):
        for field, values in (("strike", leg_strike), ("bid", bid_c), ("ask", ask_c), ("mid", mid_c), ("iv", iv_c)):
            legs[f"{slot}_{field}"] = np.where(side[:, j] != 0, values[:, j], np.nan)
    frame = pd.DataFrame({
        **{c: ev[c].to_numpy()[e_of] for c in (*key(ev), "report_date", "reaction_date", "expiration", "spot",
                                               "forward", "implied_move", "liquidity_tier")},
        **{c: ev[source].to_numpy(float)[e_of] for c, source in zip(EXIT_INPUTS, ("t_exit", "ex_vol", "exit_b", "exit_c"))},
        "structure": np.array(STRUCTURES, dtype=object)[structure],
        "status": np.where(cand_ok, "ok", "dropped"),
        "reason": reason.ravel(),
        **legs,
        "risk_kind": np.where(defined, "defined", "undefined"),
        **out,
    })
    frame = _suggest(frame, side, half, mid0, params.max_leg_spread)
    frame["status"] = frame["status"].astype("str")
    for c in ("ticker", "structure", "reason", "risk_kind", "why", "liquidity_tier"):
        frame[c] = frame[c].astype("str")
    frame["contracts"] = frame["contracts"].astype("Int64")
    frame["n_legs"] = frame["n_legs"].astype("Int64")
    event = key(frame, "report_date")
    return frame[[*event[:-2], *STRUCTURE_COLUMNS]].sort_values([*event, "structure"], kind="stable").reset_index(drop=True)


def expiry_pnl(rows: pd.DataFrame, moves, commission: float) -> np.ndarray:
    """Dollar P&L at expiry of each structure row (the dataset's legs and ``credit_fill``) at the
    underlying moves ``moves`` (fractions of ``spot``), held to expiry: (rows, G). ``moves`` is
    (G,) for every row or (rows, G) per row."""
    strike = slot_values(rows, "{slot}_strike")
    side = np.where(np.isfinite(strike), SLOT_SIDE, 0.0)
    moves = np.asarray(moves, float)
    moves = np.broadcast_to(moves, (len(rows), moves.shape[-1]))
    price = rows["spot"].to_numpy(float)[:, None, None] * (1.0 + moves)[:, None, :]
    k = np.nan_to_num(strike)[..., None]
    intrinsic = np.where(SLOT_IS_CALL[None, :, None], np.maximum(price - k, 0.0), np.maximum(k - price, 0.0))
    held = (side[..., None] * intrinsic).sum(1)
    legs = (side != 0).sum(1)[:, None]
    return payoffs.CONTRACT_SIZE * (rows["credit_fill"].to_numpy(float)[:, None] + held) - commission * legs


def payoff_curves(structures: pd.DataFrame, history: pd.DataFrame, params) -> pd.DataFrame:
    """The P&L curves of each event's suggested structure (``ok``, spot > 0) by underlying move,
    the points the page draws: one row per point, ([as_of,] ticker, report_date) x ``curve`` x
    ``point`` (the ``payoff`` dataset's columns).

    Reach r of an event (fraction move each side): the largest of PAYOFF_REACH_IMPLIED x
    implied_move and PAYOFF_REACH_MARGIN x |m| for m the legs' strikes, the expiry and exit
    breakevens (each as K / spot - 1) and the event's past moves (``history``: its
    ``event_history`` rows, column ``params.move_type``), at least PAYOFF_MIN_REACH; then out to the
    outer tick of an axis over [-r, r] (:func:`pipeline.kernel.ticks.nice_ticks`, so the curve spans
    the drawn axis), at most PAYOFF_MAX_REACH. Points beyond r are left out.

    - ``exit``: :func:`exit_pnl` at PAYOFF_EXIT_POINTS even moves over [-r, r] plus the two exit
      breakevens (``breakeven`` true), sorted; a missing breakeven repeats -r, so every event has
      PAYOFF_EXIT_POINTS + 2 points (a smooth curve: no kinks to place points on);
    - ``expiry``: :func:`expiry_pnl`, exact where the piecewise-linear payoff bends or crosses zero:
      -r, r, the legs' strikes and the expiry breakevens (``breakeven`` true), each once, sorted.

    ``move`` is a fraction of the entry spot, ``pnl`` dollars per structure (the fills, commission
    and exercise fee of ``params.structures``). Rows event by event in the order of ``structures``,
    the exit curve first, each curve from the left."""
    by = key(structures, "report_date")
    chosen = structures[structures["suggested"].to_numpy(bool) & (structures["status"] == "ok").to_numpy()
                        & (structures["spot"].to_numpy(float) > 0)].reset_index(drop=True)
    n = len(chosen)
    spot = chosen["spot"].to_numpy(float)[:, None]
    strikes = slot_values(chosen, "{slot}_strike") / spot - 1.0
    breakevens = np.column_stack([chosen[c].to_numpy(float) for c in
                                  ("breakeven_low_expiry", "breakeven_high_expiry")]) / spot - 1.0
    exit_breakevens = np.column_stack([chosen[c].to_numpy(float) for c in
                                       ("breakeven_low_exit", "breakeven_high_exit")]) / spot - 1.0
    past = history[by].assign(size=history[params.move_type].abs())
    past = past[np.isfinite(past["size"].to_numpy(float))].groupby(by)["size"].max()
    past_reach = past.reindex(pd.MultiIndex.from_frame(chosen[by])).fillna(0.0).to_numpy(float)
    with np.errstate(invalid="ignore"):
        reach = np.nanmax(np.column_stack([
            PAYOFF_REACH_IMPLIED * chosen["implied_move"].to_numpy(float), PAYOFF_REACH_MARGIN * np.abs(strikes),
            PAYOFF_REACH_MARGIN * np.abs(breakevens), PAYOFF_REACH_MARGIN * np.abs(exit_breakevens),
            PAYOFF_REACH_MARGIN * past_reach, np.full(n, PAYOFF_MIN_REACH)]), axis=1)
    # One axis per event (a scalar rule, as the page's axes): a few hundred events a date.
    reach = np.minimum([nice_ticks(-r, r)[-1] for r in reach], PAYOFF_MAX_REACH)

    def within(moves):
        return np.where(np.abs(moves) <= reach[:, None], moves, np.nan)

    breakevens, exit_breakevens = within(breakevens), within(exit_breakevens)
    # At exit: the even grid and the breakevens (a missing one at -r), sorted, the breakevens marked.
    exit_grid = np.column_stack([reach[:, None] * np.linspace(-1.0, 1.0, PAYOFF_EXIT_POINTS),
                                 np.where(np.isfinite(exit_breakevens), exit_breakevens, -reach[:, None])])
    order = np.argsort(exit_grid, axis=1, kind="stable")
    exit_moves = np.take_along_axis(exit_grid, order, axis=1)
    exit_marks = np.take_along_axis(np.column_stack([np.zeros((n, PAYOFF_EXIT_POINTS), bool),
                                                     np.isfinite(exit_breakevens)]), order, axis=1)
    # At expiry: the ends, strikes and breakevens within reach, each once (NaN last), sorted.
    corners = np.sort(within(np.column_stack([-reach, reach, strikes, breakevens])), axis=1)
    repeated = np.zeros(corners.shape, bool)
    repeated[:, 1:] = corners[:, 1:] == corners[:, :-1]
    expiry_moves = np.sort(np.where(repeated, np.nan, corners), axis=1)
    expiry_marks = (expiry_moves[:, :, None] == breakevens[:, None, :]).any(-1)
    # One row per finite point, event by event (the structures' order), the exit curve first.
    moves = np.column_stack([exit_moves, expiry_moves])
    pnl = np.column_stack([exit_pnl(chosen, exit_moves, params),
                           expiry_pnl(chosen, expiry_moves, params.structures.commission)])
    marks = np.column_stack([exit_marks, expiry_marks])
    widths = [exit_moves.shape[1], expiry_moves.shape[1]]
    curve = np.repeat(np.array(["exit", "expiry"], dtype=object), widths)
    point = np.concatenate([np.arange(width) for width in widths])
    event, column = np.nonzero(np.isfinite(moves))
    return chosen[[*by, "structure"]].take(event).reset_index(drop=True).assign(
        curve=pd.array(curve[column], dtype="str"), point=point[column], move=moves[event, column],
        pnl=pnl[event, column], breakeven=marks[event, column])


def _suggest(frame: pd.DataFrame, side, half, mid, max_leg_spread: float) -> pd.DataFrame:
    """Mark per event the ok candidate with the largest return_on_risk (ev_hist / risk) among the
    liquid ones that the risk budget can size (contracts >= 1; see :func:`build_structures`), or
    among all liquid ones when none fits (``why`` says so), and say why."""
    with np.errstate(invalid="ignore", divide="ignore"):
        wide = ((side != 0) & ~(2.0 * half <= max_leg_spread * mid)).any(-1)
    liquid = (frame["status"] == "ok").to_numpy() & ~wide & (frame["liquidity_tier"] != "REJECT").to_numpy() \
        & frame["return_on_risk"].notna().to_numpy()
    event = pd.factorize(pd.MultiIndex.from_frame(frame[key(frame, "report_date")]))[0]
    # A suggestion of zero contracts is no trade: a structure the budget can size comes first.
    sized = liquid & (frame["contracts"].to_numpy(float) >= 1)
    any_sized = pd.Series(sized).groupby(event).transform("any").to_numpy()
    eligible = np.where(any_sized, sized, liquid)
    score = np.where(eligible, frame["return_on_risk"].to_numpy(float), -np.inf)
    best = pd.Series(score).groupby(event).transform("max").to_numpy()
    first = pd.Series(np.where(eligible & (score == best), np.arange(len(frame)), len(frame))).groupby(event).transform("min")
    chosen = first.to_numpy() == np.arange(len(frame))
    count = pd.Series(eligible).groupby(event).transform("sum").to_numpy()
    straddle_ror = pd.Series(np.where(frame["structure"] == "straddle", frame["return_on_risk"], np.nan)).groupby(
        event).transform("max").to_numpy()
    among = np.where(any_sized, " liquid candidates within the risk budget: ",
                     " liquid candidates (none fits the risk budget: 0 contracts): ")
    text = ("best ev_hist per $ of risk among " + pd.Series(count).astype(str) + among + pd.Series(score).map("{:.4f}".format)
            + " (straddle " + pd.Series(straddle_ror).map("{:.4f}".format)
            + "); ev_hist " + frame["ev_hist"].map("{:.2f}".format) + " on risk " + frame["risk"].map("{:.2f}".format))
    return frame.assign(suggested=chosen, why=np.where(chosen, text.to_numpy(), None))
