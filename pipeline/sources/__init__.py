"""Market-data sources behind one interface (:class:`pipeline.sources.base.Source`)."""
from __future__ import annotations

import functools
from pathlib import Path


def make_source(config, root: Path, failures):
    """The configured source; a live source records per-ticker failures into ``failures``
    (:class:`pipeline.failures.Failures`), the one record of the run."""
    if config.source == "synthetic":
        return _synthetic(config.synthetic_seed, config.universe_size, config.risk_free_rate,
                          Path(root) / "raw" / "synthetic")
    from pipeline.sources.live import LiveSource

    return LiveSource.from_environment(config, root, failures)


@functools.lru_cache(maxsize=2)
def _synthetic(seed: int, universe_size: int, rate: float, archive_dir: Path):
    """One synthetic market per process and setting: its simulated paths are reused by every
    date a process runs (a dask worker runs many), instead of being simulated again per date."""
    from pipeline.sources.synthetic import SyntheticMarket

    return SyntheticMarket(seed=seed, universe_size=universe_size, rate=rate, archive_dir=archive_dir)
