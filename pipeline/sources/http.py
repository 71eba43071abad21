"""The one HTTP layer every vendor client goes through.

Layers, outermost first:

1. :meth:`HttpClient.get` — our retry loop for what urllib3 cannot retry (a connection reset
   after the headers, a blown deadline), Tradier 429s (wait until ``X-Ratelimit-Expiry``) and
   HTTP-200 vendor throttles; the per-provider circuit breaker; call/hit counting.
2. ``requests_cache.CachedSession`` (SQLite, JSON serializer) — per-endpoint expiry; credentials
   are in ``ignored_parameters`` so they are neither part of a key nor stored; ``filter_fn`` keeps
   vendor errors and empty answers out of the cache.
3. :class:`_VendorAdapter` — only reached on a cache miss, so rate limiting and the breaker's
   fail-fast cost nothing for cached answers; urllib3 ``Retry`` with backoff for 5xx and
   connection errors; one deadline per request covering connect, headers and body, enforced by
   a watchdog that shuts the socket down (a per-read timeout alone is reset by every byte, so a
   server sending a header byte every 2 s would hang the run forever); a byte limit per endpoint
   (checked against Content-Length and while streaming: an endless or oversized body is cut off
   at the limit, never held in memory, cached or archived). Bodies are scrubbed of credentials
   before anything (cache, normalizer, archive) sees them.

Rate limiters, the daily budget and the breaker live in :mod:`pipeline.sources.limits`.
Time: rate limits and backoff use an injected :class:`Clock` (tests advance a fake one);
the body deadline uses the real monotonic clock because it bounds real socket waits.
Secrets: nothing here ever formats a URL into a message or log line; error texts go through
:meth:`HttpClient.scrub` and urllib3/requests-cache log records are scrubbed too.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

import requests
from requests.adapters import HTTPAdapter
from requests_cache import DEFAULT_IGNORED_PARAMS, DO_NOT_CACHE, CachedSession
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from pipeline.contract.layout import Layout
from pipeline.contract.outside_text import escape_controls
from pipeline.sources.base import SourceError
from pipeline.sources.limits import CircuitBreaker, Clock, HttpError, ProviderUnavailable, RequestRejected
from pipeline.contract.files import atomic_write_bytes, open_nofollow

# Library defaults plus every spelling our vendors use for a credential.
IGNORED_PARAMETERS = tuple(dict.fromkeys((*DEFAULT_IGNORED_PARAMS, "Authorization", "apikey", "api_key", "token")))
_CREDENTIAL_IN_URL = re.compile(r"(?i)\b(apikey|api_key|token|access_token)=[^&\s'\"]+")
RETRY_STATUSES = (500, 502, 503, 504)
MINUTE, HOUR, DAY = 60, 3600, 86400


FALLBACK_LIMIT = 8 * 2 ** 20       # bytes, for an endpoint without a configured limit


class _DeadlineExceeded(requests.exceptions.Timeout):
    pass


class _TooLarge(requests.exceptions.RequestException):
    """The answer is larger than the endpoint's byte limit; the message says how large."""


class Verdict(Enum):
    """What an HTTP-200 body that is not data means."""

    THROTTLED = "throttled"        # wait and retry
    EXHAUSTED = "exhausted"        # quota gone for the day: stop using the provider
    UNAUTHORIZED = "unauthorized"  # bad credentials: stop using the provider
    REJECTED = "rejected"          # this call will never succeed (premium, invalid call)


@dataclass(frozen=True)
class BodyProblem:
    verdict: Verdict
    message: str
    pause: float = 0.0             # seconds to wait before retrying a THROTTLED call


# What one attempt came to, as the retry loop in HttpClient.get sees it.
OK, THROTTLED, BROKEN, FAILED, REJECTED, FATAL = "ok", "throttled", "broken", "failed", "rejected", "fatal"


@dataclass(frozen=True)
class Outcome:
    """OK: data. THROTTLED: wait (``pause`` or the rate window) and retry. BROKEN: a cut or
    empty answer, retried here because urllib3 cannot. FAILED: urllib3 already retried; counts
    toward the breaker. REJECTED: this call only. FATAL: stop using the provider."""

    kind: str
    detail: str = ""
    pause: float = 0.0


