"""Ranking quality: does the reported VRP order events like the synthetic market's true premium?

Every ticker of the default universe reports once a quarter, so running the compute stage for
each session of a quarter and keeping each event as seen on the session before it reacts covers
the whole universe once, the way a trader would see it the day before.
"""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from pipeline.contract import sessions
from pipeline.contract.config import Config
from pipeline.stages.events import event_expirations, upcoming_events
from pipeline.stages.panel import dated
from pipeline.stages.params import stage_params
from pipeline.stages.metrics import compute_metrics

END = pd.Timestamp("2026-11-20")
# One compute per session of a quarter: 65 calls of ~0.5 s, the longest fixture of the suite.
# One test uses it, so it is built once however xdist spreads the tests.
pytestmark = pytest.mark.slow


def rows_of(frame: pd.DataFrame):
    """names -> frame[frame["ticker"].isin(names)] (the same rows in the same order), with the row
    positions of each ticker found once rather than by a pass over every row for each session."""
    positions = frame.groupby("ticker").indices
    none = np.empty(0, dtype=np.intp)
    return lambda names: frame.iloc[np.sort(np.concatenate([positions.get(n, none) for n in names]))]


@pytest.fixture(scope="module")
def day_before_metrics(market, truth):
    days = sessions.sessions_between("2026-08-20", END)
    tickers = market.universe["ticker"].tolist()
    history = market.earnings_history(tickers, END)
    prices = market.prices(tickers, "2022-06-01", END)
    calendar = market.calendar(days[0], 100)
    config = Config()
    parts = [rows_of(frame) for frame in (calendar, history, prices)]
    rows = []
    for day in days:
        upcoming = upcoming_events(dated(calendar, day), config.lookahead_days)
        next_session = sessions.sessions_offset([day], 0, strict=True)[0]
        names = upcoming.loc[upcoming["reaction_date"] == next_session, "ticker"]
        if names.empty:
            continue
        wanted = event_expirations(market.expirations(names.tolist(), day), upcoming[upcoming.ticker.isin(names)])
        calendar_rows, history_rows, price_rows = (part(names) for part in parts)
        result = compute_metrics(dated(calendar_rows, day), history_rows, price_rows,
                                 dated(market.chains(wanted, day), day), stage_params(config))
        rows.append(result.metrics)
    metrics = pd.concat(rows, ignore_index=True)
    return metrics.merge(truth(1)[["ticker", "report_date", "true_premium", "implied_move_std"]],
                         on=["ticker", "report_date"])


def test_reported_vrp_ranks_events_like_the_true_premium(day_before_metrics):
    """Ranks, then tiers (one test: two would build the fixture on each xdist worker)."""
    m = day_before_metrics.dropna(subset=["vrp"])
    assert m["ticker"].nunique() >= 450                    # the default universe, once each
    rho = spearmanr(m["vrp"], m["true_premium"]).statistic
    oracle = spearmanr(m["implied_move_std"] / m["hist_mean_abs_move"], m["true_premium"]).statistic
    event_rho = spearmanr(m["vrp_event"], m["true_premium"], nan_policy="omit").statistic
    print(f"\nSpearman(vrp, true premium) = {rho:.3f}, vrp_event {event_rho:.3f} over {len(m)} events; "
          f"oracle ceiling {oracle:.3f}")
    # Threshold. Even an oracle that knows the exact event std the options embed only reaches
    # rho ~0.67, because the denominator is the mean of 12 fat-tailed draws (relative error
    # ~25%). The straddle also carries each ticker's own diffusive variance until expiry (up to a
    # week after the event), which has no relation to the premium. Measured: rho ~0.40. Under
    # no skill rho is ~N(0, 1/sqrt(n)) = 0.045 for n ~ 500, so 0.30 is > 6 standard errors above
    # chance and ~0.1 below the measured value, which leaves room for seed-level variation.
    assert rho >= 0.30
    assert oracle > rho
    # Removing the diffusion to expiry (event-only move) closes most of the gap to the oracle:
    # measured ~0.64 against the oracle's ~0.67; the score ranks on it.
    assert event_rho >= 0.55 and event_rho > rho + 0.1
    score_rho = spearmanr(m["score"], m["true_premium"], nan_policy="omit").statistic
    assert score_rho >= 0.45
    higher_tiers_hold_higher_true_premiums(day_before_metrics)


def higher_tiers_hold_higher_true_premiums(day_before_metrics):
    m = day_before_metrics.dropna(subset=["vrp_tier"])
    means = m.groupby("vrp_tier")["true_premium"].mean()
    assert means["EXCELLENT"] > means["SKIP"]
