"""One small HTTP sender for both channels (the Teams workflow, the webhook endpoints): a POST that a slow,
hostile or misconfigured receiver cannot turn into a long wait, a big read or a leak.

- https only, except loopback (`endpoint_problem`, also used by settings validation); TLS 1.2 or later,
  verified against the trust bundle the rest of the app uses (REQUESTS_CA_BUNDLE, else certifi's).
- Redirects are never followed: a 3xx is a configuration error (the body, and the Teams URL's signature,
  never go to a host nobody configured).
- Each attempt is one new connection with a connect timeout, a read timeout per socket operation and a
  total time bound: a receiver that trickles its headers or its body is cut when the attempt's time is up
  (its socket is shut down from a timer thread), and so is one that trickles the TLS handshake.
- The answer's body is read at most `max_answer_bytes` (a few KB, never decompressed), then dropped.
- Retries with exponential backoff and jitter on timeouts, dropped connections, 408, 429 and 5xx; a
  Retry-After (seconds or HTTP date) is honoured up to `max_retry_after`; no wait and no attempt runs past
  the caller's deadline. Any other 4xx is a permanent configuration error, never retried.
- Results are typed: `Delivered`, `RetryLater`, `PermanentFailure`. They name the channel and the host,
  never the URL's path or query (a Teams workflow URL carries its signature there), nor the receiver's text.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import math
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from shared import events
from shared.events import log_event
from shared.hosts import endpoint_problem
from shared.redact import remember, scrub

if TYPE_CHECKING:
    from urllib3.connection import HTTPConnection
    from urllib3.response import HTTPResponse

log = logging.getLogger("shared.notify")

USER_AGENT = "partner-center-customer-snapshot/1 (notifications)"
_RETRY_STATUSES = frozenset({408, 429})
_SECRET_SEGMENT_CHARS = 16  # path segments this long are treated as secret (hook tokens live there)


@dataclass(frozen=True)
class DeliveryPolicy:
    """Time and size bounds of one delivery (defaults for a nightly job; tests pass tighter ones)."""

    connect_timeout: float = 10.0
    read_timeout: float = 20.0  # one socket read
    attempt_seconds: float = 30.0  # one attempt, from connecting to the end of the answer read
    answer_seconds: float = 2.0  # the answer's body after its status line (a 2xx is already a delivery)
    max_attempts: int = 4
    backoff_seconds: float = 2.0  # first wait; doubles, with jitter
    max_backoff_seconds: float = 60.0
    max_retry_after: float = 120.0
    max_answer_bytes: int = 4096


@dataclass(frozen=True)
class Delivered:
    channel: str
    host: str
    status: int
    attempts: int


@dataclass(frozen=True)
class RetryLater:
    """Not delivered this time, worth another try (a later run): the receiver failed, was busy or did not
    answer in time, or the caller's deadline came first. `retry_after`: what the receiver asked for."""

    channel: str
    host: str
    reason: str
    status: int | None
    attempts: int
    retry_after: float | None = None


@dataclass(frozen=True)
class PermanentFailure:
    """The receiver refused in a way a retry cannot change (a 4xx other than 408/429, a redirect): a
    configuration error for an operator. Never retried by the sender."""

    channel: str
    host: str
    reason: str
    status: int | None
    attempts: int


Outcome = Delivered | RetryLater | PermanentFailure


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no answer (the reason says why)
    reason: str
    retry_after: float | None = None
    location_host: str | None = None


