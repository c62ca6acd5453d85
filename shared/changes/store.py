"""The change record blob beside each snapshot: written once (never overwritten), read back line by line.

    snapshots/YYYY/MM/DD/changes-YYYYMMDDTHHMMSSZ.json   same stamp as its snapshot

A gzip-encoded JSON document (Content-Encoding: gzip, so any HTTP client or `gunzip` reads it), laid out
one entry per line like the snapshot, so that a reader streams it without holding it:

    {"schemaVersion":2,"snapshot":"...","previousSnapshot":"...","generatedAt":"...",...,"counts":{...},"added":[
    {"id":"...","companyName":"...","domain":"...","relationshipToPartner":"..."},
    ...
    ],"removed":[
    ...
    ],"changed":[
    {"id":"...","fields":{"/companyProfile/companyName":{"before":"...","after":"..."}}}
    ]}

Field paths are RFC 6901 JSON Pointers (schemaVersion 2). Records of schemaVersion 1 wrote dotted paths
(`companyProfile.companyName`), where a top-level field named with a dot collided with a profile field;
they are still read, their paths handed on as JSON Pointers.

Its blob metadata repeats the previous snapshot's name and the counts, so one listing call shows the chain
of published snapshots (each record names the published snapshot it was compared with).

A run that cannot read the previous snapshot still writes its record, so that the chain goes on: the lists
are empty, `counts` is null and `"comparison":{"available":false,"reason":"..."}` says why in one line (a
fixed sentence and the error's type: never customer data). Its metadata has `comparison=unavailable` and
`comparisonreason` instead of the counts. A record that compared has no `comparison`.

Reading goes through the one bounded reader (shared/storage/reader.py): no entry longer than
MAX_ENTRY_BYTES, inflated no further than the reader's inflate_limit() of its stored size, every entry a
JSON object with an id; anything else is a StoredDocumentError naming the record, never its content.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from shared.changes.record import Changes, Counts, encoded, pointer_of_dotted
from shared.errors import NothingToCompareError, SnapshotFormatError
from shared.storage.blobs import GZIP_JSON
from shared.storage.layout import PREFIX, RECORD_NAME, snapshot_of
from shared.storage.reader import (
    MAX_LINE_BYTES,
    StoredDocumentError,
    inflate_limit,
    inflated,
    lines,
    parse_json,
)

if TYPE_CHECKING:
    from shared.storage.blobs import Blobs

RECORD_VERSION = 2  # 2: field paths are JSON Pointers; 1: dotted paths (still read)
READABLE_VERSIONS = (1, 2)
# A changed entry holds a customer's differing values twice (before, after); a customer line is within
# MAX_LINE_BYTES wherever the app reads one.
MAX_ENTRY_BYTES = 2 * MAX_LINE_BYTES
SECTIONS = ("added", "removed", "changed")
UNAVAILABLE = "unavailable"  # metadata `comparison` of a record whose run could not compare
_BLOCK_BYTES = 4 * 1024 * 1024


NOTHING_TO_COMPARE = "latest.json and the .published markers cannot be read: nothing to compare with"


def unreadable_reason(error: BaseException | None) -> str:
    """Why the previous snapshot could not be compared, in one line: a fixed sentence and the error's type
    (an error's message may quote the snapshot, so it is never used)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    if isinstance(error, NothingToCompareError):
        return NOTHING_TO_COMPARE
    if isinstance(error, ResourceNotFoundError):
        why = "the previous snapshot is missing from storage"
    elif isinstance(error, SnapshotFormatError):
        why = "the previous snapshot is damaged or not in the one-customer-per-line layout"
    elif isinstance(error, AzureError):
        why = "storage failed while the previous snapshot was read"
    else:
        why = "the previous snapshot could not be read"
    return f"{why} ({type(error).__name__})"


@dataclass(frozen=True)
class RecordHeader:
    snapshot: str
    previous_snapshot: str | None
    generated_at: str
    previous_generated_at: str | None
    unavailable: str | None = None  # why this run could not compare (unreadable_reason); None: it did

    def to_json(self, counts: Counts | None) -> dict[str, Any]:
        head: dict[str, Any] = {
            "schemaVersion": RECORD_VERSION,
            "snapshot": self.snapshot,
            "previousSnapshot": self.previous_snapshot,
            "generatedAt": self.generated_at,
            "previousGeneratedAt": self.previous_generated_at,
            "counts": None if counts is None else counts.to_json(),
        }
        if self.unavailable is None:
            return head
        return head | {"comparison": {"available": False, "reason": self.unavailable}}

    def metadata(self, counts: Counts | None) -> dict[str, str]:
        """The blob metadata: the chain's link, and the counts or why there are none (ASCII only)."""
        metadata = {
            "previoussnapshot": self.previous_snapshot or "",
            "generatedat": self.generated_at,
            "previousgeneratedat": self.previous_generated_at or "",
        }
        if counts is None:
            reason = (self.unavailable or "").encode("ascii", "replace").decode()
            return metadata | {"comparison": UNAVAILABLE, "comparisonreason": reason}
        return metadata | {name: str(getattr(counts, name)) for name in SECTIONS}


def write_record(blobs: Blobs, name: str, header: RecordHeader, changes: Changes | None) -> None:
    """Writes the record as one gzip blob, staged in blocks (shared/storage/blocks.py) and committed only if
    the blob does not exist (a record is never overwritten). `changes` None: the comparison is unavailable
    (`header.unavailable` says why), the lists are empty. Raises StorageError naming the record when Blob
    Storage refuses (the record exists already, or storage failed)."""
    from azure.core.exceptions import AzureError

    assert (changes is None) == (header.unavailable is not None)
    counts = None if changes is None else changes.counts
    stager = blobs.stager(name, f"writing the change record {name}")
    try:
        with tempfile.TemporaryFile() as file:
            _gzip_to(file, _document(header, changes))
            file.seek(0)
            blocks: list[str] = []
            while chunk := file.read(_BLOCK_BYTES):
                blocks.append(stager.append(chunk))
        stager.commit(blocks, content=GZIP_JSON, metadata=header.metadata(counts))
    except AzureError as exc:
        raise stager.failure(exc) from None


def _document(header: RecordHeader, changes: Changes | None) -> Iterator[bytes]:
    if changes is None:  # nothing compared: empty lists
        added: Iterable[dict[str, Any]] = ()
        removed: Iterable[dict[str, Any]] = ()
        changed: Iterable[bytes] = ()
    else:
        added, removed, changed = changes.added(), changes.removed(), changes.changed_lines()
    yield encoded(header.to_json(None if changes is None else changes.counts))[:-1] + b',"added":['
    yield from _section((encoded(entry) for entry in added), b'],"removed":[')
    yield from _section((encoded(entry) for entry in removed), b'],"changed":[')
    yield from _section(changed, b"]}")


def _section(entries: Iterable[bytes], closing: bytes) -> Iterator[bytes]:
    first = True
    for entry in entries:
        yield (b"\n" if first else b",\n") + entry
        first = False
    yield b"\n" + closing


def _gzip_to(file: IO[bytes], parts: Iterable[bytes]) -> None:
    gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
    for part in parts:
        file.write(gzip.compress(part))
    file.write(gzip.flush())


# -- reading ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordInfo:
    """One change record as listed (no download): its snapshot, the snapshot it was compared with."""

    name: str
    snapshot: str
    previous_snapshot: str | None
    generated_at: str | None
    previous_generated_at: str | None
    counts: Counts | None
    unavailable: str | None = None  # why its run could not compare: its changes are unknown
    etag: str | None = None  # of the version listed

    @classmethod
    def of(cls, props: Any) -> RecordInfo:
        metadata = props.metadata or {}
        numbers = [metadata.get(name, "") for name in SECTIONS]
        counts = Counts(*(int(n) for n in numbers)) if all(n.isdigit() for n in numbers) else None
        unavailable = None
        if metadata.get("comparison") == UNAVAILABLE:
            unavailable = metadata.get("comparisonreason") or "the previous snapshot could not be read"
        return cls(
            name=props.name,
            snapshot=snapshot_of(props.name),
            previous_snapshot=metadata.get("previoussnapshot") or None,
            generated_at=metadata.get("generatedat") or None,
            previous_generated_at=metadata.get("previousgeneratedat") or None,
            counts=counts,
            unavailable=unavailable,
            etag=props.etag,
        )

    def unknown_step(self, reason: str | None = None) -> dict[str, Any]:
        """The step of the chain this record stands for, for an answer that must say its changes are
        unknown (/api/changes and history: `incomplete`): why its run could not compare, or `reason`."""
        return {
            "snapshot": self.snapshot,
            "generatedAt": self.generated_at,
            "previousSnapshot": self.previous_snapshot,
            "previousGeneratedAt": self.previous_generated_at,
            "reason": self.unavailable if reason is None else reason,
        }


def list_records(blobs: Blobs, prefix: str = PREFIX) -> dict[str, RecordInfo]:
    """Every change record in the container by its snapshot's name (one listing, with metadata)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        listed = [
            RecordInfo.of(props)
            for props in blobs.listing(prefix, metadata=True)
            if RECORD_NAME.fullmatch(props.name)
        ]
    except ResourceNotFoundError:
        return {}
    return {info.snapshot: info for info in listed}


def read_record(
    blobs: Blobs, name: str, *, etag: str | None = None, verify: bool = True
) -> Iterator[tuple[str, bytes]]:
    """(section, entry JSON) of a stored record, streamed through the bounded reader; with `etag`, only that
    version (ResourceModifiedError otherwise). Raises StoredDocumentError (with the ETag read) when it is
    not a complete record this code reads; the SDK's errors as they are (absent: ResourceNotFoundError).
    `verify` False: for a version read whole before, the entries are not parsed again."""
    chunks, gzipped, properties = blobs.stream(name, etag=etag)
    try:
        yield from iter_entries(chunks, gzipped, limit=inflate_limit(properties.size), verify=verify)
    except SnapshotFormatError as exc:
        raise StoredDocumentError(f"{name}: {exc}", etag=str(properties.etag)) from None


def iter_entries(
    chunks: Iterable[bytes], gzipped: bool, *, limit: int | None = None, verify: bool = True
) -> Iterator[tuple[str, bytes]]:
    """(section, entry JSON) of a stored record, in stored order, streaming: inflated no further than
    `limit`, no line longer than MAX_ENTRY_BYTES. Raises SnapshotFormatError when the document is not a
    complete record in this layout of a schemaVersion this code reads, or (`verify`) an entry is not a JSON
    object with a string id. Changed entries of a schemaVersion 1 record come with JSON Pointer paths."""
    source = lines(inflated(chunks, gzipped, limit), max_line_bytes=MAX_ENTRY_BYTES)
    version = _version(next(source, b""))
    for section, closing in zip(SECTIONS, (b'],"removed":[', b'],"changed":[', b"]}"), strict=True):
        for line in source:
            if line == closing:
                break
            entry = line[:-1] if line.endswith(b",") else line
            if verify or (version == 1 and section == "changed"):
                entry = _entry(entry, section, version)
            yield section, entry
        else:
            raise SnapshotFormatError("not a complete change record")
    if next(source, None) is not None:
        raise SnapshotFormatError("data after the change record")


def _version(header: bytes) -> int:
    """The schemaVersion of a record's first line, once that line holds together as JSON."""
    opening = b',"added":['
    if not header.endswith(opening):
        raise SnapshotFormatError("not a change record")
    head = parse_json(header[: -len(opening)] + b"}", "the change record's header")
    version = head.get("schemaVersion") if isinstance(head, dict) else None
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise SnapshotFormatError("not a change record of a schemaVersion this code reads")
    return version


def _entry(entry: bytes, section: str, version: int) -> bytes:
    """The entry once checked: a JSON object with a string id (a changed one: `fields` an object of
    objects); a version 1 changed entry re-serialised with JSON Pointer paths."""
    value = parse_json(entry, f"an entry of {section}")
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise SnapshotFormatError(f"an entry of {section} is not an object with an id")
    if section != "changed":
        return entry
    fields = value.get("fields")
    if not isinstance(fields, dict) or not all(isinstance(change, dict) for change in fields.values()):
        raise SnapshotFormatError("a changed entry has no fields")
    if version != 1:
        return entry
    value["fields"] = {pointer_of_dotted(path): change for path, change in fields.items()}
    return encoded(value)
