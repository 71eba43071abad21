"""Shared tolerance rules for vendor payloads, used by every normalizer.

Vendors encode "nothing" in many ways (null, the string "null", "None", "", a missing key) and
wrap a single result as a bare object instead of a one-element list. These helpers accept exactly
those quirks and raise :class:`PayloadError` for anything else, so a normalizer either returns
well-typed data or a typed error naming vendor, endpoint and symbol.
"""
from __future__ import annotations

import json
import math
import re
from datetime import date

import pandas as pd

from pipeline.contract.outside_text import escape_controls
from pipeline.sources.base import SourceError

# Ways vendors spell "no value" (Tradier: null and "null"; Alpha Vantage: "None" and "").
NULL_TEXTS = frozenset({"", "null", "None"})
# Dates outside this span are vendor garbage (and would overflow nanosecond timestamps).
FIRST_YEAR, LAST_YEAR = 1900, 2200
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class VendorError(SourceError):
    """A vendor call or answer gone wrong, as "<vendor> <endpoint> [<symbol>]: <detail>"."""

    def __init__(self, vendor: str, endpoint: str, symbol: str | None, detail: str):
        detail = escape_controls(detail)      # vendor text: never a forged log line or a terminal command
        self.vendor, self.endpoint, self.symbol, self.detail = vendor, endpoint, symbol, detail
        where = f" {symbol}" if symbol else ""
        super().__init__(f"{vendor} {endpoint}{where}: {detail}")


class PayloadError(VendorError):
    """A vendor answer that is neither data nor a documented quirk."""


class Reader:
    """Conversion helpers bound to one (vendor, endpoint, symbol) so every error names them."""

    def __init__(self, vendor: str, endpoint: str, symbol: str | None = None):
        self.vendor, self.endpoint, self.symbol = vendor, endpoint, symbol

    def error(self, detail: str) -> PayloadError:
        return PayloadError(self.vendor, self.endpoint, self.symbol, detail)

    def json(self, body: bytes):
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.error(f"malformed JSON ({exc.__class__.__name__} at {_position(exc)})") from None
        except RecursionError:
            # e.g. megabytes of "[": the decoder recurses once per level.
            raise self.error("undecodable JSON (nested too deeply)") from None

    def text(self, body: bytes) -> str:
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise self.error("body is not UTF-8 text") from None

    @staticmethod
    def is_null(value) -> bool:
        return value is None or (isinstance(value, str) and value.strip() in NULL_TEXTS)

    def mapping(self, value, what: str) -> dict | None:
        """A JSON object, or None for any spelling of "nothing"."""
        if self.is_null(value):
            return None
        if not isinstance(value, dict):
            raise self.error(f"{what}: expected an object, got {type(value).__name__}")
        return value

    def items(self, value, what: str, kinds=(dict,)) -> list:
        """A list of results: a list, a single bare result (object or string), or nothing."""
        if self.is_null(value):
            return []
        if isinstance(value, kinds):
            return [value]
        if isinstance(value, list):
            bad = [type(v).__name__ for v in value if not isinstance(v, kinds)]
            if bad:
                raise self.error(f"{what}: unexpected element type {bad[0]}")
            return value
        raise self.error(f"{what}: expected a list, got {type(value).__name__}")

    def number(self, value, what: str) -> float:
        """A finite float, or NaN for a null spelling; numbers may arrive as strings."""
        if self.is_null(value):
            return math.nan
        if isinstance(value, bool):
            raise self.error(f"{what}: expected a number, got a boolean")
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise self.error(f"{what}: not a number: {value[:40]!r}") from None
        else:
            raise self.error(f"{what}: expected a number, got {type(value).__name__}")
        if not math.isfinite(number):
            raise self.error(f"{what}: not a finite number: {value!r}")
        return number

    def date(self, value, what: str, nullable: bool = False):
        """A calendar date 'YYYY-MM-DD' as a naive midnight Timestamp (NaT when nullable and null)."""
        if self.is_null(value):
            if nullable:
                return pd.NaT
            raise self.error(f"{what}: missing date")
        if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
            raise self.error(f"{what}: not a YYYY-MM-DD date: {str(value)[:40]!r}")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise self.error(f"{what}: not a calendar date: {value!r}") from None
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise self.error(f"{what}: date out of range: {value!r}")
        return pd.Timestamp(day)


def daily_bar(reader: Reader, raw: dict, fields: dict[str, str], when: str) -> dict:
    """One daily bar from a vendor mapping: ``fields`` maps open/high/low/close/volume to the
    vendor's keys. Prices must be positive and volume non-negative, else a typed error."""
    row = {name: reader.number(raw.get(key), key) for name, key in fields.items()}
    for name in ("open", "high", "low", "close"):
        if not row[name] > 0:
            raise reader.error(f"{fields[name]} on {when} is not a positive price ({raw.get(fields[name])!r})")
    if not row["volume"] >= 0:
        raise reader.error(f"volume on {when} is missing or negative")
    return row


def _position(exc: Exception) -> str:
    pos = getattr(exc, "pos", None)
    return f"byte {pos}" if pos is not None else "start"
