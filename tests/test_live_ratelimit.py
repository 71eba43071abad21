"""Tradier rate limits: the client follows the X-Ratelimit headers, so a server that enforces
120 requests a minute never answers 429; a rerun inside the cache expiry sends nothing."""
import time

import pandas as pd
import pytest
from live_support import APIKEY, TOKEN, live_source
from loopback import FakeClock, LoopbackVendor

AS_OF = pd.Timestamp("2026-11-20")


@pytest.fixture(scope="module")
def tickers(market):
    """300 names (the first 300 of the default universe), sorted: two and a half windows of 120."""
    return sorted(market.universe["ticker"][:300])


def test_many_tickers_within_120_a_minute_get_no_429_and_a_warm_rerun_sends_nothing(market, tickers, tmp_path):
    clock = FakeClock()
    with LoopbackVendor(market, AS_OF, token=TOKEN, apikey=APIKEY, allowed_per_window=120,
                        window_seconds=60.0, clock=clock) as server:
        listed = live_source(server, tmp_path, clock).expirations(tickers, AS_OF)
        assert set(listed["ticker"]) == set(tickers)
        assert server.requests["expirations"] == 300 and server.count(429) == 0
        assert len([s for s in clock.slept if s > 1]) == 2       # paused twice for a new window

        server.reset_counts()
        again = live_source(server, tmp_path, clock).expirations(tickers, AS_OF)
        pd.testing.assert_frame_equal(again, listed)
        assert server.total_requests() == 0


def test_a_short_real_time_window_is_respected(market, tickers, tmp_path):
    tickers = tickers[:60]
    with LoopbackVendor(market, AS_OF, token=TOKEN, apikey=APIKEY, allowed_per_window=20,
                        window_seconds=0.4) as server:
        began = time.monotonic()
        listed = live_source(server, tmp_path, clock=None).expirations(tickers, AS_OF)
        assert set(listed["ticker"]) == set(tickers)
        assert server.requests["expirations"] == 60 and server.count(429) == 0
        assert time.monotonic() - began < 10
