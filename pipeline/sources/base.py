"""What every market-data source provides, as normalized DataFrames (columns per schemas.py).

A ticker a source cannot deliver is left out of the answer and recorded, with its reason, in the
run's :class:`pipeline.contract.failures.Failures` given to the source when it is made. Fetch stages talk
only to this interface, so the synthetic market and the live vendors are
interchangeable and a live run can be checked against a synthetic one.
"""
from __future__ import annotations

from typing import Protocol

import pandas as pd


class SourceUnavailable(RuntimeError):
    """The configured source cannot be used (e.g. missing credentials)."""


class SourceError(RuntimeError):
    """A source could not deliver; the message names the source, endpoint and symbol."""


class Source(Protocol):
    name: str

    def calendar(self, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """Reports with as_of <= report_date <= as_of + horizon_days (Calendar columns)."""

    def earnings_history(self, tickers: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        """Past reports with report_date <= as_of (EarningsHistory columns)."""

    def prices(self, tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Daily bars for sessions in [start, end] (Prices columns)."""

    def expirations(self, tickers: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
        """Listed expirations after as_of: columns ticker, expiration."""

    def chains(self, wanted: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
        """Quotes for the (ticker, expiration) pairs in ``wanted`` as of the as_of close (Chains columns)."""

    def call_counts(self) -> dict[str, int]:
        """Requests sent to each vendor endpoint so far (empty for sources without a vendor)."""

    def close(self) -> None:
        """Release connections and caches."""
