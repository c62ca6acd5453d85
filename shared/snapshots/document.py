"""The stored snapshot document, read back: gunzipped as it streams, one customer per line.

writer.py writes each snapshot as a JSON document that is also line-oriented:

    {"schemaVersion":1,"generatedAt":"...","customers":[
    {...customer 1...},
    {...customer 2...}
    ],"customerCount":2,"source":{...}}

so a reader can take one customer at a time, byte for byte as stored, without parsing (or holding) the
whole document. Anything that is not that layout, or a gzip stream that is damaged or cut short, raises
SnapshotFormatError: a reader never mistakes a partial document for a complete one. Memory stays bounded
whatever the blob holds: at most a megabyte comes out of one inflate step, a line longer than
MAX_LINE_BYTES is refused, and a reader that knows the published size stops inflating past it (a gzip
bomb stops there).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Generator, Iterable, Iterator
from typing import Any

from shared.errors import SnapshotFormatError
from shared.storage.reader import MAX_LINE_BYTES as MAX_LINE_BYTES
from shared.storage.reader import Lines
from shared.storage.reader import inflated as inflated

# A line that starts with the id needs no JSON parse to tell its id (ids hold no quotes or escapes).
_LEADING_ID = re.compile(rb'\{\s*"id"\s*:\s*"([^"\\]+)"')


def iter_customer_lines(
    stored: bytes,
    gzipped: bool,
    *,
    digest: Any = None,
    chunk_bytes: int = 1024 * 1024,
    max_json_bytes: int | None = None,
) -> Iterator[bytes]:
    """Each customer of a stored snapshot document as its own JSON text, byte for byte as stored
    (writer.py's one-customer-per-line layout), decompressing a chunk at a time so the whole JSON
    document is never in memory at once; `digest` (a hashlib object) sees the whole document.
    Raises SnapshotFormatError for anything else, and once the document grows past `max_json_bytes`."""
    chunks = (stored[start : start + chunk_bytes] for start in range(0, len(stored), chunk_bytes))
    yield from customer_lines(inflated(chunks, gzipped, max_json_bytes), digest=digest)


def verify_document(stored: bytes, gzipped: bool, sha256: str, json_bytes: int) -> bool:
    """Whether stored bytes are the published document: inflated (never past `json_bytes`) and hashed."""
    digest = hashlib.sha256()
    try:
        for data in inflated([stored], gzipped, json_bytes):
            digest.update(data)
    except SnapshotFormatError:
        return False
    return digest.hexdigest() == sha256


def customer_lines(document: Iterable[bytes], *, digest: Any = None) -> Iterator[bytes]:
    """Each customer line of a decompressed document, its trailing comma cut; `digest` sees every byte."""
    source = Lines(document, digest=digest)
    lines = iter(source)
    header = next(lines, None)
    done = False
    if header is not None:
        if not header.endswith(b'"customers":['):
            raise SnapshotFormatError("not in the one-customer-per-line layout")
        done = yield from _customers(lines)
        if next(lines, None) is not None:
            raise SnapshotFormatError("data after the customers array")
    rest = source.rest
    if header is not None and not done and rest.startswith(b"]"):
        done, rest = True, b""  # the trailer without a final newline
    if not done or rest.strip():
        raise SnapshotFormatError("not a complete snapshot document")


def _customers(lines: Iterator[bytes]) -> Generator[bytes, None, bool]:
    """The customer lines up to the closing `]` line; returns whether that line came."""
    for line in lines:
        if line.startswith(b"]"):
            return True
        yield line[:-1] if line.endswith(b",") else line
    return False


def customer_ids(document: Iterable[bytes]) -> Iterator[str]:
    """The `id` of each customer in a (decompressed) snapshot document, in stored order."""
    for line in customer_lines(document):
        yield line_id(line)


def line_id(line: bytes) -> str:
    """The `id` of one customer line; SnapshotFormatError when it has none."""
    match = _LEADING_ID.match(line)  # stored as received: Partner Center puts id first
    return match.group(1).decode() if match else _id_of(line)


def _id_of(line: bytes) -> str:
    try:
        customer_id = json.loads(line)["id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotFormatError(f"a customer line has no id ({type(exc).__name__})") from None
    if not isinstance(customer_id, str):
        raise SnapshotFormatError("a customer line has no id (not a string)")
    return customer_id
