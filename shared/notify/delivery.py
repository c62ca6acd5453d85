"""One small HTTP sender for both channels (the Teams workflow, the webhook endpoints): a POST that a slow,
hostile or misconfigured receiver cannot turn into a long wait, a big read or a leak.

- https only, except loopback (`endpoint_problem`, also used by settings validation); TLS 1.2 or later,
  verified against the trust bundle the rest of the app uses (REQUESTS_CA_BUNDLE, else certifi's).
- Redirects are never followed: a 3xx is a configuration error (the body, and the Teams URL's signature,
  never go to a host nobody configured).
- Each attempt (shared/transport/post.py) is one new connection with a connect timeout, a read timeout per
  socket operation and a total time bound: a receiver that trickles its headers or its body is cut when the
  attempt's time is up (its socket is shut down from a timer thread), and so is one that trickles the TLS
  handshake. The answer's body is read at most `max_answer_bytes` (a few KB, never decompressed), dropped.
- Retries with exponential backoff and jitter on timeouts, dropped connections, 408, 429 and 5xx; a
  Retry-After (seconds or HTTP date, read by shared/transport/retry_after.py) is honoured up to
  `max_retry_after`; no wait and no attempt runs past
  the caller's deadline. Any other 4xx is a permanent configuration error, never retried.
- Results are typed: `Delivered`, `RetryLater`, `PermanentFailure`. They name the channel and the host,
  never the URL's path or query (a Teams workflow URL carries its signature there), nor the receiver's text.
"""

from __future__ import annotations

import logging
import math
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from shared import events
from shared.events import log_event
from shared.hosts import endpoint_problem
from shared.redact import remember
from shared.transport.post import Answer, Bounds, Endpoint, post_once

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


class Sender:
    """POSTs bodies to one endpoint. Thread-safe: every attempt has its own connection."""

    def __init__(self, url: str, channel: str, policy: DeliveryPolicy | None = None) -> None:
        problem = endpoint_problem(url)
        if problem is not None:
            raise ValueError(f"{channel} {problem}")
        parts = urlsplit(url)
        self.channel = channel
        self.host = parts.hostname or ""
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._endpoint = Endpoint(self.host, parts.port, parts.scheme == "https", target)
        self.policy = policy or DeliveryPolicy()
        self._ssl: ssl.SSLContext | None = None
        _remember_url(url)
        # A function-local import keeps the HTTP library out of the settings checks that import this module.
        from shared.transport.adapters import scrub_library_logs

        scrub_library_logs()

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
        answer = Answer(None, "not attempted: the deadline had passed")
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

    def _verdict(self, answer: Answer, attempts: int) -> Outcome | None:
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

    def _wait(self, answer: Answer, attempts: int) -> float:
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

    def _attempt(self, body: bytes, headers: Mapping[str, str], budget: float) -> Answer:
        """One POST on a new connection, within `budget` seconds however the receiver behaves."""
        policy = self.policy
        bounds = Bounds(
            policy.connect_timeout, policy.read_timeout, policy.answer_seconds, policy.max_answer_bytes
        )
        context = self._context() if self._endpoint.https else None
        return post_once(self._endpoint, body, headers, budget=budget, bounds=bounds, context=context)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _trust()
        return self._ssl


def _trust() -> ssl.SSLContext:
    """The trust the app's other HTTPS clients (requests, MSAL) use: REQUESTS_CA_BUNDLE when it is set,
    else certifi's bundle."""
    from shared.settings import ca_bundle

    bundle = ca_bundle()
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


__all__ = [
    "Delivered",
    "DeliveryPolicy",
    "Outcome",
    "PermanentFailure",
    "RetryLater",
    "Sender",
]
