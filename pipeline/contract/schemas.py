"""Pandera models for every dataset: the column contract notebooks and stages rely on.

Conventions: moves, IVs and spreads are fractions; money in the quote currency; date columns are
naive ``datetime64`` at midnight in pandas and ``date32`` in Parquet; timestamps are UTC.
``validate(name, df)`` is the one entry point: it checks every row and raises
:class:`DatasetValidationError` naming the dataset, the columns and the offending rows.
"""
from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa


def _skip_pandera_dask_typing() -> None:
    """pandera imports dask.dataframe (about a second) to recognise dask index types whenever
    dask is installed; these schemas are pandas-only, so load pandera's dask typing without it."""
    if "pandera.typing.dask" in sys.modules or "dask.dataframe" in sys.modules:
        return
    sys.modules["dask.dataframe"] = None        # makes `import dask.dataframe` fail inside pandera
    try:
        import pandera.typing.dask  # noqa: F401
    finally:
        del sys.modules["dask.dataframe"]


_skip_pandera_dask_typing()
from pandera.typing import Series

TIMINGS = ("BMO", "AMC", "DMH", "UNKNOWN")
KNOWN_TIMINGS = ("BMO", "AMC", "DMH")
from pipeline.contract.levels import DEFAULT_LEVEL_SUFFIXES, LEVEL_SUFFIX_PATTERN
from pipeline.kernel.black76 import IV_STATUSES  # the solver's statuses: the Surface's iv_status
from pipeline.contract.layout import LIQUIDITY_TIERS, PARTITIONS, VRP_TIERS  # noqa: F401 - re-exported
from pipeline.contract.tickers import TICKER_RE

TICKER_PATTERN = TICKER_RE.pattern
VRP_BASES = ("event", "plain")          # which VRP drove the tier and the score
IMPLIED_METHODS = ("smile", "interpolated", "parity-rebuilt", "one-sided")   # see stages/implied.py
METRIC_STATUSES = ("ok", "degraded", "failed")
STRUCTURE_NAMES = ("straddle", "strangle", "iron_condor", "iron_butterfly")   # see stages/structures.py
PAYOFF_CURVES = ("exit", "expiry")      # the suggested structure's P&L at the exit close, held to expiry
NO_TICKER = "<missing ticker>"
# Exceedance columns at the configured move levels (pipeline.contract.levels.level_name suffixes).
EXCEED_LEVEL_REGEX = {side: rf"^{side}_p_exceed_{LEVEL_SUFFIX_PATTERN}$" for side in ("rn", "hist")}
MAX_PRICE = 1e7        # no listed US equity or option trades near this: larger values are garbage


class DatasetValidationError(ValueError):
    """A dataset failed its schema; the message names dataset, columns and rows."""

    def __init__(self, dataset: str, message: str):
        super().__init__(f"dataset '{dataset}' failed validation:\n{message}")
        self.dataset = dataset


def _ticker(**kw):
    return pa.Field(str_matches=TICKER_PATTERN, **kw)


class _Model(pa.DataFrameModel):
    class Config:
        coerce = True
        strict = "filter"   # extra columns are dropped, so the stored set is exactly the contract


class Calendar(_Model):
    """Upcoming earnings reports known on the as-of date (partition ``asof``)."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    timing: Series[str] = pa.Field(isin=TIMINGS)
    fiscal_period_end: Series[pa.DateTime] = pa.Field(nullable=True)
    eps_estimate: Series[float] = pa.Field(nullable=True)
    source: Series[str]

    class Config:
        unique = ["ticker", "report_date"]


class EarningsHistory(_Model):
    """Past reports with their timing."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    timing: Series[str] = pa.Field(isin=TIMINGS)
    fiscal_period_end: Series[pa.DateTime] = pa.Field(nullable=True)
    reported_eps: Series[float] = pa.Field(nullable=True)
    estimated_eps: Series[float] = pa.Field(nullable=True)
    source: Series[str]

    class Config:
        unique = ["ticker", "report_date"]


