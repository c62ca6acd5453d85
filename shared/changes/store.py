"""The change record blob beside each snapshot: written once (never overwritten), read back line by line.

    snapshots/YYYY/MM/DD/changes-YYYYMMDDTHHMMSSZ.json   same stamp as its snapshot

A gzip-encoded JSON document (Content-Encoding: gzip, so any HTTP client or `gunzip` reads it), laid out
one entry per line like the snapshot, so that a reader streams it without holding it:

    {"schemaVersion":1,"snapshot":"...","previousSnapshot":"...","generatedAt":"...",...,"counts":{...},"added":[
    {"id":"...","companyName":"...","domain":"...","relationshipToPartner":"..."},
    ...
    ],"removed":[
    ...
    ],"changed":[
    {"id":"...","fields":{"companyProfile.companyName":{"before":"...","after":"..."}}}
    ]}

Its blob metadata repeats the previous snapshot's name and the counts, so one listing call shows the chain
of published snapshots (each record names the published snapshot it was compared with).

A run that cannot read the previous snapshot still writes its record, so that the chain goes on: the lists
are empty, `counts` is null and `"comparison":{"available":false,"reason":"..."}` says why in one line (a
fixed sentence and the error's type: never customer data). Its metadata has `comparison=unavailable` and
`comparisonreason` instead of the counts. A record that compared has no `comparison` (schemaVersion 1 both).
"""

from __future__ import annotations

import base64
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from shared.changes.record import Changes, Counts, dumps
from shared.errors import SnapshotFormatError
from shared.snapshots.document import inflated

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, ContainerClient

RECORD_VERSION = 1
SECTIONS = ("added", "removed", "changed")
UNAVAILABLE = "unavailable"  # metadata `comparison` of a record whose run could not compare
RECORD_NAME = re.compile(r"^snapshots/\d{4}/\d{2}/\d{2}/changes-\d{8}T\d{6}Z\.json$")
_BLOCK_BYTES = 4 * 1024 * 1024


def changes_name(snapshot: str) -> str:
    """The change record's blob name for snapshot `snapshot` (same folder, same stamp)."""
    folder, _, file = snapshot.rpartition("/")
    return f"{folder}/{file.replace('customers-', 'changes-', 1)}"


def snapshot_of(record: str) -> str:
    folder, _, file = record.rpartition("/")
    return f"{folder}/{file.replace('changes-', 'customers-', 1)}"


def unreadable_reason(error: BaseException | None) -> str:
    """Why the previous snapshot could not be compared, in one line: a fixed sentence and the error's type
    (an error's message may quote the snapshot, so it is never used)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

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


def write_record(blob: BlobClient, header: RecordHeader, changes: Changes | None) -> None:
    """Writes the record as one gzip blob, staged in blocks and committed only if the blob does not exist
    (If-None-Match: *); the SDK raises ResourceExistsError otherwise (a record is never overwritten).
    `changes` None: the comparison is unavailable (`header.unavailable` says why), the lists are empty."""
    from azure.core import MatchConditions
    from azure.storage.blob import BlobBlock, ContentSettings

    assert (changes is None) == (header.unavailable is not None)
    counts = None if changes is None else changes.counts
    with tempfile.TemporaryFile() as file:
        _gzip_to(file, _document(header, changes))
        file.seek(0)
        blocks: list[BlobBlock] = []
        while chunk := file.read(_BLOCK_BYTES):
            block_id = base64.b64encode(f"{len(blocks):08d}".encode()).decode()
            blob.stage_block(block_id, chunk, length=len(chunk))
            blocks.append(BlobBlock(block_id))
    blob.commit_block_list(
        blocks,
        content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"),
        metadata=header.metadata(counts),
        match_condition=MatchConditions.IfMissing,
    )


def _document(header: RecordHeader, changes: Changes | None) -> Iterator[bytes]:
    if changes is None:  # nothing compared: empty lists
        added: Iterable[dict[str, Any]] = ()
        removed: Iterable[dict[str, Any]] = ()
        changed: Iterable[bytes] = ()
    else:
        added, removed, changed = changes.added(), changes.removed(), changes.changed_lines()
    yield (dumps(header.to_json(None if changes is None else changes.counts))[:-1] + ',"added":[').encode()
    yield from _section((dumps(entry).encode() for entry in added), b'],"removed":[')
    yield from _section((dumps(entry).encode() for entry in removed), b'],"changed":[')
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
        )

    def unknown_step(self) -> dict[str, Any]:
        """The step of the chain this record stands for, for an answer that must say its changes are
        unknown (/api/changes and history: `incomplete`)."""
        return {
            "snapshot": self.snapshot,
            "generatedAt": self.generated_at,
            "previousSnapshot": self.previous_snapshot,
            "previousGeneratedAt": self.previous_generated_at,
            "reason": self.unavailable,
        }


def list_records(container: ContainerClient, prefix: str = "snapshots/") -> dict[str, RecordInfo]:
    """Every change record in the container by its snapshot's name (one listing, with metadata)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        listed = [
            RecordInfo.of(props)
            for props in container.list_blobs(name_starts_with=prefix, include=["metadata"])
            if RECORD_NAME.fullmatch(props.name)
        ]
    except ResourceNotFoundError:
        return {}
    return {info.snapshot: info for info in listed}


def iter_entries(chunks: Iterable[bytes], gzipped: bool) -> Iterator[tuple[str, bytes]]:
    """(section, entry JSON) of a stored record, in stored order, streaming.
    Raises SnapshotFormatError when the document is not a complete record in this layout."""
    lines = _lines(inflated(chunks, gzipped))
    header = next(lines, b"")
    if not header.endswith(b',"added":['):
        raise SnapshotFormatError("not a change record")
    for section, closing in zip(SECTIONS, (b'],"removed":[', b'],"changed":[', b"]}"), strict=True):
        for line in lines:
            if line == closing:
                break
            yield section, line[:-1] if line.endswith(b",") else line
        else:
            raise SnapshotFormatError("not a complete change record")


def _lines(document: Iterable[bytes]) -> Iterator[bytes]:
    buffer = b""
    for data in document:
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer
