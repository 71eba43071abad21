"""Atomic, no-follow file writes: the one file-system helper of the store, the sources, the reports,
the run log and the caches.

A write goes to a hidden temporary in the target's directory (``.tmp-<uuid hex>-<name>.partial``:
skipped by pyarrow datasets and by ``*.parquet`` globs), created exclusively and never through a
link planted at its name, is fsynced, then ``os.replace``d over the target; the directory is fsynced
after. A reader sees the previous file or the new one, never half of either.
"""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

TMP_PREFIX = ".tmp-"
# A new temporary: created exclusively, never through a symbolic link.
_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def open_nofollow(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never writes through a link: a symbolic link found at ``path`` is removed
    (the link, never its target) and the file created exclusively in its place."""
    flags |= os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not "*.parquet": glob-based readers (DuckDB, polars) would pick a temporary up.
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}.partial"
    try:
        # Created exclusively and without following a link before the writer opens it by name.
        os.close(os.open(tmp, _EXCLUSIVE, 0o644))
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_together(files: dict[Path, bytes], remove: tuple[Path, ...] = ()) -> None:
    """Write every file to a hidden temporary in its directory, fsync them all, then rename each
    over its target and delete ``remove``: the renames follow each other with nothing in between,
    so readers never see one file of a new report beside a half-written other."""
    temporaries = {}
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}.partial"
            temporaries[path] = tmp
            # Created exclusively, never through a link planted at the name.
            with os.fdopen(os.open(tmp, _EXCLUSIVE, 0o644), "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
        for path in remove:
            path.unlink(missing_ok=True)
    finally:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
    for directory in {p.parent for p in files}:
        fsync_dir(directory)
