"""A real end-of-day chain (AAPL, 2014-08-07, iVolatility sample; see tests/data/NOTICE) through
the surface, smile, density and term stages: vendor IVs recovered, a density per expiration."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.contract import sessions
from pipeline.stages import density, skew, term
from pipeline.stages.surface import build_surface

CHAIN = Path(__file__).parent / "data" / "aapl_2014-08-07_ivolatility_chain.csv"
RATE = 0.0025          # about the 2014 short rate; the parity forward carries the dividend


@pytest.fixture(scope="module")
def chain() -> pd.DataFrame:
    raw = pd.read_csv(CHAIN)
    as_of = pd.to_datetime(raw["date"], format="%m/%d/%Y")
    listed = pd.to_datetime(raw["option_expiration"], format="%m/%d/%Y").to_numpy(dtype="datetime64[ns]")
    # Monthlies of that era are dated the Saturday after their last trading session.
    expiration = sessions.sessions_on_or_before(listed)
    snapshot = sessions.session_closes_utc(as_of.unique())[0]
    return pd.DataFrame({
        "ticker": raw["symbol"].astype(str), "expiration": pd.to_datetime(expiration),
        "strike": raw["strike"].astype(float), "option_type": raw["call/put"].astype(str),
        "bid": raw["bid"].astype(float), "ask": raw["ask"].astype(float), "last": np.nan,
        "volume": raw["volume"].astype(float), "open_interest": raw["open_interest"].astype(float),
        "underlying_price": raw["stock_price_close"].astype(float), "quote_time": snapshot,
        "snapshot_time": snapshot, "vendor_iv": raw["iv"].astype(float), "vendor_delta": raw["delta"].astype(float),
        "source": "ivolatility",
    })


@pytest.fixture(scope="module")
def stages(chain):
    surface = build_surface(chain, RATE)
    atm = term.atm_iv_by_expiration(surface)
    return surface, atm


def test_out_of_the_money_ivs_match_the_vendor(chain, stages):
    surface, _ = stages
    assert chain["expiration"].nunique() == 13
    otm = np.where(surface["option_type"] == "C", surface["strike"] >= surface["forward"],
                   surface["strike"] < surface["forward"])
    near = (surface["strike"] / surface["forward"] - 1).abs() <= 0.10
    chosen = (surface["iv_status"] == "ok") & otm & near & (surface["t"] > 10 / 365)
    error = (surface["iv"] - chain["vendor_iv"])[chosen].abs()
    assert chosen.sum() >= 100
    assert error.max() <= 0.01, error.max()
    assert error.median() <= 0.002, error.median()


def test_a_density_per_expiration_with_its_mass_and_arbitrage(chain, stages):
    surface, atm = stages
    usable = atm.dropna(subset=["atm_iv"])
    usable = usable[usable["t"] > 2 / 365]
    events = usable[["ticker", "expiration"]].assign(
        report_date=usable["expiration"], implied_move=np.nan, ex_earnings_vol=np.nan).reset_index(drop=True)
    out = density.event_densities(surface, atm, events, pd.DataFrame({"ticker": [], "reaction_date": [], "close_move": []}))
    priced = out[out["rn_bimodal"].notna()]
    assert len(priced) >= 10, out
    assert (priced["rn_mass_inside"] >= 0.97).all(), priced["rn_mass_inside"]
    assert priced["rn_arbitrage_mass"].notna().all() and (priced["rn_arbitrage_mass"] >= 0).all()
    assert priced["rn_p_exceed_10pct"].between(0, 1).all()
    # The term structure and the smile fit run on it (no upcoming report: the flag says so).
    fits = skew.fit_skew(surface, atm=atm)
    assert fits["skew_slope"].notna().sum() >= 10
    ts = term.term_structure(atm, pd.DataFrame({"ticker": ["AAPL"], "report_date": [pd.Timestamp("2014-10-20")],
                                                "reaction_date": [pd.Timestamp("2014-10-21")]}))
    assert len(ts) == 1 and (ts["ts_event_std"].notna() | ts["ts_flag"].notna()).all()
