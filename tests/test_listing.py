"""The synthetic market's strike listing: every strike ever listed for an expiration stays listed
until it expires, and a quote never depends on what else was asked for."""
from __future__ import annotations

import pandas as pd
import pytest

from pipeline.contract import sessions
from pipeline.sources.synthetic import SyntheticMarket

# Six weeks with monthly and weekly expirations passing, step boundaries crossed and reports.
DAYS = sessions.sessions_between("2026-09-14", "2026-10-23")


def listed_contracts(chains: pd.DataFrame) -> set:
    return set(zip(chains["ticker"], chains["expiration"], chains["strike"], chains["option_type"]))


@pytest.fixture(scope="module")
def market():
    return SyntheticMarket(seed=7, universe_size=500)


@pytest.fixture(scope="module")
def sample(market):
    """Every 40th name, and a name whose strike step changes within the window (a close crossing
    a step boundary: the step each listing keeps is its own)."""
    names = market.universe["ticker"].tolist()
    bars = market.prices(names, DAYS[0], DAYS[-1])
    step = SyntheticMarket._strike_step(bars["close"].to_numpy())
    crossing = bars.loc[pd.Series(step).groupby(bars["ticker"].to_numpy()).transform("nunique").to_numpy() > 1, "ticker"]
    assert len(crossing)
    return sorted(set(names[::40]) | {crossing.iloc[0]})


@pytest.mark.slow
def test_no_listed_strike_vanishes_before_its_expiration(market, sample):
    previous, carried = None, 0
    for day in DAYS:
        listed = market.expirations(sample, day)
        today = listed_contracts(market.chains(listed, day))
        if previous is not None:
            # Quotes are taken at the close: an expiration on `day` has expired and is not listed.
            still_open = {c for c in previous if c[1] > day}
            vanished = still_open - today
            assert not vanished, (day.date(), len(vanished), len(still_open), sorted(vanished)[:4])
            carried += len(still_open)
        previous = today
    assert carried > 50_000          # the check ran on whole chains of every listed expiration


def test_the_listing_and_quotes_do_not_depend_on_what_else_was_asked_for(market, sample):
    day = DAYS[-1]
    listed = market.expirations(sample, day)
    whole = market.chains(listed, day)
    # One name at a time, and each name's expirations split in two (alternate ones).
    parts = pd.concat([market.chains(rows.iloc[half::2], day)
                       for _, rows in listed.groupby("ticker") for half in (0, 1)], ignore_index=True)
    key = ["ticker", "expiration", "option_type", "strike"]
    pd.testing.assert_frame_equal(parts.sort_values(key, ignore_index=True), whole.sort_values(key, ignore_index=True))
    assert len(whole) > 5_000


def test_the_lattice_is_fixed_on_the_first_session_that_lists_the_expiration(market, sample):
    day = DAYS[-1]
    listed = market.expirations(sample, day).drop_duplicates("expiration")      # weeklies and monthlies
    first = market.listing_sessions(listed["expiration"])
    assert (first <= day.to_datetime64()).all() and len(set(first)) > 8
    for ticker, expiration, on in zip(listed["ticker"], listed["expiration"], first):
        prior = pd.Timestamp(sessions.previous_sessions([on])[0])
        assert expiration in set(market.expirations([ticker], on)["expiration"])
        assert expiration not in set(market.expirations([ticker], prior)["expiration"])
