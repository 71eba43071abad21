"""Hive-partitioned Parquet snapshots under ``<root>/parquet``, written atomically.

Each partition is exactly one file, ``<dataset>/<key>=<value>/part-0.parquet``. A write goes to
a hidden temporary file in the same directory, is fsynced, then ``os.replace``d over the old file,
so a reader sees either the previous snapshot or the new one, never half of either, and a rerun
replaces the partition whole. Temporaries are hidden (``.tmp-*``, skipped by pyarrow datasets)
and end in ``.partial``, so ``*.parquet`` globs (DuckDB, polars) never match them either.
The partition column lives only in the directory name, as hive readers expect.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.contract.files import atomic_write_bytes, fsync_dir as _fsync_dir
from pipeline.contract.layout import Layout
from pipeline.contract.schemas import DATASETS, contract_columns, empty, validate

# The exact names of the pipeline's own temporaries: atomic writes (``.tmp-<uuid hex>-<name>.partial``)
# and the report-folder write check (``.tmp-write-check-<random>.partial``). Nothing else is swept.
TMP_NAME = re.compile(r"\.tmp-(?:[0-9a-f]{32}-.+|write-check-[A-Za-z0-9_]+)\.partial", re.ASCII | re.DOTALL)


class CorruptPartition(RuntimeError):
    """A stored file that cannot be read or does not hold its dataset's schema; the message names
    the dataset, the partition and the file."""

    def __init__(self, name: str, partition, path: Path, reason: str):
        self.dataset, self.partition, self.path, self.reason = name, partition, Path(path), reason
        where = f" partition {DATASETS[name].partition}={partition}" if partition is not None else ""
        super().__init__(f"dataset '{name}'{where}: file {path} is unreadable or foreign: {reason}")


def _partition_text(value) -> str:
    if isinstance(value, (pd.Timestamp,)) or hasattr(value, "isoformat"):
        return pd.Timestamp(value).date().isoformat()
    return str(value)


class Store:
    """Validated writes, schema-checked reads and atomic replacement of the datasets in :mod:`pipeline.contract.schemas`."""

    def __init__(self, root: Path | str):
        self.layout = Layout(root)
        self.root = self.layout.root

    def partition_path(self, name: str, value=None) -> Path:
        return self.layout.partition_file(name, None if value is None else _partition_text(value))

    def write(self, name: str, df: pd.DataFrame, partition=None, validated: bool = False) -> Path:
        """Validate ``df`` and replace one partition (or the whole unpartitioned dataset).
        ``validated``: ``df`` (or a row subset of it) was returned by ``schemas.validate`` for
        this dataset just before (``Context.keep_valid``), so it is not validated twice."""
        table = _arrow_table(name, df if validated else validate(name, df))
        path = self.partition_path(name, partition)
        atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        return path

    def write_by_year(self, name: str, df: pd.DataFrame, column: str = "date",
                      validated: bool = False) -> list[Path]:
        """Write a year-partitioned dataset, one atomic file per year present in ``df``
        (``validated`` as in :meth:`write`)."""
        years = df[column].dt.year
        return [self.write(name, part, year, validated) for year, part in df.groupby(years, sort=True)]

    def partitions(self, name: str) -> list[str]:
        dataset = DATASETS[name]
        base = self.layout.dataset(name)
        if dataset.partition is None or not base.is_dir():
            return []
        prefix = f"{dataset.partition}="
        values = (p.name[len(prefix):] for p in base.iterdir() if p.name.startswith(prefix))
        return sorted(v for v in values if self.layout.partition_file(name, v).exists())

    def exists(self, name: str, partition=None) -> bool:
        return self.partition_path(name, partition).exists()

    def read(self, name: str, partition=None) -> pd.DataFrame:
        """Read one partition (checked as in :meth:`_read_file`); for ``year``-partitioned data
        without a value, all years."""
        dataset = DATASETS[name]
        if dataset.partition == "year" and partition is None:
            if not self.partitions(name):
                raise FileNotFoundError(f"dataset '{name}' has no data under {self.layout.dataset(name)}")
            return self.scan(name)
        path = self.partition_path(name, partition)
        if not path.exists():
            where = f" for {dataset.partition}={_partition_text(partition)}" if partition is not None else ""
            raise FileNotFoundError(f"dataset '{name}' has no snapshot{where} ({path})")
        return self._read_file(name, path)

    def read_or_empty(self, name: str) -> pd.DataFrame:
        """An unpartitioned or year-partitioned dataset, empty when nothing was ever written."""
        has_data = self.partitions(name) if DATASETS[name].partition == "year" else self.exists(name)
        return self.read(name) if has_data else empty(name)

    def scan(self, name: str, dates=None, tickers=None, columns=None) -> pd.DataFrame:
        """Rows of ``name`` (checked as in :meth:`_read_file`) limited to partitions, tickers and columns.

        ``dates``: partition values to read (dates for ``date``/``asof`` datasets, years for
        ``prices``; None = all); ``tickers``: rows to keep, pushed into the Parquet reader as a
        filter; ``columns``: the columns to load (projection; None = all). For ``date``/``asof``
        datasets the partition value comes back as a datetime column of that name, so rows of
        several partitions stay apart. Missing partitions are skipped.
        """
        dataset = DATASETS[name]
        wanted = contract_columns(name) if columns is None else \
            [c for c in contract_columns(name, list(columns)) if c in set(columns)]
        filters = None if tickers is None else [("ticker", "in", sorted(set(tickers)))]
        if dataset.partition is None:
            paths = {None: self.partition_path(name)} if self.exists(name) else {}
        else:
            # Named partitions are looked up directly: listing a directory of years of dates
            # for every one-date scan is what a backtest's many scans would spend their time on.
            values = self.partitions(name) if dates is None else sorted({_partition_text(d) for d in dates})
            paths = {value: self.partition_path(name, value) for value in values}
            paths = {value: path for value, path in paths.items() if path.exists()}
        key = None if dataset.partition in (None, "year") else dataset.partition
        projection = None if columns is None else wanted
        if not paths:
            frame = empty(name).reindex(columns=wanted)
            if key:
                frame.insert(0, key, pd.Series(dtype="datetime64[ns]"))
            return frame
        if len(paths) > 1:
            together = self._read_together(name, paths, projection, tickers)
            if together is not None:
                return together
        frames = []
        for value, path in paths.items():
            frame = self._read_file(name, path, projection, filters)
            if key:
                frame.insert(0, key, pd.Series(pd.Timestamp(value), index=frame.index, dtype="datetime64[ns]"))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def _read_together(self, name: str, paths: dict, columns, tickers) -> pd.DataFrame | None:
        """The rows :meth:`scan` gives for several files, read as one Arrow dataset: one scan and one
        conversion to pandas instead of one per file (a year of daily partitions is 250 files; read
        one by one they cost a daily report over a second). Each file's schema is checked first
        (:func:`schema_problems`, a footer read). None when the files do not all have the same
        schema (e.g. different exceedance levels): :meth:`scan` then reads them one by one, so
        their columns are unioned as before."""
        key = DATASETS[name].partition if DATASETS[name].partition != "year" else None
        files = [str(path) for path in paths.values()]
        hive = ds.partitioning(pa.schema([(key, pa.date32())]), flavor="hive") if key else None
        found = ds.dataset(files, format="parquet", partitioning=hive,
                           partition_base_dir=str(self.layout.dataset(name)) if key else None)
        first = None
        for fragment in found.get_fragments():
            try:
                schema = fragment.physical_schema
            except (OSError, pa.ArrowException, ValueError) as exc:
                raise CorruptPartition(name, self._value_of(name, fragment.path), fragment.path, _reason(exc)) from None
            problem = schema_problems(schema, expected_schema(name, tuple(schema.names)), whole=columns is None)
            if columns is not None and not problem:
                problem = "; ".join(f"missing column {c}" for c in columns if c not in schema.names) or None
            if problem:
                raise CorruptPartition(name, self._value_of(name, fragment.path), fragment.path, problem)
            if first is None:
                first = schema
            elif not schema.equals(first):
                return None
        names = list(first.names if columns is None else columns)
        where = None if tickers is None else ds.field("ticker").isin(sorted(set(tickers)))
        try:
            # The rows come in the order of ``files`` (a dataset built from a list of files).
            table = found.to_table(columns=([key] if key else []) + names, filter=where)
        except (OSError, pa.ArrowException, ValueError):
            return None      # read one by one: the failing file is named there
        if key and table.column(key).null_count:
            return None      # a folder name that is not <key>=<date>: the values :meth:`scan` knows
        frame = table.to_pandas(date_as_object=False)
        dates = [c for c in DATASETS[name].date_columns if c in frame.columns]
        if key:
            dates.append(key)
        return frame.astype({c: "datetime64[ns]" for c in dates}) if dates else frame

    def _read_file(self, name: str, path: Path, columns=None, filters=None) -> pd.DataFrame:
        """The rows of one file as the contract's dtypes, after checking its columns and types
        against the contract (:func:`schema_problems`). Values are not checked again: every
        stored file was validated by :meth:`write`, and ``doctor`` re-validates values."""
        try:
            table = pq.read_table(path, columns=columns, filters=filters)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise CorruptPartition(name, self._value_of(name, path), path, _reason(exc)) from None
        problem = schema_problems(table.schema, expected_schema(name, tuple(table.schema.names)), whole=columns is None)
        if problem:
            raise CorruptPartition(name, self._value_of(name, path), path, problem)
        frame = table.to_pandas(date_as_object=False)
        dates = [c for c in DATASETS[name].date_columns if c in frame.columns]
        return frame.astype({c: "datetime64[ns]" for c in dates}) if dates else frame

    def _value_of(self, name: str, path: Path):
        part = DATASETS[name].partition
        return None if part is None else Path(path).parent.name[len(part) + 1:]

    # ---- health ---------------------------------------------------------------------------------
    def files(self, name: str) -> list[tuple[object, Path]]:
        """(partition value or None, path) of every stored file of ``name``."""
        if DATASETS[name].partition is None:
            return [(None, self.partition_path(name))] if self.exists(name) else []
        return [(value, self.partition_path(name, value)) for value in self.partitions(name)]

    def check_file(self, name: str, path: Path, values: bool = False) -> str | None:
        """None when the file's footer opens and its schema is the dataset's; else why not. Reads
        the footer only, unless ``values``: then the rows are read and validated too."""
        try:
            got = pq.read_schema(path)
            problem = schema_problems(got, expected_schema(name, tuple(got.names)))
        except (OSError, pa.ArrowException, ValueError) as exc:
            return _reason(exc)
        if problem or not values:
            return problem
        try:
            validate(name, pq.read_table(path).to_pandas(date_as_object=False))
        except Exception as exc:  # noqa: BLE001 - unreadable rows or values failing the contract
            return _reason(exc)
        return None

    def quarantine(self, path: Path, stamp: str) -> Path:
        """Move ``path`` to ``<root>/quarantine/<stamp>/<path relative to root>`` (a rename, so
        nothing is deleted without a copy); returns the new location."""
        path = Path(path)
        target = self.layout.quarantine_target(stamp, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        _fsync_dir(path.parent)
        return target

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed writer; returns how many were removed. Only
        the pipeline's own folders (:meth:`Layout.swept_folders`) are walked, links are never followed,
        and only regular files named exactly like the pipeline's temporaries (:data:`TMP_NAME`)
        are removed: a user's ``.tmp-notes.txt`` is left alone."""
        removed = 0
        for top in self.layout.swept_folders():
            if top.is_symlink() or not top.is_dir():
                continue
            for directory, _, names in os.walk(top, followlinks=False):
                for name in names:
                    path = os.path.join(directory, name)
                    if TMP_NAME.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
                        os.unlink(path)
                        removed += 1
        return removed


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