class Prices(_Model):
    """Daily OHLCV bars, one row per ticker and NYSE session (partition ``year``)."""

    ticker: Series[str] = _ticker()
    date: Series[pa.DateTime]
    open: Series[float] = pa.Field(gt=0, lt=MAX_PRICE)
    high: Series[float] = pa.Field(gt=0, lt=MAX_PRICE)
    low: Series[float] = pa.Field(gt=0, lt=MAX_PRICE)
    close: Series[float] = pa.Field(gt=0, lt=MAX_PRICE)
    volume: Series[float] = pa.Field(ge=0)
    source: Series[str]

    class Config:
        unique = ["ticker", "date"]

    @pa.dataframe_check(error="high below max(open, close) or low above min(open, close)")
    def bar_is_consistent(cls, df: pd.DataFrame) -> Series[bool]:
        top = df[["open", "close"]].max(axis=1)
        bottom = df[["open", "close"]].min(axis=1)
        tol = 1e-9 * top
        return (df["high"] >= top - tol) & (df["low"] <= bottom + tol)


class Chains(_Model):
    """Option quotes as received, one row per contract (partition ``date``).

    Crossed or zero-bid quotes are market facts and are kept; the stages decide what is usable.
    """

    ticker: Series[str] = _ticker()
    expiration: Series[pa.DateTime]
    strike: Series[float] = pa.Field(gt=0, lt=MAX_PRICE)
    option_type: Series[str] = pa.Field(isin=["C", "P"])
    bid: Series[float] = pa.Field(ge=0, lt=MAX_PRICE, nullable=True)
    ask: Series[float] = pa.Field(ge=0, lt=MAX_PRICE, nullable=True)
    last: Series[float] = pa.Field(ge=0, lt=MAX_PRICE, nullable=True)
    volume: Series[float] = pa.Field(ge=0)
    open_interest: Series[float] = pa.Field(ge=0)
    underlying_price: Series[float] = pa.Field(gt=0, lt=MAX_PRICE)
    # The vendor's own stamp of this quote (when its bid/ask last changed).
    quote_time: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    # When the chain was pulled, the same for every row of a pull (a past session's: its close);
    # time to expiry is measured from it.
    snapshot_time: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "ns", "tz": "UTC"})
    vendor_iv: Series[float] = pa.Field(ge=0, nullable=True)
    vendor_delta: Series[float] = pa.Field(ge=-1, le=1, nullable=True)
    source: Series[str]

    class Config:
        unique = ["ticker", "expiration", "strike", "option_type"]


class Surface(_Model):
    """Every quote with derived forward, time, IV and delta (partition ``date``)."""

    ticker: Series[str] = _ticker()
    expiration: Series[pa.DateTime]
    strike: Series[float] = pa.Field(gt=0)
    option_type: Series[str] = pa.Field(isin=["C", "P"])
    bid: Series[float] = pa.Field(ge=0, nullable=True)
    ask: Series[float] = pa.Field(ge=0, nullable=True)
    mid: Series[float] = pa.Field(ge=0, nullable=True)
    underlying_price: Series[float] = pa.Field(gt=0)
    forward: Series[float] = pa.Field(gt=0, nullable=True)
    forward_source: Series[str] = pa.Field(isin=["parity", "spot"], nullable=True)
    rate: Series[float]
    t: Series[float] = pa.Field(nullable=True)
    iv: Series[float] = pa.Field(gt=0, nullable=True)
    delta: Series[float] = pa.Field(ge=-1, le=1, nullable=True)
    iv_status: Series[str] = pa.Field(isin=IV_STATUSES)


# A model's columns are its bases' (the last base's first) and then its own: ``moves`` and
# ``event_history`` put their keys before the reaction columns they share.
class _PastReaction(_Model):
    """How the stock reacted to one past report (the timing used, the sessions, the moves)."""

    timing: Series[str] = pa.Field(isin=KNOWN_TIMINGS)
    timing_source: Series[str] = pa.Field(isin=["vendor", "inferred"])
    ref_date: Series[pa.DateTime]
    reaction_date: Series[pa.DateTime]
    ref_close: Series[float] = pa.Field(gt=0)
    close_move: Series[float] = pa.Field(gt=-1)
    gap_move: Series[float] = pa.Field(gt=-1)
    max_move: Series[float] = pa.Field(gt=-1)


