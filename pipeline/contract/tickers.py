"""Ticker symbol validation: symbols reach file paths and URLs, so they are checked first."""
from __future__ import annotations

import re

# Exchange symbols: a letter, up to five more letters/digits, optionally a class suffix after
# a dot or hyphen (BRK.B, BF-B). Nothing else can reach a path or a URL.
TICKER_RE = re.compile(r"^[A-Z][A-Z0-9]{0,5}([.\-][A-Z0-9]{1,2})?$")


class InvalidTickerError(ValueError):
    """A ticker symbol that is not a plausible exchange symbol."""


def validate_ticker(symbol, what: str = "ticker") -> str:
    if not isinstance(symbol, str) or not TICKER_RE.fullmatch(symbol):
        raise InvalidTickerError(f"{what}: invalid ticker symbol {symbol!r} "
                                 "(expected 1-6 capital letters/digits, optional .X or -X class suffix)")
    return symbol


def is_valid_ticker(symbol) -> bool:
    return isinstance(symbol, str) and TICKER_RE.fullmatch(symbol) is not None


# ---- vendor spellings ------------------------------------------------------------------------
# The project writes a share class with a dot (BRK.B); Tradier does too, Alpha Vantage uses a
# hyphen (BRK-B). Clients convert at their edge, both ways, so every dataset holds one spelling.
CLASS_SEPARATOR = {"tradier": ".", "alphavantage": "-"}
_CLASS_RE = re.compile(r"^([A-Z][A-Z0-9]{0,5})[.\-]([A-Z0-9]{1,2})$")


def to_vendor(symbol: str, vendor: str) -> str:
    """The vendor's spelling of a project symbol: ``to_vendor("BRK.B", "alphavantage") == "BRK-B"``."""
    match = _CLASS_RE.fullmatch(symbol)
    return f"{match[1]}{CLASS_SEPARATOR[vendor]}{match[2]}" if match else symbol


def from_vendor(symbol: str, vendor: str) -> str:
    """The project's spelling of a vendor symbol: ``from_vendor("BRK-B", "alphavantage") == "BRK.B"``."""
    match = _CLASS_RE.fullmatch(symbol) if isinstance(symbol, str) else None
    return f"{match[1]}.{match[2]}" if match else symbol


def same_symbol(a, b) -> bool:
    """True when two spellings name the same share class (BRK.B, BRK-B)."""
    return isinstance(a, str) and isinstance(b, str) and from_vendor(a, "") == from_vendor(b, "")
