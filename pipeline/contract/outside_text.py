"""Text that came from outside the pipeline (vendor messages, payload snippets, config values,
file names) made safe to show: every control character is escaped, so a vendor cannot forge a
log line (``\\n2026-11-20 ERROR ...``), drive a terminal (``ESC[2J``) or cut a field (NUL).

Escaped: the C0 and C1 control characters (newline and tab included), DEL, the Unicode line and
paragraph separators and the bidirectional overrides and isolates (which reorder what a reader
sees). Each becomes its Python escape (``\\n``, ``\\x1b``, ``\\u202e``), so nothing is lost.
"""
from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text, keep_newlines: bool = False) -> str:
    """``text`` with every control character escaped; ``keep_newlines`` leaves ``\\n`` alone (for
    our own multi-line messages whose outside parts were escaped already)."""
    text = str(text)
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)