# ---- providers ---------------------------------------------------------------------------

@dataclass
class Provider:
    """One vendor as the HTTP layer sees it."""

    name: str
    base_url: str
    limiter: object                           # TradierRateLimiter | SpacedRateLimiter
    credential_env: str                       # named (never shown) in credential errors
    secrets: tuple[str, ...]                  # values scrubbed from anything we write
    expire_after: dict[str, int]              # URL suffix pattern (after base_url) -> seconds
    inspect: Callable[[bytes], BodyProblem | None] = lambda body: None
    breaker: CircuitBreaker = None

    def __post_init__(self):
        self.base_url = self.base_url.rstrip("/")
        if self.breaker is None:
            self.breaker = CircuitBreaker(self.name)


@dataclass(frozen=True)
class _Call:
    """One logical call, handed down explicitly from :meth:`HttpClient.get` to the adapter (as a
    keyword ``requests`` passes through to ``HTTPAdapter.send``), the watchdog of its request
    (where urllib3's retries find it) and its response (where the cache filter finds it)."""

    provider: Provider
    endpoint: str
    symbol: str | None
    limit: int                     # bytes the answer may hold

    @property
    def key(self) -> str:
        return f"{self.provider.name}.{self.endpoint}"


@dataclass(frozen=True)
class Fetched:
    body: bytes
    cache_key: str | None          # to drop the entry if a normalizer rejects the body
    from_cache: bool = False       # who answered: the HTTP cache, or the vendor just now


def is_empty_answer(body: bytes) -> bool:
    """A body that carries no data: blank, null, an object of nulls or a header-only CSV.

    Such answers are passed to the normalizers (they are legitimate "nothing" replies) but never
    cached, so a transient empty reply is not remembered for hours.
    """
    text = body.strip()
    if text in (b"", b"null", b'"null"', b"{}", b"[]"):
        return True
    if text[:1] == b"{":
        if len(text) > 512:      # data payloads are large; only small objects can be all-null
            return False
        try:
            return _all_null(json.loads(text))
        except (ValueError, RecursionError):
            return False
    return len([line for line in text.splitlines() if line.strip()]) <= 1


def _all_null(node) -> bool:
    if isinstance(node, dict):
        return all(_all_null(v) for v in node.values())
    return node is None or node == "null" or node == [] or node == {}


# ---- the adapter and retry policy ----------------------------------------------------------

class _VendorRetry(Retry):
    """urllib3 retry whose backoff sleeps on the injected clock and whose every extra attempt
    goes through the provider's rate limiter and the call counter."""

    sleeper: Callable[[float], None] = staticmethod(time.sleep)
    on_attempt: Callable[[], None] = staticmethod(lambda: None)

    def new(self, **kw):
        retry = super().new(**kw)
        retry.sleeper, retry.on_attempt = self.sleeper, self.on_attempt
        return retry

    def get_backoff_time(self) -> float:
        # urllib3 retries the first failure at once; a vendor that just failed deserves a pause.
        errors = len(self.history)
        return 0.0 if errors == 0 else min(self.backoff_factor * 2 ** (errors - 1), self.backoff_max)

    def sleep(self, response=None) -> None:
        self.sleeper(self.get_backoff_time())
        self.on_attempt()


class _Watchdog:
    """One request's deadline, whatever the peer does: when it passes, every socket the request
    used is shut down, so a blocked connect, header or body read returns at once. It carries the
    request's :class:`_Call` (None for a probe) for urllib3's retries, which are given no request."""

    def __init__(self, seconds: float, call: _Call | None = None):
        self.call = call
        self.expires = time.monotonic() + seconds
        self.fired = False
        self._sockets: list = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.expires

    def watch(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock) -> None:
    """Shut a (possibly TLS) socket down from another thread: through a duplicate of its
    descriptor, so the TLS object is left alone and the owner's close still works."""
    try:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
            dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass       # already closed


_WATCH = threading.local()      # the watchdog of the request this thread is sending


