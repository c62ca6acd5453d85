"""The one bounded, verifying reader of every document the app stores.

Whatever a blob holds (a gzip bomb, a line without end, JSON nested a hundred thousand deep, bytes that are
not UTF-8), reading it costs bounded memory and time and ends in one error, StoredDocumentError, naming the
blob and what was wrong with it, never its content. A caller decides what an unreadable document means for
its answer (skip it, name it, fall back); absence stays the SDK's ResourceNotFoundError and a storage
failure its AzureError, so "not there", "storage failed" and "damaged" are never confused.

    read_json(blob, max_bytes=...)       a small JSON document: size checked before it is read, inflated
                                         within the same bound, depth and encoding checked
    read_head(blob, length)              the first bytes of a blob as stored, never more
    parse_json(data, what)               the same checks on bytes already in hand
    stream(blob)                         (chunks, gzip-encoded?) of a large document, for the two below
    inflated(chunks, gzipped, limit)     gunzipped at most a megabyte per step, never past `limit`
    inflate_limit(stored_bytes)          a `limit` for a document whose inflated size nobody published
    lines(document, max_line_bytes)      complete lines, none longer than the bound
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from shared.errors import SnapshotFormatError

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

SMALL_DOCUMENT_BYTES = 256 * 1024  # latest.json, markers, outbox records, withheld.json: about a kilobyte
MAX_LINE_BYTES = 8 * 1024 * 1024  # one customer or change entry (Partner Center's are about a kilobyte)
MAX_JSON_DEPTH = 64  # our documents nest 3 deep; a customer about 6
# A document whose inflated size was not published (a change record, a snapshot history reads) inflates to
# at most INFLATE_RATIO times its stored size, and INFLATE_FLOOR at least: JSON compresses about 5 to 10
# times, a gzip bomb about a thousand.
INFLATE_RATIO = 100
INFLATE_FLOOR = 64 * 1024 * 1024
_INFLATE_INPUT = 64 * 1024  # compressed bytes per decompress call
_INFLATE_OUTPUT = 1024 * 1024  # at most this much out of one call, however well it compresses


class StoredDocumentError(SnapshotFormatError):
    """A stored document cannot be read as what it should be; the message names the blob and the problem
    (sizes, depths, the kind of damage), never what it holds. `etag`: the version that was read, when known,
    so that a caller can remember it and not read it again until it changes."""

    def __init__(self, message: str, *, etag: str | None = None) -> None:
        super().__init__(message)
        self.etag = etag


def is_gzip(properties: Any) -> bool:
    """Whether a blob's properties say its bytes are gzip-encoded (Content-Encoding)."""
    return (properties.content_settings.content_encoding or "").lower() == "gzip"


def read_json(
    blob: BlobClient, *, max_bytes: int = SMALL_DOCUMENT_BYTES, **request_options: Any
) -> tuple[Any, str]:
    """(value, etag) of a small JSON document; gzip-encoded ones are inflated, never past `max_bytes`.

    Only the first `max_bytes` + 1 bytes are asked for: a larger blob is refused without downloading the
    rest. Raises StoredDocumentError when it is larger than `max_bytes`, not gzip
    when it says so, not UTF-8 JSON, or nested deeper than MAX_JSON_DEPTH; the SDK's errors as they are
    (ResourceNotFoundError when absent). `request_options`: conditions, timeouts, retries of the SDK."""
    name = blob.blob_name
    # One byte more than allowed tells "too large" without downloading the rest.
    data, properties = read_head(blob, max_bytes + 1, **request_options)
    if properties is None:
        raise StoredDocumentError(f"{name}: empty")
    etag = str(properties.etag)
    if len(data) > max_bytes:
        raise StoredDocumentError(f"{name}: more than {max_bytes} bytes stored", etag=etag)
    if is_gzip(properties):
        try:
            data = b"".join(inflated([data], True, max_bytes))
        except SnapshotFormatError as exc:
            raise StoredDocumentError(f"{name}: {exc}", etag=etag) from None
    return parse_json(data, name, etag=etag), etag


