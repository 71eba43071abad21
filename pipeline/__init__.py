"""ivcrush: rank upcoming earnings events by volatility risk premium."""


def data_root():
    """The data root a notebook should read, whatever folder it runs from: ``PIPELINE_DATA_DIR``
    when set, else ``./data`` when the working folder has one, else the ``data`` folder of the
    checkout this package was installed from (``make install`` installs it editable), so
    ``examples/analyst.ipynb`` finds the same data from the repo root and from ``examples/``."""
    from pathlib import Path

    from pipeline.contract.config import DEFAULT_DATA_DIR, given_data_root

    given = given_data_root()
    if given is not None:
        return given.resolve()
    if Path(DEFAULT_DATA_DIR).is_dir():
        return Path(DEFAULT_DATA_DIR).resolve()
    return Path(__file__).resolve().parents[1] / DEFAULT_DATA_DIR


def load(dataset: str, date=None, data_dir=None):
    """Read one validated dataset snapshot for a notebook.

    ``load("metrics", date="2026-11-20")``; ``load("prices")`` (all years); ``load("moves")``.
    ``data_dir`` defaults to ``PIPELINE_DATA_DIR`` or ``data``. Calendar snapshots are keyed by
    their as-of date, passed as ``date`` too; a date that is not a session means the session
    before it, as on the command line. An unknown dataset raises ValueError naming the datasets.
    """
    import pandas as pd

    from pipeline.contract import sessions
    from pipeline.contract.config import resolve
    from pipeline.contract.schemas import DATASETS
    from pipeline.contract.store import Store

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; the datasets are {', '.join(DATASETS)}")
    if date is not None and DATASETS[dataset].partition not in (None, "year"):
        day = pd.Timestamp(date)
        date = sessions.session_on_or_before(day)      # a holiday or weekend: the previous session, as the CLI does
    return Store(resolve(data_dir=data_dir).root).read(dataset, date)
