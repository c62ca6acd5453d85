"""Every page of GET /v1/customers, followed through `links.next` until the service says it is done.

Why each rule is here (../shared/reference/partner-center-api.md): link URIs come in four forms and a
naive join yields `/v1//v1/`; bodies may start with a UTF-8 BOM; `totalCount` is per page, not a total;
the request after the last page may answer 400 with code 2000; a page that is not the documented shape
fails the run rather than being taken for the end. Retries (429 Retry-After, 5xx, timeouts, dropped
connections) are urllib3's, on one pooled session, so a retried request keeps its MS-RequestId; a body that
breaks off, stalls or trickles past PARTNER_CENTER_TIMEOUT_SECONDS is retried here, the same way and from
the same budget. Bodies are bounded (PARTNER_CENTER_MAX_PAGE_BYTES), redirects are never followed, every
customer must pass shared/customer_rule.py, and a service's text is scrubbed of secrets before it is quoted.

Paging is sequential by nature (each page names the next), so the next request goes out before the page
in hand is parsed: its link is read from the end of the body, where Partner Center puts `links` and
`continuationToken`, and the request runs on a helper thread while this one parses, validates and
de-duplicates. The full parse then checks that guess; a wrong guess costs one discarded request, never a
wrong page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from shared import events
from shared.customer_rule import NotStorable, check_customer, check_storable
from shared.events import log_event
from shared.partner_center.errors import DeadlineExceeded as DeadlineExceeded
from shared.partner_center.errors import PartnerCenterError
from shared.partner_center.page_json import parse_page
from shared.partner_center.seen import SeenKeys
from shared.redact import remember, scrubbed

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from urllib3 import BaseHTTPResponse
    from urllib3.connectionpool import ConnectionPool

    from shared.partner_center.auth import PartnerCenterTokens

log = logging.getLogger(__name__)

APPLICATION_NAME = "partner-center-customer-snapshot"
NO_MORE_RECORDS = "2000"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Headers a `links.next` entry may not replace: they carry our identity and tracing.
_OWN_HEADERS = frozenset({"authorization", "ms-requestid", "ms-correlationid", "accept"})
# Where the next page's link is looked for: the end of a page body (links, token, attributes).
_TAIL_CHARS = 16 * 1024
# json.loads of a page holds the GIL for milliseconds (one C call: no other thread runs meanwhile), so the
# job's thread waits until the prefetch thread has put its request on the wire (about 2 ms of Python in
# requests/urllib3 on a small CPU, more when other threads want the GIL), at most this long.
_SEND_WAIT = 0.02
_SENT = threading.local()  # .signal: called by a Partner Center connection once its request is sent
_DECODER = json.JSONDecoder()
# Pages in a row that bring no new customer while `links.next` goes on: a service going round in circles.
MAX_PAGES_WITHOUT_NEW_CUSTOMERS = 10
_READ_CHUNK = 256 * 1024  # bytes asked of the socket per read of a page body
_ERROR_BODY_BYTES = 64 * 1024  # an error answer is read this far, for its code and description


class PageTooLarge(PartnerCenterError):
    """A page body is larger than PARTNER_CENTER_MAX_PAGE_BYTES (not retried: it would be again)."""


class _BodyBroken(Exception):
    """The answer's body broke off, stalled or overran its read budget: the request is worth retrying."""


@dataclass
class PagerStats:
    pages: int = 0
    items_received: int = 0
    duplicates_dropped: int = 0
    retries: int = 0
    token_renewals: int = 0
    requests: int = 0


@dataclass(frozen=True)
class Page:
    number: int
    items: list[dict[str, Any]]  # customers not seen before in this run, in API order
    texts: list[str]  # the same customers' JSON exactly as received, one line each
    received: int  # items in the response, duplicates included


@dataclass(frozen=True)
class _Request:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _Retry(Retry):
    """urllib3 retries, but never an immediate retry: the first failure also waits (Partner Center
    asks clients not to hammer it), a Retry-After that is not whole seconds or an HTTP date (`-5`, `1.5`,
    `soon`) means the normal backoff, no wait runs past the run's deadline, and every retry is logged
    without URL secrets or headers."""

    deadline: float = float("inf")  # time.monotonic() value

    def new(self, **kw: Any) -> Self:
        new = super().new(**kw)
        new.deadline = self.deadline
        return new

    def get_backoff_time(self) -> float:
        floor = self.backoff_factor * (1 + random.random() * 0.5)  # noqa: S311 - jitter, not crypto
        return max(super().get_backoff_time(), floor)

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None

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
        cause = f"HTTP {response.status}" if response is not None else type(error).__name__
        retry_after = response.headers.get("Retry-After") if response is not None else None
        log_event(
            log,
            logging.WARNING,
            events.PARTNER_CENTER_RETRY,
            attempt=len(new.history),
            cause=cause,
            retryAfter=None if retry_after is None else scrubbed(retry_after, 64),  # a service's text
        )
        return new


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
                timer = threading.Timer(seconds, _shut_down, (self.sock, cut))
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


