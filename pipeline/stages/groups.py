"""Grouping kernels on integer codes for the quote stages (surface, term, skew).

Grouping, joining or sorting on (ticker, expiration) itself is slow: the ticker is an Arrow
string, and pandas' composite-key machinery costs seconds per million quotes. The stages number
the groups once (quote_groups) and do the rest with NumPy on that integer code.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.stages.panel import key

QUOTE_KEY = ["ticker", "expiration"]


def quote_key(frame: pd.DataFrame) -> list[str]:
    """The quote-group key of ``frame``: (as_of, ticker, expiration) on a panel, else (ticker, expiration)."""
    return key(frame, "expiration")


def quote_groups(frame: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Per row the number of its :func:`quote_key` in sorted key order, and the number of groups.

    -1 where the ticker or the expiration is missing: such rows are in no group, as in groupby.
    """
    group = frame.groupby(quote_key(frame)).ngroup().to_numpy(dtype=np.int64, na_value=-1)
    return group, int(group.max(initial=-1)) + 1


def quote_keys(frame: pd.DataFrame, group: np.ndarray, n_groups: int) -> pd.DataFrame:
    """The :func:`quote_key` of every group (from its first row): one row per group, sorted."""
    rows = np.flatnonzero(group >= 0)
    first = np.full(n_groups, group.size)
    np.minimum.at(first, group[rows], rows)
    return pd.DataFrame({column: frame[column].take(first).array for column in quote_key(frame)})


def to_rows(per_group: np.ndarray, group: np.ndarray, missing) -> np.ndarray:
    """Per-group values spread over the rows, ``missing`` on rows in no group (group -1)."""
    return np.append(per_group, missing)[group]


def group_median(group: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """Per-group median as pandas' groupby median; ``group`` in [0, n_groups).

    NaN values are skipped; the median is the middle value of an odd count and
    (upper middle + lower middle) / 2 of an even one; NaN for a group without values.
    """
    present = np.flatnonzero(~np.isnan(values))
    order = present[np.argsort(group[present], kind="stable")]
    group, values = group[order], values[order]
    # Values mostly repeat within a group (one spot, one time to expiry per expiration) and a group
    # of equal values is sorted already: only groups holding different values are sorted by value.
    differs = (group[1:] == group[:-1]) & (values[1:] != values[:-1])
    mixed = np.zeros(n_groups, bool)
    mixed[group[1:][differs]] = True
    rows = np.flatnonzero(mixed[group])
    values[rows] = values[rows[np.lexsort((values[rows], group[rows]))]]
    count = np.bincount(group, minlength=n_groups)
    middle = np.cumsum(count) - count + count // 2
    padded = np.append(values, np.nan)
    median = np.where(count % 2 == 1, padded[middle], (padded[middle] + padded[middle - 1]) / 2)
    return np.where(count > 0, median, np.nan)


def run_starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Where each run of equal codes (>= 0, sorted) starts."""
    return np.flatnonzero(np.diff(sorted_codes, prepend=-1))


def run_numbers(start: np.ndarray, size: int) -> np.ndarray:
    """The run number of each of ``size`` elements, from the run starts."""
    return np.repeat(np.arange(start.size), np.diff(start, append=size))


def contract_runs(group, strike, is_put, rows):
    """``rows`` ordered by contract (group, strike, call before put), their sort keys, and run starts.

    A run is one contract's quotes in row order (the sort is stable), so it starts at the
    contract's first row. ``rows`` must have a group and a strike.
    """
    strike_rank = pd.factorize(strike[rows], sort=True)[0]
    key = (group[rows] * (strike_rank.max(initial=-1) + 1) + strike_rank) * 2 + is_put[rows]
    order = np.argsort(key, kind="stable")
    key = key[order]
    return rows[order], key, run_starts(key)


def run_means(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Mean of each run values[start[i]:start[i + 1]], NaN skipped (pandas' groupby mean)."""
    if start.size == values.size:
        return values   # one quote per contract, the usual case: each mean is the value itself
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return (np.add.reduceat(np.where(present, values, 0.0), start)
                / np.add.reduceat(present, start, dtype=np.int64))


def smallest_per_group(group, distance, count):
    """Indices of the ``count`` smallest distances in each group, ties to the lower index.

    ``group`` is sorted. ``count`` rounds of per-group minima instead of a sort by distance:
    a float sort of every pair costs more than a few passes over the groups.
    """
    start = run_starts(group)
    run = run_numbers(start, group.size)
    position = np.arange(distance.size)
    taken = np.zeros(distance.size, bool)
    for _ in range(count):
        remaining = np.where(taken, np.inf, distance)
        nearest = np.minimum.reduceat(remaining, start)
        hit = np.where((remaining == nearest[run]) & ~taken, position, distance.size)
        pick = np.minimum.reduceat(hit, start)
        taken[pick[pick < distance.size]] = True
    return np.flatnonzero(taken)
