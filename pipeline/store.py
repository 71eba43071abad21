"""Hive-partitioned Parquet snapshots under ``<root>/parquet``, written atomically.

Each partition is exactly one file, ``<dataset>/<key>=<value>/part-0.parquet``. A write goes to
a hidden temporary file in the same directory, is fsynced, then ``os.replace``d over the old file,
so a reader sees either the previous snapshot or the new one, never half of either, and a rerun
replaces the partition whole. Temporaries are hidden (``.tmp-*``, skipped by pyarrow datasets)
and end in ``.partial``, so ``*.parquet`` globs (DuckDB, polars) never match them either.
The partition column lives only in the directory name, as hive readers expect.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schemas import DATASETS, empty, validate

FILE_NAME = "part-0.parquet"
TMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not "*.parquet": glob-based readers (DuckDB, polars) would pick a temporary up.
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}.partial"
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _partition_text(value) -> str:
    if isinstance(value, (pd.Timestamp,)) or hasattr(value, "isoformat"):
        return pd.Timestamp(value).date().isoformat()
    return str(value)


class Store:
    """Validated reads and atomic writes of the datasets in :mod:`pipeline.schemas`."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.parquet = self.root / "parquet"

    def partition_path(self, name: str, value=None) -> Path:
        dataset = DATASETS[name]
        base = self.parquet / name
        if dataset.partition is None:
            return base / FILE_NAME
        if value is None:
            raise ValueError(f"dataset '{name}' is partitioned by '{dataset.partition}'; give a value")
        return base / f"{dataset.partition}={_partition_text(value)}" / FILE_NAME

    def write(self, name: str, df: pd.DataFrame, partition=None) -> Path:
        """Validate ``df`` and replace one partition (or the whole unpartitioned dataset)."""
        dataset = DATASETS[name]
        frame = validate(name, df)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for column in dataset.date_columns:
            i = table.schema.get_field_index(column)
            table = table.set_column(i, column, table.column(i).cast(pa.date32()))
        path = self.partition_path(name, partition)
        atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        return path

    def write_by_year(self, name: str, df: pd.DataFrame, column: str = "date") -> list[Path]:
        """Write a year-partitioned dataset, one atomic file per year present in ``df``."""
        years = df[column].dt.year
        return [self.write(name, part, year) for year, part in df.groupby(years, sort=True)]

    def partitions(self, name: str) -> list[str]:
        dataset = DATASETS[name]
        base = self.parquet / name
        if dataset.partition is None or not base.is_dir():
            return []
        prefix = f"{dataset.partition}="
        return sorted(p.name[len(prefix):] for p in base.iterdir()
                      if p.name.startswith(prefix) and (p / FILE_NAME).exists())

    def exists(self, name: str, partition=None) -> bool:
        return self.partition_path(name, partition).exists()

    def read(self, name: str, partition=None) -> pd.DataFrame:
        """Read and validate one partition; for ``year``-partitioned data without a value, all years."""
        dataset = DATASETS[name]
        if dataset.partition == "year" and partition is None:
            if not self.partitions(name):
                raise FileNotFoundError(f"dataset '{name}' has no data under {self.parquet / name}")
            return self.scan(name)
        path = self.partition_path(name, partition)
        if not path.exists():
            where = f" for {dataset.partition}={_partition_text(partition)}" if partition is not None else ""
            raise FileNotFoundError(f"dataset '{name}' has no snapshot{where} ({path})")
        return validate(name, self._read_file(name, path))

    def read_or_empty(self, name: str) -> pd.DataFrame:
        """An unpartitioned or year-partitioned dataset, empty when nothing was ever written."""
        has_data = self.partitions(name) if DATASETS[name].partition == "year" else self.exists(name)
        return self.read(name) if has_data else empty(name)

    def scan(self, name: str, dates=None, tickers=None, columns=None) -> pd.DataFrame:
        """Validated rows of ``name`` limited to partitions, tickers and columns.

        ``dates``: partition values to read (dates for ``date``/``asof`` datasets, years for
        ``prices``; None = all); ``tickers``: rows to keep, pushed into the Parquet reader as a
        filter; ``columns``: the columns to load (projection; None = all). For ``date``/``asof``
        datasets the partition value comes back as a datetime column of that name, so rows of
        several partitions stay apart. Missing partitions are skipped.
        """
        dataset = DATASETS[name]
        schema = dataset.model.to_schema()
        wanted = list(schema.columns) if columns is None else [c for c in schema.columns if c in set(columns)]
        filters = None if tickers is None else [("ticker", "in", sorted(set(tickers)))]
        if dataset.partition is None:
            paths = {None: self.partition_path(name)} if self.exists(name) else {}
        else:
            present = self.partitions(name)
            keep = present if dates is None else sorted({_partition_text(d) for d in dates} & set(present))
            paths = {value: self.partition_path(name, value) for value in keep}
        frames = []
        for value, path in paths.items():
            frame = self._read_file(name, path, wanted, filters)
            if dataset.partition not in (None, "year"):
                frame.insert(0, dataset.partition, pd.Series(pd.Timestamp(value), index=frame.index, dtype="datetime64[ns]"))
            frames.append(frame)
        key = [] if dataset.partition in (None, "year") else [dataset.partition]
        if not frames:
            frame = empty(name)[wanted]
            if key:
                frame.insert(0, key[0], pd.Series(dtype="datetime64[ns]"))
            return frame
        combined = pd.concat(frames, ignore_index=True)
        checked = validate(name, combined[wanted], wanted)
        return pd.concat([combined[key], checked], axis=1) if key else checked

    @staticmethod
    def _read_file(name: str, path: Path, columns=None, filters=None) -> pd.DataFrame:
        return pq.read_table(path, columns=columns, filters=filters).to_pandas(date_as_object=False)

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed writer; returns how many were removed."""
        removed = 0
        for tmp in self.root.rglob(f"{TMP_PREFIX}*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed
