"""Schemas give clear errors; the store writes atomically and other engines read it unchanged."""
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pytest

from pipeline.contract.schemas import DatasetValidationError, validate
from pipeline.contract.store import Store


def prices_frame():
    return pd.DataFrame({
        "ticker": ["AAA", "BRK.B", "BF-B"], "date": pd.to_datetime(["2026-11-18", "2026-11-19", "2026-11-20"]),
        "open": [10.0, 20.0, 30.0], "high": [11.0, 21.0, 31.0], "low": [9.0, 19.0, 29.0],
        "close": [10.5, 20.5, 30.5], "volume": [100.0, 200.0, 300.0], "source": "synthetic"})


def calendar_frame():
    return pd.DataFrame({"ticker": ["AAA", "BBB"], "report_date": pd.to_datetime(["2026-11-24", "2026-11-25"]),
                         "timing": ["BMO", "AMC"], "fiscal_period_end": pd.NaT, "eps_estimate": [1.0, np.nan],
                         "source": "synthetic"})


def test_negative_price_names_dataset_column_and_row():
    bad = prices_frame()
    bad.loc[1, "close"] = -3.0
    with pytest.raises(DatasetValidationError) as err:
        validate("prices", bad)
    text = str(err.value)
    assert "dataset 'prices'" in text and "column 'close'" in text and "row 1: -3.0" in text


def test_unknown_timing_names_the_value():
    bad = calendar_frame()
    bad.loc[0, "timing"] = "LUNCH"
    with pytest.raises(DatasetValidationError, match=r"(?s)dataset 'calendar'.*column 'timing'.*row 0: 'LUNCH'"):
        validate("calendar", bad)


def test_wrong_dtype_is_reported_not_coerced_into_garbage():
    bad = prices_frame()
    bad["volume"] = ["many", "200", "300"]
    with pytest.raises(DatasetValidationError, match=r"(?s)dataset 'prices'.*column 'volume'.*many"):
        validate("prices", bad)


def test_missing_column_is_named():
    with pytest.raises(DatasetValidationError, match="missing columns: close"):
        validate("prices", prices_frame().drop(columns="close"))


def test_inconsistent_bar_is_reported():
    bad = prices_frame()
    bad.loc[2, "high"] = 1.0
    with pytest.raises(DatasetValidationError, match="high below max"):
        validate("prices", bad)


def test_round_trip_and_other_engines(tmp_path):
    store = Store(tmp_path)
    store.write("calendar", calendar_frame(), pd.Timestamp("2026-11-20"))
    store.write_by_year("prices", prices_frame())
    back = store.read("calendar", "2026-11-20")
    pd.testing.assert_frame_equal(back, validate("calendar", calendar_frame()))
    base = tmp_path / "parquet"
    arrow = ds.dataset(base / "calendar", format="parquet", partitioning="hive").to_table()
    assert arrow.num_rows == 2 and str(arrow.schema.field("report_date").type) == "date32[day]"
    polars = pl.read_parquet(base / "calendar" / "**" / "*.parquet", hive_partitioning=True)
    assert polars["report_date"].dtype == pl.Date and polars["asof"].to_list()[0].isoformat() == "2026-11-20"
    duck = duckdb.sql(f"select ticker, year from read_parquet('{base}/prices/*/*.parquet', hive_partitioning=true) "
                      "order by ticker").fetchall()
    assert duck == [("AAA", 2026), ("BF-B", 2026), ("BRK.B", 2026)]


def test_rewrite_replaces_the_partition_whole_and_leaves_no_temporaries(tmp_path):
    store = Store(tmp_path)
    store.write("calendar", calendar_frame(), "2026-11-20")
    store.write("calendar", calendar_frame().iloc[:1], "2026-11-20")
    assert len(store.read("calendar", "2026-11-20")) == 1
    assert [p.name for p in (tmp_path / "parquet" / "calendar" / "asof=2026-11-20").iterdir()] == ["part-0.parquet"]


def test_failed_validation_writes_nothing(tmp_path):
    store = Store(tmp_path)
    store.write("calendar", calendar_frame(), "2026-11-20")
    bad = calendar_frame().assign(timing="LUNCH")
    with pytest.raises(DatasetValidationError):
        store.write("calendar", bad, "2026-11-20")
    assert len(store.read("calendar", "2026-11-20")) == 2


def test_read_of_a_missing_snapshot_says_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset 'metrics' has no snapshot for date=2026-11-20"):
        Store(tmp_path).read("metrics", "2026-11-20")
