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
