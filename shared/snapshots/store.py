"""Blob layout of the snapshot container and every read or write of it.

    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.json   one per run (UTC start), never overwritten
    latest.json                                           manifest of the newest committed snapshot

`latest.json` is replaced only after its snapshot is committed, and only by a snapshot at least as new
as the one it names (a replayed timer occurrence cannot move it back in time). The snapshot document's
own format (one customer per line, gzip-encoded) is read back by document.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import ManifestError as ManifestError
from shared.errors import PublishConflictError, SnapshotExistsError, StorageError
from shared.events import log_event
from shared.snapshots.document import customer_ids, inflated
from shared.snapshots.document import iter_customer_lines as iter_customer_lines
from shared.snapshots.writer import CommittedSnapshot, SnapshotWriter, storage_problem

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobClient, ContainerClient

    from shared.settings import Settings

log = logging.getLogger(__name__)

LATEST = "latest.json"
PREFIX = "snapshots/"
MANIFEST_VERSION = 1


def snapshot_name(started: datetime) -> str:
    return f"{PREFIX}{started:%Y/%m/%d}/customers-{started:%Y%m%dT%H%M%SZ}.json"


@dataclass(frozen=True)
class ChangeRef:
    """The change record a manifest names, with its counts (see shared/changes)."""

    name: str
    added: int
    removed: int
    changed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "counts": {"added": self.added, "removed": self.removed, "changed": self.changed},
        }

    @classmethod
    def parse(cls, value: Any) -> ChangeRef | None:
        """None when absent (a manifest written before change records): such a manifest still parses."""
        if value is None:
            return None
        counts = value["counts"]
        return cls(_str(value["name"]), *(int(counts[k]) for k in ("added", "removed", "changed")))


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

    def to_json(self) -> dict[str, Any]:
        changes = {} if self.changes is None else {"changes": self.changes.to_json()}
        return {
            "schemaVersion": MANIFEST_VERSION,
            "snapshot": self.snapshot,
            "etag": self.etag,
            "generatedAt": self.generated_at,
            "customerCount": self.customer_count,
            "sha256": self.sha256,
            "storedBytes": self.stored_bytes,
            "jsonBytes": self.json_bytes,
            "contentEncoding": "gzip",
        } | changes

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data.decode("utf-8-sig"))
            return cls(
                snapshot=_str(doc["snapshot"]),
                etag=_str(doc["etag"]),
                generated_at=_str(doc["generatedAt"]),
                customer_count=int(doc["customerCount"]),
                sha256=_str(doc["sha256"]),
                stored_bytes=int(doc.get("storedBytes", 0)),
                json_bytes=int(doc.get("jsonBytes", 0)),
                changes=ChangeRef.parse(doc.get("changes")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{LATEST} is not a valid manifest ({type(exc).__name__})") from None

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
            changes=changes,
        )


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def container_client(
    settings: Settings, credential_factory: Callable[[], TokenCredential]
) -> ContainerClient:
    """The snapshot container, with retries bounded by settings (the SDK default waits minutes)."""
    from azure.storage.blob import BlobServiceClient

    options: dict[str, Any] = {
        "retry_total": settings.storage_retries,
        "initial_backoff": 1,
        "increment_base": 2,
        "connection_timeout": 20,
        "read_timeout": 120,
        # Downloads come in 4 MiB ranges (the SDK's first range is 32 MiB): reading a snapshot streams.
        "max_single_get_size": 4 * 1024 * 1024,
        "max_chunk_get_size": 4 * 1024 * 1024,
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
        return SnapshotWriter(blob, generated_at)

    # -- latest.json --------------------------------------------------------------------------
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
    def iter_document(self, name: str) -> Iterator[bytes]:
        """The JSON document of a snapshot, decompressed as it streams (the SDK would decompress each
        ranged chunk on its own, which breaks gzip across chunks)."""
        download = self.blob(name).download_blob(decompress=False, max_concurrency=1)
        gzipped = (download.properties.content_settings.content_encoding or "").lower() == "gzip"
        yield from inflated(download.chunks(), gzipped)

    def iter_customer_ids(self, name: str) -> Iterator[str]:
        """Customer ids of a stored snapshot, one line at a time: memory stays flat however large it is.
        Raises SnapshotFormatError (while iterating) when the blob is not a snapshot document."""
        return customer_ids(self.iter_document(name))

    # -- reads for the HTTP API ------------------------------------------------------------------
    def read_latest_if_changed(self, etag: str | None) -> tuple[Manifest | None, str | None] | None:
        """Like read_latest(), but None when latest.json still has `etag` (a conditional GET: 304, no
        body), so a warm reader pays one cheap request to learn that nothing was published."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfModified} if etag else {}
        )
        try:
            download = self.blob(LATEST).download_blob(**conditions)
            data = download.readall()
        except ResourceNotFoundError:
            return None, None
        except HttpResponseError as exc:
            # The SDK raises a 304 as ResourceModifiedError (its error code is ConditionNotMet).
            if exc.status_code == 304:
                return None
            raise
        return Manifest.parse(data), download.properties.etag

    def read_stored(self, name: str, etag: str | None = None) -> tuple[bytes, bool]:
        """(bytes as stored, gzip-encoded?) of a snapshot; with `etag`, only that version of it
        (ResourceModifiedError otherwise)."""
        from azure.core import MatchConditions

        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        download = self.blob(name).download_blob(decompress=False, max_concurrency=4, **conditions)
        data = download.readall()
        gzipped = (download.properties.content_settings.content_encoding or "").lower() == "gzip"
        return data, gzipped

    def list_snapshots(self, prefix: str = PREFIX) -> list[SnapshotInfo]:
        """Committed snapshots under `prefix`, oldest first (names sort by time); none before the first run
        created the container."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            infos = [
                SnapshotInfo.of(props)
                for props in self.container.list_blobs(name_starts_with=prefix, include=["metadata"])
                if SNAPSHOT_NAME.fullmatch(props.name)
            ]
        except ResourceNotFoundError:
            return []
        return sorted(infos, key=lambda info: info.name)


SNAPSHOT_NAME = re.compile(r"^snapshots/\d{4}/\d{2}/\d{2}/customers-\d{8}T\d{6}Z\.json$")


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot blob as listed: no download needed."""

    name: str
    etag: str
    stored_bytes: int
    generated_at: str | None
    customer_count: int | None

    @classmethod
    def of(cls, props: Any) -> SnapshotInfo:
        metadata = props.metadata or {}
        count = metadata.get("customercount", "")
        return cls(
            name=props.name,
            etag=props.etag,
            stored_bytes=props.size,
            generated_at=metadata.get("generatedat") or None,
            customer_count=int(count) if count.isdigit() else None,
        )
