"""The plain parameters of the compute stages: what they read of the configuration, and nothing
else. The caller maps its configuration here (:func:`stage_params`), so stages never see the config,
its sources or its file."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class StageParams:
    """Units and meanings as in :class:`pipeline.contract.config.Config`."""

    lookahead_days: int              # calendar days after the as-of date an event may report
    risk_free_rate: float            # continuously compounded annual fraction
    move_type: str                   # the moves column the history statistics use
    max_events: int                  # past reports in the history window
    min_events: int                  # fewer: no history statistics
    ewm_halflife: float              # in reports
    max_leg_spread: float            # (ask - bid) / mid above which a leg is not usable
    disagreement_ratio: float        # straddle vs term-structure move ratio that flags
    skew_min_points: int
    skew_max_abs_x: float            # in ATM standard deviations
    vrp_tiers: dict                  # tier name -> VRP threshold, best first
    liquidity_tiers: dict            # tier name -> thresholds, best first
    score_weights: dict              # score component -> weight
    exceed_levels: tuple             # density P(|move| > level) levels, fractions
    structures: object               # pipeline.contract.config.StructureSettings: sizing and fills of the structures


def stage_params(config) -> StageParams:
    """The parameters of ``config`` (any object with an attribute of each field's name, e.g.
    :class:`pipeline.contract.config.Config`)."""
    return StageParams(**{f.name: getattr(config, f.name) for f in fields(StageParams)})
