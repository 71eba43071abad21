"""The seams: one config resolver, one failure record, Store.scan, the run driver over dates and
a moves dataset that depends on the data, not on the order dates were run."""
import hashlib

import pandas as pd
import pytest

from pipeline.contract.config import ConfigError, resolve
from pipeline.contract.failures import Failures
from pipeline.driver.run import execute
from pipeline.driver.steps import NAMES
from pipeline.contract.store import Store

DATES = [pd.Timestamp("2026-11-20"), pd.Timestamp("2026-11-24")]
STEPS = list(NAMES)


def test_resolve_order_file_env_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {}
    assert resolve(environ=env).origin == "built-in defaults"
    assert str(resolve(environ=env).root) == "data"
    (tmp_path / "config.yaml").write_text("lookahead_days: 3\n")
    assert resolve(environ=env).config.lookahead_days == 3
    other = tmp_path / "other.yaml"
    other.write_text("lookahead_days: 5\n")
    env = {"PIPELINE_CONFIG": str(other), "PIPELINE_DATA_DIR": str(tmp_path / "d")}
    settings = resolve(environ=env, source="live")
    assert (settings.config.lookahead_days, settings.config.source, settings.root) == (5, "live", tmp_path / "d")
    assert resolve(str(tmp_path / "config.yaml"), tmp_path / "x", environ=env).config.lookahead_days == 3
    other.write_text("lookahead_days: -1\n")
    with pytest.raises(ConfigError, match="lookahead_days"):
        resolve(environ=env)


def test_one_record_per_ticker_and_stage_first_reason_wins():
    failures = Failures()
    assert failures.add("AAA", "fetch-history", "deferred: budget")
    assert not failures.add("AAA", "fetch-history", "source returned no earnings history")
    assert failures.add("AAA", "pull-chains", "no chain")
    assert list(failures) == [("AAA", "fetch-history", "deferred: budget"), ("AAA", "pull-chains", "no chain")]
    assert failures.tickers("pull-chains") == {"AAA"} and len(failures) == 2


@pytest.fixture(scope="module")
def two_orders(tmp_path_factory):
    """The same two dates run in one range, and one by one in either order."""
    roots = {}
    orders = {"range": [DATES], "forward": [[d] for d in DATES], "reverse": [[d] for d in reversed(DATES)]}
    for name, batches in orders.items():
        root = tmp_path_factory.mktemp(name)
        settings = resolve(data_dir=root, environ={})
        for batch in batches:
            outcome = execute("daily", batch, STEPS, settings)
            assert outcome.exit_status == 0, outcome.message
        roots[name] = root
    return roots


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_range_writes_every_date_and_moves_do_not_depend_on_run_order(two_orders):
    # A range fetches bars up to its last date for every ticker of every date, so its stored
    # prices (and moves) hold more than single-date runs; each date's outputs are the same.
    for other in ("forward", "reverse"):
        a, b = two_orders["range"], two_orders[other]
        for day in DATES:
            name = f"rank_{day.date()}.csv"
            assert _digest(a / "reports" / name) == _digest(b / "reports" / name)
            for dataset in ("metrics", "surface", "chains"):
                path = Store(a).partition_path(dataset, day).relative_to(a)
                assert _digest(a / path) == _digest(b / path)
    moves = Store(a).partition_path("moves").relative_to(a)
    assert _digest(two_orders["forward"] / moves) == _digest(two_orders["reverse"] / moves)


def test_scan_filters_partitions_tickers_and_columns(two_orders):
    store = Store(two_orders["range"])
    full = pd.concat([store.read("metrics", d).assign(date=d) for d in DATES], ignore_index=True)
    full["date"] = full["date"].astype("datetime64[ns]")
    tickers = sorted(full["ticker"].unique())[:5]
    got = store.scan("metrics", dates=DATES[1:] + [pd.Timestamp("2030-01-02")], tickers=tickers,
                     columns=["ticker", "score"])
    want = full[(full["date"] == DATES[1]) & full["ticker"].isin(tickers)]
    assert list(got.columns) == ["date", "ticker", "score"]
    pd.testing.assert_frame_equal(got.reset_index(drop=True),
                                  want[["date", "ticker", "score"]].reset_index(drop=True), check_exact=True)
    prices = store.scan("prices", tickers=tickers[:1], columns=["ticker", "date", "close"])
    assert set(prices["ticker"]) == {tickers[0]} and list(prices.columns) == ["ticker", "date", "close"]
    assert store.scan("chains", dates=["2030-01-02"]).empty


def _copy(root, tmp_path):
    import shutil

    target = tmp_path / "root"
    shutil.copytree(root, target)
    return Store(target)


def _one_by_one(store, name, dates, **kw):
    return pd.concat([store.scan(name, dates=[d], **kw) for d in dates], ignore_index=True)


def test_a_scan_of_several_files_reads_them_together_as_it_would_one_by_one(two_orders):
    store = Store(two_orders["range"])
    tickers = sorted(store.read("metrics", DATES[0])["ticker"])[:7]
    for name in ("metrics", "chains", "calendar", "structures"):
        for kw in ({}, {"tickers": tickers}, {"columns": ["ticker", "expiration" if name == "chains" else "report_date"]}):
            pd.testing.assert_frame_equal(store.scan(name, dates=DATES, **kw), _one_by_one(store, name, DATES, **kw),
                                          check_exact=True)


def test_a_scan_of_several_files_names_the_bad_one(two_orders, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.contract.store import CorruptPartition

    store = _copy(two_orders["range"], tmp_path)
    path = store.partition_path("metrics", DATES[1])
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptPartition, match=str(path)):
        store.scan("metrics", dates=DATES)
    pq.write_table(pa.table({"what": ["not", "this"]}), path)
    with pytest.raises(CorruptPartition, match=f"{path}.*unexpected column what"):
        store.scan("metrics", dates=DATES)


def test_files_of_different_columns_are_read_one_by_one_and_unioned(two_orders, tmp_path):
    # A file written before a column existed (iv30) or with other exceedance levels: a projection
    # asking for the missing column names the file (vol_history then reads without it), and a
    # whole read gives the union of the columns, as reading the files one by one does.
    import pyarrow.parquet as pq

    from pipeline.contract.store import CorruptPartition
    from pipeline.driver.jobs import vol_history

    store = _copy(two_orders["range"], tmp_path)
    path = store.partition_path("metrics", DATES[0])
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["iv30"]), path)
    with pytest.raises(CorruptPartition, match=f"{path}.*missing column iv30"):
        store.scan("metrics", dates=DATES, columns=["ticker", "iv30"])
    tickers = sorted(store.read("metrics", DATES[1])["ticker"])
    history = vol_history(store, tickers, [DATES[1] + pd.Timedelta(days=1)])
    assert set(history["date"]) == set(DATES)
    assert history.loc[history["date"] == DATES[0], "iv30"].isna().all()
    assert history.loc[history["date"] == DATES[1], "iv30"].notna().any()
    pq.write_table(table.drop_columns(["rn_p_exceed_10pct", "hist_p_exceed_10pct"]), path)
    whole = store.scan("metrics", dates=DATES)
    assert whole.loc[whole["date"] == DATES[0], "hist_p_exceed_10pct"].isna().all()
    pd.testing.assert_frame_equal(store.scan("metrics", dates=DATES), _one_by_one(store, "metrics", DATES),
                                  check_exact=True)
