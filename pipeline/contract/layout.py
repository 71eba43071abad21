"""Where everything lives under a data root (:class:`Layout`), the tier names and each dataset's
hive partition key. Cheap to import (no pandas, no pandera): ``doctor``, config loading and the
root check use it; :mod:`pipeline.contract.schemas` builds its contracts from :data:`PARTITIONS`."""
from __future__ import annotations

import re
from pathlib import Path

VRP_TIERS = ("EXCELLENT", "GOOD", "MARGINAL", "SKIP")
# The stem of an unfiltered backtest's reports, backtest_<start>_<end> (a selection or non-default
# fills add _<slug>: pipeline.backtest.Spec.stem).
UNFILTERED_BACKTEST_STEM = re.compile(r"backtest_\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}")
LIQUIDITY_TIERS = ("EXCELLENT", "GOOD", "WARNING", "REJECT")

# Dataset -> its partition column, written as the directory name (date=2026-11-20); None: one file.
PARTITIONS: dict[str, str | None] = {
    "calendar": "asof",
    "earnings_history": None,
    "prices": "year",
    "chains": "date",
    "surface": "date",
    "moves": None,
    "metrics": "date",
    "term": "date",
    "event_history": "date",
    "smile": "date",
    "structures": "date",
    "payoff": "date",
    "outcomes": "date",
}

# The folders the pipeline creates at the top of its root. Quarantine holds kept copies of bad
# files, so it is never swept of temporaries; the others are.
FOLDERS = ("parquet", "reports", "runs", "logs", "cache", "raw", "quarantine")
SWEPT_FOLDERS = tuple(f for f in FOLDERS if f != "quarantine")
MARKER = ".ivcrush-data-root"
LOCK, LOCK_HOLDER = ".pipeline.lock", ".pipeline.lock.holder"
CONFIG_FILE = "config.yaml"            # a root may carry its config beside its data (``make bench`` does)
# Everything that may sit at the top of a root: what the pipeline creates, the config file a root
# may carry beside its data (``make bench`` writes one there) and harmless version-control files.
KNOWN_TOP_LEVEL = frozenset({*FOLDERS, LOCK, LOCK_HOLDER, MARKER, CONFIG_FILE, ".gitkeep", ".gitignore"})
PARTITION_FILE = "part-0.parquet"      # each partition is exactly one file


class Layout:
    """Every path under one data root; nothing else in the package joins a name onto the root.

    ``parquet/<dataset>/<key>=<value>/part-0.parquet`` (stored datasets),
    ``parquet/backtest/run=<id>/<table>/part-0.parquet`` (backtest results),
    ``reports/`` (rank_D.csv/.html, backtest summaries and charts), ``runs/`` (one manifest per
    run), ``logs/`` (one log per UTC day), ``cache/`` (HTTP cache, Alpha Vantage budget ledger,
    per-run vendor call counters), ``raw/`` (vendor answers as received, the synthetic market's
    archive), ``quarantine/`` (bad files moved aside), and the lock and marker files.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

    # ---- top level ------------------------------------------------------------------------------
    @property
    def parquet(self) -> Path:
        return self.root / "parquet"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def folders(self) -> list[Path]:
        """The pipeline's top-level folders (:data:`FOLDERS`)."""
        return [getattr(self, name) for name in FOLDERS]

    def swept_folders(self) -> list[Path]:
        """The folders the pipeline writes temporaries into (:data:`SWEPT_FOLDERS`)."""
        return [getattr(self, name) for name in SWEPT_FOLDERS]

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def lock_holder(self) -> Path:
        return self.root / LOCK_HOLDER

    @property
    def config_file(self) -> Path:
        """A config file kept beside the data (never read unless named with ``--config``)."""
        return self.root / CONFIG_FILE

    # ---- stored datasets ------------------------------------------------------------------------
    def dataset(self, name: str) -> Path:
        """The folder of dataset ``name`` (its partitions, or its one file)."""
        return self.parquet / name

    def partition_file(self, name: str, value: str | None = None) -> Path:
        """The file of one partition of ``name`` (``value`` as written in the folder name,
        e.g. ``2026-11-20``), or of the whole unpartitioned dataset (``value`` None)."""
        key = PARTITIONS[name]
        if key is None:
            return self.dataset(name) / PARTITION_FILE
        if value is None:
            raise ValueError(f"dataset '{name}' is partitioned by '{key}'; give a value")
        return self.dataset(name) / f"{key}={value}" / PARTITION_FILE

    def backtest_file(self, run_id: str, table: str) -> Path:
        """One table (trades, summary, equity) of one backtest run."""
        return self.parquet / "backtest" / f"run={run_id}" / table / PARTITION_FILE

    # ---- reports, runs, logs --------------------------------------------------------------------
    def rank_csv(self, day: str) -> Path:
        """The ranked report of the as-of session ``day`` (YYYY-MM-DD); its page is ``.html`` beside it."""
        return self.reports / f"rank_{day}.csv"

    def rank_html(self, day: str) -> Path:
        return self.rank_csv(day).with_suffix(".html")

    def report_file(self, name: str) -> Path:
        """A file of ``reports/`` by name (a backtest's summary CSV or chart)."""
        return self.reports / name

    def manifest(self, stamp: str, pid: int) -> Path:
        """The manifest of the run started at ``stamp`` (UTC, sorts by time) by process ``pid``."""
        return self.runs / f"{stamp}-{pid}.json"

    def log_file(self, day: str) -> Path:
        """The log of the UTC day ``day`` (YYYY-MM-DD)."""
        return self.logs / f"pipeline-{day}.log"

    def quarantine_target(self, stamp: str, path: Path | str) -> Path:
        """Where ``path`` (a file under the root) goes when a run moves it aside at ``stamp``."""
        return self.quarantine / stamp / self.relative(path)

    def manual_quarantine(self, path: Path | str) -> Path:
        """The folder the operator is told to move a file that cannot be refetched into."""
        return self.quarantine / "manual" / self.relative(path).parent

    def relative(self, path: Path | str) -> Path:
        """``path`` relative to the root (both resolved, so a root given through a link works)."""
        return Path(path).resolve().relative_to(self.root.resolve())

    # ---- vendors' cache and raw answers ---------------------------------------------------------
    @property
    def http_cache(self) -> Path:
        """The HTTP cache database (SQLite; its -wal/-shm files sit beside it)."""
        return self.cache / "http_cache.sqlite"

    @property
    def alphavantage_budget(self) -> Path:
        """The ledger of Alpha Vantage calls spent today."""
        return self.cache / "alphavantage_budget.json"

    @property
    def call_counters(self) -> Path:
        """The folder of the live runs' vendor call and cache counters (:meth:`call_counter_file`)."""
        return self.cache / "runs"

    def call_counter_file(self, stamp: str, pid: int) -> Path:
        """The counters of the live run started at ``stamp`` (UTC, sorts by time) by process ``pid``."""
        return self.call_counters / f"{stamp}-{pid}.json"

    def vendor_answer(self, vendor: str, endpoint: str, day: str, name: str) -> Path:
        """A vendor's answer as received (credentials removed), by endpoint and UTC day."""
        return self.raw / vendor / endpoint / day / name

    def synthetic_answer(self, dataset: str, day: str, name: str) -> Path:
        """What the synthetic market served (or its hidden truth), kept as a vendor's answers are."""
        return self.raw / "synthetic" / dataset / day / name

    @property
    def synthetic_truth(self) -> Path:
        """The synthetic market's true event moves, for checking what the pipeline recovers."""
        return self.raw / "synthetic" / "truth_events.parquet"