class _PastReportKey(_Model):
    """A past report: its ticker and date."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]


class Moves(_PastReaction, _PastReportKey):
    """Realized reaction to each past report (no partition)."""

    class Config:
        unique = ["ticker", "report_date"]


class Metrics(_Model):
    """Everything known about each upcoming event on the as-of date (partition ``date``)."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    timing: Series[str] = pa.Field(isin=TIMINGS)
    reaction_date: Series[pa.DateTime] = pa.Field(nullable=True)
    spot: Series[float] = pa.Field(gt=0, nullable=True)
    expiration: Series[pa.DateTime] = pa.Field(nullable=True)
    forward: Series[float] = pa.Field(gt=0, nullable=True)
    implied_vol: Series[float] = pa.Field(gt=0, nullable=True)
    implied_method: Series[str] = pa.Field(isin=IMPLIED_METHODS, nullable=True)
    straddle_strike: Series[float] = pa.Field(gt=0, nullable=True)
    straddle_mid: Series[float] = pa.Field(ge=0, nullable=True)
    implied_move: Series[float] = pa.Field(ge=0, nullable=True)
    implied_event_move: Series[float] = pa.Field(ge=0, nullable=True)
    hist_mean_abs_move: Series[float] = pa.Field(ge=0, nullable=True)
    hist_median_abs_move: Series[float] = pa.Field(ge=0, nullable=True)
    n_events: Series[int] = pa.Field(ge=0)
    hist_exceed_count: Series[float] = pa.Field(ge=0, nullable=True)
    hist_exceed_share: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    vrp: Series[float] = pa.Field(ge=0, nullable=True)
    vrp_median: Series[float] = pa.Field(ge=0, nullable=True)
    vrp_event: Series[float] = pa.Field(ge=0, nullable=True)
    vrp_basis: Series[str] = pa.Field(isin=VRP_BASES, nullable=True)
    vrp_tier: Series[str] = pa.Field(isin=VRP_TIERS, nullable=True)
    ts_event_std: Series[float] = pa.Field(ge=0, nullable=True)
    ts_implied_move: Series[float] = pa.Field(ge=0, nullable=True)
    ex_earnings_vol: Series[float] = pa.Field(ge=0, nullable=True)
    ts_flag: Series[str] = pa.Field(nullable=True)
    iv30: Series[float] = pa.Field(gt=0, nullable=True)
    iv30_percentile: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    ex_earnings_vol_percentile: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    vol_percentile_reason: Series[str] = pa.Field(nullable=True)
    mad: Series[float] = pa.Field(ge=0, nullable=True)
    consistency: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    ewm_mean_abs_move: Series[float] = pa.Field(ge=0, nullable=True)
    ewm_std_abs_move: Series[float] = pa.Field(ge=0, nullable=True)
    tail_ratio: Series[float] = pa.Field(ge=1, nullable=True)
    trend_slope: Series[float] = pa.Field(nullable=True)
    skew_atm_iv: Series[float] = pa.Field(nullable=True)
    skew_slope: Series[float] = pa.Field(nullable=True)
    skew_curvature: Series[float] = pa.Field(nullable=True)
    rr25: Series[float] = pa.Field(nullable=True)
    bf25: Series[float] = pa.Field(nullable=True)
    skew_r2: Series[float] = pa.Field(nullable=True)
    skew_n: Series[int] = pa.Field(ge=0)
    straddle_spread: Series[float] = pa.Field(ge=0, nullable=True)
    min_leg_open_interest: Series[float] = pa.Field(ge=0, nullable=True)
    min_leg_volume: Series[float] = pa.Field(ge=0, nullable=True)
    expiration_volume: Series[float] = pa.Field(ge=0, nullable=True)
    liquidity_tier: Series[str] = pa.Field(isin=LIQUIDITY_TIERS)
    score_vrp: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    score_consistency: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    score_skew: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    score_liquidity: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    score: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    # The priced distribution of the move (pipeline.stages.density) and the IV crush.
    # rn/hist_p_exceed_<level> at each configured level (density.exceed_levels; levels.DEFAULT_EXCEED_LEVELS by
    # default): regex columns, in the order of the levels.
    rn_p_exceed_implied: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    rn_p_exceed_levels: Series[float] = pa.Field(ge=0, le=1, nullable=True, alias=EXCEED_LEVEL_REGEX["rn"],
                                                 regex=True)
    hist_p_exceed_implied: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    hist_p_exceed_levels: Series[float] = pa.Field(ge=0, le=1, nullable=True, alias=EXCEED_LEVEL_REGEX["hist"],
                                                   regex=True)
    rn_bimodal: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    rn_trough_depth: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    rn_arbitrage_mass: Series[float] = pa.Field(ge=0, nullable=True)
    rn_mass_inside: Series[float] = pa.Field(nullable=True)
    event_law_weight_1: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    event_law_mean_1: Series[float] = pa.Field(nullable=True)
    event_law_std_1: Series[float] = pa.Field(ge=0, nullable=True)
    event_law_weight_2: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    event_law_mean_2: Series[float] = pa.Field(nullable=True)
    event_law_std_2: Series[float] = pa.Field(ge=0, nullable=True)
    event_atm_iv: Series[float] = pa.Field(gt=0, nullable=True)
    expected_iv_crush: Series[float] = pa.Field(nullable=True)
    crush_expiration: Series[pa.DateTime] = pa.Field(nullable=True)
    status: Series[str] = pa.Field(isin=METRIC_STATUSES)
    reason: Series[str] = pa.Field(nullable=True)

    class Config:
        unique = ["ticker", "report_date"]


