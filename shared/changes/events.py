"""Change events for automation: one CloudEvents 1.0 message per change, on an Azure Storage queue.

When SNAPSHOT_EVENTS_QUEUE is set, each published run sends, after latest.json has moved:

    partnercenter.customer.added | .removed | .changed   subject: the customer id; data: the record's entry
    partnercenter.snapshot.published                     subject: the snapshot; data: its counts
                                                         (null, and `comparison` says why, when the run
                                                         could not read the previous snapshot: no
                                                         customer events then)

Messages are base64-encoded text (what an Azure Functions queue trigger reads with default settings).

At least once: before publishing, the run writes an outbox blob (`outbox/changes-<stamp>.json`) naming
the change record; it is deleted once every message is sent. Each run first sends what an earlier run left
in the outbox (when that snapshot was published; otherwise it is dropped), then its own. A message sent twice
has the same CloudEvents `id`, so a consumer can tell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import events
from shared.events import log_event

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.queue import QueueClient

    from shared.settings import Settings
    from shared.snapshots.store import ChangeRef, Manifest, SnapshotStore

log = logging.getLogger("shared.job")

OUTBOX = "outbox/"
EVENT_TYPE = "partnercenter.customer."
PUBLISHED_TYPE = "partnercenter.snapshot.published"
_NAMESPACE = uuid.UUID("5d0c3f5e-7f5b-4b0e-9a55-0c1f2e3d4c5b")  # CloudEvents ids: stable per change


def queue_client(settings: Settings, credential_factory: Callable[[], TokenCredential]) -> QueueClient:
    """The events queue in the snapshot storage account, messages base64-encoded."""
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    assert settings.events_queue is not None
    options: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "retry_total": settings.storage_retries,
        "initial_backoff": 1,
        "increment_base": 2,
        "connection_timeout": 20,
        "read_timeout": 60,
    }
    target = settings.storage
    if target.connection_string:
        return QueueClient.from_connection_string(target.connection_string, settings.events_queue, **options)
    url = settings.queue_account_url or (target.account_url or "").replace(".blob.", ".queue.", 1)
    return QueueClient(url, settings.events_queue, credential=credential_factory(), **options)


@dataclass(frozen=True)
class Outbox:
    """What is still to be sent for one published snapshot: its change record and counts (None, with
    `unavailable` saying why, when the run could not read the previous snapshot)."""

    snapshot: str
    generated_at: str
    customer_count: int
    changes: str
    counts: dict[str, int] | None
    unavailable: str | None = None

    @property
    def name(self) -> str:
        return OUTBOX + self.changes.rpartition("/")[2]

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "snapshot": self.snapshot,
            "generatedAt": self.generated_at,
            "customerCount": self.customer_count,
            "changes": self.changes,
            "counts": self.counts,
        }
        if self.unavailable is None:
            return found
        return found | {"comparison": {"available": False, "reason": self.unavailable}}

    @classmethod
    def parse(cls, data: bytes) -> Outbox:
        doc = json.loads(data)
        counts = doc["counts"]
        comparison = doc.get("comparison") or {}
        return cls(
            str(doc["snapshot"]),
            str(doc["generatedAt"]),
            int(doc["customerCount"]),
            str(doc["changes"]),
            None if counts is None else {k: int(v) for k, v in counts.items()},
            None if counts is not None else str(comparison.get("reason", "")),
        )

    @classmethod
    def of(cls, snapshot: str, generated_at: str, customer_count: int, changes: ChangeRef) -> Outbox:
        return cls(snapshot, generated_at, customer_count, changes.name, changes.counts, changes.unavailable)


def cloud_event(kind: str, subject: str, time: str, source: str, data: Any, snapshot: str) -> str:
    event_id = uuid.uuid5(_NAMESPACE, f"{snapshot}\n{kind}\n{subject}")
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(event_id),
            "source": source,
            "type": kind,
            "subject": subject,
            "time": time,
            "datacontenttype": "application/json",
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


class EventSender:
    """Writes outbox records and sends what they name to the queue."""

    def __init__(self, store: SnapshotStore, queue: QueueClient, context: Mapping[str, Any]) -> None:
        self.store = store
        self.queue = queue
        self.context = context
        self.source = f"/partnercenter/customer-snapshots/{store.container.container_name}"
        self.sent = 0

    def stage(self, outbox: Outbox) -> None:
        """The outbox record, written before latest.json moves (so that a crash after it is caught up)."""
        self.store.blob(outbox.name).upload_blob(json.dumps(outbox.to_json()).encode(), overwrite=True)

    def drop(self, outbox: Outbox) -> None:
        """Forgets an outbox record whose snapshot was not published."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.store.blob(outbox.name).delete_blob()

    def send_pending(self, latest: Manifest | None) -> int:
        """Sends every outbox record of a published snapshot, oldest first, deleting each once sent; drops
        those whose snapshot was never published. Returns the records still pending (0 when all went out).
        A send that fails is logged (snapshot.events_pending) and leaves its record for the next run."""
        from azure.core.exceptions import AzureError

        pending = self.pending()
        if not pending:
            return 0
        published = self.published(latest)
        for position, outbox in enumerate(pending):
            if outbox.snapshot not in published:
                self.drop(outbox)
                continue
            try:
                self.send(outbox)
            except AzureError as exc:
                left = len(pending) - position
                log_event(
                    log,
                    logging.ERROR,
                    events.SNAPSHOT_EVENTS_PENDING,
                    snapshot=outbox.snapshot,
                    error=type(exc).__name__,
                    pending=left,
                    **self.context,
                )
                return left
            self.drop(outbox)
        return 0

    def pending(self) -> list[Outbox]:
        container = self.store.container
        names = sorted(b.name for b in container.list_blobs(name_starts_with=OUTBOX))
        return [Outbox.parse(self.store.blob(name).download_blob().readall()) for name in names]

    def published(self, latest: Manifest | None) -> set[str]:
        """Snapshots latest.json names or named: the latest and every record's previousSnapshot."""
        from shared.changes.store import list_records

        names = {info.previous_snapshot for info in list_records(self.store.container).values()}
        if latest is not None:
            names.add(latest.snapshot)
        return {name for name in names if name}

    def send(self, outbox: Outbox) -> None:
        for message in self.messages(outbox):
            self.queue.send_message(message)
            self.sent += 1

    def messages(self, outbox: Outbox) -> Iterator[str]:
        """One CloudEvent per entry of the change record, then snapshot.published. A run that could not
        compare has no entries: snapshot.published alone, its data saying why (`comparison`)."""
        if outbox.unavailable is None:
            yield from self.change_messages(outbox)
        data = outbox.to_json()
        yield cloud_event(
            PUBLISHED_TYPE, outbox.snapshot, outbox.generated_at, self.source, data, outbox.snapshot
        )

    def change_messages(self, outbox: Outbox) -> Iterator[str]:
        """One CloudEvent per entry of the change record, in stored order."""
        from shared.changes.store import iter_entries

        download = self.store.blob(outbox.changes).download_blob(decompress=False, max_concurrency=1)
        gzipped = (download.properties.content_settings.content_encoding or "").lower() == "gzip"
        for section, entry in iter_entries(download.chunks(), gzipped):
            data = json.loads(entry)
            kind = EVENT_TYPE + section
            yield cloud_event(kind, str(data["id"]), outbox.generated_at, self.source, data, outbox.snapshot)
