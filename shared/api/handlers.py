"""One function per route: HttpRequest → HttpResponse. Nothing escapes: every failure is a JSON error
with a stable code, and no stack trace, path or setting value ever reaches the caller.
(Caching: see shared/api/endpoint.py.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

import azure.functions as func

from shared import events
from shared.api import csv_answer
from shared.api import params as p
from shared.api.endpoint import (
    NO_PARAMETERS,
    about_latest,
    caller_code,
    context,
    endpoint,
    max_age,
    next_link,
)
from shared.api.errors import JSON_TYPE, ApiError, snapshot_unavailable
from shared.api.http import (
    IMMUTABLE,
    accepts_gzip,
    answer,
    cache_control,
    json_bytes,
    make_etag,
    status_response,
    utc_now,
)
from shared.events import log_event
from shared.storage.layout import SNAPSHOT_NAME, date_of, day_prefix

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.api.latest import Snapshot
    from shared.snapshots.store import Manifest, SnapshotInfo

log = logging.getLogger("shared.api")

CUSTOMERS_PARAMETERS = frozenset({"q", "domain", "top", "continuation", "format"})
SNAPSHOTS_PARAMETERS = frozenset({"top", "continuation"})
CUSTOMERS_TOP = (100, 1000)  # default, maximum
SNAPSHOTS_TOP = (20, 100)


# -- /api/customers ------------------------------------------------------------------------------------
@endpoint
def customers(req: func.HttpRequest) -> func.HttpResponse:
    """The whole latest snapshot as stored; with domain= or q=, the matching customers; with top= or
    continuation=, one page of them (or of every customer)."""
    params = p.query(req, CUSTOMERS_PARAMETERS)
    query = p.customer_query(params, *CUSTOMERS_TOP)
    as_csv = csv_answer.wants_csv(req, params)  # format=csv or Accept: text/csv
    ctx, manifest, cache = about_latest()
    # Answers differ by Accept (CSV or JSON) as well as by Accept-Encoding.
    headers = _snapshot_headers(manifest.snapshot, manifest.generated_at) | {
        "Vary": "Accept, Accept-Encoding"
    }
    if query.whole_document:
        if as_csv:
            return csv_answer.whole_latest(req, ctx, manifest, cache, headers)
        return _whole_latest(req, ctx, manifest, cache, headers)

    snapshot_key = _snapshot_key(manifest)
    offset, top = query.offset(snapshot_key), query.top
    kind = "customers-csv" if as_csv else "customers"  # the nextLink holds the caller's code: part of it
    base = make_etag(kind, manifest.etag, json.dumps(query.criteria), str(offset), str(top), caller_code(req))

    def produce() -> tuple[bytes, bool]:
        loaded = ctx.latest.snapshot(manifest)
        positions = _positions(loaded, query)
        page = positions[offset : offset + top]
        more = offset + top < len(positions)
        token = p.encode_continuation({"s": snapshot_key, "o": offset + top}) if more else None
        link = next_link(req, params, token)
        if as_csv:  # paging goes in headers: Link (RFC 8288) and the number of matches
            headers.update(csv_answer.page_headers(manifest.snapshot, len(positions), link))
            return csv_answer.page_bytes(loaded, page), False
        return _customer_page(loaded, query.criteria, len(positions), page, link), False

    content_type = csv_answer.CSV_TYPE if as_csv else JSON_TYPE
    return answer(req, base, cache, produce, headers=headers, content_type=content_type)


def _positions(loaded: Snapshot, query: p.CustomerQuery) -> Sequence[int]:
    """Positions of the customers `query` selects, in stored order."""
    if query.domain is not None:
        return loaded.with_domain(query.domain)
    if query.q is not None:
        return loaded.matching(query.q)
    return range(loaded.count)


def _whole_latest(
    req: func.HttpRequest, ctx: ApiContext, manifest: Manifest, cache: str, headers: dict[str, str]
) -> func.HttpResponse:
    gzipped = accepts_gzip(req)
    size = manifest.stored_bytes if gzipped else manifest.json_bytes
    if size > ctx.settings.snapshot_inline_max_bytes:
        return _redirect(ctx, manifest.snapshot, manifest.generated_at, size)

    def produce() -> tuple[bytes, bool]:
        loaded = ctx.latest.snapshot(manifest)
        return loaded.stored, loaded.gzipped

    base = make_etag("document", manifest.etag)
    return answer(req, base, cache, produce, headers=headers)


def _customer_page(
    loaded: Snapshot, criteria: dict[str, str], matched: int, page: Sequence[int], next_link: str | None
) -> bytes:
    """The shape every filtered answer shares; customers are joined as stored, never re-serialised."""
    head = {
        "snapshot": {"name": loaded.manifest.snapshot, "generatedAt": loaded.manifest.generated_at},
        "query": criteria,
        "count": matched,
    }
    return b"".join(
        (
            json_bytes(head)[:-1],
            b',"customers":[',
            b",".join(loaded.lines_at(page)),
            b'],"nextLink":',
            json_bytes(next_link),
            b"}",
        )
    )


# -- /api/customers/{customerId} -----------------------------------------------------------------------
@endpoint
def customer(req: func.HttpRequest) -> func.HttpResponse:
    """One customer as stored in the latest snapshot, or 404."""
    p.query(req, NO_PARAMETERS)
    customer_id = p.customer_id(req)
    ctx, manifest, cache = about_latest()

    def produce() -> tuple[bytes, bool]:
        loaded = ctx.latest.snapshot(manifest)
        found = loaded.customer(customer_id)
        if found is None and loaded.unusable(customer_id):
            raise ApiError(
                404,
                "customer_unavailable",
                "this customer's stored record is not one the API can serve (see /api/health); "
                "GET /api/customers has the whole snapshot as stored",
                parameter="customerId",
            )
        if found is None:
            raise ApiError(
                404,
                "customer_not_found",
                "no customer with this id in the latest snapshot",
                parameter="customerId",
            )
        return found, False

    base = make_etag("customer", manifest.etag, customer_id)
    return answer(
        req, base, cache, produce, headers=_snapshot_headers(manifest.snapshot, manifest.generated_at)
    )


# -- /api/snapshots ------------------------------------------------------------------------------------
@endpoint
def snapshots(req: func.HttpRequest) -> func.HttpResponse:
    """The snapshots available, newest first, `top` per page with a nextLink.

    Newest first needs the whole (date-named) listing: one blob per scheduled run is ~365 names a year and
    Blob Storage lists 5,000 per request, so a single listing call covers a decade; it is sorted in memory."""
    params = p.query(req, SNAPSHOTS_PARAMETERS)
    top = p.top(params, *SNAPSHOTS_TOP)
    continuation = p.decode_continuation(params, ("before",))

    before = continuation["before"] if continuation is not None else None
    if before is not None and not (isinstance(before, str) and SNAPSHOT_NAME.fullmatch(before)):
        raise p.invalid_continuation()
    ctx = context()
    infos = ctx.store.list_snapshots(latest=_latest_if_readable(ctx))
    newest = infos[-1].generated_at if infos else None
    remaining = [info for info in reversed(infos) if before is None or info.name < before]
    page, more = remaining[:top], len(remaining) > top
    token = p.encode_continuation({"before": page[-1].name}) if more else None
    body = json_bytes(
        {"snapshots": [_listed(info) for info in page], "nextLink": next_link(req, params, token)}
    )
    cache = cache_control(max_age(ctx.settings, newest))
    return answer(req, make_etag("snapshots", body.decode()), cache, lambda: (body, False))


def _listed(info: SnapshotInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "date": date_of(info.name).isoformat(),
        "generatedAt": info.generated_at,
        "customerCount": info.customer_count,
        "sizeBytes": info.stored_bytes,  # as stored, gzip-encoded
    }


# -- /api/snapshots/{date} -----------------------------------------------------------------------------
@endpoint
def snapshot_by_date(req: func.HttpRequest) -> func.HttpResponse:
    """The last snapshot taken on a UTC date, as stored."""
    p.query(req, NO_PARAMETERS)
    day = p.snapshot_date(req)
    ctx = context()
    taken = ctx.store.list_snapshots(prefix=day_prefix(day), latest=_latest_if_readable(ctx))
    if not taken:
        raise ApiError(
            404, "snapshot_not_found", f"no snapshot was taken on {day.isoformat()}", parameter="date"
        )
    info = taken[-1]
    settings = ctx.settings
    # No run started on that date can still publish once its last run's deadline has passed.
    closed_at = datetime.combine(day + timedelta(days=1), time(), UTC) + timedelta(
        seconds=settings.run_deadline_seconds
    )
    cache = IMMUTABLE if utc_now() >= closed_at else cache_control(max_age(settings, info.generated_at))
    gzipped = accepts_gzip(req)
    limit = settings.snapshot_inline_max_bytes
    if (info.stored_bytes if gzipped else info.json_bytes) > limit:
        return _redirect(ctx, info.name, info.generated_at, info.stored_bytes)

    def produce() -> tuple[bytes, bool]:
        return _verified(ctx, info)

    base = make_etag("document", info.etag)
    return answer(req, base, cache, produce, headers=_snapshot_headers(info.name, info.generated_at))


def _verified(ctx: ApiContext, info: SnapshotInfo) -> tuple[bytes, bool]:
    """The published bytes of a snapshot, or 503: never one that was replaced, does not inflate, inflates
    past its published size or has another sha256."""
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    from shared.errors import SnapshotFormatError
    from shared.snapshots.document import verify_document

    key = (info.name, info.etag)
    verdict = ctx.verified.get(key)
    if verdict:
        return ctx.store.read_stored(info.name, etag=info.etag, max_bytes=info.published_bytes)
    if verdict is None:  # one that failed is not downloaded again: its ETag pins the same bytes
        try:
            data, is_gzip = ctx.store.read_stored(info.name, etag=info.etag, max_bytes=info.published_bytes)
            verdict = verify_document(data, is_gzip, info.sha256, info.json_bytes)
        except (ResourceNotFoundError, ResourceModifiedError, SnapshotFormatError):
            verdict = False
        if len(ctx.verified) >= 1000:  # years of daily snapshots; never unbounded
            ctx.verified.clear()
        ctx.verified[key] = verdict
        if verdict:
            return data, is_gzip
        log_event(log, logging.ERROR, events.API_SNAPSHOT_UNVERIFIED, snapshot=info.name)
    raise snapshot_unavailable("this snapshot does not match what was published; it is not served")


# -- shared pieces -------------------------------------------------------------------------------------
def _latest_if_readable(ctx: ApiContext) -> Manifest | None:
    """latest.json's manifest, or None when it cannot be read: listings do not depend on it."""
    from azure.core.exceptions import AzureError

    try:
        return ctx.latest.manifest()
    except (ApiError, AzureError):
        return None


def _snapshot_key(manifest: Manifest) -> str:
    return make_etag("snapshot", manifest.snapshot, manifest.etag)[1:17]


def _snapshot_headers(name: str, generated_at: str | None) -> dict[str, str]:
    headers = {"X-Snapshot-Name": name}
    if generated_at:
        headers["X-Snapshot-Generated-At"] = generated_at
    return headers


def _redirect(ctx: ApiContext, blob_name: str, generated_at: str | None, size: int) -> func.HttpResponse:
    """Too large for one buffered response: 307 to a short-lived read-only SAS URL of the blob itself
    (stored gzip-encoded; Blob Storage sends it with Content-Encoding: gzip)."""
    url, expires = ctx.sas.read_url(blob_name, ctx.settings.sas_lifetime_seconds, utc_now())
    return status_response(
        307,
        {
            "snapshot": {"name": blob_name, "generatedAt": generated_at},
            "location": url,
            "expiresOn": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "contentEncoding": "gzip",
            "message": "too large for one response: download it from Blob Storage (the URL expires soon), "
            "or page through it with /api/customers?top=1000",
            "sizeBytes": size,
        },
        headers={"Location": url},
    )
