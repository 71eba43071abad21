"""What happened to each event after its entry session: one row per reacted event (DESIGN 11).

Pure: the entry session's stored metrics, the exit session's stored chain (its exit marks) and
the stored bars in, outcome rows out. The exit session D is the event's reaction session and the
entry session E the session before it, where a short straddle is sold at the close.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.kernel.black76 import quoted_mid
from pipeline.stages import term
from pipeline.stages.backtest import fresh_quotes
from pipeline.stages.surface import build_surface

OUTCOME_COLUMNS = [
    "ticker", "report_date", "entry_date", "exit_date", "expiration", "straddle_strike", "implied_move",
    "implied_event_move", "ts_implied_move", "realized_close_move", "realized_max_move",
    "realized_over_implied", "straddle_entry_mid", "straddle_exit_value", "straddle_return_mid",
    "beat_breakeven", "short_straddle_lost", "expected_iv_crush", "realized_iv_crush",
]


def event_outcomes(entry_metrics: pd.DataFrame, exit_chains: pd.DataFrame, bars: pd.DataFrame,
                   entry_date, exit_date, rate: float) -> pd.DataFrame:
    """Outcome rows of the events of ``entry_metrics`` (the metrics stored on ``entry_date``)
    whose reaction session is ``exit_date``.

    - ``realized_close_move`` = close(D) / close(E) - 1 (signed), close(E) the entry metrics'
      ``spot`` and close(D) the exit chain's ``underlying_price``; ``realized_max_move`` the larger
      excursion of D's high and low (stored bars, when there) from close(E) (signed);
    - ``realized_over_implied`` = |realized_close_move| / implied_event_move (the event-only move:
      the straddle's own move includes diffusion to expiry);
    - the straddle at ``straddle_strike`` of the event expiration: entry mid from the metrics, exit
      value = D's call mid + put mid (each :func:`~pipeline.kernel.black76.quoted_mid` of a quote that
      is not stale, as the backtest exits), or the intrinsic value |S_D - K| when the expiration is on
      or before D (it settles on the reaction close); ``straddle_return_mid`` = (entry - exit) /
      entry, the short straddle's return on premium at mid; ``short_straddle_lost`` = exit > entry;
    - ``beat_breakeven``: |close(D) - K| > entry mid (the move went beyond a breakeven);
    - ``realized_iv_crush`` = entry ``event_atm_iv`` - the ATM IV of ``crush_expiration`` in D's chain.
    Events without both closes are left out; an exit quote that is missing leaves the straddle
    columns null.
    """
    entry_date, exit_date = pd.Timestamp(entry_date), pd.Timestamp(exit_date)
    m = entry_metrics[entry_metrics["reaction_date"] == exit_date]
    # Closes from the snapshots themselves: the entry metrics' spot and the exit chain's
    # underlying price (both pulled at the close); an event that left the window has no bar of
    # its reaction session unless it is still in some window, so D's high and low are optional.
    ref = m["spot"].to_numpy(float)
    close = m["ticker"].map(exit_chains.groupby("ticker")["underlying_price"].first()).to_numpy(float)
    day = bars[bars["date"] == exit_date].groupby("ticker")[["high", "low"]].first()
    high = m["ticker"].map(day["high"]).to_numpy(float)
    low = m["ticker"].map(day["low"]).to_numpy(float)
    move = close / ref - 1
    up, down = high / ref - 1, low / ref - 1
    strike = m["straddle_strike"].to_numpy(float)
    expiration = m["expiration"].to_numpy("datetime64[ns]")
    # The exit marks: call mid + put mid at the straddle strike on D, by the backtest's exit rule:
    # a quoted mid (a zero bid kept: the leg the move left far out of the money is still offered
    # and can be bought back), never a stale quote.
    quotes = fresh_quotes(exit_chains)
    quotes = quotes.assign(mid=quoted_mid(quotes["bid"].to_numpy(float), quotes["ask"].to_numpy(float)))
    quotes = quotes[np.isfinite(quotes["mid"]).to_numpy()]
    mids = quotes.pivot_table(index=["ticker", "expiration", "strike"], columns="option_type", values="mid")
    keys = pd.MultiIndex.from_arrays([m["ticker"], m["expiration"], m["straddle_strike"]])
    found = mids.reindex(keys)
    quoted = found.get("C", pd.Series(np.nan, index=keys)).to_numpy(float) + \
        found.get("P", pd.Series(np.nan, index=keys)).to_numpy(float)
    settled = expiration <= exit_date.to_datetime64()
    exit_value = np.where(settled, np.abs(close - strike), quoted)
    entry_mid = m["straddle_mid"].to_numpy(float)
    # The realized crush: the same expiration's ATM IV in D's chain.
    crush_keys = m[["ticker", "crush_expiration"]].rename(columns={"crush_expiration": "expiration"})
    chain = exit_chains.merge(crush_keys.dropna().drop_duplicates(), on=["ticker", "expiration"])
    atm = term.atm_iv_by_expiration(build_surface(chain, rate)) if len(chain) else \
        pd.DataFrame({"ticker": [], "expiration": [], "atm_iv": []})
    after = crush_keys.merge(atm[["ticker", "expiration", "atm_iv"]], on=["ticker", "expiration"], how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame({
            "ticker": m["ticker"].to_numpy(), "report_date": m["report_date"].to_numpy(),
            "entry_date": entry_date, "exit_date": exit_date, "expiration": expiration,
            "straddle_strike": strike, "implied_move": m["implied_move"].to_numpy(float),
            "implied_event_move": m["implied_event_move"].to_numpy(float),
            "ts_implied_move": m["ts_implied_move"].to_numpy(float),
            "realized_close_move": move,
            "realized_max_move": np.where(np.abs(up) >= np.abs(down), up, np.where(np.isnan(up), np.nan, down)),
            "realized_over_implied": np.abs(move) / m["implied_event_move"].to_numpy(float),
            "straddle_entry_mid": entry_mid, "straddle_exit_value": exit_value,
            "straddle_return_mid": (entry_mid - exit_value) / entry_mid,
            "beat_breakeven": pd.array(np.where(np.isnan(entry_mid), None, np.abs(close - strike) > entry_mid), dtype="boolean"),
            "short_straddle_lost": pd.array(np.where(np.isnan(exit_value) | np.isnan(entry_mid), None,
                                                     exit_value > entry_mid), dtype="boolean"),
            "expected_iv_crush": m["expected_iv_crush"].to_numpy(float),
            "realized_iv_crush": m["event_atm_iv"].to_numpy(float) - after["atm_iv"].to_numpy(float),
        })
    out = out[np.isfinite(ref) & np.isfinite(close)]
    return _typed(out.sort_values(["ticker", "report_date"], kind="stable").reset_index(drop=True))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reindex(columns=OUTCOME_COLUMNS)
    for c in ("report_date", "entry_date", "exit_date", "expiration"):
        out[c] = pd.to_datetime(out[c]).astype("datetime64[ns]")
    for c in ("beat_breakeven", "short_straddle_lost"):
        out[c] = out[c].astype("boolean")
    out["ticker"] = out["ticker"].astype("str")
    return out


def past_summary(outcomes: pd.DataFrame, as_of) -> pd.DataFrame:
    """Per ticker over its outcomes that exited on or before ``as_of``:
    ``past_realized_over_implied`` (mean) and ``past_beat_straddle`` = "k/n", k of the n stored
    outcomes whose short straddle lost money at mid."""
    known = outcomes[outcomes["exit_date"] <= pd.Timestamp(as_of)]
    lost = known.dropna(subset=["short_straddle_lost"])
    by = lost.groupby("ticker")["short_straddle_lost"]
    beat = (by.sum().astype(int).astype(str) + "/" + by.size().astype(str)).rename("past_beat_straddle")
    ratio = known.groupby("ticker")["realized_over_implied"].mean().rename("past_realized_over_implied")
    return pd.concat([ratio, beat], axis=1).reset_index().rename(columns={"index": "ticker"})
