"""Trades of any structure, leg by leg, from stored quotes (pure; DESIGN sections 8 and 12).

A trade opens one structure (a contract per leg, slots of :mod:`pipeline.stages.structures`) at
the entry session's quotes and closes every leg at the reaction session's quotes of the same
contract, each leg with its own fill and its own commission: a short leg sells at
mid - f * half_spread and is bought back at mid + f * half_spread, a long leg the other way round
(f = 0 mid, 1 the touch: :func:`~pipeline.kernel.black76.fill_price`). No leg is valued below its intrinsic value from the reaction close
(American exercise). When the expiration is the reaction session every leg settles at its
intrinsic value, with no spread and no commission, plus ``exercise_fee`` per in-the-money leg. A
leg without a fresh quote at exit (no two-sided or ask-only quote of the contract that is not
stale: a stale quote is never traded) marks the trade ``no_exit_quote``; such trades are kept and left out of every return. Money per share unless said
otherwise; P&L in dollars per structure.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel.black76 import fill_price, quoted_mid, two_sided_mid
from pipeline.kernel.payoffs import CONTRACT_SIZE, defined_risk
from pipeline.stages.backtest import fresh_quotes
from pipeline.stages.panel import key
from pipeline.stages.structures import SLOT_IS_CALL, SLOT_SIDE, SLOTS, slot_values

EXIT_FIELDS = ("bid", "ask")


def exit_quotes(chains: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    """``trades`` with ``exit_<slot>_bid``/``_ask`` of each leg's contract ([as_of,] ticker,
    expiration, ``<slot>_strike``, the slot's option type) in ``chains`` (keyed by the trades'
    as-of dates) among its fresh quotes (:func:`~pipeline.stages.backtest.fresh_quotes`); NaN
    where it has none."""
    keys = key(chains, "expiration", "strike")
    quotes = fresh_quotes(chains).drop_duplicates([*keys, "option_type"])
    out = trades
    for slot, is_call in zip(SLOTS, SLOT_IS_CALL):
        side = quotes[quotes["option_type"] == ("C" if is_call else "P")][[*keys, *EXIT_FIELDS]]
        side = side.rename(columns={"strike": f"{slot}_strike", **{f: f"exit_{slot}_{f}" for f in EXIT_FIELDS}})
        out = out.merge(side, on=[*keys[:-1], f"{slot}_strike"], how="left")
    return out


def simulate(trades: pd.DataFrame, fill_share: float, commission: float, exercise_fee: float = 0.0) -> pd.DataFrame:
    """Fills and P&L of each structure trade (see the module docstring).

    Needs the slots' ``<slot>_strike``, ``<slot>_bid``, ``<slot>_ask`` (entry), ``exit_<slot>_bid``,
    ``exit_<slot>_ask``, ``exit_kind`` (``quote`` / ``intrinsic``), ``exit_close``, ``risk_kind``,
    ``margin`` (undefined risk, dollars) and ``status`` (the candidate's, ``ok`` to trade: every
    leg has a fresh entry mid, :func:`~pipeline.kernel.black76.fresh_mid`). Adds
    ``entry_credit``, ``exit_debit`` (per share), ``pnl``, ``risk`` (defined: 100 (widest wing -
    entry_credit) + round-trip commissions; undefined: ``margin``), ``return_on_premium`` =
    pnl / (100 entry_credit), ``return_on_risk`` = pnl / risk and ``trade_status``.
    """
    f = float(fill_share)
    strike = slot_values(trades, "{slot}_strike")
    legs = np.isfinite(strike)
    side = np.where(legs, SLOT_SIDE, 0.0)
    bid, ask = slot_values(trades, "{slot}_bid"), slot_values(trades, "{slot}_ask")
    xbid, xask = slot_values(trades, "exit_{slot}_bid"), slot_values(trades, "exit_{slot}_ask")
    entry_ok = (trades["status"] == "ok").to_numpy() & np.all(~legs | np.isfinite(two_sided_mid(bid, ask)), axis=1)
    intrinsic_exit = (trades["exit_kind"] == "intrinsic").to_numpy()
    exit_ok = intrinsic_exit | np.all(~legs | np.isfinite(quoted_mid(xbid, xask)), axis=1)
    close = trades["exit_close"].to_numpy(float)[:, None]
    intrinsic = np.where(SLOT_IS_CALL, np.maximum(close - strike, 0.0), np.maximum(strike - close, 0.0))
    # A short leg (side -1) sells at or below the mid and buys back at or above it; a long leg the other way.
    entry_price = fill_price(bid, ask, f, side)
    exit_price = np.maximum(fill_price(xbid, xask, f, -side), intrinsic)
    exit_price = np.where(intrinsic_exit[:, None], intrinsic, exit_price)
    entry_credit = -np.where(legs, side * entry_price, 0.0).sum(1)
    exit_debit = -np.where(legs, side * exit_price, 0.0).sum(1)
    n_legs = legs.sum(1)
    fees = np.where(intrinsic_exit, exercise_fee * (legs & (intrinsic > 0)).sum(1), 0.0)
    costs = commission * np.where(intrinsic_exit, n_legs, 2 * n_legs) + fees
    pnl = CONTRACT_SIZE * (entry_credit - exit_debit) - costs
    defined = (trades["risk_kind"] == "defined").to_numpy()
    risk = np.where(defined, defined_risk(strike, entry_credit, n_legs, commission), trades["margin"].to_numpy(float))
    done = entry_ok & exit_ok
    with np.errstate(divide="ignore", invalid="ignore"):
        on_premium = np.where(entry_credit > 0, pnl / (CONTRACT_SIZE * entry_credit), np.nan)
    status = np.select([~entry_ok, ~exit_ok], ["no_entry_quote", "no_exit_quote"], "ok")
    return trades.assign(
        fill_share=f,
        entry_credit=np.where(entry_ok, entry_credit, np.nan),
        exit_debit=np.where(done, exit_debit, np.nan),
        pnl=np.where(done, pnl, np.nan),
        risk=np.where(entry_ok, risk, np.nan),
        return_on_premium=np.where(done, on_premium, np.nan),     # null without a positive credit
        return_on_risk=np.where(done, pnl / risk, np.nan),
        trade_status=pd.array(status, dtype="str"),
    )


def structure_stats(trades: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of ``by`` over the ``ok`` trades: mean return on risk, worst return on premium
    and worst P&L (the columns the straddle summary lacks)."""
    done = trades[trades["trade_status"] == "ok"]
    g = done.groupby(by, observed=True, sort=True)
    stats = pd.DataFrame({"mean_return_on_risk": g["return_on_risk"].mean(),
                          "worst_return": g["return_on_premium"].min(), "worst_pnl": g["pnl"].min()})
    return stats.reset_index().rename(columns={by: "value"}).assign(group=by)
