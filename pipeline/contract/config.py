"""Load and validate ``config.yaml``; every error names the offending key."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from pipeline.contract.levels import DEFAULT_EXCEED_LEVELS
from pipeline.contract.layout import LIQUIDITY_TIERS, VRP_TIERS

MOVE_TYPES = ("close_move", "gap_move", "max_move")
DEFAULT_CONFIG = "config.yaml"          # looked up in the working directory
DEFAULT_DATA_DIR = "data"

VRP_TIER_NAMES = VRP_TIERS[:-1]              # the last tier is what falls below every threshold
LIQUIDITY_TIER_NAMES = LIQUIDITY_TIERS[:-1]
LIQUIDITY_KEYS = ("max_spread", "min_open_interest", "min_volume")
SCORE_KEYS = ("vrp", "consistency", "skew", "liquidity")


DEFAULT_LIQUIDITY = {
    "EXCELLENT": {"max_spread": 0.05, "min_open_interest": 1000.0, "min_volume": 200.0},
    "GOOD": {"max_spread": 0.10, "min_open_interest": 250.0, "min_volume": 50.0},
    "WARNING": {"max_spread": 0.25, "min_open_interest": 25.0, "min_volume": 1.0},
}
DEFAULT_WEIGHTS = {"vrp": 0.5, "consistency": 0.2, "skew": 0.1, "liquidity": 0.2}
DEFAULT_VRP_TIERS = {"EXCELLENT": 1.8, "GOOD": 1.4, "MARGINAL": 1.2}
# The earnings calendar's horizon (config ``live.calendar_horizon``): the vendor's names and the
# calendar days each covers. The run asks every source for this many days.
CALENDAR_HORIZONS = {"3month": 90, "6month": 181, "12month": 365}
MB = 2 ** 20
# Largest answer accepted per vendor endpoint, in bytes: a few times the largest real payload, so
# a genuine answer never fails while an endless or hostile body is cut off early (README, "Live data").
DEFAULT_RESPONSE_LIMITS = {
    "tradier.chains": 8 * MB,           # one expiration with greeks: ~0.8 KB an option, SPX ~3,000 options ~2.4 MB
    "tradier.expirations": 1 * MB,      # a few dozen dates
    "tradier.quotes": 2 * MB,           # 100 symbols, ~0.7 KB each
    "tradier.history": 4 * MB,          # daily bars since 2008, ~0.1 KB a bar
    "tradier.clock": 1 * MB,
    "alphavantage.EARNINGS_CALENDAR": 8 * MB,   # whole market, 12 months: ~15,000 rows, ~1.3 MB
    "alphavantage.EARNINGS": 2 * MB,            # ~30 years of quarters, ~50 KB
    "alphavantage.TIME_SERIES_DAILY": 4 * MB,   # full output ~1 MB; compact ~20 KB
}


class ConfigError(ValueError):
    """The configuration file is unusable; the message names the key (keys and values from the
    file are shown with their control characters escaped)."""

    def __init__(self, message: str):
        from pipeline.contract.outside_text import escape_controls

        super().__init__(escape_controls(message))


@dataclass(frozen=True)
class Config:
    source: str = "synthetic"
    synthetic_seed: int = 7
    universe_size: int = 500
    symbols: tuple[str, ...] = ()
    lookahead_days: int = 7
    risk_free_rate: float = 0.04
    move_type: str = "close_move"
    max_events: int = 12
    min_events: int = 4
    ewm_halflife: float = 4.0
    history_years: int = 4
    max_leg_spread: float = 0.5
    disagreement_ratio: float = 1.5
    skew_min_points: int = 5
    skew_max_abs_x: float = 3.0
    term_expirations: int = 4                 # expirations pulled per event from its reaction session on
    vrp_tiers: dict = field(default_factory=lambda: dict(DEFAULT_VRP_TIERS))
    liquidity_tiers: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_LIQUIDITY.items()})
    score_weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    tradier_base_url: str = "https://api.tradier.com/v1"
    alphavantage_base_url: str = "https://www.alphavantage.co/query"
    calendar_horizon: str = "3month"
    alphavantage_daily_budget: int = 25       # free tier: 25 requests a day
    alphavantage_min_interval: float = 1.0    # seconds between Alpha Vantage requests
    request_deadline: float = 30.0            # seconds for one whole HTTP answer, body included
    alphavantage_price_fallback: bool = False  # Alpha Vantage daily bars when Tradier history fails
    report_html: bool = True                  # write reports/rank_D.html beside the CSV
    max_response_bytes: dict = field(default_factory=lambda: dict(DEFAULT_RESPONSE_LIMITS))
    allow_plain_http: bool = False            # accept an http:// vendor URL that is not loopback
    # Structures (DESIGN section 12): strike multiples of the implied move, costs and sizing.
    strangle_multiple: float = 1.0            # short strikes at F (1 -/+ c m)
    wing_multiple: float = 2.0                # long wings at F (1 -/+ w m), w > c
    risk_budget: float = 1000.0               # dollars of risk per trade
    structure_fill_share: float = 0.5         # share of each leg's half-spread paid (0 mid, 1 touch)
    structure_commission: float = 0.65        # per contract traded
    exercise_fee: float = 0.0                 # per in-the-money leg settled at expiry
    kelly_cap: float = 0.0                    # > 0: size by the history Kelly fraction, capped here
    exceed_levels: tuple[float, ...] = DEFAULT_EXCEED_LEVELS   # density: P(|move| > level) columns, fractions
    # Config field -> the environment variable that set it (:func:`with_environment`), for messages.
    base_url_origins: dict = field(default_factory=dict, repr=False, compare=False)
    # The vendors' credentials, from the environment only (:func:`with_environment`); never shown
    # by repr, so never in a log line, a manifest or a backtest's run id.
    tradier_token: str = field(default="", repr=False, compare=False)
    alphavantage_apikey: str = field(default="", repr=False, compare=False)

    @property
    def calendar_horizon_days(self) -> int:
        """Calendar days of earnings calendar a run fetches (``calendar_horizon``)."""
        return CALENDAR_HORIZONS[self.calendar_horizon]

    @property
    def structures(self) -> "StructureSettings":
        return StructureSettings(self.strangle_multiple, self.wing_multiple, self.risk_budget,
                                 self.structure_fill_share, self.structure_commission, self.exercise_fee,
                                 self.kelly_cap)


@dataclass(frozen=True)
class StructureSettings:
    """The ``structures`` section of the config, as the structures stage uses it."""

    strangle_multiple: float
    wing_multiple: float
    risk_budget: float
    fill_share: float
    commission: float
    exercise_fee: float
    kelly_cap: float


# yaml path -> (Config field, type, validator or None)
def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


_SCALARS = {
    ("source",): ("source", str, lambda v: v in ("synthetic", "live")),
    ("synthetic", "seed"): ("synthetic_seed", int, _non_negative),
    ("synthetic", "universe_size"): ("universe_size", int, _non_negative),
    ("lookahead_days",): ("lookahead_days", int, _non_negative),
    ("risk_free_rate",): ("risk_free_rate", float, lambda v: -0.1 < v < 1),
    ("history", "move_type"): ("move_type", str, lambda v: v in MOVE_TYPES),
    ("history", "max_events"): ("max_events", int, _positive),
    ("history", "min_events"): ("min_events", int, _positive),
    ("history", "ewm_halflife"): ("ewm_halflife", float, _positive),
    ("history", "years"): ("history_years", int, _positive),
    ("implied", "max_leg_spread"): ("max_leg_spread", float, _positive),
    ("term_structure", "disagreement_ratio"): ("disagreement_ratio", float, lambda v: v >= 1),
    ("term_structure", "expirations"): ("term_expirations", int, lambda v: v >= 2),
    ("skew", "min_points"): ("skew_min_points", int, lambda v: v >= 3),
    ("skew", "max_abs_x"): ("skew_max_abs_x", float, _positive),
    ("live", "tradier_base_url"): ("tradier_base_url", str, None),
    ("live", "alphavantage_base_url"): ("alphavantage_base_url", str, None),
    ("live", "calendar_horizon"): ("calendar_horizon", str, lambda v: v in CALENDAR_HORIZONS),
    ("live", "alphavantage_daily_budget"): ("alphavantage_daily_budget", int, _positive),
    ("live", "alphavantage_min_interval"): ("alphavantage_min_interval", float, _non_negative),
    ("live", "request_deadline"): ("request_deadline", float, _positive),
    ("live", "alphavantage_price_fallback"): ("alphavantage_price_fallback", bool, None),
    ("live", "allow_plain_http"): ("allow_plain_http", bool, None),
    ("report", "html"): ("report_html", bool, None),
    ("structures", "strangle_multiple"): ("strangle_multiple", float, _positive),
    ("structures", "wing_multiple"): ("wing_multiple", float, _positive),
    ("structures", "risk_budget"): ("risk_budget", float, _positive),
    ("structures", "fill_share"): ("structure_fill_share", float, lambda v: 0 <= v <= 1),
    ("structures", "commission"): ("structure_commission", float, _non_negative),
    ("structures", "exercise_fee"): ("exercise_fee", float, _non_negative),
    ("structures", "kelly_cap"): ("kelly_cap", float, _non_negative),
}
_SECTIONS = {"synthetic", "universe", "history", "implied", "term_structure", "skew", "live", "report",
             "structures", "density"}
MAX_EXCEED_LEVELS = 4
_MAPPINGS = {"vrp_tiers", "liquidity_tiers", "score_weights"}


def _typed(key: str, value, kind):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"config key '{key}': expected {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"config key '{key}': must be a finite number, got {value!r}")
    return value


def parse_config(raw) -> Config:
    """Build a :class:`Config` from the parsed YAML mapping, rejecting anything unexpected."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping of keys to values")
    values: dict = {}
    known_top = {path[0] for path in _SCALARS} | _SECTIONS | _MAPPINGS
    for key in raw:
        if key not in known_top:
            raise ConfigError(f"config key '{key}': unknown key")
    for section in _SECTIONS:
        body = raw.get(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"config key '{section}': expected a mapping")
        known = {path[1] for path in _SCALARS if path[0] == section} | ({"symbols"} if section == "universe" else set()) \
            | ({"max_response_bytes"} if section == "live" else set()) \
            | ({"exceed_levels"} if section == "density" else set())
        for key in body:
            if key not in known:
                raise ConfigError(f"config key '{section}.{key}': unknown key")
    for path, (name, kind, check) in _SCALARS.items():
        node = raw
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        key = ".".join(path)
        value = _typed(key, node, kind)
        if check is not None and not check(value):
            raise ConfigError(f"config key '{key}': invalid value {value!r}")
        values[name] = value
    if values.get("wing_multiple", Config.wing_multiple) <= values.get("strangle_multiple", Config.strangle_multiple):
        raise ConfigError("config key 'structures.wing_multiple': must exceed structures.strangle_multiple "
                          f"({values.get('wing_multiple', Config.wing_multiple):g} <= "
                          f"{values.get('strangle_multiple', Config.strangle_multiple):g})")
    if values.get("min_events", 4) > values.get("max_events", 12):
        raise ConfigError("config key 'history.min_events': must not exceed history.max_events")
    symbols = (raw.get("universe") or {}).get("symbols") or []
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ConfigError("config key 'universe.symbols': expected a list of ticker strings")
    from pipeline.contract.tickers import InvalidTickerError, validate_ticker

    try:
        values["symbols"] = tuple(dict.fromkeys(validate_ticker(s.strip().upper(), what="config key 'universe.symbols'")
                                                for s in symbols))        # brk.b -> BRK.B
    except InvalidTickerError as exc:
        raise ConfigError(str(exc)) from None
    levels = (raw.get("density") or {}).get("exceed_levels")
    if levels is not None:
        values["exceed_levels"] = _exceed_levels(levels)
    values["vrp_tiers"] = _decreasing_tiers(raw.get("vrp_tiers"), "vrp_tiers", VRP_TIER_NAMES)
    values["liquidity_tiers"] = _liquidity_tiers(raw.get("liquidity_tiers"))
    values["score_weights"] = _weights(raw.get("score_weights"))
    values["max_response_bytes"] = _response_limits((raw.get("live") or {}).get("max_response_bytes"))
    return Config(**values)


