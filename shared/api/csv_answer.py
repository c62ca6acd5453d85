"""CSV answers for GET /api/customers (`format=csv` or `Accept: text/csv`), for the people who live in Excel.

RFC 4180: CRLF line ends, every cell in double quotes with quotes doubled; UTF-8 with a byte order mark so
Excel reads non-ASCII names; a header row, then one row per customer: id, tenantId, companyName, domain,
relationshipToPartner. A cell that starts with = + - @, a tab or a carriage return is prefixed with a single
quote (OWASP's advice against CSV/formula injection): a customer named `=HYPERLINK(...)` stays text. Text
UTF-8 cannot carry (a lone surrogate such as "\\ud800", which a JSON escape can hold and Partner Center may
send) is written as U+FFFD, the replacement character; the JSON answers keep it as stored.

Pages (q, domain, top, continuation) are built from the warm instance's loaded snapshot. The whole latest
snapshot as CSV, when larger than API_SNAPSHOT_INLINE_MAX_BYTES, is a CSV rendition written once beside
the snapshot (`snapshots/…/customers-….csv`, gzip-encoded), streamed from the stored snapshot a piece at a
time so memory stays flat at any size, then answered like the JSON: a 307 to a short-lived SAS URL. A
rendition that cannot be written for what the snapshot holds (it does not match latest.json) is remembered
for that snapshot's ETag in the API context: later requests get 503 at once, without streaming the snapshot
again; a storage error is not remembered.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import azure.functions as func

from shared import events
from shared.api.errors import ApiError, bad_parameter, snapshot_unavailable
from shared.api.http import (
    GZIP_LEVEL,
    accepts_gzip,
    answer,
    make_etag,
    quality_weights,
    status_response,
    utc_now,
)
from shared.events import log_event
from shared.storage.blobs import Content
from shared.storage.layout import file_name, rendition_file, rendition_name

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.api.latest import Snapshot
    from shared.snapshots.store import Manifest

log = logging.getLogger("shared.api")

CSV_TYPE = "text/csv; charset=utf-8"
COLUMNS = ("id", "tenantId", "companyName", "domain", "relationshipToPartner")
BOM = "\ufeff".encode()
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_BATCH = 2000  # customers per json.loads / csv write
_FLUSH = 1 << 20  # gzip bytes handed to the upload at a time
_SURROGATES = re.compile("[\ud800-\udfff]")  # what a str may hold and UTF-8 cannot


# -- negotiation ---------------------------------------------------------------------------------------
def wants_csv(req: func.HttpRequest, params: dict[str, str]) -> bool:
    """`format` decides when given; otherwise CSV when Accept names text/csv and does not prefer
    application/json at least as much (a browser's */* keeps getting JSON)."""
    chosen = params.get("format")
    if chosen is not None:
        if chosen.lower() not in ("json", "csv"):
            raise bad_parameter("format", "format must be json or csv")
        return chosen.lower() == "csv"
    weights = quality_weights(req.headers.get("accept") or "")
    csv_weight = weights.get("text/csv", 0.0)
    return csv_weight > 0 and csv_weight > weights.get("application/json", 0.0)


# -- rows ----------------------------------------------------------------------------------------------
def cell(value: Any) -> str:
    """A value as a spreadsheet-safe cell: text, and never the start of a formula."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_START) else text


def row(customer: dict[str, Any]) -> list[str]:
    profile = customer.get("companyProfile")
    profile = profile if isinstance(profile, dict) else {}
    return [
        cell(customer.get("id")),
        cell(profile.get("tenantId")),
        cell(profile.get("companyName")),
        cell(profile.get("domain")),
        cell(customer.get("relationshipToPartner")),
    ]


def _customers(lines: Iterable[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Stored customer lines → parsed customers, a batch at a time (one json.loads per batch)."""
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) == _BATCH:
            yield _parsed(batch)
            batch = []
    if batch:
        yield _parsed(batch)


def _parsed(batch: list[bytes]) -> list[dict[str, Any]]:
    """The batch's customers; a line that is not a JSON object (or nests too deep to parse) has no row,
    as the API leaves such a customer out of its answers too."""
    try:
        parsed = json.loads(b"[" + b",".join(batch) + b"]")
        if len(parsed) == len(batch) and all(isinstance(item, dict) for item in parsed):
            return cast(list[dict[str, Any]], parsed)
    except (ValueError, RecursionError):
        pass
    customers = []
    for line in batch:
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(item, dict):
            customers.append(item)
    return customers


def _writer(buffer: io.StringIO) -> Any:
    return csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")


def utf8(text: str) -> bytes:
    """`text` as UTF-8, U+FFFD for each code point UTF-8 cannot carry (a lone surrogate): one customer's
    name never fails a CSV answer."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text).encode()


def encode(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The CSV file for these stored customer lines, in pieces: BOM and header first."""
    buffer = io.StringIO()
    writer = _writer(buffer)
    writer.writerow(COLUMNS)
    yield BOM + buffer.getvalue().encode()
    for customers in _customers(lines):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(row(customer) for customer in customers)
        yield utf8(buffer.getvalue())


def page_bytes(loaded: Snapshot, positions: Sequence[int]) -> bytes:
    return b"".join(encode(loaded.lines_at(positions)))


def filename(snapshot: str) -> str:
    return rendition_file(snapshot)


def csv_headers(snapshot: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename(snapshot)}"'}


def page_headers(snapshot: str, matched: int, next_link: str | None) -> dict[str, str]:
    """A CSV page has no room for paging fields: the next page is a Link header (RFC 8288)."""
    headers = csv_headers(snapshot) | {"X-Total-Count": str(matched)}
    if next_link:
        headers["Link"] = f'<{next_link}>; rel="next"'
    return headers