class Term(_Model):
    """ATM IV per expiration on the as-of date (partition ``date``): every expiration of every
    ticker in the day's surface (:func:`pipeline.stages.term.atm_iv_by_expiration`), the points the
    term structure, the 30-day IV and the skew's moneyness are computed from. ``t`` in years,
    ``atm_iv`` annualized (fraction), null where one side of the forward has no usable quote."""

    ticker: Series[str] = _ticker()
    expiration: Series[pa.DateTime]
    t: Series[float] = pa.Field(nullable=True)
    atm_iv: Series[float] = pa.Field(gt=0, nullable=True)

    class Config:
        unique = ["ticker", "expiration"]


class _EventPastReportKey(_Model):
    """An upcoming event (ticker, report_date) and one of its ticker's past reports."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    past_report_date: Series[pa.DateTime]


class EventHistory(_PastReaction, _EventPastReportKey):
    """The past reports behind each upcoming event's history statistics (partition ``date``):
    one row per event (``ticker``, ``report_date`` of the upcoming report) and past report
    (``past_report_date``), the last ``history.max_events`` reacted by the as-of date, oldest
    first (:func:`pipeline.stages.consistency.event_history`). The moves are the ``moves``
    dataset's; ``abs_move`` is |move| of the configured ``history.move_type`` (what the statistics
    average) and ``exceeded`` = abs_move > the event's implied move (null without one)."""

    abs_move: Series[float] = pa.Field(ge=0)
    exceeded: Series[pd.BooleanDtype] = pa.Field(nullable=True)

    class Config:
        unique = ["ticker", "report_date", "past_report_date"]


class Smile(_Model):
    """The smile of each upcoming event's expiration on the as-of date (partition ``date``): its
    out-of-the-money quotes with a usable IV, one per contract
    (:func:`pipeline.stages.term.event_smiles`), ``k`` = ln(K/F) and ``iv`` (annualized fraction),
    the points the skew fit (``skew_*`` columns) draws from."""

    ticker: Series[str] = _ticker()
    expiration: Series[pa.DateTime]
    k: Series[float]
    iv: Series[float] = pa.Field(gt=0)

    class Config:
        unique = ["ticker", "expiration", "k"]