def _shut_down(sock: socket.socket | None, cut: threading.Event) -> None:
    cut.set()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def customer_key(customer_id: str) -> int | str:
    """Identity of a customer for de-duplication: tenant GUIDs compare as numbers (case and braces
    do not make a different tenant) and take a third of a string's memory; other ids compare as text."""
    try:
        return uuid.UUID(customer_id).int
    except ValueError:
        return customer_id


class CustomerPager:
    def __init__(
        self,
        api_url: str,
        tokens: PartnerCenterTokens,
        *,
        page_size: int,
        correlation_id: str,
        max_retries: int,
        backoff_seconds: float,
        timeout_seconds: float,
        max_retry_after_seconds: float,
        deadline: float,  # time.monotonic() value
        max_page_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.tokens = tokens
        self.page_size = page_size
        self.deadline = deadline
        self.timeout = timeout_seconds
        self.max_retries = max_retries
        self.backoff = backoff_seconds
        self.max_page_bytes = max_page_bytes
        self.stats = PagerStats()
        self.seen = SeenKeys()  # exact, bounded memory at any size
        self._session = requests.Session()
        self._retry = retry = _Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
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
        # Requests are sequential (one in flight, see _Prefetch), so each one gets the retries left.
        self._adapter = adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
        adapter.poolmanager.pool_classes_by_scheme = _bounded_pools(timeout_seconds)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers.update(
            {
                "Accept": "application/json",
                "MS-CorrelationId": correlation_id,
                "MS-PartnerCenter-Application": APPLICATION_NAME,
                "MS-Contract-Version": "v1",
                "X-Locale": "en-US",
            }
        )
        self._prefetch = _Prefetch(self._fetch)

    def start(self) -> None:
        """Puts the first page request on the wire now, while the caller does other work (the job opens
        storage meanwhile); `pages()` takes its answer, and raises its errors as the first page's."""
        self._prefetch.start(self._first_request(), 1)

    def close(self) -> None:
        self._prefetch.close()  # a request nobody wants any more is not waited for
        self._session.close()
        self.seen.close()

    def _first_request(self) -> _Request:
        return _Request(f"{self.api_url}/v1/customers?size={self.page_size}")

    def __enter__(self) -> CustomerPager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pages(self) -> Iterator[Page]:
        """Yields each page's items not seen before in this run, in API order.

        Raises PartnerCenterError when a page is refused, unanswered after retries, too large, not the
        documented shape or holds a customer that is not storable, links back to a page already read or
        starts an endless run of pages without new customers; DeadlineExceeded when the run's time is up."""
        request: _Request | None = self._first_request()
        followed: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        number = 0
        barren = 0  # pages in a row without a new customer
        with self._prefetch as prefetch, contextlib.closing(self.seen):  # the keys go with the last page
            while request is not None:
                number += 1
                body = prefetch.take(request, number)
                if body is None:  # 400/2000 after the last page
                    return
                guess = self._guess_next(body, number)
                if guess is not None:
                    prefetch.start(guess, number + 1)
                items, texts, request = self._parse(body, number)
                if request is not None:
                    fingerprint = (request.url, tuple(sorted(request.headers.items())))
                    if fingerprint in followed:
                        raise PartnerCenterError(f"page {number} links back to a page already read; stopping")
                    followed.add(fingerprint)
                self.stats.pages = number
                self.stats.items_received += len(items)
                page = Page(number, *self._drop_duplicates(items, texts), len(items))
                barren = 0 if page.items else barren + 1
                if request is not None and barren >= MAX_PAGES_WITHOUT_NEW_CUSTOMERS:
                    raise PartnerCenterError(
                        f"page {number}: {barren} pages in a row without a new customer, and `links.next` "
                        "still goes on; stopping"
                    )
                yield page

    def _guess_next(self, body: bytes, number: int) -> _Request | None:
        """The next request as the end of `body` names it, without parsing the items; None when the tail
        does not say (or the body is not the documented shape: `_parse` reports that)."""
        tail = body[-_TAIL_CHARS:].decode("utf-8", "replace")
        links = _value_after(tail, '"links"')
        token = _value_after(tail, '"continuationToken"')
        try:
            return self._next_request(links.get("next") if isinstance(links, dict) else None, token, number)
        except PartnerCenterError:
            return None

    def _drop_duplicates(
        self, items: list[dict[str, Any]], texts: list[str]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        fresh: list[dict[str, Any]] = []
        fresh_texts: list[str] = []
        for item, text in zip(items, texts, strict=True):
            key = customer_key(item["id"])
            if key in self.seen:
                self.stats.duplicates_dropped += 1
                continue
            self.seen.add(key)
            fresh.append(item)
            fresh_texts.append(text)
        return fresh, fresh_texts

    def _fetch(self, request: _Request, number: int) -> bytes | None:
        """Page `number`'s body; None for the documented "no more records" answer after the last page."""
        headers = dict(request.headers)
        headers["MS-RequestId"] = str(uuid.uuid4())  # one per page; kept on every retry of it
        renewed = False
        retries_left = self.max_retries  # one budget for urllib3's retries and broken bodies
        while True:
            if time.monotonic() > self.deadline:
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
                refusal = _refusal(response, self._error_body(response, number), number)
            finally:
                response.close()
            if refusal is None:
                return None
            raise refusal

    def _get(
        self, url: str, headers: dict[str, str], number: int, retries_left: int
    ) -> tuple[requests.Response, int]:
        """One GET with urllib3's retries, at most `retries_left` of them (counted in stats); the response
        (its body unread) and the retries left. PartnerCenterError when none answered."""
        token = self.tokens.token()
        remember(token)
        headers["Authorization"] = f"Bearer {token}"
        self.stats.requests += 1
        left = retries_left
        self._adapter.max_retries = self._retry.new(total=left, connect=left, read=left, status=left)
        try:
            # Redirects are not followed: the token and MS-* headers never leave the configured origin.
            response = self._session.get(
                url, headers=headers, timeout=self.timeout, stream=True, allow_redirects=False
            )
        except requests.RequestException as exc:
            exhausted = isinstance(exc.args[0] if exc.args else None, urllib3.exceptions.MaxRetryError)
            used = self.max_retries if exhausted else self.max_retries - retries_left
            raise PartnerCenterError(
                f"page {number}: no answer from Partner Center after {used} retries ({_cause(exc)})",
                transient=True,
            ) from None
        retries = getattr(response.raw, "retries", None)
        used = len(retries.history) if retries is not None else 0
        self.stats.retries += used
        return response, retries_left - used

    def _body_or_retry(self, response: requests.Response, number: int, retries_left: int) -> bytes | None:
        """The body of a 200; None when it broke off and is worth another try (after the backoff)."""
        try:
            return self._read_body(response, number, self.max_page_bytes)
        except _BodyBroken as exc:
            if retries_left <= 0:
                raise PartnerCenterError(
                    f"page {number}: the answer broke off after {self.max_retries} retries ({exc})",
                    transient=True,
                ) from None
            self.stats.retries += 1
            attempt = self.max_retries - retries_left + 1
            log_event(log, logging.WARNING, events.PARTNER_CENTER_RETRY, attempt=attempt, cause=str(exc))
            self._retry.new().sleep()
            return None

    def _read_body(self, response: requests.Response, number: int, limit: int) -> bytes:
        """The whole body of `response`, at most `limit` bytes, read within PARTNER_CENTER_TIMEOUT_SECONDS
        from its headers and before the run's deadline, however slowly it trickles."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PageTooLarge(
                f"page {number} is {int(declared)} bytes, more than PARTNER_CENTER_MAX_PAGE_BYTES ({limit})"
            )
        budget_end = time.monotonic() + self.timeout
        sock = _socket_of(response)
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        while True:
            now = time.monotonic()
            if now >= budget_end:
                raise _BodyBroken(f"reading the body took longer than {self.timeout:g} s")
            if sock is not None:
                # A read waits no longer than the budget or the deadline: past the deadline only bytes
                # already here are taken, so an answer that arrived in time is still finished.
                sock.settimeout(max(min(budget_end, self.deadline) - now, 0.001))
            try:
                chunk = raw.read1(_READ_CHUNK, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() >= self.deadline:
                    raise DeadlineExceeded(
                        f"run deadline passed while reading page {number} (SNAPSHOT_RUN_DEADLINE_SECONDS)"
                    ) from None
                raise _BodyBroken(_body_cause(exc)) from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise PageTooLarge(
                    f"page {number} is more than PARTNER_CENTER_MAX_PAGE_BYTES ({limit}) bytes"
                )
            chunks.append(chunk)

    def _error_body(self, response: requests.Response, number: int) -> bytes:
        """The start of an error answer (its code and description), never all of an endless one."""
        try:
            return self._read_body(response, number, _ERROR_BODY_BYTES)
        except (PageTooLarge, _BodyBroken):
            return b""

    def _parse(self, body: bytes, number: int) -> tuple[list[dict[str, Any]], list[str], _Request | None]:
        try:
            text = body.decode("utf-8-sig")
            page, texts = parse_page(text)
        except NotStorable:
            raise _not_storable(text, number) from None
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PartnerCenterError(f"page {number} is not valid JSON ({exc.__class__.__name__})") from None
        if texts is None or not isinstance(page.get("items"), list):
            raise PartnerCenterError(f"page {number} is not the documented shape: no `items` list")
        items = page["items"]
        for index, (item, item_text) in enumerate(zip(items, texts, strict=True)):
            try:
                check_customer(item, item_text)
            except NotStorable as exc:  # one rule with the API: what it cannot serve is never published
                raise PartnerCenterError(f"page {number} item {index}: {exc}") from None
        links = page.get("links") or {}
        if not isinstance(links, dict):
            raise PartnerCenterError(f"page {number} is not the documented shape: `links` is not an object")
        return items, texts, self._next_request(links.get("next"), page.get("continuationToken"), number)

    def _next_request(self, link: Any, continuation: Any, number: int) -> _Request | None:
        if link is None:
            if isinstance(continuation, str) and continuation:
                # A token without a link: the documented hand-built continuation request.
                return _Request(
                    f"{self.api_url}/v1/customers?seekOperation=Next", {"MS-ContinuationToken": continuation}
                )
            return None
        if not isinstance(link, dict) or not isinstance(link.get("uri"), str) or not link["uri"]:
            raise PartnerCenterError(f"page {number} is not the documented shape: `links.next` has no uri")
        if str(link.get("method", "GET")).upper() != "GET":
            raise PartnerCenterError(f"page {number}: `links.next` asks for {link.get('method')}, not GET")
        return _Request(self.resolve(link["uri"]), _link_headers(link, number))

    def resolve(self, uri: str) -> str:
        """A link URI in any of its historical forms, as an absolute URL on the configured API."""
        parts = urlsplit(uri)
        if parts.scheme:
            base = urlsplit(self.api_url)
            if (parts.scheme, parts.netloc.lower()) != (base.scheme, base.netloc.lower()):
                # Never send the partner's token to a host it was not configured for.
                raise PartnerCenterError(f"`links.next` points to another host ({parts.netloc})")
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            return f"{self.api_url}{path.removeprefix(urlsplit(self.api_url).path)}"
        if uri.startswith("/v1/"):
            return f"{self.api_url}{uri}"
        if uri.startswith("/"):
            return f"{self.api_url}/v1{uri}"
        return f"{self.api_url}/v1/{uri}"


def _link_headers(link: dict[str, Any], number: int) -> dict[str, str]:
    """The headers a `links.next` entry asks for, minus those that carry our identity and tracing."""
    headers: dict[str, str] = {}
    for header in link.get("headers") or []:
        if not isinstance(header, dict) or not isinstance(header.get("key"), str):
            raise PartnerCenterError(f"page {number} is not the documented shape: bad `links.next` header")
        if header["key"].lower() not in _OWN_HEADERS:
            headers[header["key"]] = str(header.get("value", ""))  # verbatim: tokens hold / + = ,
    return headers


def _refusal(response: requests.Response, body: bytes, number: int) -> PartnerCenterError | None:
    """None for the documented "no more records" answer after the last page (400, code 2000); otherwise
    the error naming the status and the service's code (and what to do, for MFA enforcement)."""
    status = response.status_code
    if 300 <= status < 400:
        target = urlsplit(response.headers.get("Location") or "")
        where = f" to {target.scheme}://{target.netloc}" if target.netloc else ""
        return PartnerCenterError(
            f"page {number}: Partner Center answered HTTP {status} (a redirect{where}); "
            "redirects are not followed, nothing is sent outside PARTNER_CENTER_API_URL",
            status=status,
        )
    code, description = _error_of(body)
    if status == 400 and number > 1 and code == NO_MORE_RECORDS:
        log_event(log, logging.INFO, events.PARTNER_CENTER_NO_MORE_RECORDS, page=number)
        return None
    advice = _MFA_ADVICE if status == 401 and _is_mfa(code, description) else ""
    return PartnerCenterError(
        f"page {number}: {advice}Partner Center answered HTTP {status}"
        + (f", code {code}" if code else "")
        + (f": {description}" if description else ""),
        status=status,
        code=code,
    )


def _value_after(text: str, key: str) -> Any:
    """The JSON value of the last `key` in `text` (a quoted key, as the text holds it), or None."""
    at = text.rfind(key)
    if at < 0:
        return None
    colon = len(text) - len(text[at + len(key) :].lstrip())
    if text[colon : colon + 1] != ":":
        return None
    start = len(text) - len(text[colon + 1 :].lstrip())
    try:
        return _DECODER.raw_decode(text, start)[0]
    except ValueError:
        return None


class _Prefetch:
    """At most one page request in flight on a helper thread; `take` returns its answer when it was the
    request wanted, and otherwise waits it out, drops it and fetches the one wanted here."""

    def __init__(self, fetch: Callable[[_Request, int], bytes | None]) -> None:
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="partner-center-prefetch")
        self._pending: tuple[_Request, Future[bytes | None]] | None = None

    def start(self, request: _Request, number: int) -> None:
        """Fetches `request` on the helper thread; returns once it is on the wire (or _SEND_WAIT passed)."""
        sent = threading.Event()

        def fetch() -> bytes | None:
            _SENT.signal = sent.set
            try:
                return self._fetch(request, number)
            finally:
                _SENT.signal = None
                sent.set()  # not sent at all (an error): nobody waits for it

        self._pending = (request, self._pool.submit(fetch))
        sent.wait(_SEND_WAIT)

    def take(self, request: _Request, number: int) -> bytes | None:
        pending, self._pending = self._pending, None
        if pending is not None:
            guessed, future = pending
            if guessed == request:
                return future.result()  # its errors are this page's errors
            with contextlib.suppress(Exception):
                future.result()
        return self._fetch(request, number)

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # A run that stops early (an error, the last page) does not wait for a request nobody wants.
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
        self._pool.shutdown(wait=False, cancel_futures=True)


_MFA_CODES = frozenset({"900421", "10001"})
_MFA_ADVICE = (
    "Partner Center requires multi-factor authentication (MFA) for App+User calls: the refresh token was "
    "not obtained with MFA. Sign in again with MFA through the Partner Center consent flow and replace the "
    "refresh token in Key Vault secret 'partner-center-refresh-token' (PARTNER_CENTER_REFRESH_TOKEN without "
    "Key Vault). "
)


def _is_mfa(code: str | None, description: str | None) -> bool:
    return code in _MFA_CODES or "mfa required" in (description or "").lower()


def _not_storable(text: str, number: int) -> PartnerCenterError:
    """The strict parse met NaN/Infinity: find the customer that holds it, to name it."""
    try:
        _page, texts = parse_page(text, strict=False)
        for index, item_text in enumerate(texts or ()):
            try:
                check_storable(item_text)
            except NotStorable as exc:
                return PartnerCenterError(f"page {number} item {index}: {exc}")
    except (ValueError, RecursionError):
        pass
    return PartnerCenterError(f"page {number} is not storable: NaN and Infinity literals are not JSON")


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    """(code, description) of a Partner Center error body, scrubbed of anything this process holds secret;
    the 429 body has another shape."""
    try:
        parsed = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    code = parsed.get("code", parsed.get("statusCode"))
    description = parsed.get("description", parsed.get("message"))
    return (
        None if code is None else scrubbed(str(code), 100),
        None if description is None else scrubbed(str(description), 300) or None,
    )


def _socket_of(response: requests.Response) -> Any:
    """The socket under a streamed answer (urllib3 keeps its connection until the body is read)."""
    connection = getattr(response.raw, "_connection", None)
    return getattr(connection, "sock", None)


def _body_cause(exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, TimeoutError | urllib3.exceptions.ReadTimeoutError) or "timed out" in text:
        return "the body stalled"
    return "the connection dropped in the middle of the body"


def _cause(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or dropped"
    return type(exc).__name__
