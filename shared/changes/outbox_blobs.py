"""The outbox's blobs as the change events' sender keeps them (shared/changes/events.py EventSender):
each record read through the bounded reader, advanced and deleted only over the version this run read or
wrote, and what cannot be sent set aside in outbox/failed/ (layout: shared/storage/layout.py).

    Stop            storage or the queue failed: the drain ends, what is left stays for the next run
    Unusable        a record's messages cannot be produced (its change record is missing or damaged)
    Item            one outbox record being drained, with the ETag this run read or wrote
    OutboxBlobs     the reads and writes of the outbox's blobs; EventSender is one
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.changes.cloudevents import Message, cloud_event, event_id
from shared.changes.outbox import Outbox, ascii_metadata
from shared.errors import SnapshotAppError
from shared.events import log_event
from shared.storage import layout
from shared.storage.problems import storage_problem
from shared.storage.reader import SMALL_DOCUMENT_BYTES, StoredDocumentError

if TYPE_CHECKING:
    from shared.snapshots.store import SnapshotStore

log = logging.getLogger("shared.job")


class Stop(SnapshotAppError):
    """Storage or the queue failed: the drain ends here, what is left stays for the next run."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(step)
        self.step = step
        self.error = type(error).__name__


class Unusable(SnapshotAppError):
    """The record's messages cannot be produced (its change record is missing or damaged)."""


@dataclass
class Item:
    """One outbox record being drained (by the queue's part and, on their threads, the other channels')."""

    outbox: Outbox
    etag: str
    modified: datetime
    problem: str | None = None  # its change record cannot be read: set aside once every part stopped
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.outbox.name