@functools.lru_cache(maxsize=None)
def expected_schema(name: str, columns=None) -> pa.Schema:
    """The Arrow schema :meth:`Store.write` gives a file of ``name`` (field names and types); a
    regex column (the metrics' exceedance levels) as the file's ``columns`` name it."""
    return _arrow_table(name, empty(name, columns)).schema


def _arrow_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """A validated frame as stored: no index, date columns as ``date32``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column in DATASETS[name].date_columns:
        i = table.schema.get_field_index(column)
        table = table.set_column(i, column, table.column(i).cast(pa.date32()))
    return table


def schema_problems(got: pa.Schema, want: pa.Schema, whole: bool = True) -> str | None:
    """Why a file's Arrow schema is not the dataset's (missing, mistyped or, for a ``whole`` file
    rather than a column projection, unexpected columns); None when it is."""
    got_fields = {f.name: f.type for f in got}
    wanted = [f for f in want if whole or f.name in got_fields]
    problems = [f"missing column {f.name}" for f in wanted if f.name not in got_fields]
    problems += [f"column {f.name} is {got_fields[f.name]}, expected {f.type}" for f in wanted
                 if f.name in got_fields and not _compatible(got_fields[f.name], f.type)]
    if whole:
        extra = sorted(set(got_fields) - {f.name for f in want} - {"__index_level_0__"})
        problems += [f"unexpected column {c}" for c in extra]
    return "; ".join(problems) or None


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if got == want:
        return True
    if pa.types.is_timestamp(got) and pa.types.is_timestamp(want):
        return (got.tz is None) == (want.tz is None)
    if pa.types.is_dictionary(got):
        got = got.value_type
    if pa.types.is_dictionary(want):
        want = want.value_type
    if (pa.types.is_string(got) or pa.types.is_large_string(got)) and \
            (pa.types.is_string(want) or pa.types.is_large_string(want)):
        return True
    return False
