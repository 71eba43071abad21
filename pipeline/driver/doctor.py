"""``pipeline doctor``: is this installation ready for a daily run?

Checks the config, that the data root can be written, the presence (never the value) of the
vendor credentials, that the vendors answer (concurrently, each within ``PROBE_TIMEOUT``) and
serve the current session, the HTTP cache's size and hit rate, that every stored file is whole,
and how fresh each dataset is. Any FAIL makes the command exit non-zero; WARN rows are printed
for a human to judge.

Fast by default (no pandas, pyarrow or pandera on a synthetic root: the session table comes from
its NumPy cache, files are checked by their Parquet header and footer bytes); ``deep`` also opens
every file with its dataset's schema and validates the rows the next run reads.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

OK, WARN, FAIL, SKIP = "ok", "WARN", "FAIL", "skip"
STALE_SESSIONS = 3          # metrics older than this many sessions: the cron job is not running
PROBE_TIMEOUT = 5.0         # seconds for each vendor check (they run at the same time)
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def run_checks(data_dir, config_path: str | None, source_override: str | None,
               environ=None, today=None, deep: bool = False) -> list[Check]:
    """Every check, in order; ``data_dir``/``config_path`` as given on the command line (None:
    resolved like every command, see :func:`pipeline.contract.config.resolve`); ``deep``: validate the
    stored files' schemas and rows too."""
    from pipeline.contract.config import ConfigError, resolve

    env = os.environ if environ is None else environ
    try:
        settings = resolve(config_path, data_dir, source_override, environ=env)
    except ConfigError as exc:
        return [Check("config", FAIL, str(exc))]
    config, root = settings.config, settings.root
    checks = [Check("config", OK, f"{settings.origin}: valid; source {config.source}; data root {root}")]
    checks += _writable(root)
    if config.source == "live":
        checks += _credentials(config)
        if all(c.status == OK for c in checks):
            checks += _reachability(config, root, env)
    else:
        checks.append(Check("credentials", SKIP, "not needed: source is synthetic"))
    checks += _cache(root)
    checks += _files_deep(root) if deep else _files(root)
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

def _credentials(config) -> list[Check]:
    """Whether the environment gave each credential (:func:`pipeline.contract.config.with_environment`)."""
    from pipeline.contract.config import CREDENTIAL_VARIABLES

    checks = []
    for field_name, variable in CREDENTIAL_VARIABLES.items():
        present = bool(getattr(config, field_name))
        checks.append(Check(f"env {variable}", OK if present else FAIL, "set" if present else "missing"))
    return checks