class OutboxBlobs:
    """The outbox's blobs, as the sender reads, advances, deletes and sets them aside."""

    def __init__(self, store: SnapshotStore, context: Mapping[str, Any]) -> None:
        self.store = store
        self.context = context
        self.source = f"/partnercenter/customer-snapshots/{store.container_name}"
        self.set_aside = 0

    def drop(self, outbox: Outbox) -> None:
        """Forgets this run's outbox record: its snapshot was not published."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.store.delete(outbox.name)

    def entries(self, outbox: Outbox) -> Iterator[tuple[str, bytes]]:
        """(section, entry JSON) of the record's change record. Unusable when it is missing or damaged,
        Stop when storage fails."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from shared.changes.store import iter_entries
        from shared.errors import SnapshotFormatError

        try:
            chunks, gzipped, _ = self.store.stream(outbox.changes)
            yield from iter_entries(chunks, gzipped)
        except ResourceNotFoundError:
            raise Unusable(f"its change record {outbox.changes} is missing") from None
        except SnapshotFormatError as exc:
            raise Unusable(f"its change record {outbox.changes} cannot be read ({exc})") from None
        except AzureError as exc:
            raise Stop(f"reading {outbox.changes}: {storage_problem(exc)}", exc) from None

    def read_record(self, name: str, etag: str, modified: datetime) -> Item | None:
        """The record `name` (None: gone since it was listed, or set aside)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        if not layout.OUTBOX_RECORD.fullmatch(name):
            self.set_aside_record(name, etag, f"{name}: a name outside the outbox layout")
            return None
        try:
            doc, etag = self.store.read_json(name)
            return Item(Outbox.from_json(doc, name), etag, modified)
        except ResourceNotFoundError:
            return None  # sent and deleted by another run since the listing
        except StoredDocumentError as exc:
            self.set_aside_record(name, exc.etag or etag, str(exc))
            return None
        except AzureError as exc:
            raise Stop(f"reading {name}: {storage_problem(exc)}", exc) from None

    def markers(self) -> dict[str, datetime]:
        """When each snapshot's `.published` marker was written, by snapshot name."""
        from azure.core.exceptions import AzureError

        try:
            return {
                layout.snapshot_of_marker(props.name): props.last_modified
                for props in self.store.listing(layout.PREFIX)
                if layout.MARKER_NAME.fullmatch(props.name)
            }
        except AzureError as exc:
            raise Stop(f"listing the .published markers: {storage_problem(exc)}", exc) from None

    def keep_message(self, outbox: Outbox, message: Message, reason: str) -> str:
        """Writes the message (the full CloudEvent, or the entry as stored) to outbox/failed/."""
        from azure.core.exceptions import AzureError

        name = layout.failed_message_name(outbox.name, message.index)
        if message.problem is None:
            full = cloud_event(
                message.kind, message.subject, outbox.generated_at, self.source, message.data, outbox.snapshot
            )
            content = full.encode()
        else:
            content = message.raw
        metadata = {"reason": ascii_metadata(reason), "outbox": outbox.name}
        try:
            self.store.put(name, content, metadata=metadata)
        except AzureError as exc:
            raise Stop(f"setting aside {name}: {storage_problem(exc)}", exc) from None
        return name

    # -- outbox blobs -------------------------------------------------------------------------------------
    def message_set_aside(self, outbox: Outbox, message: Message, blob: str, reason: str) -> None:
        """Counts and logs a message keep_message set aside in `blob`."""
        self.set_aside += 1
        log_event(
            log,
            logging.ERROR,
            events.SNAPSHOT_EVENTS_SET_ASIDE,
            outbox=outbox.name,
            setAside=blob,
            eventId=None if message.problem else event_id(outbox.snapshot, message.kind, message.subject),
            type=message.kind,
            reason=reason,
            **self.context,
        )

    def update(self, item: Item, change: Callable[[Outbox], Outbox]) -> bool:
        """Writes the record with `change` made to it (a channel's progress), only over the version this run
        read or wrote (False: another run changed or deleted it since, and goes on with it). The channels'
        threads call it too: one write of a record at a time, each with every part's progress."""
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        with item.lock:
            outbox = change(item.outbox)
            if outbox == item.outbox:
                return True
            try:
                etag = self.store.put(item.name, outbox.stored(), etag=item.etag)
            except ResourceNotFoundError:
                return False
            except ResourceModifiedError:
                return self._ours(item, outbox)
            except AzureError as exc:
                raise Stop(f"saving the progress of {item.name}: {storage_problem(exc)}", exc) from None
            item.outbox, item.etag = outbox, etag
            return True

    def _ours(self, item: Item, outbox: Outbox) -> bool:
        """Whether the record now holds `outbox`: a write whose answer was lost and that the SDK retried
        meets its own change (412); then this run goes on with that version."""
        from azure.core.exceptions import AzureError

        try:
            doc, etag = self.store.read_json(item.name)
            if Outbox.from_json(doc, item.name) != outbox:
                return False
        except (AzureError, StoredDocumentError):
            return False
        item.outbox, item.etag = outbox, etag
        return True

    def delete_record(self, item: Item) -> None:
        """Deletes the record, only the version this run read or wrote."""
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        try:
            self.store.delete(item.name, etag=item.etag)
        except (ResourceModifiedError, ResourceNotFoundError):
            return
        except AzureError as exc:
            raise Stop(f"deleting {item.name}: {storage_problem(exc)}", exc) from None

    def set_aside_record(self, name: str, etag: str, reason: str, content: bytes | None = None) -> None:
        """Moves an outbox blob that cannot be sent to outbox/failed/ (`content`, or its first 256 KiB as
        stored), only the version judged; logs snapshot.events_set_aside."""
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        target = layout.failed_name(name)
        try:
            data = self.store.read_head(name, SMALL_DOCUMENT_BYTES, etag=etag) if content is None else content
            metadata = {"reason": ascii_metadata(reason), "outbox": ascii_metadata(name)}
            self.store.put(target, data, metadata=metadata)
            self.store.delete(name, etag=etag)
        except (ResourceModifiedError, ResourceNotFoundError):
            return  # changed or gone since it was judged: looked at again by the next run
        except AzureError as exc:
            raise Stop(f"setting aside {name}: {storage_problem(exc)}", exc) from None
        self.set_aside += 1
        log_event(
            log,
            logging.ERROR,
            events.SNAPSHOT_EVENTS_SET_ASIDE,
            outbox=name,
            setAside=target,
            reason=reason,
            **self.context,
        )
