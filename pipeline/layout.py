"""What cheap commands (``doctor``, config loading) need to know about the stored data without
importing pandas or pandera: the tier names and each dataset's hive partition key.
:mod:`pipeline.schemas` builds its contracts from these."""
from __future__ import annotations

VRP_TIERS = ("EXCELLENT", "GOOD", "MARGINAL", "SKIP")
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
    "outcomes": "date",
}
