"""The step registry: every step a run can take, declared once.

A step is a job of :mod:`pipeline.driver.jobs` with what the driver, the CLI and the failure report
need to know about it: whether it runs once per date or once over the run's dates, the datasets
it reads and writes, the vendor a live source fetches it from, and its command. The CLI, the
driver (:mod:`pipeline.driver.run`) and the jobs read this table; nothing else lists steps.

No pandas here (nor anything heavy): the CLI reads the registry to build its commands, and
``pipeline --help`` must stay fast. Jobs are looked up by name when a step runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

DATE = "date"        # job(ctx, as_of), once per date of the run
RANGE = "range"      # job(ctx, dates), once per run over all of its dates


@dataclass(frozen=True)
class Step:
    name: str
    job: str                              # the function of pipeline.driver.jobs that does it
    span: str                             # DATE or RANGE
    reads: tuple[str, ...]                # stored datasets it reads
    writes: tuple[str, ...]               # datasets it replaces (their files are checked before a run)
    vendor: str | None = None             # who a live source fetches it from; None: stored data only
    once: tuple[str, str] | None = None   # (manifest stage, job(ctx)) run once per run before its first date
    help: str | None = None               # help of its own CLI command; None: none

    @property
    def fetches(self) -> bool:
        """The step talks to a source (synthetic or live), not only to the store."""
        return self.vendor is not None

    def run(self, ctx, when):
        """Run the job for one date (DATE) or the list of the run's dates (RANGE)."""
        return _job(self.job)(ctx, when)

    def run_once(self, ctx):
        return _job(self.once[1])(ctx)


def _job(name: str):
    return getattr(importlib.import_module("pipeline.driver.jobs"), name)


# In run order: a run takes the steps it is given in this order.
STEPS = (
    Step("fetch-calendar", "fetch_calendar", DATE, reads=(), writes=("calendar",), vendor="Alpha Vantage",
         help="Fetch the earnings calendar snapshot for the as-of date."),
    Step("fetch-history", "fetch_history", RANGE, reads=("calendar", "earnings_history"), writes=("earnings_history",),
         vendor="Alpha Vantage", help="Refresh past earnings reports for the window's tickers."),
    Step("backfill-prices", "backfill_prices", RANGE, reads=("calendar", "prices"), writes=("prices",), vendor="Tradier",
         help="Fetch daily bars for sessions the store lacks (incremental)."),
    Step("pull-chains", "pull_chains", DATE, reads=("calendar",), writes=("chains",), vendor="Tradier",
         help="Pull option chains for the expirations the window's events need."),
    # Moves are facts about past reports (stored history and prices only), and the report draws
    # them: written once, before any date is computed, so a first run's page has them.
    Step("compute", "compute", DATE, reads=("calendar", "earnings_history", "prices", "chains", "metrics"),
         writes=("surface", "metrics", "term", "event_history", "smile", "moves", "outcomes", "structures",
                 "payoff"),
         once=("moves", "write_moves"),
         help="Compute moves, surface and metrics from the stored snapshots."),
    Step("report", "report", DATE, reads=("metrics", "term", "event_history", "smile", "outcomes", "structures", "payoff"),
         writes=()),
)
BY_NAME = {step.name: step for step in STEPS}
NAMES = tuple(BY_NAME)
FETCH = tuple(step.name for step in STEPS if step.fetches)


def ordered(names) -> list[str]:
    """``names`` in run order, each once."""
    wanted = set(names)
    return [name for name in NAMES if name in wanted]


def checked(names) -> list[str]:
    """The datasets the steps read or replace, in run order: their files are opened before a run."""
    return list(dict.fromkeys(d for name in ordered(names) for d in (*BY_NAME[name].reads, *BY_NAME[name].writes)))


def writer(dataset: str) -> str:
    """The step that writes ``dataset`` again (a bad file of it is refetched or recomputed by it)."""
    return next(step.name for step in STEPS if dataset in step.writes)


def segments(names) -> list[tuple[str, list[str]]]:
    """``names`` (in run order) cut into runs of one span: ``[(DATE or RANGE, [names])]``. A
    range step needs what the per-date steps before it wrote for every date, so each segment
    finishes (for all dates) before the next begins."""
    cut: list[tuple[str, list[str]]] = []
    for name in names:
        span = BY_NAME[name].span
        if cut and cut[-1][0] == span:
            cut[-1][1].append(name)
        else:
            cut.append((span, [name]))
    return cut
