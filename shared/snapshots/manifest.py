"""What latest.json and each `.published` marker say about a published snapshot, and a snapshot as listed.

Manifest      latest.json's (and a marker's) content: the snapshot, its ETag, sha256, sizes, count, its
              change record (ChangeRef) and lookup index
SnapshotInfo  one snapshot blob as listed, with what its marker (or latest.json) published
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared.errors import ManifestError
from shared.storage.layout import LATEST, SNAPSHOT_NAME, index_name
from shared.storage.reader import StoredDocumentError, parse_json

if TYPE_CHECKING:
    from shared.snapshots.writer import CommittedSnapshot

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ChangeRef:
    """The change record a manifest names, with its counts (see shared/changes). A record whose run could
    not read the previous snapshot has no counts (None) and says why (`unavailable`)."""

    name: str
    added: int | None
    removed: int | None
    changed: int | None
    unavailable: str | None = None

    @property
    def counts(self) -> dict[str, int] | None:
        if self.added is None or self.removed is None or self.changed is None:
            return None
        return {"added": self.added, "removed": self.removed, "changed": self.changed}

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name, "counts": self.counts}
        if self.unavailable is None:
            return found
        return found | {"comparison": {"available": False, "reason": self.unavailable}}

    @classmethod
    def parse(cls, value: Any) -> ChangeRef | None:
        """None when absent (a manifest written before change records): such a manifest still parses."""
        if value is None:
            return None
        counts = value["counts"]
        if counts is None:  # the comparison was unavailable
            reason = value["comparison"]["reason"]
            return cls(_str(value["name"]), None, None, None, _str(reason))
        return cls(_str(value["name"]), int(counts["added"]), int(counts["removed"]), int(counts["changed"]))


@dataclass(frozen=True)
class Manifest:
    snapshot: str
    etag: str
    generated_at: str
    customer_count: int
    sha256: str
    stored_bytes: int
    json_bytes: int
    changes: ChangeRef | None = None
    index: str | None = None  # the lookup index beside the snapshot (index.py); absent before issue 9
    index_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        optional = {"index": self.index, "indexSha256": self.index_sha256} if self.index else {}
        changes = {} if self.changes is None else {"changes": self.changes.to_json()}
        return (
            {
                "schemaVersion": MANIFEST_VERSION,
                "snapshot": self.snapshot,
                "etag": self.etag,
                "generatedAt": self.generated_at,
                "customerCount": self.customer_count,
                "sha256": self.sha256,
                "storedBytes": self.stored_bytes,
                "jsonBytes": self.json_bytes,
                "contentEncoding": "gzip",
            }
            | changes
            | optional
        )

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        try:
            doc = parse_json(data, LATEST)
        except StoredDocumentError as exc:
            raise ManifestError(f"{LATEST} is not a valid manifest ({exc})") from None
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        """The manifest of latest.json's (or a marker's) JSON value; ManifestError when it is not one."""
        try:
            manifest = cls(
                snapshot=_str(doc["snapshot"]),
                etag=_str(doc["etag"]),
                generated_at=_str(doc["generatedAt"]),
                customer_count=_count(doc["customerCount"], minimum=0),
                sha256=_str(doc["sha256"]),
                stored_bytes=_count(doc["storedBytes"], minimum=1),
                json_bytes=_count(doc["jsonBytes"], minimum=1),
                changes=ChangeRef.parse(doc.get("changes")),
            )
            manifest = _with_index(manifest, doc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{LATEST} is not a valid manifest ({type(exc).__name__})") from None
        if not SNAPSHOT_NAME.fullmatch(manifest.snapshot):
            # Only a name of the layout: never "../other-container/x.json" or latest.json itself.
            raise ManifestError(f"{LATEST} names a blob outside the snapshot layout")
        return manifest

    @classmethod
    def of(cls, committed: CommittedSnapshot, changes: ChangeRef | None = None) -> Manifest:
        return cls(
            snapshot=committed.name,
            etag=committed.etag,
            generated_at=committed.generated_at,
            customer_count=committed.customer_count,
            sha256=committed.sha256,
            stored_bytes=committed.stored_bytes,
            json_bytes=committed.json_bytes,
            index=committed.index,
            index_sha256=committed.index_sha256,
            changes=changes,
        )


def _with_index(manifest: Manifest, doc: dict[str, Any]) -> Manifest:
    """The manifest with the index latest.json names; one that is not beside its snapshot, or has no
    sha256, is ignored (the API then loads the snapshot whole, as before indexes)."""
    index, sha256 = doc.get("index"), doc.get("indexSha256")
    if index != index_name(manifest.snapshot) or not (
        isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)
    ):
        return manifest
    return replace(manifest, index=index, index_sha256=sha256)


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _count(value: Any, *, minimum: int) -> int:
    if type(value) is not int or value < minimum:  # not a bool, a float or a string
        raise ValueError(f"expected a whole number of at least {minimum}")
    return value


def same_etag(one: str, other: str) -> bool:
    # Listings give ETags bare, response headers quoted.
    return bool(one) and one.strip('"') == other.strip('"')


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot blob as listed: no download needed."""

    name: str
    etag: str
    stored_bytes: int
    generated_at: str | None
    customer_count: int | None
    sha256: str  # of the JSON document, as published
    json_bytes: int  # of the JSON document, as published
    published_bytes: int  # as stored, as published (stored_bytes is what the blob holds now)

    @classmethod
    def of(cls, props: Any, *, sha256: str, json_bytes: int, published_bytes: int) -> SnapshotInfo:
        metadata = props.metadata or {}
        count = metadata.get("customercount", "")
        return cls(
            name=props.name,
            etag=props.etag,
            stored_bytes=props.size,
            generated_at=metadata.get("generatedat") or None,
            customer_count=int(count) if count.isdigit() else None,
            sha256=sha256,
            json_bytes=json_bytes,
            published_bytes=published_bytes,
        )
