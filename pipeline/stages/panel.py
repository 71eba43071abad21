"""The panel key of the compute stages.

A pass of the stages computes one as-of date (``daily``), a chunk of consecutive dates (a replay)
or the entry dates of many trades (a backtest): every input and output row carries its as-of date
in the ``as_of`` column, and what is per ticker on one date is per (as_of, ticker) on the panel.
A frame of a single date may leave the column out (a caller's own one-date frame); then the key is
the ticker alone. No label encodes a date.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

AS_OF = "as_of"


def key(frame: pd.DataFrame, *more: str) -> list[str]:
    """The row key of ``frame``: (as_of, ticker, *more), or (ticker, *more) without an ``as_of`` column."""
    return [AS_OF, "ticker", *more] if AS_OF in frame.columns else ["ticker", *more]


def dated(frame: pd.DataFrame, as_of) -> pd.DataFrame:
    """``frame`` (one date's rows) with the ``as_of`` column set to ``as_of`` (a column added,
    nothing copied: stages find it by name)."""
    day = np.full(len(frame), pd.Timestamp(as_of).to_datetime64(), dtype="datetime64[ns]")
    return frame.assign(**{AS_OF: day})
