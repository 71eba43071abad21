"""``pipeline backtest --structure``: the backtest of section 8 for any structure of section 12.

The same entry pass as the straddle backtest (:func:`pipeline.backtest.entry_pass`: each event
recomputed as of its entry session from that session's snapshots), then every candidate
structure of those events from the entry data alone (:func:`pipeline.stages.structures.build_structures`),
each leg's exit quote from the reaction session's chain, and the leg-by-leg fills of
:mod:`pipeline.stages.structure_trades`. ``suggested`` trades the structure the entry data
suggested for each event (events without a liquid candidate are not traded). Outputs have the
straddle backtest's layout, with mean return on risk and the worst trade beside the returns on
premium, and a ``structure`` group comparing every structure on the same events.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import backtest as bt
from pipeline.contract import sessions
from pipeline.stages import backtest as trades_stage
from pipeline.stages import structure_trades
from pipeline.stages.panel import AS_OF
from pipeline.stages.structures import STRUCTURES

CHOICES = (*STRUCTURES, "suggested")
EVENT = ["ticker", "report_date", "entry_date"]
SUMMARY_COLUMNS = ["group", "value", "trades", "win_rate", "mean_return", "median_return", "t_stat", "mean_pnl",
                   "mean_return_on_risk", "worst_return", "worst_pnl", "max_drawdown", "sharpe"]


def candidates(settings, exit_dates: list[pd.Timestamp]) -> pd.DataFrame:
    """Every candidate structure of the events reacting on the chunk's exit sessions, priced
    from the entry session, with each leg's exit quote, the reaction close and the entry metrics
    used for selection and grouping (one task, like :func:`pipeline.backtest.candidates`)."""
    from pipeline.stages.params import stage_params
    from pipeline.stages.structures import build_structures

    recomputed = bt.entry_pass(settings, exit_dates)
    if recomputed is None:
        return pd.DataFrame()
    events, inputs, quotes, result = recomputed
    reacting = bt.reacting_trades(result.metrics, events)
    if reacting.empty:
        return pd.DataFrame()
    structures = build_structures(reacting[result.metrics.columns], result.surface, result.moves,
                                  stage_params(settings.config))
    entry = reacting[[AS_OF, "ticker", "report_date", "entry_date", "exit_date", "score", "vrp_tier", "timing"]]
    rows = structures.merge(entry, on=[AS_OF, "ticker", "report_date"])
    rows = rows.assign(exit_kind=pd.array(np.where(rows["expiration"] == rows["exit_date"], "intrinsic", "quote"),
                                          dtype="str"),
                       margin=rows["risk"].where(rows["risk_kind"] == "undefined"))
    rows = structure_trades.exit_quotes(bt.event_chains(quotes, events, "exit_date"), rows)
    rows = bt.with_exit_close(rows.drop(columns=AS_OF), inputs["prices"])
    return rows.sort_values(["exit_date", "ticker", "structure"], kind="stable").reset_index(drop=True)


def choose(pool: pd.DataFrame, structure: str) -> pd.DataFrame:
    """The rows of one structure, or the suggested one per event."""
    keep = pool["suggested"] if structure == "suggested" else pool["structure"] == structure
    return pool[keep.to_numpy(bool)].reset_index(drop=True)


def _summary(trades: pd.DataFrame, by: str, exits=None) -> pd.DataFrame:
    """group_stats with the structure columns; with ``exits``, each value's equal-premium curve's
    max drawdown and Sharpe too (the fill and structure groups)."""
    plain = trades_stage.group_stats(trades, by)
    extra = structure_trades.structure_stats(trades, by)
    out = plain.merge(extra, on=["group", "value"], how="left")
    if exits is not None:
        curves = {value: trades_stage.curve_stats(trades_stage.equity_curve(part, exits))
                  for value, part in trades.groupby(by, observed=True, sort=True)}
        out["max_drawdown"] = out["value"].map(lambda v: curves[v]["max_drawdown"])
        out["sharpe"] = out["value"].map(lambda v: curves[v]["sharpe"])
    return out


def run(settings, spec, map_tasks=sessions.map_locally, chunk_sessions: int = bt.LOCAL_CHUNK_SESSIONS) -> bt.Result:
    exits = list(sessions.sessions_between(spec.start, spec.end))
    frames = [f for f in map_tasks(candidates, sessions.chunks(exits, chunk_sessions), settings) if len(f)]
    if not frames:
        raise LookupError(f"no stored snapshots with events to trade between {spec.start.date()} and "
                          f"{spec.end.date()}; run `pipeline replay --start {spec.start.date()} --end {spec.end.date()}` first")
    pool = pd.concat(frames, ignore_index=True)
    # Selection is per event (one row per event), as for the straddle.
    events = trades_stage.select(pool.drop_duplicates(EVENT), spec.min_score, spec.vrp_tiers, spec.liquidity_tiers,
                                 spec.top_n)
    pool = pool.merge(events[EVENT], on=EVENT)
    fee = settings.config.exercise_fee

    def simulate(rows, share):
        return structure_trades.simulate(rows, share, spec.commission, fee)

    chosen = choose(pool, spec.structure)
    trades = simulate(chosen, spec.fill_share)
    trades = trades.assign(score_quintile=trades_stage.score_quintiles(trades))
    sessions_index = pd.DatetimeIndex(exits)
    fills = {"mid": 0.0, f"f={spec.fill_share:g}": spec.fill_share, "touch": 1.0}
    every = pd.concat([simulate(choose(pool, name), spec.fill_share).assign(structure_group=name) for name in CHOICES],
                      ignore_index=True)
    summary = pd.concat([_summary(trades.assign(all="all"), "all")]
                        + [_summary(trades, g) for g in bt.GROUPS]
                        + [_summary(simulate(chosen, share).assign(fill=name), "fill", sessions_index)
                           for name, share in fills.items()]
                        + [_summary(every.rename(columns={"structure": "leg_structure", "structure_group": "structure"}),
                                    "structure", sessions_index)],
                        ignore_index=True)
    summary["value"] = summary["value"].astype("str")
    summary = summary[SUMMARY_COLUMNS]
    curve = trades_stage.equity_curve(trades, sessions_index)
    return bt.Result(trades, summary, curve, trades_stage.curve_stats(curve))
