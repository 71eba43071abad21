"""Short-straddle trades from stored quotes, their fills and their statistics (pure).

A trade sells one straddle (one call and one put, 100 shares each) at ``straddle_strike`` on the
event expiration at the entry session's snapshot (the last session before the reaction session)
and buys it back at the reaction session's snapshot, or lets it settle at intrinsic value from
the reaction close when the expiration is the reaction session itself. Money per share unless
said otherwise; returns are fractions of the premium received.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel.black76 import fill_price, mid, quoted_mid, two_sided_mid
from pipeline.stages.surface import stale_quotes
from pipeline.stages.panel import key

CONTRACT_SIZE = 100
LEGS = {"C": "call", "P": "put"}
QUOTE_FIELDS = ("bid", "ask", "mid")


def fresh_quotes(chains: pd.DataFrame) -> pd.DataFrame:
    """The quotes of ``chains`` a trade may fill at: every quote but the stale ones
    (:func:`~pipeline.stages.surface.stale_quotes`), which ``straddle_mid`` and the structures
    ignore too (:func:`~pipeline.kernel.black76.fresh_mid`). A stale leg is therefore never traded."""
    return chains[~stale_quotes(chains["quote_time"], chains["snapshot_time"])]


def leg_quotes(chains: pd.DataFrame, trades: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """``trades`` with ``<prefix>_<call|put>_<bid|ask|mid>`` of the contract each names
    ([as_of,] ticker, expiration, strike: ``chains`` keyed by the trades' as-of dates), NaN where
    the contract has no fresh quote (:func:`fresh_quotes`); mid = :func:`~pipeline.kernel.black76.mid`."""
    keys = key(chains, "expiration", "strike")
    quotes = fresh_quotes(chains).drop_duplicates([*keys, "option_type"])
    out = trades
    for code, leg in LEGS.items():
        side = quotes[quotes["option_type"] == code][[*keys, "bid", "ask"]]
        side = side.assign(mid=mid(side["bid"], side["ask"]))
        side = side.rename(columns={f: f"{prefix}_{leg}_{f}" for f in QUOTE_FIELDS})
        out = out.merge(side, on=keys, how="left")
    return out


def simulate(trades: pd.DataFrame, fill_share: float, commission: float) -> pd.DataFrame:
    """Fills and P&L of each trade.

    Per leg, sold at mid - f * half_spread and bought back at mid + f * half_spread, with
    half_spread = (ask - bid) / 2 and f = ``fill_share`` (0 = mid, 1 = the touch:
    :func:`~pipeline.kernel.black76.fill_price`). A trade whose
    exit is ``intrinsic`` is bought back at |reaction close - strike| with no spread. Both legs
    need a two-sided entry quote (:func:`~pipeline.kernel.black76.two_sided_mid`; with fresh quotes only,
    as :func:`leg_quotes` gives them, that is the fresh mid ``straddle_mid`` is priced from) and,
    for a quoted exit, an ask at or above the bid (:func:`~pipeline.kernel.black76.quoted_mid`: a zero bid
    can still be bought back).
    ``entry_credit``/``exit_debit`` per share; ``pnl`` per straddle (x100 shares) net of
    ``commission`` per contract traded (two at entry, two more when bought back);
    ``return_on_premium = pnl / (100 * entry_credit)``. Rows without those quotes get
    ``trade_status`` and NaN results.
    """
    f = float(fill_share)

    def fill(prefix, direction):
        legs = [fill_price(trades[f"{prefix}_{leg}_bid"], trades[f"{prefix}_{leg}_ask"], f, direction)
                for leg in LEGS.values()]
        return legs[0] + legs[1]

    def quoted(prefix, rule):
        return np.logical_and.reduce([np.isfinite(rule(trades[f"{prefix}_{leg}_bid"].to_numpy(float),
                                                       trades[f"{prefix}_{leg}_ask"].to_numpy(float)))
                                      for leg in LEGS.values()])

    entry_ok = quoted("entry", two_sided_mid)
    intrinsic = trades["exit_kind"] == "intrinsic"
    exit_ok = intrinsic | quoted("exit", quoted_mid)
    entry_credit = fill("entry", -1.0).where(entry_ok)
    settle = (trades["exit_close"] - trades["strike"]).abs()
    exit_debit = settle.where(intrinsic, fill("exit", +1.0)).where(exit_ok)
    contracts = np.where(intrinsic, 2, 4)
    pnl = CONTRACT_SIZE * (entry_credit - exit_debit) - commission * contracts
    status = np.select([~entry_ok, ~exit_ok], ["no_entry_quote", "no_exit_quote"], "ok")
    return trades.assign(fill_share=f, entry_credit=entry_credit, exit_debit=exit_debit, pnl=pnl,
                         return_on_premium=pnl / (CONTRACT_SIZE * entry_credit),
                         trade_status=pd.array(status, dtype="str"))


def select(candidates: pd.DataFrame, min_score: float | None = None, vrp_tiers=None, liquidity_tiers=None,
           top_n: int | None = None) -> pd.DataFrame:
    """Candidates passing the filters; ``top_n`` keeps the best scores of each entry session
    (ties by ticker)."""
    keep = candidates["score"].notna()
    if min_score is not None:
        keep &= candidates["score"] >= min_score
    if vrp_tiers:
        keep &= candidates["vrp_tier"].isin(list(vrp_tiers))
    if liquidity_tiers:
        keep &= candidates["liquidity_tier"].isin(list(liquidity_tiers))
    chosen = candidates[keep].sort_values(["entry_date", "score", "ticker"], ascending=[True, False, True], kind="stable")
    if top_n is not None:
        chosen = chosen[chosen.groupby("entry_date").cumcount() < top_n]
    return chosen.sort_values(["exit_date", "ticker"], kind="stable").reset_index(drop=True)


def group_stats(trades: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of ``by``: trades, win_rate, mean/median return on premium, its t-statistic
    (mean / (std / sqrt(n))), mean P&L per straddle."""
    done = trades[trades["trade_status"] == "ok"]
    g = done.groupby(by, observed=True, sort=True)["return_on_premium"]
    stats = pd.DataFrame({
        "trades": g.size(),
        "win_rate": done.assign(win=done["pnl"] > 0).groupby(by, observed=True, sort=True)["win"].mean(),
        "mean_return": g.mean(),
        "median_return": g.median(),
        "t_stat": g.mean() / (g.std() / np.sqrt(g.size())),
        "mean_pnl": done.groupby(by, observed=True, sort=True)["pnl"].mean(),
    })
    return stats.reset_index().rename(columns={by: "value"}).assign(group=by)


def score_quintiles(trades: pd.DataFrame) -> pd.Series:
    """Quintile 1 (lowest) .. 5 of the entry score over the trades (ties by order)."""
    ranks = trades["score"].rank(method="first")
    return pd.Series(np.ceil(5 * ranks / ranks.count()).astype("Int64"), index=trades.index)


def equity_curve(trades: pd.DataFrame, sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """Daily P&L with equal premium per trade, in units of one session's premium.

    Each exit session stakes one unit of premium split equally over its trades, so its return is
    the mean return on premium of the trades closed that session (0 without trades). A short
    straddle can lose more than its premium, so returns are added, not compounded:
    ``cumulative_return`` = running sum, ``drawdown`` = cumulative - its running peak (<= 0).
    Columns: date, trades, daily_return, cumulative_return, drawdown.
    """
    done = trades[trades["trade_status"] == "ok"]
    by_day = done.groupby("exit_date")["return_on_premium"].agg(["size", "mean"]).reindex(sessions)
    daily = by_day["mean"].fillna(0.0)
    cumulative = daily.cumsum()
    return pd.DataFrame({"date": sessions, "trades": by_day["size"].fillna(0).astype(int).to_numpy(),
                         "daily_return": daily.to_numpy(), "cumulative_return": cumulative.to_numpy(),
                         "drawdown": (cumulative - cumulative.cummax().clip(lower=0.0)).to_numpy()})


def curve_stats(curve: pd.DataFrame) -> dict:
    """total_return = final cumulative return; max_drawdown = its deepest fall from a running
    peak (both in session-premium units); Sharpe = mean / std of daily returns * sqrt(252), over
    every session of the range."""
    daily = curve["daily_return"]
    std = daily.std()
    return {"total_return": float(curve["cumulative_return"].iloc[-1]) if len(curve) else 0.0,
            "max_drawdown": float(curve["drawdown"].min()) if len(curve) else 0.0,
            "sharpe": float(daily.mean() / std * np.sqrt(252.0)) if std > 0 else float("nan")}
