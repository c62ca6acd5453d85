"""Every page of GET /v1/customers, followed through `links.next` until the service says it is done.

Why each rule is here (../shared/reference/partner-center-api.md): link URIs come in four forms and a
naive join yields `/v1//v1/`; bodies may start with a UTF-8 BOM; `totalCount` is per page, not a total;
the request after the last page may answer 400 with code 2000; a page that is not the documented shape
fails the run rather than being taken for the end. Retries (429 Retry-After, 5xx, timeouts, dropped
connections) are urllib3's, on one pooled session, so a retried request keeps its MS-RequestId.

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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared import events
from shared.events import log_event
from shared.partner_center.errors import DeadlineExceeded as DeadlineExceeded
from shared.partner_center.errors import PartnerCenterError
from shared.partner_center.page_json import parse_page
from shared.partner_center.seen import SeenKeys

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
# json.loads of a page holds the GIL for milliseconds; the prefetch thread gets this head start to put its
# request on the wire first (it takes about 2 ms of Python in requests/urllib3 on a small CPU).
_SEND_HEAD_START = 0.003
_DECODER = json.JSONDecoder()


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
    asks clients not to hammer it) and every retry is logged without URL secrets or headers."""

    def get_backoff_time(self) -> float:
        floor = self.backoff_factor * (1 + random.random() * 0.5)  # noqa: S311 - jitter, not crypto
        return max(super().get_backoff_time(), floor)

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
            retryAfter=retry_after,
        )
        return new


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
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.tokens = tokens
        self.page_size = page_size
        self.deadline = deadline
        self.timeout = timeout_seconds
        self.stats = PagerStats()
        self.seen = SeenKeys()  # exact, bounded memory at any size
        self._session = requests.Session()
        retry = _Retry(
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
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
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

    def close(self) -> None:
        self._session.close()
        self.seen.close()

    def __enter__(self) -> CustomerPager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pages(self) -> Iterator[Page]:
        """Yields each page's items not seen before in this run, in API order.

        Raises PartnerCenterError when a page is refused, unanswered after retries or not the documented
        shape, or links back to a page already read; DeadlineExceeded when the run's time is up."""
        request: _Request | None = _Request(f"{self.api_url}/v1/customers?size={self.page_size}")
        followed: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        number = 0
        with _Prefetch(self._fetch) as prefetch:
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
                yield Page(number, *self._drop_duplicates(items, texts), len(items))

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
        headers = dict(request.headers)
        headers["MS-RequestId"] = str(uuid.uuid4())  # one per page; urllib3 resends it on retries
        renewed = False
        while True:
            if time.monotonic() > self.deadline:
                raise DeadlineExceeded(f"run deadline passed before page {number}")
            headers["Authorization"] = f"Bearer {self.tokens.token()}"
            response = self._get(request.url, headers, number)
            if response.status_code == 401 and not renewed:
                # The token expired or was revoked mid-run: one new token, then the same request again.
                log_event(log, logging.WARNING, events.PARTNER_CENTER_TOKEN_REJECTED, page=number)
                self.tokens.renew()
                self.stats.token_renewals += 1
                renewed = True
                continue
            if response.status_code == 200:
                return response.content
            _raise_unless_no_more_records(response, number)
            return None

    def _get(self, url: str, headers: dict[str, str], number: int) -> requests.Response:
        """One GET, with urllib3's retries (counted in stats); PartnerCenterError when none answered."""
        self.stats.requests += 1
        try:
            response = self._session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PartnerCenterError(
                f"page {number}: no answer from Partner Center after retries ({_cause(exc)})"
            ) from None
        retries = getattr(response.raw, "retries", None)
        self.stats.retries += len(retries.history) if retries is not None else 0
        return response

    def _parse(self, body: bytes, number: int) -> tuple[list[dict[str, Any]], list[str], _Request | None]:
        try:
            page, texts = parse_page(body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise PartnerCenterError(f"page {number} is not valid JSON ({exc.__class__.__name__})") from None
        if texts is None or not isinstance(page.get("items"), list):
            raise PartnerCenterError(f"page {number} is not the documented shape: no `items` list")
        items = page["items"]
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                raise PartnerCenterError(f"page {number} item {index} has no customer `id`")
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


def _raise_unless_no_more_records(response: requests.Response, number: int) -> None:
    """Returns for the documented "no more records" answer after the last page (400, code 2000);
    raises PartnerCenterError naming the status and the service's code for any other refusal."""
    code, description = _error_of(response)
    if response.status_code == 400 and number > 1 and code == NO_MORE_RECORDS:
        log_event(log, logging.INFO, events.PARTNER_CENTER_NO_MORE_RECORDS, page=number)
        return
    raise PartnerCenterError(
        f"page {number}: Partner Center answered HTTP {response.status_code}"
        + (f", code {code}" if code else "")
        + (f": {description}" if description else ""),
        status=response.status_code,
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
        started = threading.Event()

        def fetch() -> bytes | None:
            started.set()
            return self._fetch(request, number)

        self._pending = (request, self._pool.submit(fetch))
        started.wait()
        time.sleep(_SEND_HEAD_START)

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
        # A run that stops early (an error, the last page) does not wait for a request nobody wants.
        if self._pending is not None:
            self._pending[1].cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _error_of(response: requests.Response) -> tuple[str | None, str | None]:
    """(code, description) of a Partner Center error body; the 429 body has another shape."""
    try:
        body = json.loads(response.content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    code = body.get("code", body.get("statusCode"))
    description = body.get("description", body.get("message"))
    return (
        None if code is None else str(code),
        None if description is None else str(description).splitlines()[0][:300] if str(description) else None,
    )


def _cause(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or dropped"
    return type(exc).__name__