def _exceed_levels(levels) -> tuple[float, ...]:
    """``density.exceed_levels``: 1 to MAX_EXCEED_LEVELS distinct moves, 0 < level < 1, each
    naming its own columns (rn_p_exceed_<level in percent>pct, at most 4 decimals of a percent)."""
    key = "density.exceed_levels"
    if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_EXCEED_LEVELS:
        raise ConfigError(f"config key '{key}': expected a list of 1 to {MAX_EXCEED_LEVELS} move levels, got {levels!r}")
    out = tuple(_typed(key, v, float) for v in levels)
    bad = [v for v in out if not 0 < v < 1]
    if bad:
        raise ConfigError(f"config key '{key}': each level must be a fraction strictly between 0 and 1 "
                          f"(0.05 = 5%), got {bad[0]!r}")
    if any(abs(v * 1e6 - round(v * 1e6)) > 1e-6 for v in out):
        raise ConfigError(f"config key '{key}': a level has more than 4 decimals of a percent")
    if len({round(v * 1e6) for v in out}) < len(out):
        raise ConfigError(f"config key '{key}': levels must be distinct, got {list(out)!r}")
    return out


def _response_limits(body) -> dict:
    """DEFAULT_RESPONSE_LIMITS with the configured endpoints replaced (positive byte counts)."""
    limits = dict(DEFAULT_RESPONSE_LIMITS)
    if body is None:
        return limits
    key = "live.max_response_bytes"
    if not isinstance(body, dict):
        raise ConfigError(f"config key '{key}': expected a mapping of endpoint to bytes")
    for endpoint, value in body.items():
        if endpoint not in DEFAULT_RESPONSE_LIMITS:
            raise ConfigError(f"config key '{key}.{endpoint}': unknown endpoint "
                              f"(known: {', '.join(DEFAULT_RESPONSE_LIMITS)})")
        limits[endpoint] = _typed(f"{key}.{endpoint}", value, int)
        if limits[endpoint] <= 0:
            raise ConfigError(f"config key '{key}.{endpoint}': must be a positive number of bytes")
    return limits


