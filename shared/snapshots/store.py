"""Blob layout of the snapshot container and every read or write of it.

    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.json        one per run (UTC start), never overwritten
    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.published   written once latest.json named it
    latest.json                                                manifest of the newest committed snapshot

`latest.json` is replaced only after its snapshot is committed, and only by a snapshot at least as new
as the one it names (a replayed timer occurrence cannot move it back in time). The `.published` marker
is what the HTTP API lists and serves by date: a run that committed and then failed to publish leaves a
snapshot nobody is shown. It holds the snapshot's ETag, sha256 and sizes, so a blob replaced or damaged
later is never served either. The snapshot document's own format (one customer per line, gzip-encoded)
is read back by document.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import mmap
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import ManifestError as ManifestError
from shared.errors import PublishConflictError, SnapshotExistsError, SnapshotFormatError, StorageError
from shared.events import log_event
from shared.snapshots.document import customer_ids, inflated
from shared.snapshots.document import iter_customer_lines as iter_customer_lines
from shared.snapshots.index import IndexBuilder
from shared.snapshots.writer import CommittedSnapshot, SnapshotWriter, storage_problem
from shared.storage.layout import LATEST, MARKER_NAME, PREFIX, SNAPSHOT_NAME, index_name, marker_name
from shared.storage.reader import StoredDocumentError, parse_json, read_json, stream

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobClient, ContainerClient

    from shared.settings import Settings

log = logging.getLogger(__name__)

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


# The SDK joins each range's body with b"".join(list(body)), and list() sizes itself by the body's len(),
# which is its length in bytes: a list of that many pointers (8 bytes each) is allocated for a moment. A
# range of 1 MiB costs 8 MiB at that moment; the SDK's 4 MiB ranges cost 32 MiB (measured: azure-storage-blob
# 12.x, azure-core's StreamDownloadGenerator.__len__).
DOWNLOAD_RANGE_BYTES = 1024 * 1024


def container_client(
    settings: Settings, credential_factory: Callable[[], TokenCredential], *, api: bool = False
) -> ContainerClient:
    """The snapshot container, with retries bounded by settings (the SDK default waits minutes).

    `api`: for the HTTP API, which answers people waiting: at most 2 retries about a second apart and a
    5 s connect timeout, whatever SNAPSHOT_STORAGE_RETRIES says (the job may retry longer)."""
    from azure.storage.blob import BlobServiceClient

    from shared.events import quiet_azure_sdk_logs

    quiet_azure_sdk_logs()
    options: dict[str, Any] = {
        "retry_total": min(settings.storage_retries, 2) if api else settings.storage_retries,
        "initial_backoff": 0.5 if api else 1,
        "increment_base": 1 if api else 2,
        "random_jitter_range": 0.5 if api else 3,
        "connection_timeout": 5 if api else 20,
        "read_timeout": 30 if api else 120,
        # Downloads come in ranges of DOWNLOAD_RANGE_BYTES (the SDK's first range is 32 MiB): reading a
        # snapshot streams.
        "max_single_get_size": DOWNLOAD_RANGE_BYTES,
        "max_chunk_get_size": DOWNLOAD_RANGE_BYTES,
    }
    target = settings.storage
    if target.connection_string:
        service = BlobServiceClient.from_connection_string(target.connection_string, **options)
    else:
        service = BlobServiceClient(target.account_url or "", credential=credential_factory(), **options)
    return service.get_container_client(settings.container)


class SnapshotStore:
    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def blob(self, name: str) -> BlobClient:
        return self.container.get_blob_client(name)

    def ensure_container(self) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        # Infra creates the container in Azure (where the identity may not create containers);
        # local runs create it here.
        try:
            if not self.container.exists():
                with contextlib.suppress(ResourceExistsError):  # created by a concurrent run
                    self.container.create_container()
        except AzureError as exc:
            raise StorageError(
                f"opening container {self.container.container_name}: {storage_problem(exc)}"
            ) from None

    def new_snapshot(self, name: str, generated_at: str) -> SnapshotWriter:
        """A writer for snapshot `name`. Raises SnapshotExistsError when that blob exists already,
        StorageError when Blob Storage cannot tell."""
        from azure.core.exceptions import AzureError

        blob = self.blob(name)
        try:
            exists = blob.exists()
        except AzureError as exc:
            raise StorageError(f"checking snapshot {name}: {storage_problem(exc)}") from None
        if exists:
            raise SnapshotExistsError(
                f"snapshot {name} already exists (another run started in the same second); "
                "it is never overwritten"
            )
        return SnapshotWriter(blob, generated_at, index_blob=self.blob(index_name(name)))

    # -- latest.json --------------------------------------------------------------------------
    def commit_index(self, committed: CommittedSnapshot, index: IndexBuilder | None) -> CommittedSnapshot:
        """Commits the lookup index of `committed` beside it (before latest.json names it), tied to its ETag
        and sha256: the writer staged its sections while the customers passed; the tables and the header
        are staged here. `committed` with the index named, or as it was when no index could be built (a
        customer the API's indexes cannot use). Raises StorageError when Blob Storage refuses."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError
        from azure.storage.blob import BlobBlock

        if index is None or not index.usable:
            return committed
        name = index_name(committed.name)
        digest = index.finish(
            snapshot=committed.name,
            etag=committed.etag,
            sha256=committed.sha256,
            customer_count=committed.customer_count,
        )
        blocks = [BlobBlock(base64.b64encode(block_id.encode()).decode()) for block_id in index.block_ids()]
        try:
            self.blob(name).commit_block_list(blocks, match_condition=MatchConditions.IfMissing)
        except AzureError as exc:
            raise StorageError(f"committing index {name}: {storage_problem(exc)}") from None
        return replace(committed, index=name, index_sha256=digest)

    def read_latest(self) -> tuple[Manifest | None, str | None]:
        """(manifest, etag of latest.json); (None, None) before the first publish.

        Raises ManifestError when latest.json is not a manifest, StorageError when it cannot be read."""
        from azure.core.exceptions import AzureError

        try:
            latest = self.read_latest_if_changed(None)  # unconditional: never None
        except AzureError as exc:
            raise StorageError(f"reading {LATEST}: {storage_problem(exc)}") from None
        assert latest is not None
        return latest

    def publish(self, committed: CommittedSnapshot, changes: ChangeRef | None = None) -> Manifest | None:
        """Points latest.json at `committed` (and its change record) unless a newer snapshot is already
        published.

        The snapshot is checked first: the blob still has the ETag its commit returned (the one latest.json
        names and the API reads with), its size and its sha256 metadata are this run's. The write of
        latest.json is conditional on the ETag read just before, so two runs racing cannot interleave. Raises
        StorageError when the snapshot does not verify or Blob Storage refuses, PublishConflictError when
        latest.json changed under each of three attempts."""
        from azure.core.exceptions import AzureError

        step = f"publishing {LATEST}"
        try:
            self._verify(committed, step)
            return self._publish(committed, changes)
        except AzureError as exc:
            raise StorageError(f"{step}: {storage_problem(exc)}") from None

    def _verify(self, committed: CommittedSnapshot, step: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            props = self.blob(committed.name).get_blob_properties(
                etag=committed.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise StorageError(
                f"{step}: snapshot {committed.name} changed or vanished since it was committed; not published"
            ) from None
        metadata = props.metadata or {}
        if props.size != committed.stored_bytes or metadata.get("sha256") != committed.sha256:
            raise StorageError(
                f"{step}: snapshot {committed.name} does not match what this run wrote (size or sha256); "
                "not published"
            )

    def _publish(self, committed: CommittedSnapshot, changes: ChangeRef | None) -> Manifest | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.storage.blob import ContentSettings

        manifest = Manifest.of(committed, changes)
        for _attempt in range(3):
            try:
                current, etag = self.read_latest()
            except ManifestError:  # a corrupt manifest is replaced by the next good publish
                current, etag = None, self.blob(LATEST).get_blob_properties().etag
            if current is not None and current.generated_at > committed.generated_at:
                log_event(log, logging.WARNING, events.SNAPSHOT_NOT_PUBLISHED, newer=current.snapshot)
                return None
            if current is not None:
                # It was published: marked (again) before latest.json moves on, so a run that stopped
                # between publishing and marking leaves no gap in the listing.
                self.mark_published(current)
            # overwrite=False sends If-None-Match: *, the etag If-Match: either way only one racer wins.
            conditions: dict[str, Any] = (
                {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
                if etag
                else {"overwrite": False}
            )
            try:
                self.blob(LATEST).upload_blob(
                    json.dumps(manifest.to_json(), indent=2).encode(),
                    content_settings=ContentSettings(
                        content_type="application/json", cache_control="no-cache"
                    ),
                    **conditions,
                )
            except (ResourceModifiedError, ResourceExistsError):
                continue  # someone published in between: look again
            return manifest
        raise PublishConflictError(f"{LATEST} kept changing while publishing {committed.name}")

    # -- reading snapshots ---------------------------------------------------------------------
    def iter_document(self, name: str, json_bytes: int | None = None) -> Iterator[bytes]:
        """The JSON document of a snapshot, decompressed as it streams (the SDK would decompress each
        ranged chunk on its own, which breaks gzip across chunks); SnapshotFormatError once it grows past
        `json_bytes`, the size its manifest published."""
        chunks, gzipped, _ = stream(self.blob(name))
        yield from inflated(chunks, gzipped, json_bytes)

    def iter_customer_ids(self, name: str) -> Iterator[str]:
        """Customer ids of a stored snapshot, one line at a time: memory stays flat however large it is.
        Raises SnapshotFormatError (while iterating) when the blob is not a snapshot document."""
        return customer_ids(self.iter_document(name))

    def mark_published(self, manifest: Manifest | None) -> None:
        """Call right after publish(): records that latest.json named this snapshot. Only marked snapshots
        are listed and served by date. None (publish() found a newer snapshot) marks nothing. Raises
        StorageError when Blob Storage refuses (the next publish marks it again)."""
        from azure.core.exceptions import AzureError

        if manifest is None:
            return
        try:
            self._write_marker(manifest)
        except AzureError as exc:
            raise StorageError(f"marking {manifest.snapshot} published: {storage_problem(exc)}") from None

    def _write_marker(self, manifest: Manifest) -> None:
        from azure.storage.blob import ContentSettings

        self.blob(marker_name(manifest.snapshot)).upload_blob(
            json.dumps(manifest.to_json(), indent=2).encode(),
            overwrite=True,  # marking twice is harmless
            metadata={
                "snapshotetag": manifest.etag,
                "sha256": manifest.sha256,
                "jsonbytes": str(manifest.json_bytes),
                "storedbytes": str(manifest.stored_bytes),
            },
            content_settings=ContentSettings(content_type="application/json"),
        )

    # -- reads for the HTTP API ------------------------------------------------------------------
    def read_latest_if_changed(
        self, etag: str | None, **request_options: Any
    ) -> tuple[Manifest | None, str | None] | None:
        """Like read_latest(), but None when latest.json still has `etag` (a conditional GET: 304, no
        body), so a warm reader pays one cheap request to learn that nothing was published.
        `request_options`: per-request SDK options (retry_total, connection_timeout, read_timeout)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfModified} if etag else {}
        )
        try:
            doc, etag = read_json(self.blob(LATEST), **conditions, **request_options)
        except ResourceNotFoundError:
            return None, None
        except StoredDocumentError as exc:
            error = ManifestError(f"{LATEST} is not a valid manifest ({exc})")
            error.etag = exc.etag  # a reader can ask next whether it changed (a 304)
            raise error from None
        except HttpResponseError as exc:
            # The SDK raises a 304 as ResourceModifiedError (its error code is ConditionNotMet).
            if exc.status_code == 304:
                return None
            raise
        try:
            return Manifest.from_json(doc), etag
        except ManifestError as exc:
            exc.etag = etag
            raise

    def read_stored(
        self, name: str, etag: str | None = None, *, max_bytes: int | None = None
    ) -> tuple[bytes, bool]:
        """(bytes as stored, gzip-encoded?) of a snapshot; with `etag`, only that version of it
        (ResourceModifiedError otherwise); with `max_bytes`, SnapshotFormatError for a larger blob, before
        the rest of it is downloaded."""
        from azure.core import MatchConditions

        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        download = self.blob(name).download_blob(decompress=False, max_concurrency=4, **conditions)
        if max_bytes is not None and download.size > max_bytes:
            raise SnapshotFormatError(f"{download.size} bytes stored where {max_bytes} were published")
        data = download.readall()
        gzipped = (download.properties.content_settings.content_encoding or "").lower() == "gzip"
        return data, gzipped

    def stored_size(self, name: str, *, etag: str) -> int:
        """The stored size of that version of a blob (ResourceModifiedError for another version)."""
        from azure.core import MatchConditions

        props = self.blob(name).get_blob_properties(etag=etag, match_condition=MatchConditions.IfNotModified)
        return int(props.size)

    def read_range(self, name: str, etag: str, offset: int, length: int) -> bytes:
        """`length` stored bytes of that version of a blob from `offset` (one deflate block of a snapshot)."""
        from azure.core import MatchConditions

        download = self.blob(name).download_blob(
            offset=offset,
            length=length,
            decompress=False,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )
        return download.readall()

    def read_into_buffer(
        self, name: str, etag: str | None = None, *, max_bytes: int | None = None
    ) -> mmap.mmap:
        """A blob as stored (with `etag`, that version only), in one anonymous mapping of its size: memory
        is taken as the bytes arrive (readall() would hold them twice at the end, a zeroed bytearray all at
        once). SnapshotFormatError when it is larger than `max_bytes`, or ends early."""
        from azure.core import MatchConditions

        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        download = self.blob(name).download_blob(decompress=False, max_concurrency=1, **conditions)
        if max_bytes is not None and download.size > max_bytes:
            raise SnapshotFormatError(f"{download.size} bytes stored where at most {max_bytes} were expected")
        # Private: pages a reader is done with can be given back (index.py releases the compressed search).
        private = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}
        buffer = mmap.mmap(-1, max(download.size, 1), **private)
        filled = 0
        for chunk in download.chunks():
            if filled + len(chunk) > download.size:
                break
            buffer[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        if filled != download.size:
            raise SnapshotFormatError(f"{filled} bytes read where {download.size} were announced")
        return buffer

    def list_snapshots(self, prefix: str = PREFIX, *, latest: Manifest | None = None) -> list[SnapshotInfo]:
        """Published snapshots under `prefix`, oldest first (names sort by time); none before the first run
        created the container. Published: its marker names its ETag, or it is the snapshot `latest`
        (latest.json) names (a run that published and then failed before marking it). One listing call
        finds both, the marker sitting next to its snapshot."""
        from azure.core.exceptions import ResourceNotFoundError

        blobs: dict[str, Any] = {}
        markers: dict[str, dict[str, str]] = {}
        try:
            for props in self.container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                if SNAPSHOT_NAME.fullmatch(props.name):
                    blobs[props.name] = props
                elif MARKER_NAME.fullmatch(props.name):
                    markers[props.name] = props.metadata or {}
        except ResourceNotFoundError:
            return []
        infos: list[SnapshotInfo] = []
        for name, props in blobs.items():
            marker = markers.get(marker_name(name), {})
            if _same_etag(marker.get("snapshotetag", ""), props.etag):
                published = [marker.get(key, "") for key in ("sha256", "jsonbytes", "storedbytes")]
            elif latest is not None and latest.snapshot == name and _same_etag(latest.etag, props.etag):
                published = [latest.sha256, str(latest.json_bytes), str(latest.stored_bytes)]
            else:
                continue  # committed but never published, or replaced since
            sha256, json_bytes, stored_bytes = published
            if re.fullmatch(r"[0-9a-f]{64}", sha256) and json_bytes.isdigit() and stored_bytes.isdigit():
                infos.append(
                    SnapshotInfo.of(
                        props, sha256=sha256, json_bytes=int(json_bytes), published_bytes=int(stored_bytes)
                    )
                )
        return sorted(infos, key=lambda info: info.name)


def _same_etag(one: str, other: str) -> bool:
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
