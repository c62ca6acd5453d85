"""The snapshot container as the job and the API use it: new snapshots, latest.json, `.published` markers.

(The blob names: shared/storage/layout.py; the requests: shared/storage/blobs.py, which SnapshotStore is.)

`latest.json` is replaced only after its snapshot is committed, and only by a snapshot at least as new
as the one it names (a replayed timer occurrence cannot move it back in time). The `.published` marker
is what the HTTP API lists and serves by date: a run that committed and then failed to publish leaves a
snapshot nobody is shown. It holds the snapshot's ETag, sha256 and sizes, so a blob replaced or damaged
later is never served either. What they hold: manifest.py. The snapshot document's own format (one
customer per line, gzip-encoded) is read back by document.py.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from shared import events
from shared.errors import ManifestError as ManifestError
from shared.errors import PublishConflictError, SnapshotExistsError, StorageError
from shared.events import log_event
from shared.snapshots.document import customer_ids, inflated
from shared.snapshots.index_builder import IndexBuilder
from shared.snapshots.manifest import ChangeRef as ChangeRef
from shared.snapshots.manifest import Manifest as Manifest
from shared.snapshots.manifest import SnapshotInfo as SnapshotInfo
from shared.snapshots.manifest import same_etag
from shared.snapshots.writer import CommittedSnapshot, SnapshotWriter
from shared.storage.blobs import JSON, Blobs, Content
from shared.storage.layout import LATEST, MARKER_NAME, PREFIX, SNAPSHOT_NAME, index_name, marker_name
from shared.storage.problems import storage_problem
from shared.storage.reader import StoredDocumentError

log = logging.getLogger(__name__)

_LATEST_CONTENT = Content("application/json", cache_control="no-cache")


def _pretty(manifest: Manifest) -> bytes:
    """latest.json and a marker as stored: indented, for people who open them."""
    return json.dumps(manifest.to_json(), indent=2).encode()


class SnapshotStore(Blobs):
    """The snapshot container (Blobs) with the snapshot layout's own steps."""

    def new_snapshot(self, name: str, generated_at: str) -> SnapshotWriter:
        """A writer for snapshot `name`. Raises SnapshotExistsError when that blob exists already,
        StorageError when Blob Storage cannot tell."""
        from azure.core.exceptions import AzureError

        try:
            exists = self.exists(name)
        except AzureError as exc:
            raise StorageError(f"checking snapshot {name}: {storage_problem(exc)}") from None
        if exists:
            raise SnapshotExistsError(
                f"snapshot {name} already exists (another run started in the same second); "
                "it is never overwritten"
            )
        return SnapshotWriter(self, name, generated_at, with_index=True)

    # -- latest.json --------------------------------------------------------------------------
    def commit_index(self, committed: CommittedSnapshot, index: IndexBuilder | None) -> CommittedSnapshot:
        """Commits the lookup index of `committed` beside it (before latest.json names it), tied to its ETag
        and sha256: the writer staged its sections while the customers passed; the tables and the header
        are staged here. `committed` with the index named, or as it was when no index could be built (a
        customer the API's indexes cannot use). Raises StorageError when Blob Storage refuses."""
        from azure.core.exceptions import AzureError

        if index is None or not index.usable:
            return committed
        name = index_name(committed.name)
        step = f"committing index {name}"
        digest = index.finish(
            snapshot=committed.name,
            etag=committed.etag,
            sha256=committed.sha256,
            customer_count=committed.customer_count,
        )
        try:  # the blocks the writer staged (IndexBuilder's ids), in layout order
            self.stager(name, step).commit(index.block_ids())
        except AzureError as exc:
            raise StorageError(f"{step}: {storage_problem(exc)}") from None
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
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            props = self.properties(committed.name, etag=committed.etag)
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
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        manifest = Manifest.of(committed, changes)
        for _attempt in range(3):
            try:
                current, etag = self.read_latest()
            except ManifestError:  # a corrupt manifest is replaced by the next good publish
                current, etag = None, self.properties(LATEST).etag
            if current is not None and current.generated_at > committed.generated_at:
                log_event(log, logging.WARNING, events.SNAPSHOT_NOT_PUBLISHED, newer=current.snapshot)
                return None
            if current is not None:
                # It was published: marked (again) before latest.json moves on, so a run that stopped
                # between publishing and marking leaves no gap in the listing.
                self.mark_published(current)
            # If-None-Match: * without a latest.json, If-Match its ETag: either way only one racer wins.
            try:
                self.put(LATEST, _pretty(manifest), etag=etag, if_absent=not etag, content=_LATEST_CONTENT)
            except (ResourceModifiedError, ResourceExistsError):
                continue  # someone published in between: look again
            return manifest
        raise PublishConflictError(f"{LATEST} kept changing while publishing {committed.name}")

    # -- reading snapshots ---------------------------------------------------------------------
    def iter_document(self, name: str, json_bytes: int | None = None) -> Iterator[bytes]:
        """The JSON document of a snapshot, decompressed as it streams (the SDK would decompress each
        ranged chunk on its own, which breaks gzip across chunks); SnapshotFormatError once it grows past
        `json_bytes`, the size its manifest published."""
        chunks, gzipped, _ = self.stream(name)
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
        metadata = {
            "snapshotetag": manifest.etag,
            "sha256": manifest.sha256,
            "jsonbytes": str(manifest.json_bytes),
            "storedbytes": str(manifest.stored_bytes),
        }
        # overwritten: marking twice is harmless
        self.put(marker_name(manifest.snapshot), _pretty(manifest), metadata=metadata, content=JSON)

    # -- reads for the HTTP API ------------------------------------------------------------------
    def read_latest_if_changed(
        self, etag: str | None, **request_options: Any
    ) -> tuple[Manifest | None, str | None] | None:
        """Like read_latest(), but None when latest.json still has `etag` (a conditional GET: 304, no
        body), so a warm reader pays one cheap request to learn that nothing was published.
        `request_options`: per-request SDK options (retry_total, connection_timeout, read_timeout)."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            doc, etag = self.read_json(LATEST, if_modified=etag, **request_options)
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

    def list_snapshots(self, prefix: str = PREFIX, *, latest: Manifest | None = None) -> list[SnapshotInfo]:
        """Published snapshots under `prefix`, oldest first (names sort by time); none before the first run
        created the container. Published: its marker names its ETag, or it is the snapshot `latest`
        (latest.json) names (a run that published and then failed before marking it). One listing call
        finds both, the marker sitting next to its snapshot."""
        from azure.core.exceptions import ResourceNotFoundError

        blobs: dict[str, Any] = {}
        markers: dict[str, dict[str, str]] = {}
        try:
            for props in self.listing(prefix, metadata=True):
                if SNAPSHOT_NAME.fullmatch(props.name):
                    blobs[props.name] = props
                elif MARKER_NAME.fullmatch(props.name):
                    markers[props.name] = props.metadata or {}
        except ResourceNotFoundError:
            return []
        infos: list[SnapshotInfo] = []
        for name, props in blobs.items():
            marker = markers.get(marker_name(name), {})
            if same_etag(marker.get("snapshotetag", ""), props.etag):
                published = [marker.get(key, "") for key in ("sha256", "jsonbytes", "storedbytes")]
            elif latest is not None and latest.snapshot == name and same_etag(latest.etag, props.etag):
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
