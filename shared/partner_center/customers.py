"""Every page of GET /v1/customers, followed through `links.next` until the service says it is done.

Why each rule is here (../shared/reference/partner-center-api.md): link URIs come in four forms and a
naive join yields `/v1//v1/`; bodies may start with a UTF-8 BOM; `totalCount` is per page, not a total;
the request after the last page may answer 400 with code 2000; a page that is not the documented shape
fails the run rather than being taken for the end. Every customer must pass shared/customer_rule.py, a
customer seen before in the run is dropped, and a service that goes round in circles is stopped.

Each page is fetched by fetch.py (retries, bounds, the deadline, refusals as errors through refusals.py);
the next one is on the wire (prefetch.py) while this one is parsed: its link is read from the end of the
body, where Partner Center puts `links` and `continuationToken`. The full parse then checks that guess.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.customer_rule import NotStorable, check_customer, check_storable
from shared.partner_center.errors import DeadlineExceeded as DeadlineExceeded
from shared.partner_center.errors import PartnerCenterError
from shared.partner_center.fetch import APPLICATION_NAME as APPLICATION_NAME
from shared.partner_center.fetch import RETRY_STATUSES as RETRY_STATUSES
from shared.partner_center.fetch import FetchPolicy, PageFetcher, PageRequest, PagerStats
from shared.partner_center.fetch import PageTooLarge as PageTooLarge
from shared.partner_center.page_json import parse_page
from shared.partner_center.prefetch import Prefetch
from shared.partner_center.refusals import NO_MORE_RECORDS as NO_MORE_RECORDS
from shared.partner_center.seen import SeenKeys

if TYPE_CHECKING:
    from shared.partner_center.auth import PartnerCenterTokens

# Headers a `links.next` entry may not replace: they carry our identity and tracing.
_OWN_HEADERS = frozenset({"authorization", "ms-requestid", "ms-correlationid", "accept"})
# Where the next page's link is looked for: the end of a page body (links, token, attributes).
_TAIL_CHARS = 16 * 1024
_DECODER = json.JSONDecoder()
# Pages in a row that bring no new customer while `links.next` goes on: a service going round in circles.
MAX_PAGES_WITHOUT_NEW_CUSTOMERS = 10


@dataclass(frozen=True)
class Page:
    number: int
    items: list[dict[str, Any]]  # customers not seen before in this run, in API order
    texts: list[str]  # the same customers' JSON exactly as received, one line each
    received: int  # items in the response, duplicates included


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
        self.page_size = page_size
        self.stats = PagerStats()
        self.seen = SeenKeys()  # exact, bounded memory at any size
        policy = FetchPolicy(
            max_retries, backoff_seconds, timeout_seconds, max_retry_after_seconds, deadline, max_page_bytes
        )
        self._fetcher = PageFetcher(tokens, policy, correlation_id=correlation_id, stats=self.stats)
        self._prefetch = Prefetch(self._fetcher.fetch)

    def start(self) -> None:
        """Puts the first page request on the wire now, while the caller does other work (the job opens
        storage meanwhile); `pages()` takes its answer, and raises its errors as the first page's."""
        self._prefetch.start(self._first_request(), 1)

    def close(self) -> None:
        self._prefetch.close()  # a request nobody wants any more is not waited for
        self._fetcher.close()
        self.seen.close()

    def _first_request(self) -> PageRequest:
        return PageRequest(f"{self.api_url}/v1/customers?size={self.page_size}")

    def __enter__(self) -> CustomerPager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pages(self) -> Iterator[Page]:
        """Yields each page's items not seen before in this run, in API order.

        Raises PartnerCenterError when a page is refused, unanswered after retries, too large, not the
        documented shape or holds a customer that is not storable, links back to a page already read or
        starts an endless run of pages without new customers; DeadlineExceeded when the run's time is up."""
        request: PageRequest | None = self._first_request()
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

    def _guess_next(self, body: bytes, number: int) -> PageRequest | None:
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

    def _parse(self, body: bytes, number: int) -> tuple[list[dict[str, Any]], list[str], PageRequest | None]:
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

    def _next_request(self, link: Any, continuation: Any, number: int) -> PageRequest | None:
        if link is None:
            if isinstance(continuation, str) and continuation:
                # A token without a link: the documented hand-built continuation request.
                return PageRequest(
                    f"{self.api_url}/v1/customers?seekOperation=Next", {"MS-ContinuationToken": continuation}
                )
            return None
        if not isinstance(link, dict) or not isinstance(link.get("uri"), str) or not link["uri"]:
            raise PartnerCenterError(f"page {number} is not the documented shape: `links.next` has no uri")
        if str(link.get("method", "GET")).upper() != "GET":
            raise PartnerCenterError(f"page {number}: `links.next` asks for {link.get('method')}, not GET")
        return PageRequest(self.resolve(link["uri"]), _link_headers(link, number))

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


__all__ = [
    "APPLICATION_NAME",
    "MAX_PAGES_WITHOUT_NEW_CUSTOMERS",
    "NO_MORE_RECORDS",
    "RETRY_STATUSES",
    "CustomerPager",
    "DeadlineExceeded",
    "Page",
    "PageRequest",
    "PageTooLarge",
    "PagerStats",
    "customer_key",
]
