"""Incremental fetch logic: only missing sessions, only stale histories, nothing erased on failure."""
import pandas as pd

from pipeline.driver import jobs
from pipeline.contract.config import Config
from pipeline.sources.synthetic import SyntheticMarket
from pipeline.contract.store import Store

AS_OF = pd.Timestamp("2026-11-20")


class CountingMarket(SyntheticMarket):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.price_calls, self.history_calls, self.drop = [], [], set()

    def prices(self, tickers, start, end):
        self.price_calls.append((tuple(tickers), pd.Timestamp(start), pd.Timestamp(end)))
        return super().prices(tickers, start, end)

    def earnings_history(self, tickers, as_of):
        self.history_calls.append(tuple(tickers))
        history = super().earnings_history(tickers, as_of)
        return history[~history["ticker"].isin(self.drop)]


def context(tmp_path, market):
    return jobs.Context(config=Config(universe_size=120), store=Store(tmp_path), source=market)


def test_missing_price_ranges_are_per_ticker_spans():
    stored = pd.DataFrame({"ticker": ["A", "A"], "date": pd.to_datetime(["2026-11-18", "2026-11-19"])})
    spans = jobs.missing_price_ranges(stored, ["A", "B"], "2026-11-18", "2026-11-20").set_index("ticker")
    assert spans.loc["A"].tolist() == [pd.Timestamp("2026-11-20")] * 2
    assert spans.loc["B"].tolist() == [pd.Timestamp("2026-11-18"), pd.Timestamp("2026-11-20")]
    full = pd.DataFrame({"ticker": "A", "date": pd.to_datetime(["2026-11-18", "2026-11-19", "2026-11-20"])})
    assert jobs.missing_price_ranges(full, ["A"], "2026-11-18", "2026-11-20").empty


def test_backfill_fetches_only_new_sessions_on_the_next_day(tmp_path):
    market = CountingMarket(universe_size=120)
    ctx = context(tmp_path, market)
    jobs.fetch_calendar(ctx, AS_OF)
    jobs.backfill_prices(ctx, [AS_OF])
    first = ctx.store.read("prices")
    market.price_calls.clear()
    nxt = pd.Timestamp("2026-11-23")
    jobs.fetch_calendar(ctx, nxt)
    jobs.backfill_prices(ctx, [nxt])
    # Tickers already stored are asked only for the new session(s).
    known = set(first["ticker"])
    for tickers, start, end in market.price_calls:
        if set(tickers) <= known:
            assert start >= pd.Timestamp("2026-11-23") and end == nxt
    again = ctx.store.read("prices")
    assert len(again) > len(first)
    pd.testing.assert_frame_equal(again[again["date"] <= AS_OF].merge(first[["ticker"]].drop_duplicates()).reset_index(drop=True),
                                  first.reset_index(drop=True), check_like=True)
    market.price_calls.clear()
    jobs.backfill_prices(ctx, [nxt])
    assert market.price_calls == []                     # nothing missing: no call at all


def test_history_is_refetched_only_when_stale_and_never_erased_on_failure(tmp_path):
    market = CountingMarket(universe_size=120)
    ctx = context(tmp_path, market)
    jobs.fetch_calendar(ctx, AS_OF)
    assert jobs.fetch_history(ctx, [AS_OF]) > 0
    before = ctx.store.read("earnings_history")
    market.history_calls.clear()
    assert jobs.fetch_history(ctx, [AS_OF]) == 0 and market.history_calls == []   # fresh: no call
    # Make one ticker's stored history look stale; the source then fails to return it.
    victim = before["ticker"].iloc[0]
    stale = before[~((before["ticker"] == victim) & (before["report_date"] > "2026-06-01"))]
    ctx.store.write("earnings_history", stale)
    market.drop = {victim}
    jobs.fetch_history(ctx, [AS_OF])
    after = ctx.store.read("earnings_history")
    assert (after["ticker"] == victim).sum() == (stale["ticker"] == victim).sum()     # kept, not erased
    assert (victim, "fetch-history", "source returned no earnings history") in ctx.failures
