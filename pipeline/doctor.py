"""``pipeline doctor``: is this installation ready for a daily run?

Checks the config, the presence (never the value) of the vendor credentials, that the vendors
answer, the HTTP cache's size and hit rate, and how fresh each dataset is. Any FAIL makes the
command exit non-zero; WARN rows are printed for a human to judge.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL, SKIP = "ok", "WARN", "FAIL", "skip"
STALE_SESSIONS = 3          # metrics older than this many sessions: the cron job is not running
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def run_checks(data_dir, config_path: str | None, source_override: str | None,
               environ=None, today=None) -> list[Check]:
    """Every check, in order; ``data_dir``/``config_path`` as given on the command line (None:
    resolved like every command, see :func:`pipeline.config.resolve`)."""
    from pipeline.config import ConfigError, resolve

    env = os.environ if environ is None else environ
    try:
        settings = resolve(config_path, data_dir, source_override, environ=env)
    except ConfigError as exc:
        return [Check("config", FAIL, str(exc))]
    config, root = settings.config, settings.root
    checks = [Check("config", OK, f"{settings.origin}: valid; source {config.source}; data root {root}")]
    if config.source == "live":
        checks += _credentials(env)
        if all(c.status == OK for c in checks):
            checks += _reachability(config, root, env)
    else:
        checks.append(Check("credentials", SKIP, "not needed: source is synthetic"))
    checks += _cache(root)
    checks += _files(root)
    checks += _freshness(root, today, env)
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{c.name.ljust(width)}  {c.status.ljust(6)}  {c.detail}" for c in checks]
    return "\n".join(lines)


# ---- individual checks -----------------------------------------------------------------------

def _credentials(env) -> list[Check]:
    from pipeline.sources import alphavantage, tradier

    checks = []
    for name in (tradier.CREDENTIAL_ENV, alphavantage.CREDENTIAL_ENV):
        present = bool(env.get(name, "").strip())
        checks.append(Check(f"env {name}", OK if present else FAIL, "set" if present else "missing"))
    return checks


def _reachability(config, root: Path, env) -> list[Check]:
    from pipeline.sources.base import SourceError, SourceUnavailable
    from pipeline.sources.live import LiveSource

    try:
        source = LiveSource.from_environment(config, root, environ=env)
    except SourceUnavailable as exc:
        return [Check("vendors", FAIL, str(exc))]
    checks = []
    try:
        clock = source.tradier.clock()
        checks.append(Check("tradier", OK, f"/markets/clock answered: market {clock['state']} on {clock['date'].date()}"))
    except SourceError as exc:
        checks.append(Check("tradier", FAIL, str(exc)))
    checks.append(_alphavantage_probe(source))
    source.close()
    return checks


def _alphavantage_probe(source) -> Check:
    """Any keyed Alpha Vantage call spends the daily budget, so probe the endpoint without the
    key; the budget left comes from our own ledger."""
    from pipeline.sources import alphavantage
    from pipeline.sources.limits import HttpError

    if source.av.budget_problem():
        return Check("alphavantage", FAIL, source.av.budget_problem())
    left = f"{source.av.budget_remaining()} calls left today in the daily budget"
    try:
        status = source.http.probe(alphavantage.VENDOR, PROBE_TIMEOUT)
    except HttpError as exc:
        return Check("alphavantage", FAIL, f"unreachable: {exc.detail}; {left}")
    if status >= 500:
        return Check("alphavantage", FAIL, f"HTTP {status} without a key; {left}")
    return Check("alphavantage", OK, f"reachable (HTTP {status}, no key sent, budget untouched); {left}")


def _cache(root: Path) -> list[Check]:
    from pipeline.sources.http import CACHE_FILE
    from pipeline.sources.live import STATS_DIR

    cache = root / "cache" / CACHE_FILE
    if not cache.exists():
        return [Check("http cache", SKIP, "no cache yet (no live run on this data root)")]
    size = sum(p.stat().st_size for p in cache.parent.glob(f"{CACHE_FILE}*"))    # with the WAL files
    checks = [Check("http cache", OK, f"{cache} {_megabytes(size)}")]
    runs = sorted((root / "cache" / STATS_DIR).glob("*.json"))
    totals = []
    for run in runs:
        try:
            totals.append(json.loads(run.read_text())["cache"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if totals:
        last, hits, misses = totals[-1], sum(t["hits"] for t in totals), sum(t["misses"] for t in totals)
        checks.append(Check("cache hit rate", OK, f"last run {_rate(last['hits'], last['misses'])}; "
                                                  f"{len(totals)} runs {_rate(hits, misses)}"))
    return checks


def _files(root: Path) -> list[Check]:
    """Open every stored file (footer and schema) and validate the rows of the ones the next run
    reads (every year of prices, the history, the moves and each dated dataset's newest
    partition): FAIL naming each bad one. Reads trust values checked when written; this is
    where a file changed behind the store's back is caught."""
    from pipeline.schemas import DATASETS
    from pipeline.store import Store

    store = Store(root)
    bad, count = [], 0
    for name in DATASETS:
        files = store.files(name)
        newest = files[-1][1] if files else None
        for _, path in files:
            count += 1
            problem = store.check_file(name, path, values=DATASETS[name].partition in (None, "year") or path == newest)
            if problem:
                bad.append(f"{path} ({name}: {problem})")
    if bad:
        return [Check("data files", FAIL, f"{len(bad)} of {count} unreadable or foreign: " + "; ".join(bad)
                      + " -- a run refetches prices, calendars and current chains (moving the bad file to "
                      f"{root / 'quarantine'}); see README 'Operating it' for the rest")]
    return [Check("data files", OK, f"{count} files open with their dataset's schema; the newest validate")]