class Structures(_Model):
    """Candidate structures per upcoming event (partition ``date``): one row per event x
    structure with its legs (:mod:`pipeline.stages.structures`; money per share for prices and
    credits, dollars per structure for risk, greeks and expected values)."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    reaction_date: Series[pa.DateTime] = pa.Field(nullable=True)
    expiration: Series[pa.DateTime] = pa.Field(nullable=True)
    structure: Series[str] = pa.Field(isin=STRUCTURE_NAMES)
    status: Series[str] = pa.Field(isin=["ok", "dropped"])
    reason: Series[str] = pa.Field(nullable=True)
    spot: Series[float] = pa.Field(gt=0, nullable=True)
    forward: Series[float] = pa.Field(gt=0, nullable=True)
    implied_move: Series[float] = pa.Field(ge=0, nullable=True)
    liquidity_tier: Series[str] = pa.Field(isin=LIQUIDITY_TIERS, nullable=True)
    t_exit: Series[float] = pa.Field(ge=0, nullable=True)
    exit_ex_vol: Series[float] = pa.Field(nullable=True)
    exit_skew_b: Series[float] = pa.Field(nullable=True)
    exit_skew_c: Series[float] = pa.Field(nullable=True)
    short_put_strike: Series[float] = pa.Field(gt=0, nullable=True)
    short_put_bid: Series[float] = pa.Field(ge=0, nullable=True)
    short_put_ask: Series[float] = pa.Field(ge=0, nullable=True)
    short_put_mid: Series[float] = pa.Field(ge=0, nullable=True)
    short_put_iv: Series[float] = pa.Field(gt=0, nullable=True)
    short_call_strike: Series[float] = pa.Field(gt=0, nullable=True)
    short_call_bid: Series[float] = pa.Field(ge=0, nullable=True)
    short_call_ask: Series[float] = pa.Field(ge=0, nullable=True)
    short_call_mid: Series[float] = pa.Field(ge=0, nullable=True)
    short_call_iv: Series[float] = pa.Field(gt=0, nullable=True)
    long_put_strike: Series[float] = pa.Field(gt=0, nullable=True)
    long_put_bid: Series[float] = pa.Field(ge=0, nullable=True)
    long_put_ask: Series[float] = pa.Field(ge=0, nullable=True)
    long_put_mid: Series[float] = pa.Field(ge=0, nullable=True)
    long_put_iv: Series[float] = pa.Field(gt=0, nullable=True)
    long_call_strike: Series[float] = pa.Field(gt=0, nullable=True)
    long_call_bid: Series[float] = pa.Field(ge=0, nullable=True)
    long_call_ask: Series[float] = pa.Field(ge=0, nullable=True)
    long_call_mid: Series[float] = pa.Field(ge=0, nullable=True)
    long_call_iv: Series[float] = pa.Field(gt=0, nullable=True)
    risk_kind: Series[str] = pa.Field(isin=["defined", "undefined"])
    n_legs: Series[pd.Int64Dtype] = pa.Field(ge=2, le=4, nullable=True)
    credit_mid: Series[float] = pa.Field(nullable=True)
    credit_fill: Series[float] = pa.Field(nullable=True)
    risk: Series[float] = pa.Field(nullable=True)
    breakeven_low_expiry: Series[float] = pa.Field(nullable=True)
    breakeven_high_expiry: Series[float] = pa.Field(nullable=True)
    breakeven_low_exit: Series[float] = pa.Field(nullable=True)
    breakeven_high_exit: Series[float] = pa.Field(nullable=True)
    delta_shares: Series[float] = pa.Field(nullable=True)
    gamma: Series[float] = pa.Field(nullable=True)
    vega: Series[float] = pa.Field(nullable=True)
    theta: Series[float] = pa.Field(nullable=True)
    pop_hist: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    ev_hist: Series[float] = pa.Field(nullable=True)
    pop_rn: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    ev_rn: Series[float] = pa.Field(nullable=True)
    ev_rn_mid: Series[float] = pa.Field(nullable=True)
    pop_expiry_rn: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    return_on_risk: Series[float] = pa.Field(nullable=True)
    contracts: Series[pd.Int64Dtype] = pa.Field(ge=0, nullable=True)
    suggested: Series[bool]
    why: Series[str] = pa.Field(nullable=True)

    class Config:
        unique = ["ticker", "report_date", "structure"]


class Payoff(_Model):
    """The P&L curves of each event's suggested structure by underlying move (partition ``date``;
    :func:`pipeline.stages.structures.payoff_curves`): one row per point of a curve, ``curve``
    ``exit`` (at the exit close) or ``expiry`` (held to expiry), ``point`` its position from the
    left, ``move`` a fraction of the entry spot, ``pnl`` dollars per structure and ``breakeven``
    true where the point is that curve's stored breakeven (``structures``' ``breakeven_*``)."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    structure: Series[str] = pa.Field(isin=STRUCTURE_NAMES)
    curve: Series[str] = pa.Field(isin=PAYOFF_CURVES)
    point: Series[int] = pa.Field(ge=0)
    move: Series[float] = pa.Field(gt=-1)
    pnl: Series[float] = pa.Field(nullable=True)
    breakeven: Series[bool]

    class Config:
        unique = ["ticker", "report_date", "curve", "point"]


