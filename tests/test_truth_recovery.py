"""The IV surface, term structure and skew recover what the synthetic market embeds."""
import numpy as np
import pandas as pd
import pytest

from pipeline.stages import skew, term
from pipeline.stages.events import event_expirations, upcoming_events
from pipeline.stages.panel import dated
from pipeline.stages.surface import build_surface

AS_OF = pd.Timestamp("2026-11-20")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recovered(market, truth):
    # A two-week window, known timing only: the truth's reaction session is then the stage's.
    calendar = market.calendar(AS_OF, 90)
    events = upcoming_events(dated(calendar, AS_OF), 14).drop(columns="as_of")
    events = events[events["timing"] != "UNKNOWN"]
    wanted = event_expirations(market.expirations(events["ticker"].tolist(), AS_OF), events)
    chains = market.chains(wanted, AS_OF)
    surface = build_surface(chains, market.rate)
    truth = truth(14)
    ts = term.term_structure(term.atm_iv_by_expiration(surface), events).merge(truth, on=["ticker", "report_date"])
    # The smile's truth: the skew stage on the exact IVs at the listed strikes (the chains' vendor_iv).
    exact = skew.fit_skew(surface.assign(iv=chains["vendor_iv"], iv_status="ok"))
    exact = exact[["ticker", "expiration", "skew_slope", "skew_curvature"]].rename(
        columns={"skew_slope": "true_skew_slope", "skew_curvature": "true_skew_curvature"})
    fits = skew.fit_skew(surface).merge(exact, on=["ticker", "expiration"]).merge(
        truth, left_on=["ticker", "expiration"], right_on=["ticker", "event_expiration"])
    return surface, chains, ts, fits


def test_surface_ivs_match_the_model_smile(recovered):
    surface, chains, _, _ = recovered
    assert (surface["iv_status"] == "ok").mean() > 0.7
    # The chain's vendor_iv is the model smile vol (to 4 decimals); the quotes around it are
    # jittered by 0.2% and rounded to a cent, so out-of-the-money quotes worth more than 20
    # cents recover it to a few tenths of a vol point.
    otm = np.where(surface["option_type"] == "C", surface["strike"] >= surface["forward"],
                   surface["strike"] < surface["forward"])
    chosen = (surface["iv_status"] == "ok") & (surface["mid"] > 0.2) & otm
    error = (surface["iv"] - chains["vendor_iv"])[chosen].abs()
    assert chosen.sum() >= 1000
    assert error.median() < 0.001
    assert error.quantile(0.99) < 0.006


def test_term_structure_recovers_the_embedded_event_std(recovered):
    _, _, ts, _ = recovered
    usable = ts.dropna(subset=["ts_event_std"])
    assert len(usable) >= 60
    # The ATM-equivalent event std: the normal law with the same ATM total variance (DESIGN 7).
    ratio = usable["ts_event_std"] / usable["atm_equiv_event_std"]
    assert abs(ratio.median() - 1) < 0.02
    assert ((ratio - 1).abs() < 0.10).mean() >= 0.9
    diffusive = usable["ex_earnings_vol"] / usable["diffusive_vol"]
    assert abs(diffusive.median() - 1) < 0.03


def test_skew_recovers_the_put_skew_and_the_concave_pre_earnings_smiles(recovered):
    _, _, _, fits = recovered
    fitted = fits.dropna(subset=["skew_slope"])
    assert len(fitted) >= 50
    # Every synthetic smile has a put skew (negative slope in standardized moneyness).
    assert (fitted["skew_slope"] < 0).mean() >= 0.95
    assert np.corrcoef(fitted["skew_slope"], fitted["true_skew_slope"])[0, 1] > 0.8
    concave = fitted[fitted["true_skew_curvature"] < 0]
    convex = fitted[fitted["true_skew_curvature"] > 0]
    assert len(concave) >= 5
    assert (concave["skew_curvature"] < 0).mean() >= 0.8
    assert (convex["skew_curvature"] > 0).mean() >= 0.8
    assert (fitted["rr25"] < 0).mean() >= 0.9          # 25-delta puts richer than calls


def test_the_shared_truth_equals_a_direct_call(market, truth):
    """conftest's ``truth(h)`` cuts one 14-day truth_events to h days; it must be the direct call."""
    pd.testing.assert_frame_equal(truth(7), market.truth_events(AS_OF, 7))