def read_head(blob: BlobClient, length: int, **request_options: Any) -> tuple[bytes, Any]:
    """(at most the first `length` bytes of a blob as stored, the download's properties); properties None
    for an empty blob (a range of it is refused with 416). The SDK's errors as they are otherwise."""
    from azure.core.exceptions import HttpResponseError

    try:
        download = blob.download_blob(
            offset=0, length=length, decompress=False, max_concurrency=1, **request_options
        )
    except HttpResponseError as exc:
        if exc.status_code == 416:  # a range of an empty blob
            return b"", None
        raise
    return download.readall(), download.properties


def parse_json(data: bytes, what: str, *, etag: str | None = None, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of `data` (UTF-8, a BOM allowed); StoredDocumentError naming `what` otherwise."""
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoredDocumentError(f"{what}: not UTF-8 JSON ({type(exc).__name__})", etag=etag) from None
    if _depth_over(value, max_depth):
        raise StoredDocumentError(f"{what}: nested deeper than {max_depth}", etag=etag)
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def stream(blob: BlobClient, **request_options: Any) -> tuple[Iterator[bytes], bool, Any]:
    """(chunks as stored, gzip-encoded?, properties) of a blob, one range at a time: for a document read
    through inflated() and lines(), never held whole (the SDK would inflate each range on its own, which
    breaks gzip across ranges)."""
    download = blob.download_blob(decompress=False, max_concurrency=1, **request_options)
    return download.chunks(), is_gzip(download.properties), download.properties


def inflated(chunks: Iterable[bytes], gzipped: bool, limit: int | None = None) -> Iterator[bytes]:
    """The stored chunks, gunzipped in pieces of at most a megabyte when the blob is gzip-encoded;
    SnapshotFormatError once they add up to more than `limit` bytes."""
    produced = 0
    for data in _gunzipped(chunks) if gzipped else chunks:
        produced += len(data)
        if limit is not None and produced > limit:
            raise SnapshotFormatError(f"the document grows past {limit} bytes")
        yield data


def inflate_limit(stored_bytes: int) -> int:
    """How far a document of this stored size is inflated, when its inflated size was not published."""
    return max(INFLATE_FLOOR, INFLATE_RATIO * stored_bytes)


def _gunzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A gzip stream of one or more members (writer.py starts a member every few dozen customers, so a
    reader can inflate one on its own), as any gzip reader takes it: the members' data back to back.
    Anything after a member that is not another member is a damaged stream."""
    inflate = zlib.decompressobj(31)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(chunk), _INFLATE_INPUT):
                data: bytes | memoryview = view[start : start + _INFLATE_INPUT]
                while data:
                    if inflate.eof:  # the next member starts here
                        inflate = zlib.decompressobj(31)
                    yield inflate.decompress(data, _INFLATE_OUTPUT)
                    while inflate.unconsumed_tail:
                        yield inflate.decompress(inflate.unconsumed_tail, _INFLATE_OUTPUT)
                    data = inflate.unused_data if inflate.eof else b""
        yield inflate.flush()
    except zlib.error as exc:
        raise SnapshotFormatError(f"damaged gzip stream ({exc})") from None
    if not inflate.eof:
        raise SnapshotFormatError("truncated gzip stream")


class Lines:
    """The complete lines of a document that arrives in chunks, none longer than `max_line_bytes`
    (SnapshotFormatError once one grows past it); once they are all read, `rest` holds what follows the
    last newline. `digest` (a hashlib object), when given, sees every byte."""

    def __init__(
        self, document: Iterable[bytes], *, digest: Any = None, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self._document = document
        self._digest = digest
        self._max = max_line_bytes
        self.rest = b""

    def __iter__(self) -> Iterator[bytes]:
        buffer = b""
        for data in self._document:
            if self._digest is not None:
                self._digest.update(data)
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > self._max:
                raise SnapshotFormatError(f"a line longer than {self._max} bytes")
            for line in lines:
                if len(line) > self._max:
                    raise SnapshotFormatError(f"a line longer than {self._max} bytes")
                yield line
        self.rest = buffer


def lines(document: Iterable[bytes], *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Every line of a document, the last one too when no newline ends it; each within the bound."""
    source = Lines(document, max_line_bytes=max_line_bytes)
    yield from source
    if source.rest:
        yield source.rest