class _Watchdog:
    """Shuts the attempt's connection down when its time is up, whatever it is blocked in (the TLS
    handshake, a trickle of header bytes, a body); DNS resolution aside.

    It holds its own duplicate of the socket: urllib3 detaches the plain socket when it wraps it in TLS,
    and may close it on an error, so neither object can be relied on; a duplicate shuts down the same
    connection, and its descriptor cannot be reused by another connection while the watchdog holds it."""

    def __init__(self, seconds: float) -> None:
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._done = False
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(max(seconds, 0.0), self.fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            self._timer.cancel()
            if self._sock is not None:
                self._sock.close()

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.cut.set()
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def register(self, sock: socket.socket) -> None:
        """Called with the new connection's socket, before anything is sent or received on it."""
        with self._lock:
            if self.cut.is_set() or self._done:
                raise TimeoutError("the attempt's time was up before it connected")
            self._sock = sock.dup()


class Sender:
    """POSTs bodies to one endpoint. Thread-safe: every attempt has its own connection."""

    def __init__(self, url: str, channel: str, policy: DeliveryPolicy | None = None) -> None:
        problem = endpoint_problem(url)
        if problem is not None:
            raise ValueError(f"{channel} {problem}")
        parts = urlsplit(url)
        self.channel = channel
        self.host = parts.hostname or ""
        self._https = parts.scheme == "https"
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.policy = policy or DeliveryPolicy()
        self._ssl: ssl.SSLContext | None = None
        _remember_url(url)
        _scrub_urllib3_logs()

    def __repr__(self) -> str:
        return f"Sender({self.channel}, host={self.host})"

    def post(
        self,
        body: bytes,
        headers: Callable[[], Mapping[str, str]],
        *,
        deadline: float | None = None,
    ) -> Outcome:
        """POSTs `body` until it is delivered, refused for good, or out of attempts or time. `headers()` is
        called before each attempt (a signature carries the time it was made). `deadline`: a
        time.monotonic() value no attempt or wait runs past."""
        policy = self.policy
        end = math.inf if deadline is None else deadline
        answer = _Answer(None, "not attempted: the deadline had passed")
        attempts = 0
        while attempts < policy.max_attempts:
            budget = min(policy.attempt_seconds, end - time.monotonic())
            if budget <= 0:
                break
            attempts += 1
            answer = self._attempt(body, {**headers(), **self._fixed_headers()}, budget)
            verdict = self._verdict(answer, attempts)
            if verdict is not None:
                return verdict
            wait = self._wait(answer, attempts)
            if attempts >= policy.max_attempts or time.monotonic() + wait >= end:
                break
            log_event(
                log,
                logging.WARNING,
                events.NOTIFY_RETRY,
                channel=self.channel,
                host=self.host,
                attempt=attempts,
                cause=answer.reason,
                waitSeconds=round(wait, 2),
            )
            time.sleep(wait)
        return RetryLater(self.channel, self.host, answer.reason, answer.status, attempts, answer.retry_after)

    def _verdict(self, answer: _Answer, attempts: int) -> Outcome | None:
        """The outcome, or None when the attempt is worth repeating."""
        status = answer.status
        if status is None:
            return None
        if 200 <= status < 300:
            return Delivered(self.channel, self.host, status, attempts)
        if 300 <= status < 400:
            where = f" to {answer.location_host}" if answer.location_host else ""
            reason = f"HTTP {status}: a redirect{where}, not followed (set the final URL)"
            return PermanentFailure(self.channel, self.host, reason, status, attempts)
        if 400 <= status < 500 and status not in _RETRY_STATUSES:
            reason = f"HTTP {status}: refused, not retried (check the URL and the receiver's configuration)"
            return PermanentFailure(self.channel, self.host, reason, status, attempts)
        return None

    def _wait(self, answer: _Answer, attempts: int) -> float:
        policy = self.policy
        if answer.retry_after is not None:
            return min(answer.retry_after, policy.max_retry_after)
        backoff = policy.backoff_seconds * 2.0 ** (attempts - 1)
        jitter = 1 + random.random() * 0.25  # noqa: S311 - jitter, not crypto
        return min(backoff * jitter, policy.max_backoff_seconds)

    def _fixed_headers(self) -> dict[str, str]:
        return {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",  # an answer is never inflated (nor read far)
            "Connection": "close",
        }

    def _attempt(self, body: bytes, headers: Mapping[str, str], budget: float) -> _Answer:
        """One POST on a new connection, within `budget` seconds however the receiver behaves."""
        import urllib3.exceptions

        attempt_end = time.monotonic() + budget
        watchdog = _Watchdog(budget)
        conn = self._connection(watchdog)
        try:
            with watchdog:
                conn.connect()
                conn.timeout = self.policy.read_timeout
                conn.request("POST", self._target, body=body, headers=dict(headers), preload_content=False)
                response = conn.getresponse()
                answer = _answer_of(response)
                self._drain(conn, response, attempt_end)
                return answer
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
            if watchdog.cut.is_set():
                return _Answer(None, f"no complete answer within {budget:g} s")
            return _Answer(None, _cause(exc))
        finally:
            conn.close()

    def _connection(self, watchdog: _Watchdog) -> HTTPConnection:
        """A urllib3 connection whose socket the watchdog can shut down as soon as it exists."""
        from urllib3.connection import HTTPConnection, HTTPSConnection

        base: type[HTTPConnection] = HTTPSConnection if self._https else HTTPConnection

        class Watched(base):  # type: ignore[valid-type, misc]
            def _new_conn(self) -> socket.socket:
                sock: socket.socket = super()._new_conn()
                watchdog.register(sock)
                return sock

        if self._https:
            return Watched(
                self.host, self._port, timeout=self.policy.connect_timeout, ssl_context=self._context()
            )
        return Watched(self.host, self._port, timeout=self.policy.connect_timeout)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _trust()
        return self._ssl

    def _drain(self, conn: HTTPConnection, response: HTTPResponse, attempt_end: float) -> None:
        """Reads at most max_answer_bytes of the answer's body, briefly, and drops it."""
        import urllib3.exceptions

        end = min(attempt_end, time.monotonic() + self.policy.answer_seconds)
        left = self.policy.max_answer_bytes
        with contextlib.suppress(
            urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError
        ):
            while left > 0:
                remaining = end - time.monotonic()
                if remaining <= 0 or conn.sock is None:
                    return
                conn.sock.settimeout(remaining)
                chunk = response.read1(left, decode_content=False)
                if not chunk:
                    return
                left -= len(chunk)


def _answer_of(response: HTTPResponse) -> _Answer:
    status = response.status
    retry_after = _retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    location_host = None
    if 300 <= status < 400:
        with contextlib.suppress(ValueError):
            location_host = urlsplit(response.headers.get("Location") or "").hostname
    reason = f"HTTP {status}"
    if status in (429, 503) and retry_after is not None:
        reason += f" (Retry-After {retry_after:g} s)"
    return _Answer(status, reason, retry_after, location_host)


def _retry_after(value: str | None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or an HTTP date); None when it is absent
    or not one of those (`soon`, `-5`, `1.5`): the normal backoff applies then."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _cause(exc: BaseException) -> str:
    """What went wrong, in fixed words: an exception's text may quote the receiver or the URL."""
    import urllib3.exceptions

    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "the host name did not resolve"
    if isinstance(exc, ssl.SSLCertVerificationError | urllib3.exceptions.SSLError | ssl.SSLError):
        return "TLS failed (is the certificate trusted and valid for the host?)"
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):  # before its base:
        return "the connection was refused or failed"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "the connection timed out"
    if isinstance(exc, TimeoutError | urllib3.exceptions.ReadTimeoutError):
        return "the receiver stalled (read timeout)"
    if isinstance(exc, http.client.HTTPException) and not isinstance(exc, ConnectionError):
        return "the answer was not HTTP"
    return f"the connection dropped ({type(exc).__name__})"


def _trust() -> ssl.SSLContext:
    """The trust the app's other HTTPS clients (requests, MSAL) use: REQUESTS_CA_BUNDLE when it is set,
    else certifi's bundle."""
    import certifi

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    if os.path.isdir(bundle):
        context = ssl.create_default_context(capath=bundle)
    else:
        context = ssl.create_default_context(cafile=bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _remember_url(url: str) -> None:
    """The URL's path and query may hold the secret that lets anyone post (a Teams workflow's `sig`, a
    hook token in a path): register them for scrubbing wherever a message is built from text."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if len(s) >= _SECRET_SEGMENT_CHARS]
    values = [v for _k, v in parse_qsl(parts.query, keep_blank_values=True)]
    remember(url, parts.path + ("?" + parts.query if parts.query else ""), parts.query, *segments, *values)


class _ScrubFilter(logging.Filter):
    """urllib3 logs a response with malformed headers together with the request's URL: scrubbed here."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = ()
        return True


_FILTER = _ScrubFilter()


def _scrub_urllib3_logs() -> None:
    logger = logging.getLogger("urllib3.connection")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


__all__ = [
    "Delivered",
    "DeliveryPolicy",
    "Outcome",
    "PermanentFailure",
    "RetryLater",
    "Sender",
]
