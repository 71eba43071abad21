"""A deterministic simulated market that knows its own truth.

Every random number is a counter-based hash of (seed, ticker, day, stream), so a value for a
given day never depends on the as-of date, on the date range asked for or on which other tickers
were requested. That makes any as-of date reproducible and incremental backfills consistent.

The model, per ticker:
- log price follows a slowly mean-reverting walk from ``EPOCH`` with diffusive vol ``diffusive_vol``
  split between overnight (30% of variance) and intraday;
- quarterly reports (fiscal quarter ends shifted by the ticker's fiscal offset, plus a report lag);
  each report adds a jump J to the reaction session's return: overnight for BMO and AMC, intraday
  for DMH. J's law is a normal mixture (LAW_SHAPES: normal, fat-tailed scale mixture, bimodal
  +-a) with std ``jump_std``;
- options price the same shape with std ``event_std = true_premium * jump_std``, means shifted to
  a martingale, in closed form as a mixture of Black-76 prices (pipeline.kernel.event_law) over a smooth
  SVI-shaped diffusive smile (:meth:`SyntheticMarket.diffusive_variance`); later reports inside a
  long expiration add their variance;
- expirations are listed months ahead on a strike lattice fixed at listing that widens with every
  close since, so a strike once listed stays listed until it expires
  (:meth:`SyntheticMarket._listed_strikes`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import ndtri

from pipeline.contract import sessions
from pipeline.kernel.black76 import black76_delta, carried_forward, discount_factor, implied_vol
from pipeline.kernel.event_law import martingale_means, mixture_exceedance, mixture_price, mixture_variance
from pipeline.contract.schemas import DATASETS
from pipeline.kernel.bimodality import BIMODAL_WINDOW, bimodal, trough_depth
from pipeline.sources.draws import (S_BAD, S_DMH, S_EPS, S_INTRADAY, S_JUMP, S_LAG, S_OI, S_OVERNIGHT,
                                    S_QUOTE, S_RANGE, S_TVOL, S_VOLUME, normal, uniform)
from pipeline.sources.universe import universe
from pipeline.contract.sessions import event_expirations

EPOCH = pd.Timestamp("2010-01-04")
TICK = 0.01
OVERNIGHT_SHARE = 0.3
MEAN_REVERSION = 1.0 / 500.0          # per session: a half-life of about 350 sessions
SIMULATION_CHUNK = 1000               # tickers simulated at once: bounded memory for large universes
# An expiration is listed this many calendar days before its Friday: monthlies (third Fridays)
# for eight months, weeklies (other Fridays, liquid names) for six weeks.
MONTHLY_LISTING_DAYS = 250
WEEKLY_LISTING_DAYS = 42
REPORTS_PER_YEAR = 4
# A new expiration's strikes reach this many ATM stds (at its listing) at the fine step, then this
# many more at the double step: narrower than a whole-life band would be, since every close after
# listing widens the range and the wings of a near expiry listed months ago are dead (zero bids).
LISTING_INNER_STDS = 1.0
LISTING_OUTER_STDS = 1.3
CHAIN_COLUMNS = list(DATASETS["chains"].model.to_schema().columns)
# Event-law shapes with zero mean and unit variance (weights, means, stds of two components; a
# zero weight pads a one-component law). Scaled by jump_std (real world) or event_std (priced).
BIMODAL_STD = 0.2
SMILE_WIDTH = 3.0         # standardized moneyness over which the diffusive smile is nearly quadratic
LAW_SHAPES = {
    "normal": ((1.0, 0.0), (0.0, 0.0), (1.0, 0.0)),
    # Scale mixture: 80% at a small std, 20% at twice it (kurtosis 4.7, largest of 12 moves ~2.5x the mean).
    "fat": ((0.8, 0.2), (0.0, 0.0), (1.0 / math.sqrt(1.6), 2.0 / math.sqrt(1.6))),
    # Beat or miss: two narrow components at +-a.
    "bimodal": ((0.5, 0.5), (-math.sqrt(1 - BIMODAL_STD ** 2), math.sqrt(1 - BIMODAL_STD ** 2)),
                (BIMODAL_STD, BIMODAL_STD)),
}
LAW_KINDS = tuple(LAW_SHAPES)
LAW_TABLE = np.array([LAW_SHAPES[kind] for kind in LAW_KINDS]).transpose(1, 0, 2)   # field x kind x component



def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """deviation[:, t] = shocks[:, t] + phi * deviation[:, t - 1], zero before the first day.

    A recursion in time, so one vector step per session across all tickers; the same floating
    point operations as ``scipy.signal.lfilter([1], [1, -phi])``, whose import alone costs a
    second per process."""
    by_day = np.ascontiguousarray(shocks.T)
    out = np.empty_like(by_day)
    level = np.zeros(shocks.shape[0])
    for t in range(by_day.shape[0]):
        level = by_day[t] + phi * level
        out[t] = level
    return np.ascontiguousarray(out.T)


def _third_friday(fridays: pd.DatetimeIndex) -> np.ndarray:
    """Which Fridays are a month's third (a monthly expiration)."""
    return np.asarray((fridays.day >= 15) & (fridays.day <= 21))


