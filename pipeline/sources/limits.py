"""What slows or stops vendor calls: per-provider rate limiters, the daily request budget and
the circuit breaker, plus the errors a vendor call ends with. Time comes from an injectable
:class:`Clock` so tests run without waiting.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.sources.payload import VendorError
from pipeline.contract.files import atomic_write_bytes


class HttpError(VendorError):
    """A call that failed after retries; names vendor, endpoint and symbol (never the URL)."""


class RequestRejected(HttpError):
    """The vendor refused this one call for good (4xx, premium-only, invalid call)."""


class ProviderUnavailable(HttpError):
    """The provider cannot be used for the rest of the run (circuit open, bad credentials,
    daily budget spent): callers stop the stage instead of skipping a ticker."""


class BudgetExhausted(ProviderUnavailable):
    """The next call would exceed the provider's daily request budget."""

class Clock:
    """Wall time and sleeping, injectable so tests run without waiting."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


# ---- rate limiting -----------------------------------------------------------------------

class TradierRateLimiter:
    """Follows Tradier's per-minute window from its headers.

    ``X-Ratelimit-Available`` counts what is left in the window, ``X-Ratelimit-Expiry`` (epoch
    milliseconds) is when it resets. When nothing is left we pause until the reset instead of
    collecting a 429; a 429 (no Retry-After) waits for the reset too.
    """

    MARGIN = 0.25          # seconds past the expiry, for clock skew between us and the vendor
    LONGEST_WAIT = 61.0    # a window is one minute: a later expiry is a bogus header

    def __init__(self, clock: Clock):
        self.clock = clock
        self.available: int | None = None
        self.expiry: float | None = None   # epoch seconds

    def before_send(self, endpoint: str, symbol: str | None) -> None:
        if self.available is not None and self.available <= 0:
            self._wait_for_reset()
        if self.available is not None:
            self.available -= 1   # until the answer's headers tell us the real figure

    def observe(self, headers) -> None:
        available, expiry = _int_header(headers, "X-Ratelimit-Available"), _int_header(headers, "X-Ratelimit-Expiry")
        if available is not None:
            self.available = available
        if expiry is not None:
            self.expiry = expiry / 1000.0

    def throttled(self, headers, pause: float = 0.0) -> None:
        self.observe(headers)
        self.available = 0
        self._wait_for_reset()

    def _wait_for_reset(self) -> None:
        now = self.clock.time()
        reset = self.expiry if self.expiry is not None and self.expiry > now else now + 1.0
        self.clock.sleep(min(reset - now + self.MARGIN, self.LONGEST_WAIT))
        self.available, self.expiry = None, None


class DailyBudget:
    """Requests allowed per UTC day, persisted so consecutive runs share it."""

    def __init__(self, path: Path, limit: int, clock: Clock):
        self.path, self.limit, self.clock = Path(path), int(limit), clock
        self._day, self._used = self._today(), 0
        self.problem: str | None = None
        try:
            saved = json.loads(self.path.read_text())
            if saved.get("day") == self._day:
                self._used = int(saved.get("used", 0))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # A ledger we cannot read may hide today's spending: assume the quota is gone
            # rather than let a cron job overspend the vendor's daily limit.
            self._used = self.limit
            self.problem = (f"the request ledger {self.path} is unreadable ({type(exc).__name__}), so "
                            "today's budget counts as spent; check the vendor's usage page, then "
                            f"delete {self.path} to start a fresh count")

    def _today(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.clock.time()))

    def _roll(self) -> None:
        if self._today() != self._day:
            self._day, self._used = self._today(), 0

    def remaining(self) -> int:
        self._roll()
        return max(self.limit - self._used, 0)

    def spend(self, vendor: str, endpoint: str, symbol: str | None) -> None:
        if self.remaining() <= 0:
            advice = self.problem or ("raise live.alphavantage_daily_budget only if your plan allows more")
            raise BudgetExhausted(vendor, endpoint, symbol,
                                  f"daily request budget of {self.limit} is used up for {self._day} (UTC); "
                                  + advice)
        self._used += 1
        text = json.dumps({"day": self._day, "used": self._used, "limit": self.limit})
        atomic_write_bytes(self.path, lambda tmp: tmp.write_text(text))


class SpacedRateLimiter:
    """At least ``min_interval`` seconds between requests, within a daily budget."""

    def __init__(self, clock: Clock, min_interval: float, budget: DailyBudget, vendor: str):
        self.clock, self.min_interval, self.budget, self.vendor = clock, float(min_interval), budget, vendor
        self._last: float | None = None

    def before_send(self, endpoint: str, symbol: str | None) -> None:
        self.budget.spend(self.vendor, endpoint, symbol)
        if self._last is not None:
            self.clock.sleep(self._last + self.min_interval - self.clock.time())
        self._last = self.clock.time()

    def observe(self, headers) -> None:
        pass

    def throttled(self, headers, pause: float = 0.0) -> None:
        self.clock.sleep(max(pause, self.min_interval))


def _int_header(headers, name: str) -> int | None:
    try:
        return int(headers.get(name, ""))
    except (TypeError, ValueError):
        return None


# ---- circuit breaker ---------------------------------------------------------------------

class CircuitBreaker:
    """After ``threshold`` consecutive failed calls, refuse every further call this run."""

    def __init__(self, vendor: str, threshold: int = 5):
        self.vendor, self.threshold = vendor, threshold
        self.consecutive = 0
        self.open_reason: str | None = None

    def check(self, endpoint: str, symbol: str | None) -> None:
        if self.open_reason is not None:
            raise ProviderUnavailable(self.vendor, endpoint, symbol, f"not called: {self.open_reason}")

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, reason: str) -> None:
        self.consecutive += 1
        if self.consecutive >= self.threshold:
            self.trip(f"circuit open after {self.consecutive} consecutive failures (last: {reason})")

    def trip(self, reason: str) -> None:
        self.open_reason = reason
