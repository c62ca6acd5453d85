"""One page of GET /v1/customers, fetched as Partner Center asks and bounded as the run needs.

Retries (429 Retry-After, 5xx, timeouts, dropped connections) are the transport's (shared/transport), on
one pooled session, so a retried request keeps its MS-RequestId; a body that breaks off, stalls or trickles
past PARTNER_CENTER_TIMEOUT_SECONDS is retried here, the same way and from the same budget. A 401 renews
the token once. Bodies are bounded (PARTNER_CENTER_MAX_PAGE_BYTES), redirects are never followed, no
request starts and no wait runs past the run's deadline, and a refusal becomes our error
(shared/partner_center/refusals.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import requests

from shared import events
from shared.events import log_event
from shared.partner_center.errors import DeadlineExceeded, PartnerCenterError
from shared.partner_center.refusals import refusal
from shared.redact import remember, scrubbed
from shared.transport.adapters import DeadlineRetry, RetryingSession, no_answer_cause, retries_used
from shared.transport.bodies import BodyBroken, BodyPastDeadline, BodyTooLarge, read_body

if TYPE_CHECKING:
    from shared.partner_center.auth import PartnerCenterTokens

log = logging.getLogger("shared.partner_center.customers")  # the pager's events, under one logger

APPLICATION_NAME = "partner-center-customer-snapshot"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ERROR_BODY_BYTES = 64 * 1024  # an error answer is read this far, for its code and description


class PageTooLarge(PartnerCenterError):
    """A page body is larger than PARTNER_CENTER_MAX_PAGE_BYTES (not retried: it would be again)."""


@dataclass
class PagerStats:
    pages: int = 0
    items_received: int = 0
    duplicates_dropped: int = 0
    retries: int = 0
    token_renewals: int = 0
    requests: int = 0


@dataclass(frozen=True)
class PageRequest:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchPolicy:
    """The run's bounds on each page request (settings PARTNER_CENTER_*, SNAPSHOT_RUN_DEADLINE_SECONDS)."""

    max_retries: int
    backoff_seconds: float
    timeout_seconds: float
    max_retry_after_seconds: float
    deadline: float  # time.monotonic() value
    max_page_bytes: int


