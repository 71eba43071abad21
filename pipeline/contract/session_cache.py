"""The NYSE session table's on-disk cache (a NumPy ``.npz``). A quick command such as ``doctor``
finds the current session here with the standard library alone (no NumPy, pandas or
exchange_calendars imports: half a second saved).

:func:`pipeline.contract.sessions.table` builds the table with exchange_calendars once and keeps it here,
under the library's version; deleting the file is always safe.
"""
from __future__ import annotations

import functools
import os
import zipfile
from datetime import date
from pathlib import Path

FIRST_DAY, LAST_DAY = "2008-01-02", "2035-12-31"     # the fixed range of supported sessions
KEYS = ("sessions", "opens", "closes")


def path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ivcrush" / (
        f"xnys-{_library_version()}-{FIRST_DAY}-{LAST_DAY}.npz")


@functools.lru_cache(maxsize=1)
def _library_version() -> str:
    from importlib.metadata import version

    return version("exchange_calendars")


def load() -> dict | None:
    """The cached arrays (datetime64[ns]: sessions, their opens and closes in UTC), or None when
    the cache is absent or damaged."""
    import numpy as np

    try:
        with np.load(path()) as cached:
            return {k: cached[k] for k in KEYS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def save(arrays: dict) -> None:
    """Write the cache atomically; a cache that cannot be written is only a slower start."""
    import numpy as np

    from pipeline.contract.files import atomic_write_bytes

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:        # a handle: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    try:
        atomic_write_bytes(path(), write)
    except OSError:
        pass


_EPOCH = date(1970, 1, 1).toordinal()
_NS_PER_DAY = 86_400 * 10**9


def _session_days() -> tuple[int, ...] | None:
    return _read_session_days(path())


@functools.lru_cache(maxsize=2)
def _read_session_days(cache: Path) -> tuple[int, ...] | None:
    """The sessions as days since 1970-01-01, read from the cache's ``sessions.npy`` with the
    standard library (a little-endian int64 datetime64[ns] array); None without a usable cache."""
    import ast
    import struct

    try:
        with zipfile.ZipFile(cache) as archive:
            data = archive.read("sessions.npy")
        major = data[6]
        size_format, start = ("<H", 10) if major == 1 else ("<I", 12)    # magic, version, header length
        (header_length,) = struct.unpack_from(size_format, data, 8)
        header = ast.literal_eval(data[start:start + header_length].decode("latin1"))
        body = data[start + header_length:]
        if header["descr"] != "<M8[ns]" or header["fortran_order"] or len(body) % 8:
            return None
        return tuple(ns // _NS_PER_DAY for ns in struct.unpack(f"<{len(body) // 8}q", body))
    except (OSError, KeyError, ValueError, SyntaxError, IndexError, struct.error, zipfile.BadZipFile):
        return None


def _day_number(day: str) -> int:
    return date.fromisoformat(day[:10]).toordinal() - _EPOCH


def session_on_or_before(day: str) -> str | None:
    """The session on or before ``day`` (YYYY-MM-DD) from the cache alone; None without a cache."""
    import bisect

    days = _session_days()
    if not days:
        return None
    i = bisect.bisect_right(days, _day_number(day)) - 1
    return date.fromordinal(days[i] + _EPOCH).isoformat() if i >= 0 else None


def sessions_after(start: str, end: str) -> int | None:
    """How many sessions lie in (start, end] (YYYY-MM-DD), from the cache alone."""
    import bisect

    days = _session_days()
    if not days:
        return None
    return max(bisect.bisect_right(days, _day_number(end)) - bisect.bisect_right(days, _day_number(start)), 0)
