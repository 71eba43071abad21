"""Market-data sources behind one interface (:class:`pipeline.sources.base.Source`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.contract.layout import Layout


def make_source(config, root: Path, failures, progress=None):
    """A new source of the configured kind, owned by the caller (the run), which closes it; a live
    source records per-ticker failures into ``failures`` (:class:`pipeline.contract.failures.Failures`),
    the one record of the run, and shows its per-ticker calls through ``progress(items, desc,
    unit)`` (an iterable over ``items``; none by default)."""
    if config.source == "synthetic":
        from pipeline.sources.synthetic import SyntheticMarket

        return SyntheticMarket(seed=config.synthetic_seed, universe_size=config.universe_size,
                               rate=config.risk_free_rate, archive=Layout(root))
    from pipeline.sources.live import LiveSource

    return LiveSource.from_config(config, root, failures, progress=progress)