class Outcomes(_Model):
    """What happened to each event after its entry session (partition ``date`` = the exit
    session; see :mod:`pipeline.stages.outcomes`)."""

    ticker: Series[str] = _ticker()
    report_date: Series[pa.DateTime]
    entry_date: Series[pa.DateTime]
    exit_date: Series[pa.DateTime]
    expiration: Series[pa.DateTime] = pa.Field(nullable=True)
    straddle_strike: Series[float] = pa.Field(gt=0, nullable=True)
    implied_move: Series[float] = pa.Field(ge=0, nullable=True)
    implied_event_move: Series[float] = pa.Field(ge=0, nullable=True)
    ts_implied_move: Series[float] = pa.Field(ge=0, nullable=True)
    realized_close_move: Series[float] = pa.Field(gt=-1)
    realized_max_move: Series[float] = pa.Field(gt=-1, nullable=True)
    realized_over_implied: Series[float] = pa.Field(ge=0, nullable=True)
    straddle_entry_mid: Series[float] = pa.Field(ge=0, nullable=True)
    straddle_exit_value: Series[float] = pa.Field(ge=0, nullable=True)
    straddle_return_mid: Series[float] = pa.Field(nullable=True)
    beat_breakeven: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    short_straddle_lost: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    expected_iv_crush: Series[float] = pa.Field(nullable=True)
    realized_iv_crush: Series[float] = pa.Field(nullable=True)

    class Config:
        unique = ["ticker", "report_date"]


@dataclass(frozen=True)
class Dataset:
    """How a dataset is stored: its model and its hive partition column (if any)."""

    name: str
    model: type[_Model]
    partition: str | None = None   # column written as the directory name, e.g. date=2026-11-20

    @property
    def date_columns(self) -> list[str]:
        return [c for c, spec in self.model.to_schema().columns.items()
                if not spec.regex and str(spec.dtype) == "datetime64[ns]"]


_MODELS = {"calendar": Calendar, "earnings_history": EarningsHistory, "prices": Prices, "chains": Chains,
           "surface": Surface, "moves": Moves, "metrics": Metrics, "term": Term, "event_history": EventHistory,
           "smile": Smile, "structures": Structures, "payoff": Payoff, "outcomes": Outcomes}
DATASETS: dict[str, Dataset] = {name: Dataset(name, _MODELS[name], partition) for name, partition in PARTITIONS.items()}


# What a regex column of a contract expands to when no frame says otherwise: the default levels.
DEFAULT_REGEX_COLUMNS = [f"{side}_p_exceed_{x}" for side in ("rn", "hist") for x in DEFAULT_LEVEL_SUFFIXES]


def contract_columns(name: str, candidates=None) -> list[str]:
    """The columns of dataset ``name`` in contract order, each regex column (the metrics'
    exceedance levels) expanded to the ``candidates`` it matches, in the candidates' order, or to
    the default levels (levels.DEFAULT_LEVEL_SUFFIXES) when there are no candidates or none matches."""
    pool = [] if candidates is None else [str(c) for c in candidates]
    out = []
    for column, spec in DATASETS[name].model.to_schema().columns.items():
        if spec.regex:
            out += [c for c in pool if re.match(column, c)] or [c for c in DEFAULT_REGEX_COLUMNS if re.match(column, c)]
        else:
            out.append(column)
    return out


def metrics_columns(level_suffixes=DEFAULT_LEVEL_SUFFIXES) -> list[str]:
    """The Metrics columns in order with the exceedance columns of the configured levels
    (suffixes from pipeline.contract.levels.level_name)."""
    return contract_columns("metrics", [f"{side}_p_exceed_{x}" for side in ("rn", "hist") for x in level_suffixes])