def _decreasing_tiers(body, key, names) -> dict:
    if body is None:
        return dict(DEFAULT_VRP_TIERS)
    if not isinstance(body, dict) or set(body) != set(names):
        raise ConfigError(f"config key '{key}': expected exactly the tiers {', '.join(names)}")
    tiers = {n: _typed(f"{key}.{n}", body[n], float) for n in names}
    levels = list(tiers.values())
    if any(a <= b for a, b in zip(levels, levels[1:])):
        raise ConfigError(f"config key '{key}': thresholds must be strictly decreasing ({', '.join(names)})")
    if levels[0] <= 1.0:
        raise ConfigError(f"config key '{key}.{names[0]}': must exceed 1 (a VRP of 1 is no premium)")
    return tiers




def _liquidity_tiers(body) -> dict:
    if body is None:
        return {k: dict(v) for k, v in DEFAULT_LIQUIDITY.items()}
    if not isinstance(body, dict) or set(body) != set(LIQUIDITY_TIER_NAMES):
        raise ConfigError(f"config key 'liquidity_tiers': expected exactly {', '.join(LIQUIDITY_TIER_NAMES)}")
    tiers = {}
    for name in LIQUIDITY_TIER_NAMES:
        entry = body[name]
        if not isinstance(entry, dict) or set(entry) != set(LIQUIDITY_KEYS):
            raise ConfigError(f"config key 'liquidity_tiers.{name}': expected keys {', '.join(LIQUIDITY_KEYS)}")
        tiers[name] = {k: _typed(f"liquidity_tiers.{name}.{k}", entry[k], float) for k in LIQUIDITY_KEYS}
        if any(v < 0 for v in tiers[name].values()):
            raise ConfigError(f"config key 'liquidity_tiers.{name}': thresholds must be non-negative")
    for a, b in zip(LIQUIDITY_TIER_NAMES, LIQUIDITY_TIER_NAMES[1:]):
        ta, tb = tiers[a], tiers[b]
        if ta["max_spread"] > tb["max_spread"] or ta["min_open_interest"] < tb["min_open_interest"] \
                or ta["min_volume"] < tb["min_volume"]:
            raise ConfigError(f"config key 'liquidity_tiers.{a}': must be at least as strict as {b}")
    return tiers


