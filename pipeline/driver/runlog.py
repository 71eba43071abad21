"""Run bookkeeping: the data-root lock, the per-run manifest and the log file.

The lock is an OS file lock (flock): the kernel drops it when the holder dies, so a lock left by
a killed run is simply taken over; the holder's pid and start time are written beside it for the
message a waiting run prints.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.contract.layout import Layout
from pipeline.contract.root_check import RootRefused, claim_data_root
from pipeline.contract.outside_text import escape_controls
from pipeline.contract.files import atomic_write_bytes, open_nofollow

log = logging.getLogger("pipeline")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 75      # EX_TEMPFAIL: another run holds the data root; try again later


def progress(items, desc: str, unit: str):
    """A progress bar on a terminal, silence under cron (tqdm's disable=None: no TTY, no bar)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, disable=None, file=sys.stderr, leave=False)


class LockedError(RuntimeError):
    pass


@contextmanager
def data_root_lock(root: Path, wait_seconds: float):
    """Check the data root (:func:`pipeline.contract.root_check.claim_data_root`, raises RootRefused), then
    hold its lock. Neither the lock file nor the holder note is ever written through a link."""
    claim_data_root(root)
    layout = Layout(root)
    lock_path = layout.lock
    if lock_path.is_symlink():        # a real lock file is never a link; the lock library would follow it
        lock_path.unlink()
    lock = FileLock(str(lock_path), timeout=wait_seconds)
    holder = layout.lock_holder
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(f"another pipeline run holds {root} ({_holder_note(holder)}); waited {wait_seconds:g}s") from None
    try:
        note = f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n".encode()
        fd = open_nofollow(holder, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, note)
        finally:
            os.close(fd)
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _holder_note(holder: Path) -> str:
    """What the lock holder wrote, read without following a link and shown escaped."""
    try:
        fd = os.open(holder, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return "unknown process"
    try:
        return escape_controls(os.read(fd, 200).decode("utf-8", "replace").strip()) or "unknown process"
    finally:
        os.close(fd)


def setup_logging(root: Path) -> Path:
    """One line per event to the UTC day's log (:meth:`Layout.log_file`)."""
    claim_data_root(root)
    path = Layout(root).log_file(datetime.now(timezone.utc).date().isoformat())
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("pipeline")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        handler = _QuietFileHandler(path)
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    return path


class EscapingFormatter(logging.Formatter):
    """One line per record: control characters in the message (vendor text, file names) are
    escaped, so nothing can forge a log line; a traceback keeps its line breaks only."""

    def formatMessage(self, record):  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei):  # noqa: N802 - logging's name
        return escape_controls(super().formatException(ei), keep_newlines=True)


class _QuietFileHandler(logging.FileHandler):
    """A log file that cannot be written (disk full, permissions) gets one line on stderr and is
    then left alone, instead of a traceback per log record. The file is opened for appending
    without following a link (a link planted at its name is replaced by a new file)."""

    failed = False

    def _open(self):
        fd = open_nofollow(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record):  # noqa: N802 - logging's name
        if not self.failed:
            self.failed = True
            error = sys.exc_info()[1]
            sys.stderr.write(f"warning: cannot write the log {self.baseFilename}: "
                             f"{getattr(error, 'strerror', None) or error}; logging to it stopped\n")


class Manifest:
    """Collects what a run did and writes its manifest (:meth:`Layout.manifest`) at the end."""

    def __init__(self, root: Path, command: str, as_of, source: str):
        self.root = root
        self.started = datetime.now(timezone.utc)
        self.data = {"command": command, "as_of": str(as_of.date()) if as_of is not None else None,
                     "source": source, "started_utc": self.started.isoformat(timespec="seconds"),
                     "pid": os.getpid(), "stages": [], "failures": [], "exit_status": None}

    @contextmanager
    def stage(self, name: str, ctx=None):
        began = time.perf_counter()
        entry = {"stage": name, "status": "running"}
        self.data["stages"].append(entry)
        try:
            yield entry
            entry["status"] = "ok"
        except BaseException as exc:
            entry["status"] = "failed"
            entry["error"] = escape_controls(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - began, 3)
            if ctx is not None:
                entry["rows"] = dict(ctx.row_counts)
                ctx.row_counts.clear()
            log.info("stage %s %s in %.3fs rows=%s", name, entry["status"], entry["seconds"], entry.get("rows", {}))

    def finish(self, exit_status: int, failures=(), report: Path | None = None) -> Path:
        for ticker, stage, reason in failures:
            log.warning("ticker %s failed at %s: %s", ticker, stage, reason)
        self.data["failures"] = [{"ticker": t, "stage": s, "reason": r} for t, s, r in failures]
        self.data["exit_status"] = exit_status
        self.data["report"] = str(report) if report else None
        self.data["seconds"] = round((datetime.now(timezone.utc) - self.started).total_seconds(), 3)
        stamp = self.started.strftime("%Y%m%dT%H%M%S.%fZ")
        path = Layout(self.root).manifest(stamp, os.getpid())
        text = json.dumps(self.data, indent=2, default=str)
        atomic_write_bytes(path, lambda tmp: tmp.write_text(text))
        log.info("run %s as_of=%s exit=%s manifest=%s", self.data["command"], self.data["as_of"], exit_status, path)
        return path