def validate(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Validate (and coerce) ``df`` against dataset ``name``; all failures reported at once."""
    schema = DATASETS[name].model.to_schema()
    missing = [c for c, spec in schema.columns.items()
               if (not any(re.match(c, str(x)) for x in df.columns) if spec.regex else c not in df.columns)]
    if missing:
        raise DatasetValidationError(name, f"missing columns: {', '.join(missing)}")
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DatasetValidationError(name, _describe(exc.failure_cases)) from None


def validate_panel(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """:func:`validate` for the rows of several as-of dates at once (an ``as_of`` column): the
    dataset's checks, its uniqueness within each as-of date, ``as_of`` kept. One call instead of
    one per date (a validation costs 30-200 ms whatever the number of rows)."""
    schema = DATASETS[name].model.to_schema()
    panel = schema.add_columns({"as_of": pa.Column("datetime64[ns]")})
    if schema.unique:
        panel.unique = ["as_of", *schema.unique]
    try:
        return panel.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise DatasetValidationError(name, _describe(exc.failure_cases)) from None


def empty(name: str, columns=None) -> pd.DataFrame:
    """A zero-row frame of dataset ``name`` with the contract's columns and dtypes (regex columns
    expanded to the ``columns`` they match, default the default levels: :func:`contract_columns`)."""
    return _empty(name, None if columns is None else tuple(contract_columns(name, columns))).copy()


@functools.lru_cache(maxsize=None)
def _empty(name: str, expanded: tuple | None = None) -> pd.DataFrame:
    # Validated once per process: a validation costs 30-200 ms whatever the number of rows.
    schema = DATASETS[name].model.to_schema()
    dtypes = {c: next(str(spec.dtype) for pattern, spec in schema.columns.items()
                      if (re.match(pattern, c) if spec.regex else pattern == c))
              for c in (contract_columns(name) if expanded is None else expanded)}
    return validate(name, pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()}))


def split_valid_tickers(name: str, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Validate ``df``; when failures sit on identifiable rows, drop every row of the tickers
    concerned instead of failing the whole dataset, and return ``{ticker: reason}`` for them.

    Failures that cannot be pinned to rows (a missing column, a wrong dtype for the whole column)
    still raise :class:`DatasetValidationError`: they are the source's fault, not one ticker's.
    """
    frame = df.reset_index(drop=True)
    try:
        return validate(name, frame), {}
    except DatasetValidationError as first_error:
        model = DATASETS[name].model
        try:
            model.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            failures = exc.failure_cases
        else:                                   # pragma: no cover - validate() just failed
            raise first_error
        rows = failures["index"]
        if rows.isna().any() or "ticker" not in frame.columns:
            raise first_error
        # A row without a ticker is reported under a placeholder so it can be dropped too.
        ticker = frame["ticker"].astype(object).where(frame["ticker"].notna(), NO_TICKER)
        located = failures.assign(ticker=ticker.to_numpy()[rows.astype(int).to_numpy()])
        reasons = (located.assign(what="column '" + located["column"].astype(str) + "' failed " + located["check"].astype(str))
                   .groupby("ticker")["what"].agg(lambda w: "; ".join(sorted(set(w)))))
        kept = frame[~ticker.isin(reasons.index)]
        return validate(name, kept), reasons.to_dict()


def _describe(failures: pd.DataFrame, max_rows: int = 8) -> str:
    lines = []
    for (column, check), group in failures.groupby(["column", "check"], dropna=False, sort=False):
        rows = group["index"].dropna().tolist()
        values = group["failure_case"].tolist()
        where = f"column '{column}'" if isinstance(column, str) else "dataframe"
        shown = ", ".join(f"row {r}: {v!r}" for r, v in zip(rows[:max_rows], values[:max_rows]))
        if not rows:
            shown = ", ".join(repr(v) for v in values[:max_rows])
        more = f" (+{len(values) - max_rows} more)" if len(values) > max_rows else ""
        lines.append(f"  {where} failed {check}: {shown}{more}")
    return "\n".join(lines)