class SyntheticMarket:
    """The embedded market; implements :class:`pipeline.sources.base.Source`."""

    name = "synthetic"

    def __init__(self, seed: int = 7, universe_size: int = 500, rate: float = 0.04, archive=None):
        self.seed = int(seed)
        self.universe_size = int(universe_size)
        self.rate = float(rate)
        self.archive = archive           # a Layout: when set, every answer is kept as received, plus the truth
        self._simulated = None           # (horizon, sessions, bars) of the whole universe
        self._truth_request = None       # (as_of, horizon) of the last calendar answered

    def _archive(self, dataset: str, day, frame: pd.DataFrame, name: str | None = None) -> pd.DataFrame:
        if self.archive is not None:
            self._keep(frame, self.archive.synthetic_answer(dataset, pd.Timestamp(day).date().isoformat(),
                                                            name or dataset + ".parquet"))
        return frame

    @staticmethod
    def _keep(frame: pd.DataFrame, path) -> None:
        from pipeline.contract.files import atomic_write_bytes

        atomic_write_bytes(path, lambda tmp: frame.to_parquet(tmp, index=False))

    def call_counts(self) -> dict[str, int]:
        return {}          # no vendor behind it

    def close(self) -> None:
        """Write the ground truth as of the last calendar asked for (once per run, however many
        dates it fetched), with realized moves and model straddles for the tickers it priced."""
        if self.archive is not None and self._truth_request is not None:
            truth = self.truth_events(*self._truth_request, tickers=self.simulated_tickers())
            self._keep(truth, self.archive.synthetic_truth)
            self._truth_request = None

    # ---- universe and events -------------------------------------------------------------
    @property
    def universe(self) -> pd.DataFrame:
        return universe(self.seed, self.universe_size)

    def _params(self, tickers) -> pd.DataFrame:
        u = self.universe.set_index("ticker")
        missing = sorted(set(tickers) - set(u.index))
        if missing:
            raise KeyError(f"synthetic: unknown tickers {missing[:5]}")
        return u.loc[list(tickers)].reset_index()

    def events(self, start, end, tickers=None) -> pd.DataFrame:
        """Every report with start <= report_date <= end, with its true parameters."""
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        p = self.universe if tickers is None else self._params(tickers)
        first_q = (start.year - 1) * 4
        quarters = np.arange(first_q, end.year * 4 + 4)
        tid = np.repeat(p["ticker_id"].to_numpy(), len(quarters))
        q = np.tile(quarters, len(p))
        rows = np.repeat(np.arange(len(p)), len(quarters))
        offset = p["fiscal_offset_months"].to_numpy()[rows]
        # Month index of the fiscal quarter end (months since year 0, 0-based).
        month_end = q * 3 + 2 + offset
        quarter_end = (np.array(month_end // 12, dtype="int64") - 1970).astype("datetime64[Y]") \
            .astype("datetime64[M]") + (month_end % 12 + 1).astype("timedelta64[M]")
        quarter_end = quarter_end.astype("datetime64[D]") - np.timedelta64(1, "D")
        jitter = (uniform(self.seed, S_LAG, tid, q) * 7).astype(int) - 3
        lag = p["report_lag_days"].to_numpy()[rows] + jitter
        wanted_report = quarter_end + lag.astype("timedelta64[D]")
        report = sessions.sessions_offset(wanted_report, 0, strict=False).astype("datetime64[D]")
        keep = (report >= start.to_datetime64()) & (report <= end.to_datetime64())
        rows, tid, q, report, quarter_end = rows[keep], tid[keep], q[keep], report[keep], quarter_end[keep]
        timing = p["usual_timing"].to_numpy()[rows].astype(object)
        timing[uniform(self.seed, S_DMH, tid, q) < 0.03] = "DMH"
        law = p["event_law"].to_numpy()[rows]
        code = pd.Index(LAW_KINDS).get_indexer(law)
        shape = {name: LAW_TABLE[i][code] for i, name in enumerate(("weight", "mean", "std"))}
        u1, u2 = uniform(self.seed, S_JUMP, tid, q, 0), uniform(self.seed, S_JUMP, tid, q, 1)
        # The realized jump: a component drawn with its weight, then a normal draw within it (a
        # normal law keeps the plain jump_std * z).
        component = (u2 >= shape["weight"][:, 0]).astype(int)
        picked = np.arange(len(law))
        z = shape["mean"][picked, component] + shape["std"][picked, component] * ndtri(u1)
        jump_std = p["jump_std"].to_numpy()[rows]
        report_ns = report.astype("datetime64[ns]")
        reaction = sessions.reaction_sessions(report_ns, timing)
        vendor_timing = np.where(p["vendor_knows_timing"].to_numpy()[rows], timing, "UNKNOWN")
        eps = np.round(0.2 + 2.0 * uniform(self.seed, S_EPS, tid, q, 0), 2)
        surprise = np.round(0.1 * normal(self.seed, S_EPS, tid, q, 1), 2)
        out = pd.DataFrame({
            "ticker": p["ticker"].to_numpy()[rows],
            "ticker_id": tid,
            "report_date": report_ns,
            "timing": timing.astype(str),
            "vendor_timing": vendor_timing.astype(str),
            "fiscal_period_end": quarter_end.astype("datetime64[ns]"),
            "reaction_date": reaction,
            "jump": jump_std * z,
            "true_move_std": jump_std,
            "implied_move_std": jump_std * p["true_premium"].to_numpy()[rows],
            "true_premium": p["true_premium"].to_numpy()[rows],
            "event_law": law.astype(str),
            "fat_tailed": law == "fat",
            **{f"shape_{name}_{c + 1}": shape[name][:, c] for name in ("weight", "mean", "std") for c in range(2)},
            "estimated_eps": eps,
            "reported_eps": eps + surprise,
        })
        return out.sort_values(["ticker", "report_date"], kind="stable").reset_index(drop=True)

    # ---- prices --------------------------------------------------------------------------
    def _paths(self, p: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp):
        """Bars of the sessions ``start`` to ``end`` for the tickers in ``p`` (2-D arrays, rows in
        ``p`` order).

        Each ticker is simulated once, on first request, to a year past the latest date asked
        for, and kept: paths are causal and every ticker's draws are its own, so a longer or
        shared simulation leaves each bar bit for bit unchanged. A replay of many dates simulates
        once instead of once per date, and only the tickers a stage asks for are simulated and
        kept, one row each (a universe-sized array would be paged in by huge pages wherever a
        row is written: 5,000 names cost 900 MB for 478 simulated).
        """
        end = pd.Timestamp(end)
        if self._simulated is None or self._simulated["horizon"] < end:
            horizon = min(end + pd.Timedelta(days=366), sessions.LAST_DATE)
            self._simulated = {"horizon": horizon, "days": sessions.sessions_between(EPOCH, horizon),
                               "row": np.full(self.universe_size, -1), "bars": {}}
        cache = self._simulated
        ids = p["ticker_id"].to_numpy()
        new = np.unique(ids[cache["row"][ids] < 0])
        if new.size:
            _, bars = self._simulate(self.universe.iloc[new], cache["horizon"])
            kept = int((cache["row"] >= 0).sum())
            for name, values in bars.items():
                cache["bars"][name] = np.concatenate([cache["bars"][name], values]) if kept else values
            cache["row"][new] = np.arange(kept, kept + new.size)
        first, n = cache["days"].searchsorted(pd.Timestamp(start)), cache["days"].searchsorted(end, side="right")
        rows = cache["row"][ids]
        return cache["days"][first:n], {k: v[rows, first:n] for k, v in cache["bars"].items()}

    def simulated_tickers(self) -> list[str]:
        """Tickers whose price paths this market has simulated (those a stage asked for)."""
        simulated = np.zeros(0, bool) if self._simulated is None else self._simulated["row"] >= 0
        return self.universe["ticker"][simulated].tolist()

    def _simulate(self, p: pd.DataFrame, end: pd.Timestamp):
        """Simulated bars from EPOCH to ``end`` for the tickers in ``p`` (2-D arrays)."""
        days = sessions.sessions_between(EPOCH, end)
        ordinal = (days.values.astype("datetime64[D]").astype(np.int64))[None, :]
        tid = p["ticker_id"].to_numpy()[:, None]
        daily = (p["diffusive_vol"].to_numpy() / math.sqrt(252.0))[:, None]
        overnight = daily * math.sqrt(OVERNIGHT_SHARE) * normal(self.seed, S_OVERNIGHT, tid, ordinal)
        intraday = daily * math.sqrt(1 - OVERNIGHT_SHARE) * normal(self.seed, S_INTRADAY, tid, ordinal)
        ev = self.events(EPOCH, end, p["ticker"].tolist())
        ev = ev[ev["reaction_date"] <= end]
        row = pd.Index(p["ticker"]).get_indexer(ev["ticker"])
        col = days.get_indexer(pd.DatetimeIndex(ev["reaction_date"]))
        jump_overnight = ev["timing"].to_numpy() != "DMH"
        np.add.at(overnight, (row[jump_overnight], col[jump_overnight]), ev["jump"].to_numpy()[jump_overnight])
        np.add.at(intraday, (row[~jump_overnight], col[~jump_overnight]), ev["jump"].to_numpy()[~jump_overnight])
        phi = 1.0 - MEAN_REVERSION
        deviation = _ar1(overnight + intraday, phi)
        previous = np.concatenate([np.zeros((len(p), 1)), deviation[:, :-1]], axis=1)
        log_prev_close = np.log(p["spot0"].to_numpy())[:, None] + previous
        log_open = log_prev_close + overnight - MEAN_REVERSION * previous
        log_close = log_open + intraday
        wiggle = daily * 0.6 * np.abs(normal(self.seed, S_RANGE, tid, ordinal, np.arange(2)[:, None, None]))
        high = np.maximum(log_open, log_close) + wiggle[0]
        low = np.minimum(log_open, log_close) - wiggle[1]
        base_volume = (2e5 + 2e7 * p["liquidity"].to_numpy() ** 2)[:, None]
        volume = np.round(base_volume * np.exp(0.35 * normal(self.seed, S_VOLUME, tid, ordinal)))
        volume[row, col] *= 3.0
        bars = {"open": np.exp(log_open), "high": np.exp(high), "low": np.exp(low), "close": np.exp(log_close),
                "volume": volume}
        return days, bars

    def prices(self, tickers, start, end) -> pd.DataFrame:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        return self._archive("prices", end, self._bars(tickers, start, end), f"prices-{start.date()}-{end.date()}.parquet")

    def _bars(self, tickers, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        if start < EPOCH:
            raise ValueError(f"synthetic market starts on {EPOCH.date()}")
        frames = []
        p_all = self._params(tickers)
        for lo in range(0, len(p_all), SIMULATION_CHUNK):
            p = p_all.iloc[lo:lo + SIMULATION_CHUNK]
            days, bars = self._paths(p, start, end)
            frames.append(pd.DataFrame({
                "ticker": np.repeat(p["ticker"].to_numpy(), len(days)),
                "date": np.tile(days.values, len(p)),
                **{k: np.round(v, 4 if k != "volume" else 0).ravel() for k, v in bars.items()},
                "source": self.name,
            }))
        if not frames:
            return pd.DataFrame(columns=["ticker", "date", "open", "high", "low", "close", "volume", "source"])
        return pd.concat(frames, ignore_index=True)

    def _closes(self, p: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """Closes as :meth:`prices` publishes them (4 decimals) of the sessions ``start`` to
        ``end``: (sessions, 2-D array with rows in ``p`` order)."""
        days = sessions.sessions_between(start, end)
        parts = [np.zeros((0, len(days)))]
        for lo in range(0, len(p), SIMULATION_CHUNK):
            days, bars = self._paths(p.iloc[lo:lo + SIMULATION_CHUNK], start, end)
            parts.append(np.round(bars["close"], 4))
        return days, np.concatenate(parts)

    # ---- calendar and history ------------------------------------------------------------
    def calendar(self, as_of, horizon_days: int) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        self._truth_request = (as_of, horizon_days)
        return self._archive("calendar", as_of, self.known_calendar(as_of, horizon_days))

    def known_calendar(self, as_of, horizon_days: int) -> pd.DataFrame:
        """The calendar as of any date, without archiving it or moving the truth's date."""
        as_of = pd.Timestamp(as_of)
        ev = self.events(as_of, as_of + pd.Timedelta(days=horizon_days))
        return pd.DataFrame({
            "ticker": ev["ticker"], "report_date": ev["report_date"], "timing": ev["vendor_timing"],
            "fiscal_period_end": ev["fiscal_period_end"], "eps_estimate": ev["estimated_eps"],
            "source": self.name,
        })

    def earnings_history(self, tickers, as_of) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        ev = self.events(EPOCH, as_of, tickers)
        return self._archive("earnings_history", as_of, pd.DataFrame({
            "ticker": ev["ticker"], "report_date": ev["report_date"], "timing": ev["vendor_timing"],
            "fiscal_period_end": ev["fiscal_period_end"], "reported_eps": ev["reported_eps"],
            "estimated_eps": ev["estimated_eps"], "source": self.name,
        }))

    # ---- options -------------------------------------------------------------------------
    def expirations(self, tickers, as_of) -> pd.DataFrame:
        """Weekly Fridays for six weeks (liquid names) and monthly third Fridays for eight months
        (WEEKLY_LISTING_DAYS, MONTHLY_LISTING_DAYS)."""
        as_of = pd.Timestamp(as_of)
        p = self._params(tickers)
        fridays = pd.date_range(as_of + pd.Timedelta(days=1), as_of + pd.Timedelta(days=MONTHLY_LISTING_DAYS), freq="W-FRI")
        third = _third_friday(fridays)
        weekly = fridays <= as_of + pd.Timedelta(days=WEEKLY_LISTING_DAYS)
        expiry = pd.DatetimeIndex(sessions.last_session_on_or_before_friday(fridays.values))
        listed_all = pd.DataFrame({"expiration": expiry, "monthly": third, "weekly": weekly})
        listed_all = listed_all[listed_all["expiration"] > as_of]
        rows = []
        for has_weeklies in (True, False):
            names = p.loc[p["weeklies"] == has_weeklies, "ticker"]
            mask = listed_all["monthly"] | (listed_all["weekly"] & has_weeklies)
            exp = listed_all.loc[mask, "expiration"].to_numpy()
            rows.append(pd.DataFrame({"ticker": np.repeat(names.to_numpy(), len(exp)),
                                      "expiration": np.tile(exp, len(names))}))
        out = pd.concat(rows, ignore_index=True)
        return out.sort_values(["ticker", "expiration"], kind="stable").reset_index(drop=True)

    def _expiry_groups(self, wanted: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
        """One row per (ticker, expiration) with forward, vols and smile parameters."""
        g = wanted[["ticker", "expiration"]].drop_duplicates().reset_index(drop=True)
        p = self._params(g["ticker"].unique())
        g = g.merge(p, on="ticker", how="left")
        g = self._strike_lattice(g, p, as_of)
        quote_time = sessions.session_closes_utc([as_of])[0]
        g["quote_time"] = quote_time
        g["t"] = sessions.year_fraction(np.full(len(g), quote_time), g["expiration"])
        upcoming = self.events(as_of, as_of + pd.Timedelta(days=400), p["ticker"].tolist())
        upcoming = upcoming[upcoming["reaction_date"] > as_of]
        upcoming = upcoming.sort_values(["ticker", "reaction_date"], kind="stable")
        next_event = upcoming.drop_duplicates("ticker").set_index("ticker")
        g["next_reaction"] = g["ticker"].map(next_event["reaction_date"])
        # Later reports inside a long expiration are priced by their variance (a normal law); the
        # next one carries its whole law.
        pairs = g[["ticker", "expiration"]].merge(upcoming[["ticker", "reaction_date", "implied_move_std"]], on="ticker")
        pairs = pairs[(pairs["reaction_date"] <= pairs["expiration"])
                      & (pairs["reaction_date"] > pairs["ticker"].map(next_event["reaction_date"]))]
        later_var = (pairs.assign(v=pairs["implied_move_std"] ** 2)
                     .groupby(["ticker", "expiration"], sort=False)["v"].sum().rename("later_event_variance"))
        g = g.merge(later_var, on=["ticker", "expiration"], how="left").fillna({"later_event_variance": 0.0})
        has_event = (g["next_reaction"] <= g["expiration"]).to_numpy()
        event_std = np.where(has_event, g["ticker"].map(next_event["implied_move_std"]).to_numpy(float), 0.0)
        shape = {name: np.stack([g["ticker"].map(next_event[f"shape_{name}_{c}"]).to_numpy(float) for c in (1, 2)],
                                axis=1) for name in ("weight", "mean", "std")}
        weights = np.where(has_event[:, None], shape["weight"], [[1.0, 0.0]])
        stds = np.where(has_event[:, None], event_std[:, None] * shape["std"], 0.0)
        means = martingale_means(weights, np.where(has_event[:, None], event_std[:, None] * shape["mean"], 0.0), stds)
        for c in range(2):
            g[f"law_weight_{c + 1}"], g[f"law_mean_{c + 1}"], g[f"law_std_{c + 1}"] = weights[:, c], means[:, c], stds[:, c]
        g["event_variance"] = mixture_variance(weights, means, stds) + g["later_event_variance"]
        g["atm_vol"] = np.sqrt(g["diffusive_vol"] ** 2 + g["event_variance"] / g["t"])
        g["forward"] = carried_forward(g["spot"], self.rate - g["dividend_yield"], g["t"])
        g["discount"] = discount_factor(self.rate, g["t"])
        # Decided on the listed expirations, not the requested ones, so a quote never depends on
        # which other expirations were asked for.
        listed = self.expirations(p["ticker"].tolist(), as_of)
        first = next_event["reaction_date"].rename("reaction_date").reset_index()
        event_expiry = event_expirations(listed, first, count=1).set_index("ticker")["expiration"]
        is_event_expiry = g["expiration"].to_numpy() == g["ticker"].map(event_expiry).to_numpy()
        # The diffusive smile in total variance (see diffusive_variance): put skew beta, wing
        # curvature gamma >= |beta| so that both wings rise and the variance stays positive.
        g["skew_beta"] = 2.0 * g["smile_slope"]
        g["skew_gamma"] = np.abs(g["skew_beta"]) + 2.0 * g["smile_curvature"]
        g["is_event_expiry"] = is_event_expiry
        return g

    @staticmethod
    def listing_sessions(expiration) -> np.ndarray:
        """The first session on which :meth:`expirations` lists each expiration (datetime64[ns]):
        MONTHLY_LISTING_DAYS before its Friday for a third Friday, WEEKLY_LISTING_DAYS for another
        Friday, never before EPOCH. (An expiration moved to Thursday by a holiday keeps its Friday.)"""
        expiry = pd.DatetimeIndex(expiration)
        friday = expiry + pd.to_timedelta((4 - expiry.dayofweek) % 7, unit="D")
        lead = np.where(_third_friday(friday), MONTHLY_LISTING_DAYS, WEEKLY_LISTING_DAYS)
        listed = np.maximum((friday - pd.to_timedelta(lead, unit="D")).values, EPOCH.to_datetime64())
        return sessions.sessions_offset(listed, 0, strict=False)

    def _strike_lattice(self, g: pd.DataFrame, p: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
        """``g`` with ``spot`` (the close of ``as_of``) and what :meth:`_listed_strikes` lists from.

        Fixed when the expiration is listed (session L, :meth:`listing_sessions`; an expiration
        asked for before it is listed counts from ``as_of``), from L's close S_L and the time to
        expiry t_L: ``strike_step`` (:meth:`_strike_step` of S_L), ``inner_steps`` =
        clip(ceil(LISTING_INNER_STDS F_L sd / step), 3, 20) and ``outer_steps`` =
        clip(ceil(LISTING_OUTER_STDS F_L sd / (2 step)), 2, 12) double steps, F_L = S_L e^((r - q) t_L) and sd = the ATM total std it was listed
        with in closed form, sqrt((sigma_d^2 + REPORTS_PER_YEAR event_std^2) t_L) (a fraction).
        Moving since: ``listing_low`` and ``listing_high``, the lowest and highest close of the
        sessions L to ``as_of``; they only widen, so the listing only grows.
        """
        listed_on = np.minimum(self.listing_sessions(g["expiration"]), as_of.to_datetime64())
        days, close = self._closes(p, pd.Timestamp(listed_on.min()) if len(g) else as_of, as_of)
        row = pd.Index(p["ticker"]).get_indexer(g["ticker"])
        since = days.searchsorted(listed_on)
        # Extremes from each session to as_of: minimum and maximum accumulated backwards in time.
        low = np.minimum.accumulate(close[:, ::-1], axis=1)[:, ::-1]
        high = np.maximum.accumulate(close[:, ::-1], axis=1)[:, ::-1]
        g["spot"] = close[row, -1]
        g["listing_low"], g["listing_high"] = low[row, since], high[row, since]
        listing_close = close[row, since]
        t = sessions.year_fraction(sessions.session_closes_utc(listed_on), g["expiration"])
        event_std = g["jump_std"].to_numpy() * g["true_premium"].to_numpy()
        sd = np.sqrt((g["diffusive_vol"].to_numpy() ** 2 + REPORTS_PER_YEAR * event_std ** 2) * t)
        forward = listing_close * np.exp((self.rate - g["dividend_yield"].to_numpy()) * t)
        step = self._strike_step(listing_close)
        g["strike_step"] = step
        g["inner_steps"] = np.clip(np.ceil(forward * sd * LISTING_INNER_STDS / step), 3, 20).astype(int)
        g["outer_steps"] = np.clip(np.ceil(forward * sd * LISTING_OUTER_STDS / (2 * step)), 2, 12).astype(int)
        return g

    @staticmethod
    def _strike_step(spot: np.ndarray) -> np.ndarray:
        return np.select([spot < 25, spot < 60, spot < 150, spot < 500], [0.5, 1.0, 2.5, 5.0], 10.0)

    @staticmethod
    def diffusive_variance(g: pd.DataFrame, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Diffusive total variance w(k) and its slope dw/dk at k = ln(K/F), per row of ``g``.

        w = (sigma_d^2 t) (1 + beta z + gamma L (sqrt((z/L)^2 + 1) - 1)) + later event variance,
        z = k / (atm_vol sqrt(t)) (standardized by the expiration's whole ATM std, as quoted
        smiles are): an SVI-shaped smile, smooth at every strike (no clip or floor), nearly
        quadratic for |z| < L = SMILE_WIDTH, put skew beta < 0, wing slopes gamma +- beta >= 0 so
        both wings rise; the bracket stays >= 1 - gamma L (1 - sqrt(1 - (beta/gamma)^2)) > 0 for
        the universe's parameters, and the wing slopes in k are far below Lee's 2.
        """
        diffusive = g["diffusive_vol"].to_numpy() ** 2 * g["t"].to_numpy()
        scale = g["atm_vol"].to_numpy() * np.sqrt(g["t"].to_numpy())
        beta, gamma = g["skew_beta"].to_numpy(), g["skew_gamma"].to_numpy()
        z = k / scale
        root = np.sqrt((z / SMILE_WIDTH) ** 2 + 1.0)
        w = diffusive * (1.0 + beta * z + gamma * SMILE_WIDTH * (root - 1.0)) + g["later_event_variance"].to_numpy()
        return w, diffusive / scale * (beta + gamma * z / (SMILE_WIDTH * root))

    @staticmethod
    def law(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The priced (risk-neutral) event law of each row: weights, martingale means, stds (n, 2)."""
        return tuple(g[[f"law_{name}_1", f"law_{name}_2"]].to_numpy(float) for name in ("weight", "mean", "std"))

    def model_prices(self, g: pd.DataFrame, strike, is_call):
        """Exact prices of the rows of ``g`` (one strike each), their IVs and the strikes' k."""
        fwd, t, disc = g["forward"].to_numpy(), g["t"].to_numpy(), g["discount"].to_numpy()
        k = np.log(strike / fwd)
        w, _ = self.diffusive_variance(g, k)
        weights, means, stds = self.law(g)
        price = mixture_price(fwd, strike, t, w, disc, is_call, weights, means, stds)
        # One component: the price is Black-76 at F with total variance w + s^2, its IV exact;
        # a mixture's IV is inverted (on the out-of-the-money side, which holds the time value).
        vol = np.sqrt((w + stds[:, 0] ** 2) / t)
        mixed = np.flatnonzero(weights[:, 1] > 0)
        if mixed.size:
            otm_call = strike[mixed] >= fwd[mixed]
            otm = np.where(otm_call == is_call[mixed], price[mixed],
                           price[mixed] + np.where(otm_call, -1.0, 1.0) * disc[mixed] * (fwd[mixed] - strike[mixed]))
            inverted = implied_vol(otm, fwd[mixed], strike[mixed], t[mixed], disc[mixed], otm_call)[0]
            # Far wings whose time value underflows have no IV to invert: the vol of the law's
            # whole variance stands in (a quote there is worth nothing anyway).
            whole = np.sqrt((w[mixed] + mixture_variance(weights[mixed], means[mixed], stds[mixed])) / t[mixed])
            vol[mixed] = np.where(np.isfinite(inverted), inverted, whole)
        return price, vol, k

    @staticmethod
    def _listed_strikes(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(row of g, strike) of every listed strike, sorted by row then strike.

        On the lattice fixed at listing (:meth:`_strike_lattice`), in steps s: every multiple of s
        from round(listing_low / s) - inner_steps to round(listing_high / s) + inner_steps (denser
        near every price the stock has had since), and every multiple of 2 s within outer_steps
        double steps beyond. The step and widths never change and the range only widens, so every
        strike once listed stays listed until its expiration: a trade opened at any strike (also
        a condor's wings after a large move) is still quoted when it is closed.
        """
        step = g["strike_step"].to_numpy()
        outer = g["outer_steps"].to_numpy()
        first = np.round(g["listing_low"].to_numpy() / step).astype(int) - g["inner_steps"].to_numpy()
        last = np.round(g["listing_high"].to_numpy() / step).astype(int) + g["inner_steps"].to_numpy()
        count = last - first + 1 + 4 * outer
        gi = np.repeat(np.arange(len(g)), count)
        k = first[gi] - 2 * outer[gi] + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        listed = (((k >= first[gi]) & (k <= last[gi])) | (k % 2 == 0)) & (k > 0)
        return gi[listed], np.round(k[listed] * step[gi[listed]], 2)

    def chains(self, wanted: pd.DataFrame, as_of) -> pd.DataFrame:
        as_of = pd.Timestamp(as_of)
        g = self._expiry_groups(wanted, as_of)
        if g.empty:
            return self._archive("chains", as_of, pd.DataFrame(columns=CHAIN_COLUMNS))
        gi, strike = self._listed_strikes(g)
        rows = g.iloc[gi].reset_index(drop=True)
        n = len(rows)
        rows = pd.concat([rows, rows], ignore_index=True)
        strike = np.concatenate([strike, strike])
        is_call = np.repeat([True, False], n)
        fwd, t, disc = rows["forward"].to_numpy(), rows["t"].to_numpy(), rows["discount"].to_numpy()
        model, vol, k = self.model_prices(rows, strike, is_call)
        x = k / (rows["atm_vol"].to_numpy() * np.sqrt(t))
        delta = black76_delta(fwd, strike, t, vol, disc, is_call)

        tid = rows["ticker_id"].to_numpy()
        eday = rows["expiration"].values.astype("datetime64[D]").astype(np.int64)
        key = (tid, eday, np.round(strike * 100).astype(np.int64), is_call.astype(int))
        liq = rows["liquidity"].to_numpy()
        # Full spread as a fraction of mid: 1-3% for liquid ATM names, 10-30% for illiquid ones,
        # wider in the wings; never under two ticks.
        rel_spread = (0.012 + 0.22 * (1 - liq) ** 2) * (1 + 0.6 * np.abs(x)) * (1 + 0.25 * uniform(self.seed, S_QUOTE, *key, 0))
        half = np.maximum(rel_spread * model, 2 * TICK) / 2
        center_q = model * (1 + 0.002 * normal(self.seed, S_QUOTE, *key, 1))
        bid = np.floor((center_q - half) / TICK + 1e-9) * TICK
        ask = np.ceil((center_q + half) / TICK - 1e-9) * TICK
        bid = np.where(bid < TICK, 0.0, bid)
        bad = uniform(self.seed, S_BAD, *key)
        bid = np.where(bad < 0.01, 0.0, bid)                                   # pulled bids
        crossed = (bad > 0.994) & (bid > 0)
        bid, ask = np.where(crossed, ask + TICK, bid), np.where(crossed, bid, ask)  # crossed markets
        base_oi = 20 + 20000 * liq ** 2
        oi = np.floor(base_oi * np.exp(-0.7 * np.abs(x)) * np.exp(0.8 * normal(self.seed, S_OI, *key)))
        vol_traded = np.floor(oi * 0.15 * uniform(self.seed, S_TVOL, *key, 0) ** 2 * (1 + 3 * rows["is_event_expiry"].to_numpy()))
        last = np.where(vol_traded > 0, np.round(center_q / TICK) * TICK, np.nan)
        chains = pd.DataFrame({
            "ticker": rows["ticker"].to_numpy(),
            "expiration": rows["expiration"].to_numpy(),
            "strike": strike,
            "option_type": np.where(is_call, "C", "P"),
            "bid": np.round(bid, 2),
            "ask": np.round(ask, 2),
            "last": np.round(last, 2),
            "volume": vol_traded,
            "open_interest": oi,
            "underlying_price": rows["spot"].to_numpy(),
            "quote_time": rows["quote_time"].to_numpy(),
            "snapshot_time": rows["quote_time"].to_numpy(),     # pulled at the as-of close
            "vendor_iv": np.round(vol, 4),
            "vendor_delta": np.round(delta, 4),
            "source": self.name,
        }).sort_values(["ticker", "expiration", "option_type", "strike"], kind="stable").reset_index(drop=True)
        return self._archive("chains", as_of, chains)

    # ---- ground truth --------------------------------------------------------------------
    def truth_events(self, as_of, horizon_days: int, tickers=None) -> pd.DataFrame:
        """Per (ticker, report_date) up to as_of + horizon: true jump law, embedded event std,
        realized reaction (past events) and the model straddle of the event expiration (upcoming).

        ``tickers`` limits the realized moves and model straddles (which need price paths) to
        those tickers; every event keeps its row and its true parameters."""
        as_of = pd.Timestamp(as_of)
        end = as_of + pd.Timedelta(days=horizon_days)
        ev = self.events(EPOCH, end)
        priced = self.universe if tickers is None else self._params(sorted(set(tickers)))
        days, bars = self._paths(priced, EPOCH, as_of)
        row = pd.Index(priced["ticker"]).get_indexer(ev["ticker"])
        col = days.get_indexer(pd.DatetimeIndex(ev["reaction_date"]))
        reacted = (row >= 0) & (col > 0) & (ev["reaction_date"] <= as_of).to_numpy()
        realized = np.full(len(ev), np.nan)
        close = bars["close"]
        realized[reacted] = np.round(close[row[reacted], col[reacted]], 4) / np.round(close[row[reacted], col[reacted] - 1], 4) - 1
        ev["realized_move"] = realized
        upcoming = ev[(ev["reaction_date"] > as_of) & (ev["report_date"] <= end) & (row >= 0)]
        model = pd.DataFrame({"ticker": pd.Series(dtype="str"), "report_date": pd.Series(dtype="datetime64[ns]")})
        if len(upcoming):
            listed = self.expirations(upcoming["ticker"].unique().tolist(), as_of)
            first = upcoming.groupby("ticker", as_index=False)["reaction_date"].min()
            g = self._expiry_groups(event_expirations(listed, first, count=1), as_of)
            model = self._event_truth(g).assign(report_date=g["ticker"].map(
                upcoming.groupby("ticker")["report_date"].min()).to_numpy())
        # The laws' components: real world (jump_std scale) and priced (event_std scale, martingale).
        shape = {name: ev[[f"shape_{name}_1", f"shape_{name}_2"]].to_numpy(float) for name in ("weight", "mean", "std")}
        rw_std, rn_std = ev["true_move_std"].to_numpy()[:, None], ev["implied_move_std"].to_numpy()[:, None]
        rn_means = martingale_means(shape["weight"], rn_std * shape["mean"], rn_std * shape["std"])
        for c in range(2):
            ev[f"law_weight_{c + 1}"] = shape["weight"][:, c]
            ev[f"rw_mean_{c + 1}"], ev[f"rw_std_{c + 1}"] = rw_std[:, 0] * shape["mean"][:, c], rw_std[:, 0] * shape["std"][:, c]
            ev[f"rn_mean_{c + 1}"], ev[f"rn_std_{c + 1}"] = rn_means[:, c], rn_std[:, 0] * shape["std"][:, c]
        ev = ev.drop(columns=["ticker_id", *(c for c in ev.columns if c.startswith("shape_"))])
        ev = ev.rename(columns={"jump": "realized_jump"})
        return ev.merge(model, on=["ticker", "report_date"], how="left")

    def _event_truth(self, g: pd.DataFrame) -> pd.DataFrame:
        """What the exact price function says about each event expiration (rows of ``g``).

        model straddle at K = F over the spot, ATM IV and the ATM-equivalent event std (the normal
        event std with the same ATM total variance), exact two-sided exceedance probabilities
        P(|S_T/F - 1| > k) from the analytic digitals at k = model implied move, 5% and 10%,
        and ``true_rn_bimodal`` (the rule of :mod:`pipeline.kernel.bimodality` on the exact density). The
        smile's truth is in the chains themselves: ``vendor_iv`` is the exact IV at each listed
        strike (to 4 decimals).
        """
        n = len(g)
        fwd, t, disc = g["forward"].to_numpy(), g["t"].to_numpy(), g["discount"].to_numpy()
        weights, means, stds = self.law(g)
        w0, _ = self.diffusive_variance(g, np.zeros(n))
        call = mixture_price(fwd, fwd, t, w0, disc, np.ones(n, bool), weights, means, stds)
        atm_vol = implied_vol(call, fwd, fwd, t, disc, True)[0]
        out = pd.DataFrame({
            "ticker": g["ticker"].to_numpy(), "event_expiration": g["expiration"].to_numpy(),
            "spot": g["spot"].to_numpy(), "model_straddle_move": 2 * call / g["spot"].to_numpy(),
            "model_atm_vol": atm_vol,
            "atm_equiv_event_std": np.sqrt(np.maximum(atm_vol ** 2 * t - w0, 0.0)),
            "diffusive_vol": g["diffusive_vol"].to_numpy(),
        })

        def exceed(level):
            rows = np.repeat(np.arange(n), 2)
            strike = fwd[rows] * (1 + np.tile([1.0, -1.0], n) * np.repeat(level, 2))
            w, slope = self.diffusive_variance(g.iloc[rows], np.log(strike / fwd[rows]))
            up = mixture_exceedance(fwd[rows], strike, w, slope, weights[rows], means[rows], stds[rows]).reshape(n, 2)
            return up[:, 0] + 1.0 - up[:, 1]

        out["true_rn_p_exceed_implied"] = exceed(out["model_straddle_move"].to_numpy())
        for level in (0.05, 0.10):
            out[f"true_rn_p_exceed_{round(level * 100)}pct"] = exceed(np.full(n, level))
        # The exact density of ln(S_T/F) on the rule's window, from differences of the digitals.
        z = np.linspace(-BIMODAL_WINDOW, BIMODAL_WINDOW, 161)
        rows = np.repeat(np.arange(n), z.size)
        k = (np.sqrt(atm_vol ** 2 * t)[:, None] * z[None, :]).ravel()
        w, slope = self.diffusive_variance(g.iloc[rows], k)
        p_up = mixture_exceedance(fwd[rows], fwd[rows] * np.exp(k), w, slope, weights[rows], means[rows],
                                  stds[rows]).reshape(n, z.size)
        out["true_rn_trough_depth"] = trough_depth(-np.diff(p_up, axis=1), np.ones((n, z.size - 1), bool))
        out["true_rn_bimodal"] = bimodal(out["true_rn_trough_depth"].to_numpy())
        return out