def _weights(body) -> dict:
    if body is None:
        return dict(DEFAULT_WEIGHTS)
    if not isinstance(body, dict) or set(body) != set(SCORE_KEYS):
        raise ConfigError(f"config key 'score_weights': expected exactly {', '.join(SCORE_KEYS)}")
    weights = {k: _typed(f"score_weights.{k}", body[k], float) for k in SCORE_KEYS}
    if any(w < 0 for w in weights.values()):
        raise ConfigError("config key 'score_weights': weights must be non-negative")
    if abs(sum(weights.values()) - 1.0) > 1e-9:
        raise ConfigError(f"config key 'score_weights': weights must sum to 1 (they sum to {sum(weights.values()):g})")
    return weights


@dataclass(frozen=True)
class Settings:
    """What a command runs with: the config, where it came from, and the data root."""

    config: Config
    origin: str          # the config file read, or "built-in defaults"
    root: Path


def resolve(config_path: str | None = None, data_dir: str | Path | None = None, source: str | None = None,
            environ=None) -> Settings:
    """The one way to get the settings of a command, ``pipeline.load`` or ``doctor``.

    Config file: ``config_path``, else ``PIPELINE_CONFIG``, else ``./config.yaml`` when it exists,
    else the built-in defaults. Data root: ``data_dir``, else ``PIPELINE_DATA_DIR``, else ``./data``.
    ``source`` overrides the config's source; ``TRADIER_BASE_URL`` / ``ALPHAVANTAGE_BASE_URL``
    override the vendor base URLs and ``TRADIER_TOKEN`` / ``ALPHAVANTAGE_API_KEY`` give the
    credentials (:func:`with_environment`). Raises :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    path = config_path or env.get("PIPELINE_CONFIG") or None
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    config = Config() if path is None else load_config(path)
    if source:
        config = replace(config, source=source)
    config = with_environment(config, env)
    root = given_data_root(data_dir, env) or Path(DEFAULT_DATA_DIR)
    return Settings(config, "built-in defaults" if path is None else str(path), root)


def given_data_root(data_dir: str | Path | None = None, environ=None) -> Path | None:
    """The data root the user named: ``data_dir``, else ``PIPELINE_DATA_DIR``; None when neither
    is set (a command then uses ``./data``, a notebook :func:`pipeline.data_root`'s fallbacks)."""
    env = os.environ if environ is None else environ
    given = data_dir or env.get("PIPELINE_DATA_DIR")
    return Path(given) if given else None


# Environment variables that override a vendor base URL (a sandbox, a loopback test vendor).
BASE_URL_VARIABLES = {"tradier_base_url": "TRADIER_BASE_URL", "alphavantage_base_url": "ALPHAVANTAGE_BASE_URL"}
# Environment variables that hold the vendors' credentials (never read from a config file).
CREDENTIAL_VARIABLES = {"tradier_token": "TRADIER_TOKEN", "alphavantage_apikey": "ALPHAVANTAGE_API_KEY"}


def with_environment(config: Config, environ) -> Config:
    """``config`` with the vendor base URLs the environment sets (:data:`BASE_URL_VARIABLES`) and
    the vendors' credentials (:data:`CREDENTIAL_VARIABLES`, surrounding blanks dropped): the only
    place either is read. The sources check them (scheme, loopback, characters) when a live run starts."""
    urls = {name: environ.get(variable, "").strip() for name, variable in BASE_URL_VARIABLES.items()}
    urls = {name: url for name, url in urls.items() if url}
    credentials = {name: environ.get(variable, "").strip() for name, variable in CREDENTIAL_VARIABLES.items()}
    origins = {name: BASE_URL_VARIABLES[name] for name in urls} if urls else config.base_url_origins
    return replace(config, **urls, **credentials, base_url_origins=origins)


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from None
    return parse_config(raw)