# -- the whole latest snapshot ---------------------------------------------------------------------------
_whole: tuple[Manifest, bytes] | None = None  # the last whole-snapshot CSV built here, gzip-encoded


def whole_latest(
    req: func.HttpRequest, ctx: ApiContext, manifest: Manifest, cache: str, headers: dict[str, str]
) -> func.HttpResponse:
    """Inline when the snapshot itself would be answered inline (its CSV is smaller than its JSON),
    otherwise a 307 to the CSV rendition."""
    size = manifest.stored_bytes if accepts_gzip(req) else manifest.json_bytes
    if size > ctx.settings.snapshot_inline_max_bytes:
        return redirect_to_rendition(ctx, manifest)

    def produce() -> tuple[bytes, bool]:
        global _whole
        kept = _whole
        if kept is not None and kept[0] == manifest:
            return kept[1], True
        loaded = ctx.latest.snapshot(manifest)
        csv_bytes = b"".join(encode(loaded.lines_at(range(loaded.count))))
        body = gzip.compress(csv_bytes, GZIP_LEVEL, mtime=0)
        _whole = (manifest, body)  # a few MB: the next request is answered without rebuilding it
        return body, True

    headers = headers | csv_headers(manifest.snapshot)
    return answer(
        req, make_etag("csv", manifest.etag), cache, produce, headers=headers, content_type=CSV_TYPE
    )


# -- the whole latest snapshot, large: a CSV rendition beside it ----------------------------------------
_write_lock = threading.Lock()


def redirect_to_rendition(ctx: ApiContext, manifest: Manifest) -> func.HttpResponse:
    """307 to a short-lived SAS URL of the snapshot's CSV rendition, written first if it is missing."""
    name = rendition_name(manifest.snapshot)
    size = ensure_rendition(ctx, manifest)
    url, expires = ctx.sas.read_url(name, ctx.settings.sas_lifetime_seconds, utc_now())
    return status_response(
        307,
        {
            "snapshot": {"name": manifest.snapshot, "generatedAt": manifest.generated_at},
            "location": url,
            "expiresOn": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "contentEncoding": "gzip",
            "contentType": CSV_TYPE,
            "message": "too large for one response: download the CSV from Blob Storage (the URL expires "
            "soon), or page through it with /api/customers?format=csv&top=1000",
            "sizeBytes": size,
        },
        headers={"Location": url},
    )


def ensure_rendition(ctx: ApiContext, manifest: Manifest) -> int:
    """Stored size of the CSV rendition of `manifest`'s snapshot, writing it if it does not exist yet.

    Written with If-None-Match: * (the upload commits only if no rendition exists): two instances racing
    both succeed, one of them writes. It is derived from the snapshot, which is never overwritten, and only
    committed after every line was read and the snapshot's sha256 and count were checked. A rendition that
    fails for anything but storage is remembered by the snapshot's ETag (the same bytes fail the same way):
    503 at once from then on, without streaming the snapshot again."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    name = rendition_name(manifest.snapshot)
    version = (manifest.snapshot, manifest.etag)
    with _write_lock:  # one writer per instance; the others wait and find it written
        if version in ctx.failed_renditions:
            raise _cannot_be_read()
        try:
            return int(ctx.store.properties(name).size)
        except ResourceNotFoundError:
            pass
        started = time.monotonic()
        try:
            _write_rendition(ctx, manifest, name)
        except AzureError:
            raise  # storage trouble, not the snapshot's: a later request tries again
        except Exception:  # the snapshot does not match latest.json (logged where it was found), or worse
            ctx.failed_renditions.add(version)
            raise
        size = int(ctx.store.properties(name).size)
        log_event(
            log,
            logging.INFO,
            events.API_CSV_RENDITION_WRITTEN,
            snapshot=manifest.snapshot,
            storedBytes=size,
            elapsedSeconds=round(time.monotonic() - started, 3),
        )
        return size


def _write_rendition(ctx: ApiContext, manifest: Manifest, name: str) -> None:
    from azure.core.exceptions import ResourceExistsError

    content = Content(
        CSV_TYPE, encoding="gzip", disposition=f'attachment; filename="{filename(manifest.snapshot)}"'
    )
    metadata = {"sourcesnapshot": file_name(manifest.snapshot), "sourcesha256": manifest.sha256}
    with contextlib.suppress(ResourceExistsError):  # another instance wrote it in the meantime
        ctx.store.put(
            name, _gzip(_rendition_csv(ctx, manifest)), if_absent=True, metadata=metadata, content=content
        )


def _rendition_csv(ctx: ApiContext, manifest: Manifest) -> Iterator[bytes]:
    from shared.snapshots.document import customer_lines

    digest = hashlib.sha256()
    count = 0

    def counted(lines: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal count
        for line in lines:
            count += 1
            yield line

    try:
        yield from encode(
            counted(
                customer_lines(ctx.store.iter_document(manifest.snapshot, manifest.json_bytes), digest=digest)
            )
        )
    except (ValueError, KeyError, TypeError, zlib.error):
        raise _unreadable(manifest) from None
    if digest.hexdigest() != manifest.sha256 or count != manifest.customer_count:
        raise _unreadable(manifest)  # raised before the upload commits: no rendition of a wrong snapshot


def _unreadable(manifest: Manifest) -> Exception:
    log_event(log, logging.ERROR, events.API_CSV_RENDITION_FAILED, snapshot=manifest.snapshot)
    return _cannot_be_read()


def _cannot_be_read() -> ApiError:
    return snapshot_unavailable("the latest snapshot cannot be read; the next publish fixes it")


def _gzip(pieces: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    pending: list[bytes] = []
    size = 0
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            pending.append(out)
            size += len(out)
        if size >= _FLUSH:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(compressor.flush())
    yield b"".join(pending)