class _WatchedConnection:
    """Hands every socket a request uses (new or kept alive) to the thread's watchdog."""

    def connect(self):
        super().connect()
        self._watch()

    def getresponse(self, *args, **kwargs):
        self._watch()
        return super().getresponse(*args, **kwargs)

    def _watch(self):
        dog = getattr(_WATCH, "dog", None)
        if dog is not None and getattr(self, "sock", None) is not None:
            dog.watch(self.sock)


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections report their sockets to the thread's :class:`_Watchdog`."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _VendorAdapter(_WatchedAdapter):
    """Reached only on cache misses: breaker, rate limiter, counting, then a request bounded in
    time (:class:`_Watchdog`) and size (the endpoint's byte limit)."""

    def __init__(self, client: "HttpClient", retry: Retry):
        super().__init__(max_retries=retry)
        self.client = client

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None, *, call: _Call):
        self.client._before_wire_attempt(call)
        dog = _WATCH.dog = _Watchdog(self.client.deadline, call)
        try:
            try:
                response = super().send(request, stream=True, timeout=timeout, verify=verify, cert=cert,
                                        proxies=proxies)
            except requests.exceptions.RequestException:
                if dog.expired:
                    raise _DeadlineExceeded("no complete answer before the deadline") from None
                raise
            call.provider.limiter.observe(response.headers)
            try:
                body = _read_body(response.raw, dog, call.limit, response.headers.get("Content-Length"))
            except BaseException:
                response.raw.close()          # never hand a half-read connection back to the pool
                raise
            finally:
                response.raw.release_conn()
        finally:
            dog.cancel()
            _WATCH.dog = None
        # Scrubbed before the cache stores it and the normalizer or the archive sees it.
        response._content = self.client.scrub_bytes(body)
        response._content_consumed = True
        # requests-cache redacts request/response URLs but not the raw response's request URL.
        response.raw._request_url = self.client.scrub(getattr(response.raw, "_request_url", None) or "")
        response.vendor_call = call         # for the cache filter (HttpClient._cacheable)
        return response


def _read_body(raw, dog: _Watchdog, limit: int, declared: str | None) -> bytes:
    """The whole body, or _TooLarge past ``limit`` bytes (at once when the Content-Length says
    so), or _DeadlineExceeded when the watchdog cut the connection."""
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _TooLarge(f"answer of {int(declared):,} bytes (Content-Length) exceeds the limit of {limit:,} bytes")
    chunks, size = [], 0
    while True:
        if dog.expired:
            raise _DeadlineExceeded("the whole answer did not arrive before the deadline")
        try:
            chunk = raw.read1(65536)
        except (ProtocolError, ReadTimeoutError, OSError) as exc:
            if dog.expired:
                raise _DeadlineExceeded("the whole answer did not arrive before the deadline") from None
            what = "read timed out" if isinstance(exc, ReadTimeoutError) else "connection broken"
            raise requests.exceptions.ChunkedEncodingError(f"{what} mid-body") from None
        if not chunk:
            if dog.expired:      # the watchdog's shutdown reads as an end of file
                raise _DeadlineExceeded("the whole answer did not arrive before the deadline")
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"answer exceeds the limit of {limit:,} bytes (cut off after {size:,})")
        chunks.append(chunk)


# ---- the client ----------------------------------------------------------------------------

@dataclass
class CallStats:
    network: Counter = field(default_factory=Counter)   # wire attempts per "vendor.endpoint"
    hits: Counter = field(default_factory=Counter)      # answers served by the cache
    misses: Counter = field(default_factory=Counter)    # logical calls that went to the wire
    throttled: Counter = field(default_factory=Counter)  # 429s and HTTP-200 throttle notices


