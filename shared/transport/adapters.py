"""Every use of urllib3 in the app: the only module that imports it, so its quirks are handled once.

- GETs (the Partner Center pager): `RetryingSession`, one pooled connection whose retries are urllib3's
  (`DeadlineRetry`: 429 Retry-After, 5xx, timeouts, dropped connections), so a retried request keeps its
  headers; never a redirect; the status line and headers within the timeout however slowly they trickle;
  a retried answer's body is dropped, not read. `read_some` and `socket_of` are what bodies.py reads a
  body with, within its bounds; `signalling_sent` tells a caller when its request is on the wire.
- POSTs (the notification sender, post.py): `watched_connection`, a connection whose socket a Watchdog
  can shut down as soon as it exists; `drain` reads a bounded part of an answer.
- urllib3's exceptions are translated here into fixed words (`no_answer_cause`, `body_cause`,
  `attempt_cause`): an exception's text may quote the receiver or a URL. Its logs are scrubbed of secrets
  (`scrub_library_logs`), and Azure SDK transports get a session without retries of its own
  (`unretried_session`: the SDK's pipeline retries).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from shared.errors import DeadlineExceeded
from shared.redact import scrub
from shared.transport.retry_after import retry_after_seconds
from shared.transport.watchdog import Watchdog, shut_down

if TYPE_CHECKING:
    import socket
    from types import TracebackType
    from typing import Self

    from urllib3 import BaseHTTPResponse
    from urllib3.connectionpool import ConnectionPool

LIBRARY_ERROR = urllib3.exceptions.HTTPError  # the root of what the library raises itself
# What a failed attempt may raise, whatever broke: the library, the HTTP parser, the socket, a bad header.
ATTEMPT_ERRORS: tuple[type[Exception], ...] = (
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)
_SENT = threading.local()  # .signal: called by a RetryingSession connection once its request is sent


class DeadlineRetry(Retry):
    """urllib3 retries, but never an immediate retry: the first failure also waits (a service may ask
    clients not to hammer it), a Retry-After that is not whole seconds or an HTTP date (`-5`, `1.5`,
    `soon`) means the normal backoff, no wait runs past the run's deadline, and every retry is reported to
    `on_retry(attempt, cause, Retry-After as received)` without URL or headers."""

    deadline: float = float("inf")  # time.monotonic() value
    on_retry: Callable[[int, str, str | None], None] | None = None

    @classmethod
    def for_get(
        cls,
        retries: int,
        *,
        statuses: Collection[int],
        backoff_seconds: float,
        max_retry_after_seconds: float,
        deadline: float,
        on_retry: Callable[[int, str, str | None], None] | None = None,
    ) -> DeadlineRetry:
        """`retries` of an idempotent GET on `statuses`, timeouts and dropped connections; no redirect."""
        retry = cls(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=statuses,
            backoff_factor=backoff_seconds,
            backoff_jitter=backoff_seconds,
            backoff_max=max(backoff_seconds, 60.0),
            respect_retry_after_header=True,
            # urllib3 takes whole seconds (as Retry-After gives them); a fractional setting rounds up.
            retry_after_max=math.ceil(max_retry_after_seconds),
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.deadline = deadline
        retry.on_retry = on_retry
        return retry

    def new(self, **kw: Any) -> Self:
        new = super().new(**kw)
        new.deadline = self.deadline
        new.on_retry = self.on_retry
        return new

    def get_backoff_time(self) -> float:
        floor = self.backoff_factor * (1 + random.random() * 0.5)  # noqa: S311 - jitter, not crypto
        return max(super().get_backoff_time(), floor)

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        seconds = retry_after_seconds(response.headers.get("Retry-After"))
        return None if seconds is None else min(seconds, self.retry_after_max)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        retry_after = self.get_retry_after(response) if response is not None else None
        wait = retry_after if retry_after else self.get_backoff_time()
        if time.monotonic() + wait > self.deadline:
            raise DeadlineExceeded(
                "run deadline (SNAPSHOT_RUN_DEADLINE_SECONDS) would pass while waiting to retry"
            )
        time.sleep(wait)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.on_retry is not None:
            cause = f"HTTP {response.status}" if response is not None else type(error).__name__
            retry_after = response.headers.get("Retry-After") if response is not None else None
            self.on_retry(len(new.history), cause, retry_after)
        return new


class RetryingSession:
    """GETs on one pooled connection (requests are sequential: one in flight) with DeadlineRetry's
    retries; redirects are never followed, so headers never leave the origin they were meant for."""

    def __init__(self, retry: DeadlineRetry, *, timeout: float, headers: Mapping[str, str]) -> None:
        self._retry = retry
        self._timeout = timeout
        self._session = requests.Session()
        self._adapter = adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
        adapter.poolmanager.pool_classes_by_scheme = _bounded_pools(timeout)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers.update(headers)

    def get(self, url: str, headers: Mapping[str, str], *, retries: int) -> requests.Response:
        """The answer to a GET retried at most `retries` times, its body unread (`read_body`)."""
        left = retries
        self._adapter.max_retries = self._retry.new(total=left, connect=left, read=left, status=left)
        return self._session.get(
            url, headers=dict(headers), timeout=self._timeout, stream=True, allow_redirects=False
        )

    def backoff(self) -> None:
        """Waits as before a retry (DeadlineExceeded when that would pass the deadline)."""
        self._retry.new().sleep()

    def close(self) -> None:
        self._session.close()


class _UndrainedResponse(HTTPResponse):
    """urllib3 reads a retried answer's body to its end to reuse the connection: a hostile body that never
    ends (or trickles) would hold the run there. The connection is dropped instead; retries are rare."""

    def drain_conn(self) -> None:
        self.close()
        self.release_conn()


def _bounded_pools(seconds: float) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections get the status line and headers within `seconds` however slowly
    they trickle in (the socket timeout bounds one read, not the whole): past it the socket is shut down
    and the attempt is a read timeout, which urllib3 retries (never a response cut short at the headers).
    A retried answer's body is not read at all (_UndrainedResponse)."""

    def bounded(base: type[HTTPConnection]) -> type[HTTPConnection]:
        class Bounded(base):  # type: ignore[valid-type, misc]
            def getresponse(self) -> Any:  # called once the request is sent
                if (signal := getattr(_SENT, "signal", None)) is not None:
                    signal()
                cut = threading.Event()
                timer = threading.Timer(seconds, shut_down, (self.sock, cut))
                timer.daemon = True
                timer.start()
                try:
                    response = super().getresponse()
                except OSError:
                    if cut.is_set():
                        raise TimeoutError(f"no status line and headers within {seconds:g} s") from None
                    raise
                finally:
                    timer.cancel()
                if cut.is_set():  # what arrived before the cut is not a whole header section
                    response.close()
                    raise TimeoutError(f"no status line and headers within {seconds:g} s")
                response.__class__ = _UndrainedResponse  # urllib3 builds it here, not from the pool
                return response

        return Bounded

    return {
        "http": type("BoundedPool", (HTTPConnectionPool,), {"ConnectionCls": bounded(HTTPConnection)}),
        "https": type("BoundedTLSPool", (HTTPSConnectionPool,), {"ConnectionCls": bounded(HTTPSConnection)}),
    }