class PageFetcher:
    """Fetches page bodies on one session; `stats` counts requests, retries and token renewals."""

    def __init__(
        self, tokens: PartnerCenterTokens, policy: FetchPolicy, *, correlation_id: str, stats: PagerStats
    ) -> None:
        self.tokens = tokens
        self.policy = policy
        self.stats = stats
        retry = DeadlineRetry.for_get(
            policy.max_retries,
            statuses=RETRY_STATUSES,
            backoff_seconds=policy.backoff_seconds,
            max_retry_after_seconds=policy.max_retry_after_seconds,
            deadline=policy.deadline,
            on_retry=_log_retry,
        )
        headers = {
            "Accept": "application/json",
            "MS-CorrelationId": correlation_id,
            "MS-PartnerCenter-Application": APPLICATION_NAME,
            "MS-Contract-Version": "v1",
            "X-Locale": "en-US",
        }
        self._session = RetryingSession(retry, timeout=policy.timeout_seconds, headers=headers)

    def close(self) -> None:
        self._session.close()

    def fetch(self, request: PageRequest, number: int) -> bytes | None:
        """Page `number`'s body; None for the documented "no more records" answer after the last page."""
        headers = dict(request.headers)
        headers["MS-RequestId"] = str(uuid.uuid4())  # one per page; kept on every retry of it
        renewed = False
        retries_left = self.policy.max_retries  # one budget for the transport's retries and broken bodies
        while True:
            if time.monotonic() > self.policy.deadline:
                raise DeadlineExceeded(
                    f"run deadline passed before page {number} (SNAPSHOT_RUN_DEADLINE_SECONDS)"
                )
            response, retries_left = self._get(request.url, headers, number, retries_left)
            try:
                status = response.status_code
                if status == 401 and not renewed:
                    # The token expired or was revoked mid-run: one new token, then the same request again.
                    log_event(log, logging.WARNING, events.PARTNER_CENTER_TOKEN_REJECTED, page=number)
                    self.tokens.renew()
                    self.stats.token_renewals += 1
                    renewed = True
                    continue
                if status == 200:
                    body = self._body_or_retry(response, number, retries_left)
                    if body is None:
                        retries_left -= 1
                        continue
                    return body
                refused = refusal(status, response.headers, self._error_body(response, number), number)
            finally:
                response.close()
            if refused is None:
                return None
            raise refused

    def _get(
        self, url: str, headers: dict[str, str], number: int, retries_left: int
    ) -> tuple[requests.Response, int]:
        """One GET with the transport's retries, at most `retries_left` of them (counted in stats); the
        response (its body unread) and the retries left. PartnerCenterError when none answered."""
        token = self.tokens.token()
        remember(token)
        headers["Authorization"] = f"Bearer {token}"
        self.stats.requests += 1
        try:
            # Redirects are not followed: the token and MS-* headers never leave the configured origin.
            response = self._session.get(url, headers, retries=retries_left)
        except requests.RequestException as exc:
            cause, exhausted = no_answer_cause(exc)
            max_retries = self.policy.max_retries
            used = max_retries if exhausted else max_retries - retries_left
            raise PartnerCenterError(
                f"page {number}: no answer from Partner Center after {used} retries ({cause})",
                transient=True,
            ) from None
        used = retries_used(response)
        self.stats.retries += used
        return response, retries_left - used

    def _body_or_retry(self, response: requests.Response, number: int, retries_left: int) -> bytes | None:
        """The body of a 200; None when it broke off and is worth another try (after the backoff)."""
        try:
            return self._read(response, number, self.policy.max_page_bytes)
        except BodyBroken as exc:
            max_retries = self.policy.max_retries
            if retries_left <= 0:
                raise PartnerCenterError(
                    f"page {number}: the answer broke off after {max_retries} retries ({exc})",
                    transient=True,
                ) from None
            self.stats.retries += 1
            attempt = max_retries - retries_left + 1
            log_event(log, logging.WARNING, events.PARTNER_CENTER_RETRY, attempt=attempt, cause=str(exc))
            self._session.backoff()
            return None

    def _read(self, response: requests.Response, number: int, limit: int) -> bytes:
        """The whole body, at most `limit` bytes, within PARTNER_CENTER_TIMEOUT_SECONDS of its headers and
        before the run's deadline. BodyBroken when it is worth another try."""
        policy = self.policy
        try:
            return read_body(response, limit, seconds=policy.timeout_seconds, deadline=policy.deadline)
        except BodyTooLarge as exc:
            if (declared := exc.declared) is not None:
                raise PageTooLarge(
                    f"page {number} is {declared} bytes, more than PARTNER_CENTER_MAX_PAGE_BYTES ({limit})"
                ) from None
            raise PageTooLarge(
                f"page {number} is more than PARTNER_CENTER_MAX_PAGE_BYTES ({limit}) bytes"
            ) from None
        except BodyPastDeadline:
            raise DeadlineExceeded(
                f"run deadline passed while reading page {number} (SNAPSHOT_RUN_DEADLINE_SECONDS)"
            ) from None

    def _error_body(self, response: requests.Response, number: int) -> bytes:
        """The start of an error answer (its code and description), never all of an endless one."""
        try:
            return self._read(response, number, _ERROR_BODY_BYTES)
        except (PageTooLarge, BodyBroken):
            return b""


def _log_retry(attempt: int, cause: str, retry_after: str | None) -> None:
    log_event(
        log,
        logging.WARNING,
        events.PARTNER_CENTER_RETRY,
        attempt=attempt,
        cause=cause,
        retryAfter=None if retry_after is None else scrubbed(retry_after, 64),  # a service's text
    )