class HttpClient:
    """``get`` one vendor endpoint through cache, limiter, retries, deadline and breaker."""

    def __init__(self, layout: Layout, providers: list[Provider], *, clock: Clock | None = None,
                 deadline: float = 30.0, connect_timeout: float = 5.0, read_timeout: float = 10.0,
                 attempts: int = 3, backoff: float = 1.0, throttle_waits: int = 5,
                 limits: dict[str, int] | None = None):
        """``layout``: the data root whose HTTP cache is used and where accepted answers are archived."""
        self.clock = clock or Clock()
        self.providers = {p.name: p for p in providers}
        self.deadline = float(deadline)
        self.timeout = (min(connect_timeout, deadline), min(read_timeout, deadline))
        self.limits = dict(limits or {})          # "vendor.endpoint" -> bytes
        self.attempts, self.backoff, self.throttle_waits = attempts, backoff, throttle_waits
        self.layout = layout
        self.stats = CallStats()
        self._accepted: dict[str, list[tuple[str | None, bool]]] = {}   # answers parsed, per vendor.endpoint
        self._secrets = tuple(sorted({s for p in providers for s in p.secrets if s}, key=len, reverse=True))
        _scrub_library_logs(self)

        layout.http_cache.parent.mkdir(parents=True, exist_ok=True)
        _private_cache_file(layout.http_cache)
        # WAL: a commit no longer waits for an fsync (20+ ms a response), yet a crash cannot
        # corrupt the database, only lose the last few entries, which a cache can afford.
        self.session = CachedSession(
            str(layout.http_cache), backend="sqlite", serializer="json", wal=True,
            expire_after=DO_NOT_CACHE, urls_expire_after=self._expiry_patterns(),
            ignored_parameters=list(IGNORED_PARAMETERS), allowable_codes=(200,), allowable_methods=("GET",),
            filter_fn=self._cacheable, stale_if_error=False,
        )
        retry = _VendorRetry(total=attempts - 1, connect=attempts - 1, read=attempts - 1, status=attempts - 1,
                             other=0, backoff_factor=backoff, backoff_max=30.0, status_forcelist=RETRY_STATUSES,
                             allowed_methods=frozenset({"GET"}), raise_on_status=False,
                             respect_retry_after_header=False)
        retry.sleeper, retry.on_attempt = self.clock.sleep, self._before_retry
        adapter = _VendorAdapter(self, retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _expiry_patterns(self) -> dict:
        patterns = {}
        for provider in self.providers.values():
            for suffix, seconds in provider.expire_after.items():
                patterns[provider.base_url + suffix] = seconds
        return patterns

    # -- hooks used by the adapter, retry and cache -------------------------------------------
    def _call(self, vendor: str, endpoint: str, symbol: str | None) -> _Call:
        return _Call(self.providers[vendor], endpoint, symbol,
                     int(self.limits.get(f"{vendor}.{endpoint}", FALLBACK_LIMIT)))

    def _before_wire_attempt(self, call: _Call) -> None:
        dog = getattr(_WATCH, "dog", None)
        if dog is not None and dog.expired:      # urllib3 wants to retry, but the deadline has passed
            raise _DeadlineExceeded("no complete answer before the deadline")
        call.provider.breaker.check(call.endpoint, call.symbol)
        call.provider.limiter.before_send(call.endpoint, call.symbol)
        self.stats.network[call.key] += 1

    def _before_retry(self) -> None:
        """urllib3 is about to send the request again; its call rides on the request's watchdog."""
        self._before_wire_attempt(_WATCH.dog.call)

    def _cacheable(self, response) -> bool:
        if response.status_code != 200 or getattr(response, "from_cache", False):
            return response.status_code == 200
        body = response.content or b""
        return not is_empty_answer(body) and response.vendor_call.provider.inspect(body) is None

    def _send(self, call: _Call, url: str, params: dict | None, headers: dict | None, **cache_options):
        """``session.get(url, ...)`` with ``call`` handed to the adapter: the request is prepared
        and sent as ``Session.request`` does (environment proxies and certificates included),
        because only ``send`` passes extra keywords through to the adapter."""
        request = self.session.prepare_request(requests.Request("GET", url, params=params, headers=headers))
        environment = self.session.merge_environment_settings(request.url, {}, None, None, None)
        return self.session.send(request, timeout=self.timeout, call=call, **environment, **cache_options)

    # -- public API ---------------------------------------------------------------------------
    def get(self, vendor: str, endpoint: str, path: str = "", params: dict | None = None, *,
            symbol: str | None = None, headers: dict | None = None) -> Fetched:
        """One logical call. Raises RequestRejected (this call only), ProviderUnavailable (stop
        using the provider) or HttpError (gave up after retries; counts toward the breaker)."""
        provider = self.providers[vendor]
        call = self._call(vendor, endpoint, symbol)
        key = call.key
        broken = throttles = 0
        while True:
            response = None
            try:
                response = self._send(call, provider.base_url + path, params, headers)
            except _TooLarge as exc:
                outcome = Outcome(REJECTED, f"{exc} (config live.max_response_bytes: {key})")
            except (_DeadlineExceeded, requests.exceptions.ChunkedEncodingError) as exc:
                outcome = Outcome(BROKEN, self._describe(exc))     # mid-body: urllib3 cannot retry it
            except requests.exceptions.RequestException as exc:
                outcome = Outcome(FAILED, self._describe(exc))     # urllib3 already retried it
            else:
                outcome = self._classify(provider, response)
            if outcome.kind == OK:
                provider.breaker.success()
                (self.stats.hits if response.from_cache else self.stats.misses)[key] += 1
                return Fetched(response.content, getattr(response, "cache_key", None), bool(response.from_cache))
            if outcome.kind == REJECTED:
                raise RequestRejected(vendor, endpoint, symbol, outcome.detail)
            if outcome.kind == FATAL:
                provider.breaker.trip(outcome.detail)
                # This call was sent and refused (e.g. a rejected key): say so, not "not called".
                raise ProviderUnavailable(vendor, endpoint, symbol, outcome.detail)
            if outcome.kind == BROKEN:
                broken += 1
                if broken < self.attempts:
                    self.clock.sleep(self.backoff * 2 ** (broken - 1))
                    continue
            if outcome.kind == THROTTLED:
                throttles += 1
                self.stats.throttled[key] += 1
                if throttles <= self.throttle_waits:
                    provider.limiter.throttled(response.headers, outcome.pause)
                    continue
            provider.breaker.failure(f"{endpoint}: {outcome.detail}")
            raise HttpError(vendor, endpoint, symbol, f"gave up: {outcome.detail}")

    def _classify(self, provider: Provider, response) -> "Outcome":
        status, body = response.status_code, response.content or b""
        if status == 429:
            return Outcome(THROTTLED, "HTTP 429 rate limited")
        if status in (401, 403):
            return Outcome(FATAL, f"HTTP {status}: credentials refused; check {provider.credential_env} and that "
                                  "it belongs to the configured base URL's environment")
        if status >= 500:
            return Outcome(FAILED, f"HTTP {status} after {self.attempts} attempts")
        if status != 200:
            return Outcome(REJECTED, f"HTTP {status}: {self.scrub(_snippet(body))}")
        if not body.strip():
            return Outcome(BROKEN, "HTTP 200 with an empty body")
        problem = provider.inspect(body)
        if problem is None:
            return Outcome(OK)
        message = self.scrub(problem.message)
        kind = {Verdict.THROTTLED: THROTTLED, Verdict.REJECTED: REJECTED}.get(problem.verdict, FATAL)
        if problem.verdict is Verdict.UNAUTHORIZED:
            message = f"{message} (check {provider.credential_env})"
        return Outcome(kind, message, problem.pause)

    def cached(self, vendor: str, path: str = "", params: dict | None = None, headers: dict | None = None) -> bool:
        """Whether a fresh cached answer exists (no network), for planning calls against a budget."""
        call = self._call(vendor, "cache-probe", None)
        response = self._send(call, call.provider.base_url + path, params, headers, only_if_cached=True)
        return response.status_code == 200 and bool(getattr(response, "from_cache", False))

    def fetch(self, vendor: str, endpoint: str, path: str, params: dict, parse: Callable[[bytes], object], *,
              symbol: str | None = None, headers: dict | None = None, archive_as: tuple[str, str] | None = None):
        """``get`` then ``parse`` the body; a body the parser rejects is dropped from the cache and
        never archived; an accepted one is archived as (day, file name)."""
        fetched = self.get(vendor, endpoint, path, params, symbol=symbol, headers=headers)
        try:
            result = parse(fetched.body)
        except SourceError:
            self.discard(fetched)
            raise
        if archive_as is not None:
            self.archive(vendor, endpoint, *archive_as, fetched.body)
        self._accepted.setdefault(f"{vendor}.{endpoint}", []).append((fetched.cache_key, fetched.from_cache))
        return result

    def forget(self, vendor: str, endpoint: str) -> str:
        """Drop every answer of ``vendor.endpoint`` this client parsed, for a caller that rejects
        them together (e.g. chains of another session), so a rerun asks the vendor again. Returns
        who had answered: "the HTTP cache", "the vendor" or "the HTTP cache and the vendor"."""
        answers = self._accepted.pop(f"{vendor}.{endpoint}", [])
        for key, _ in answers:
            if key:
                self.session.cache.delete(key)
        who = {"the HTTP cache" if cached else "the vendor" for _, cached in answers}
        return " and ".join(sorted(who)) or "the vendor"

    def probe(self, vendor: str, timeout: float = 10.0) -> int:
        """HTTP status of a bare GET of the base URL: no credentials, no cache, no limiter, so it
        proves the route without spending any quota. Raises HttpError when nothing answers."""
        provider = self.providers[vendor]
        dog = _WATCH.dog = _Watchdog(timeout)       # the whole probe, headers included; the body is never read
        try:
            with requests.Session() as plain:
                plain.mount("http://", _WatchedAdapter())
                plain.mount("https://", _WatchedAdapter())
                with plain.get(provider.base_url, timeout=timeout, stream=True) as response:
                    return response.status_code
        except requests.RequestException as exc:
            if dog.expired:
                exc = _DeadlineExceeded()
            raise HttpError(vendor, "probe", None, self._describe(exc)) from None
        finally:
            dog.cancel()
            _WATCH.dog = None

    def discard(self, fetched: Fetched) -> None:
        """Forget a cached answer that a normalizer rejected, so a rerun asks again."""
        if fetched.cache_key:
            self.session.cache.delete(fetched.cache_key)

    def archive(self, vendor: str, endpoint: str, day: str, name: str, body: bytes) -> Path:
        """Keep the raw answer (:meth:`Layout.vendor_answer`), credentials removed."""
        path = self.layout.vendor_answer(vendor, endpoint, day, name)
        clean = self.scrub_bytes(body)
        if not (path.exists() and path.read_bytes() == clean):    # a cache hit re-archives nothing
            atomic_write_bytes(path, lambda tmp: tmp.write_bytes(clean))
        return path

    def scrub(self, text: str) -> str:
        text = _CREDENTIAL_IN_URL.sub(lambda m: f"{m.group(1)}=***", text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def scrub_bytes(self, body: bytes) -> bytes:
        for secret in self._secrets:
            body = body.replace(secret.encode(), b"***")
        return body

    def call_counts(self) -> dict[str, int]:
        return dict(sorted(self.stats.network.items()))

    def cache_counts(self) -> dict[str, int]:
        return {"hits": sum(self.stats.hits.values()), "misses": sum(self.stats.misses.values())}

    def close(self) -> None:
        self.session.close()

    @staticmethod
    def _describe(exc: Exception) -> str:
        # Never str(exc) of a requests error: it embeds the URL, which holds the API key.
        if isinstance(exc, _DeadlineExceeded):
            return "deadline exceeded (no complete answer in time: connect, headers and body)"
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return "connection broken mid-body"
        if isinstance(exc, requests.exceptions.Timeout):
            return f"timed out ({type(exc).__name__})"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"connection failed ({type(exc).__name__})"
        return f"request failed ({type(exc).__name__})"


def _snippet(body: bytes, limit: int = 160) -> str:
    return escape_controls(body[:limit].decode("utf-8", "replace").strip())


def _private_cache_file(path: Path) -> None:
    """The cache database (and SQLite's -wal/-shm files, which take its mode) readable by the
    owner only, and never reached through a link planted at its name."""
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.is_symlink():
            side.unlink()
        elif side.exists():
            os.chmod(side, 0o600)
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class _ScrubFilter(logging.Filter):
    def __init__(self, client: HttpClient):
        super().__init__()
        self.client = client

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.client.scrub(record.getMessage())
        record.args = None
        return True


def _scrub_library_logs(client: HttpClient) -> None:
    """urllib3 logs retried URLs (with the API key in the query) at WARNING; requests-cache
    logs URLs at DEBUG. Scrub every record from those libraries' existing loggers."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("urllib3", "requests_cache")]
    for name in names:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _ScrubFilter)]:
            logger.removeFilter(old)
        logger.addFilter(_ScrubFilter(client))