def _writable(root: Path) -> list[Check]:
    """A run writes temporaries beside every file it replaces: the data root, its top folders
    (one real temporary file each) and the dataset and partition folders (access check) must
    all be writable, or the next run fails."""
    import tempfile

    if not root.exists():
        parent = next((p for p in root.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK | os.X_OK):
            return [Check("data root", OK, f"{root} does not exist yet; a run creates it")]
        return [Check("data root", FAIL, f"{root} does not exist and {parent} cannot be written")]
    from pipeline.contract.layout import Layout

    layout = Layout(root)
    folders = [root] + [folder for folder in layout.folders() if folder.is_dir()]
    bad = []
    for folder in folders:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-doctor-", suffix=".partial"):
                pass
        except OSError as exc:
            bad.append(f"{folder} ({exc.strerror or exc})")
    parquet = layout.parquet
    inner = [d for d in parquet.glob("*") if d.is_dir()] + [d for d in parquet.glob("*/*") if d.is_dir()]
    bad += [f"{d} (not writable)" for d in inner if not os.access(d, os.W_OK | os.X_OK)]
    if bad:
        return [Check("data root", FAIL, f"cannot write {len(bad)} folder(s): {'; '.join(bad[:5])}"
                                         f"{' ...' if len(bad) > 5 else ''} -- a run would fail (exit 1); fix the "
                                         "permissions or the mount of the data root")]
    return [Check("data root", OK, f"{root} writable ({len(folders) + len(inner)} folders)")]


def _reachability(config, root: Path, env) -> list[Check]:
    """Both vendors at once, each within PROBE_TIMEOUT; a vendor that does not answer in time is
    a FAIL (its thread is a daemon: it cannot hold the command up)."""
    import threading
    import time

    from pipeline.sources.base import SourceUnavailable
    from pipeline.sources.live import LiveSource

    try:
        source = LiveSource.from_config(config, root)
    except SourceUnavailable as exc:
        return [Check("vendors", FAIL, str(exc))]
    probes = {"tradier": lambda: _tradier_clock(source, env), "alphavantage": lambda: _alphavantage_probe(source)}
    found: dict[str, Check] = {}

    def probe(name, check):
        try:
            found[name] = check()
        except Exception as exc:  # noqa: BLE001 - a check reports, it never crashes doctor
            found[name] = Check(name, FAIL, f"check failed: {type(exc).__name__}: {source.http.scrub(str(exc))}")

    threads = [threading.Thread(target=probe, args=item, daemon=True, name=f"doctor-{item[0]}")
               for item in probes.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + PROBE_TIMEOUT
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    checks = [found.get(name) or Check(name, FAIL, f"no answer within {PROBE_TIMEOUT:g} s") for name in probes]
    if not any(thread.is_alive() for thread in threads):
        source.close()
    return checks


def _tradier_clock(source, env) -> Check:
    """Tradier's clock: reachable with the token, and serving the current session?"""
    from pipeline.contract import clock as pipeline_clock
    from pipeline.contract import sessions
    from pipeline.sources.base import SourceError

    try:
        answer = source.tradier.clock()
    except SourceError as exc:
        return Check("tradier", FAIL, str(exc))
    served = sessions.session_on_or_before(answer["date"])
    current = pipeline_clock.current_session(env)
    said = f"/markets/clock answered: market {answer['state']} on {answer['date'].date()}"
    if served != current:
        return Check("tradier", WARN, f"{said}: that is the session {served.date()}, not the current session "
                                      f"{current.date()}; a live daily is refused until Tradier serves it "
                                      "(check TRADIER_BASE_URL and the token's environment)")
    return Check("tradier", OK, f"{said} (the current session)")


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
    from pipeline.contract.layout import Layout

    layout = Layout(root)
    cache = layout.http_cache
    if not cache.exists():
        return [Check("http cache", SKIP, "no cache yet (no live run on this data root)")]
    size = sum(p.stat().st_size for p in cache.parent.glob(f"{cache.name}*"))    # with the WAL files
    checks = [Check("http cache", OK, f"{cache} {_megabytes(size)}")]
    runs = sorted(layout.call_counters.glob("*.json"))
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
    """Every stored Parquet file whole: its header and footer magic bytes in place and a footer
    length that fits the file (a truncated, cut or foreign-format file fails). Reads only a few
    bytes per file; ``--deep`` opens them with their schema (:func:`_files_deep`)."""
    from pipeline.contract.layout import Layout

    layout = Layout(root)
    files = sorted(p for p in layout.parquet.rglob("*.parquet") if not p.name.startswith("."))
    bad = [f"{path} ({problem})" for path in files if (problem := _parquet_frame_problem(path))]
    if bad:
        return [Check("data files", FAIL, f"{len(bad)} of {len(files)} damaged: " + "; ".join(bad)
                      + " -- a run refetches prices, calendars and current chains (moving the bad file to "
                      f"{layout.quarantine}); see README 'Operating it' for the rest")]
    return [Check("data files", OK, f"{len(files)} Parquet files whole (header and footer); `pipeline doctor "
                                    "--deep` also checks their schemas and validates the rows the next run reads")]


def _parquet_frame_problem(path: Path) -> str | None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(max(size - 8, 0))
            tail = fh.read(8)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if size < 12 or head != PARQUET_MAGIC:
        return "not a Parquet file (no PAR1 header)"
    if tail[4:] != PARQUET_MAGIC:
        return "truncated or damaged: no Parquet footer"
    if int.from_bytes(tail[:4], "little") + 12 > size:
        return "truncated or damaged: the footer length exceeds the file"
    return None


def _files_deep(root: Path) -> list[Check]:
    """Open every stored file (footer and schema) and validate the rows of the ones the next run
    reads (every year of prices, the history, the moves and each dated dataset's newest
    partition): FAIL naming each bad one. Reads trust values checked when written; this is
    where a file changed behind the store's back is caught."""
    from pipeline.contract.schemas import DATASETS
    from pipeline.contract.store import Store

    store = Store(root)
    layout = store.layout
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
                      f"{layout.quarantine}); see README 'Operating it' for the rest")]
    return [Check("data files", OK, f"{count} files open with their dataset's schema; the newest validate")]