def _freshness(root: Path, today, env=None) -> list[Check]:
    import pandas as pd

    from pipeline import sessions
    from pipeline.schemas import DATASETS
    from pipeline.store import Store

    store = Store(root)
    if today is None:
        from pipeline.clock import today as clock_today

        today = clock_today(env)
    last_session = sessions.session_on_or_before(pd.Timestamp(today))
    checks = []
    for name, dataset in DATASETS.items():
        if dataset.partition in (None, "year"):
            path = store.partition_path(name) if dataset.partition is None else None
            years = store.partitions(name) if dataset.partition == "year" else []
            if path is not None and path.exists():
                modified = pd.Timestamp(path.stat().st_mtime, unit="s").date()
                checks.append(Check(f"data {name}", OK, f"written {modified}"))
            elif years and int(years[-1]) > last_session.year:
                checks.append(Check(f"data {name}", FAIL, f"years {years[0]}..{years[-1]}: year {years[-1]} is after "
                                                          f"the current session {last_session.date()}"))
            elif years:
                checks.append(Check(f"data {name}", OK, f"years {years[0]}..{years[-1]}"))
            else:
                checks.append(Check(f"data {name}", WARN, "no data yet"))
            continue
        latest = store.partitions(name)
        if not latest:
            checks.append(Check(f"data {name}", WARN, "no data yet"))
            continue
        if pd.Timestamp(latest[-1]) > last_session:
            checks.append(Check(f"data {name}", FAIL, f"latest {latest[-1]} is after the current session "
                                                      f"{last_session.date()}: written for a future date"))
            continue
        behind = len(sessions.sessions_between(pd.Timestamp(latest[-1]), last_session)) - 1
        status = WARN if behind > STALE_SESSIONS else OK
        checks.append(Check(f"data {name}", status, f"latest {latest[-1]} ({max(behind, 0)} sessions behind "
                                                    f"{last_session.date()})"))
    return checks


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _rate(hits: int, misses: int) -> str:
    total = hits + misses
    return f"{hits}/{total} hits ({hits / total:.0%})" if total else "no requests"