@contextlib.contextmanager
def signalling_sent(signal: Callable[[], None]) -> Iterator[None]:
    """Within this block, a request this thread sends through a RetryingSession calls `signal` once it is
    on the wire, before its answer is awaited."""
    _SENT.signal = signal
    try:
        yield
    finally:
        _SENT.signal = None


def retries_used(response: requests.Response) -> int:
    """How many retries urllib3 made before `response`."""
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0


def no_answer_cause(exc: requests.RequestException) -> tuple[str, bool]:
    """What a GET that got no answer met, in fixed words, and whether its retries were all used."""
    exhausted = isinstance(exc.args[0] if exc.args else None, urllib3.exceptions.MaxRetryError)
    if isinstance(exc, requests.Timeout):
        return "timed out", exhausted
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or dropped", exhausted
    return type(exc).__name__, exhausted


def watched_connection(
    host: str,
    port: int | None,
    *,
    https: bool,
    timeout: float,
    context: ssl.SSLContext | None,
    watchdog: Watchdog,
) -> HTTPConnection:
    """A new connection (not yet connected) whose socket `watchdog` can shut down as soon as it exists."""
    base: type[HTTPConnection] = HTTPSConnection if https else HTTPConnection

    class Watched(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            sock: socket.socket = super()._new_conn()
            watchdog.register(sock)
            return sock

    if https:
        return Watched(host, port, timeout=timeout, ssl_context=context)
    return Watched(host, port, timeout=timeout)


def drain(conn: HTTPConnection, response: HTTPResponse, *, end: float, limit: int) -> None:
    """Reads at most `limit` bytes of an answer's body (never decompressed) until `end`, and drops them."""
    left = limit
    with contextlib.suppress(*ATTEMPT_ERRORS):
        while left > 0:
            remaining = end - time.monotonic()
            if remaining <= 0 or conn.sock is None:
                return
            conn.sock.settimeout(remaining)
            chunk = response.read1(left, decode_content=False)
            if not chunk:
                return
            left -= len(chunk)


def attempt_cause(exc: BaseException) -> str:
    """What went wrong with a POST attempt, in fixed words."""
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


def scrub_library_logs() -> None:
    """urllib3 logs a response with malformed headers together with the request's URL: scrubbed first."""
    logger = logging.getLogger("urllib3.connection")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def unretried_session(connections: int) -> requests.Session:
    """A session for an Azure SDK's transport: `connections` pooled connections, and no retries of its own
    (the SDK's pipeline retries)."""
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=1,
        pool_maxsize=connections,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def socket_of(response: requests.Response) -> Any:
    """The socket under a streamed answer (urllib3 keeps its connection until the body is read)."""
    connection = getattr(response.raw, "_connection", None)
    return getattr(connection, "sock", None)


def read_some(response: requests.Response, size: int) -> bytes:
    """At most `size` bytes of a streamed answer's body, decoded as its Content-Encoding says; b"" at its
    end. Raises OSError or LIBRARY_ERROR when the connection fails."""
    chunk: bytes = response.raw.read1(size, decode_content=True)
    return chunk


def body_cause(exc: BaseException) -> str:
    """Why reading a body failed, in fixed words."""
    text = str(exc).lower()
    if isinstance(exc, TimeoutError | urllib3.exceptions.ReadTimeoutError) or "timed out" in text:
        return "the body stalled"
    return "the connection dropped in the middle of the body"


class _ScrubFilter(logging.Filter):
    """Scrubs a record's whole message of the secrets the process holds (shared/redact.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = ()
        return True


_FILTER = _ScrubFilter()