def _freshness(root: Path, today, env=None) -> list[Check]:
    """How recent each dataset is, from the partition folder names alone (no file is read)."""
    from pipeline.contract import session_cache
    from pipeline.contract.clock import today_date
    from pipeline.contract.layout import PARTITIONS, Layout

    layout = Layout(root)
    day = str(today)[:10] if today is not None else today_date(env).isoformat()
    last_session = session_cache.session_on_or_before(day) or _slow_session(day)
    checks = []
    for name, key in PARTITIONS.items():
        base = layout.dataset(name)
        if key is None:
            files = [p for p in base.glob("*.parquet") if not p.name.startswith(".")]
            if files:
                modified = datetime.fromtimestamp(max(p.stat().st_mtime for p in files), timezone.utc).date()
                checks.append(Check(f"data {name}", OK, f"written {modified}"))
            else:
                checks.append(Check(f"data {name}", WARN, "no data yet"))
            continue
        values = _partition_values(base, key)
        if not values:
            checks.append(Check(f"data {name}", WARN, "no data yet"))
        elif key == "year":
            if int(values[-1]) > int(last_session[:4]):
                checks.append(Check(f"data {name}", FAIL, f"years {values[0]}..{values[-1]}: year {values[-1]} is after "
                                                          f"the current session {last_session}"))
            else:
                checks.append(Check(f"data {name}", OK, f"years {values[0]}..{values[-1]}"))
        elif values[-1] > last_session:
            checks.append(Check(f"data {name}", FAIL, f"latest {values[-1]} is after the current session "
                                                      f"{last_session}: written for a future date"))
        else:
            behind = session_cache.sessions_after(values[-1], last_session)
            behind = _slow_sessions_after(values[-1], last_session) if behind is None else behind
            status = WARN if behind > STALE_SESSIONS else OK
            checks.append(Check(f"data {name}", status, f"latest {values[-1]} ({behind} sessions behind "
                                                        f"{last_session})"))
    return checks


def _partition_values(base: Path, key: str) -> list[str]:
    """The values of ``base``'s hive partitions that hold a Parquet file, sorted."""
    if not base.is_dir():
        return []
    prefix = f"{key}="
    return sorted(p.name[len(prefix):] for p in base.iterdir()
                  if p.name.startswith(prefix) and any(not f.name.startswith(".") for f in p.glob("*.parquet")))


def _slow_session(day: str) -> str:
    """Without the session table's cache: build it (exchange_calendars, about a second)."""
    import pandas as pd

    from pipeline.contract import sessions

    return str(sessions.session_on_or_before(pd.Timestamp(day)).date())


def _slow_sessions_after(start: str, end: str) -> int:
    from pipeline.contract import sessions

    return max(len(sessions.sessions_between(start, end)) - 1, 0)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _rate(hits: int, misses: int) -> str:
    total = hits + misses
    return f"{hits}/{total} hits ({hits / total:.0%})" if total else "no requests"
