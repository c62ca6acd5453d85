"""One POST attempt that a slow, hostile or misconfigured receiver cannot turn into a long wait or a big read.

The attempt has its own new connection, a connect timeout, a read timeout per socket operation and a total
time bound: a receiver that trickles its headers, its body or the TLS handshake is cut when the attempt's
time is up (a Watchdog shuts its socket down). The answer's body is read at most `max_answer_bytes` (never
decompressed) within `answer_seconds`, then dropped. The `Answer` says what came back in fixed words: never
the receiver's text, nor the URL's path or query.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.transport.retry_after import retry_after_seconds
from shared.transport.watchdog import Watchdog

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int | None
    https: bool
    target: str  # the path and query, as the request line carries them


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (the reason says why)
    reason: str
    retry_after: float | None = None  # what a 429 or 503 asked for, uncapped
    location_host: str | None = None  # where a redirect pointed


@dataclass(frozen=True)
class Bounds:
    """Time and size bounds of one attempt."""

    connect_timeout: float
    read_timeout: float  # one socket read
    answer_seconds: float  # the answer's body after its status line
    max_answer_bytes: int


def post_once(
    endpoint: Endpoint,
    body: bytes,
    headers: Mapping[str, str],
    *,
    budget: float,
    bounds: Bounds,
    context: ssl.SSLContext | None,
) -> Answer:
    """One POST on a new connection, within `budget` seconds however the receiver behaves."""
    # The HTTP library loads with the first POST, not with the settings checks that import this module.
    from shared.transport import adapters

    attempt_end = time.monotonic() + budget
    watchdog = Watchdog(budget)
    conn = adapters.watched_connection(
        endpoint.host,
        endpoint.port,
        https=endpoint.https,
        timeout=bounds.connect_timeout,
        context=context,
        watchdog=watchdog,
    )
    try:
        with watchdog:
            conn.connect()
            conn.timeout = bounds.read_timeout
            conn.request("POST", endpoint.target, body=body, headers=dict(headers), preload_content=False)
            response = conn.getresponse()
            answer = answer_of(response.status, response.headers)
            end = min(attempt_end, time.monotonic() + bounds.answer_seconds)
            adapters.drain(conn, response, end=end, limit=bounds.max_answer_bytes)
            return answer
    except adapters.ATTEMPT_ERRORS as exc:
        if watchdog.cut.is_set():
            return Answer(None, f"no complete answer within {budget:g} s")
        return Answer(None, adapters.attempt_cause(exc))
    finally:
        conn.close()


def answer_of(status: int, headers: Mapping[str, str]) -> Answer:
    """The answer's status, the wait a 429 or 503 asked for, and a redirect's host."""
    retry_after = retry_after_seconds(headers.get("Retry-After")) if status in (429, 503) else None
    location_host = None
    if 300 <= status < 400:
        with contextlib.suppress(ValueError):
            location_host = urlsplit(headers.get("Location") or "").hostname
    reason = f"HTTP {status}"
    if status in (429, 503) and retry_after is not None:
        reason += f" (Retry-After {retry_after:g} s)"
    return Answer(status, reason, retry_after, location_host)
