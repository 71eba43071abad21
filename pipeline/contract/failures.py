"""The one record of per-ticker failures in a run, shared by the jobs and the sources.

A ticker that fails a stage is recorded once for that stage, with the first reason given: a
source that already said why it skipped a ticker is not contradicted by a job's generic check.
"""
from __future__ import annotations

import logging

from pipeline.contract.outside_text import escape_controls

log = logging.getLogger("pipeline")


class Failures:
    """(ticker, stage, reason) records in the order they were first reported."""

    def __init__(self):
        self._records: dict[tuple[str, str], str] = {}

    def add(self, ticker: str, stage: str, reason: str) -> bool:
        """Record a failure; False (and nothing recorded) when the ticker already failed the stage."""
        # Reasons and tickers may quote a vendor: escaped once here, they are safe in the log,
        # on stderr, in the manifest, the CSV and the page.
        key = (escape_controls(ticker), stage)
        if key in self._records:
            return False
        reason = escape_controls(reason)
        self._records[key] = reason
        log.warning("%s %s: %s", stage, key[0], reason)
        return True

    def seed(self, records) -> None:
        """Records already reported (e.g. by a dask client, for its task): kept, not logged again."""
        for ticker, stage, reason in records:
            self._records.setdefault((str(ticker), stage), reason)

    def tickers(self, stage: str) -> set[str]:
        return {ticker for ticker, at in self._records if at == stage}

    def __iter__(self):
        return ((ticker, stage, reason) for (ticker, stage), reason in self._records.items())

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Failures({list(self)!r})"
