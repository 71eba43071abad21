"""ivcrush: rank upcoming earnings events by volatility risk premium."""


def load(dataset: str, date=None, data_dir=None):
    """Read one validated dataset snapshot for a notebook.

    ``load("metrics", date="2026-11-20")``; ``load("prices")`` (all years); ``load("moves")``.
    ``data_dir`` defaults to ``PIPELINE_DATA_DIR`` or ``data``. Calendar snapshots are keyed by
    their as-of date, passed as ``date`` too.
    """
    from pipeline.config import resolve
    from pipeline.store import Store

    return Store(resolve(data_dir=data_dir).root).read(dataset, date)
