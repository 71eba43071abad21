"""Which folders may be a data root, and the marker that makes one.

The pipeline creates, replaces and sweeps files under its data root, so a root pointed at the
wrong folder (``/``, a home directory, a project tree) must be refused before anything is
written. A folder is accepted when it is new or empty, when it holds the marker file
:data:`MARKER` (written on first use), or when its top level holds only what the pipeline itself
creates (a root made by an earlier version, which had no marker): then the marker is added.
``/`` and the user's home directory are always refused.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.contract.layout import KNOWN_TOP_LEVEL, MARKER, Layout

MARKER_TEXT = b"This folder is an ivcrush pipeline data root; the pipeline writes, replaces and sweeps files here.\n"


class RootRefused(OSError):
    """The data root is not a folder the pipeline may write into; the message says why."""


def check_data_root(root: Path | str, home: Path | str | None = None) -> None:
    """Raise :class:`RootRefused` unless ``root`` may be used as a data root (see module doc).
    Reads only; :func:`claim_data_root` writes the marker."""
    root = Path(root)
    resolved = root.resolve()
    home = Path(home if home is not None else os.path.expanduser("~")).resolve()
    if resolved == Path(resolved.anchor):
        raise RootRefused(f"data root {root} is the file system root; refusing to write there. "
                          "Point --data-dir (or PIPELINE_DATA_DIR) at a folder of its own, e.g. ./data")
    if resolved == home:
        raise RootRefused(f"data root {root} is your home directory; refusing to write there. "
                          "Point --data-dir (or PIPELINE_DATA_DIR) at a folder of its own, e.g. ~/ivcrush-data")
    if not resolved.exists():
        return
    if not resolved.is_dir():
        raise RootRefused(f"data root {root} is not a folder")
    names = {entry.name for entry in os.scandir(resolved)}
    if MARKER in names:
        return
    unknown = sorted(n for n in names if n not in KNOWN_TOP_LEVEL and not n.startswith(".tmp-"))
    if unknown:
        from pipeline.contract.outside_text import escape_controls

        shown = ", ".join(escape_controls(n) for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise RootRefused(f"data root {root} holds files the pipeline did not make ({shown}) and no {MARKER} marker; "
                          "refusing to write, replace or sweep files there. Use an empty or new folder, or an "
                          f"existing pipeline data root (to adopt this folder anyway, create {Layout(root).marker})")


def claim_data_root(root: Path | str) -> None:
    """Check ``root`` and, when it is accepted, create it and its marker (never through a link)."""
    check_data_root(root)
    layout = Layout(root)
    layout.root.mkdir(parents=True, exist_ok=True)
    marker = layout.marker
    if marker.exists() and not marker.is_symlink():
        return
    from pipeline.contract.files import open_nofollow

    fd = open_nofollow(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, MARKER_TEXT)
    finally:
        os.close(fd)
