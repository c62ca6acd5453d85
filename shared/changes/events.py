"""Change events for automation: one CloudEvents 1.0 message per change, on an Azure Storage queue.

When SNAPSHOT_EVENTS_QUEUE is set, each published run sends, after latest.json has moved:

    partnercenter.customer.added | .removed | .changed   subject: the customer id; data: the record's entry
    partnercenter.snapshot.published                     subject: the snapshot; data: its counts
                                                         (null, and `comparison` says why, when the run
                                                         could not read the previous snapshot: no
                                                         customer events then)

(The events themselves, their ids and their smaller forms: shared/changes/cloudevents.py.) Messages are
base64-encoded text (what an Azure Functions queue trigger reads with default settings), at most
64 KiB as sent. An event too large for that goes out in a form that fits: its `data` keeps the customer id
and what fits (a changed customer keeps which fields changed), `dataref` points at its entry in the change
record (`<record blob URL>#<section>/<id>`) and the extension attribute `datatruncated` is true. One that fits
in no form, or that the queue refuses as too large in every form, is set aside in
`outbox/failed/<record>/<n>.json` with an ERROR `snapshot.events_set_aside` naming it; the others go on.

At least once: before publishing, the run writes an outbox record (shared/changes/outbox.py) naming the change
record; it is deleted once every message is out and every other channel it owes (webhooks, the Teams card:
shared/notify/channels.py, run beside the queue's part within the same time) is done with it. A snapshot the
completeness guard withheld gets a record too (`partnercenter.snapshot.withheld`, one message), sent at once
and, what is not delivered, by the next run. After publishing, the run sends what the outbox holds, oldest
record first, its own last: a record whose snapshot has a `.published` marker (or is this run's) is sent; one
whose snapshot has none although a newer marker exists was committed and never published, and is dropped
unsent; one newer than every marker is left for the run that may still publish it. Sending is concurrent
(SEND_WORKERS messages in flight, a record's added, removed and changed events section by section, then its
snapshot.published once they are all out), bounded in time (SNAPSHOT_EVENTS_SEND_SECONDS, never past the run's
deadline), and resumable: the record's cursor says how many of its messages are out, so the next run goes on
from there. An outbox record that cannot be read is set aside; nothing in the outbox fails the run. A message
sent twice has the same CloudEvents `id`, so a consumer can tell.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared import events
from shared.changes.cloudevents import (
    EVENT_TYPE,
    PUBLISHED_TYPE,
    WITHHELD_TYPE,
    Message,
    cloud_event,
    event_id,
    fits,
    message_of,
    reduced,
)
from shared.changes.outbox import Outbox, ascii_metadata
from shared.events import log_event
from shared.snapshots.writer import storage_problem
from shared.storage import layout

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobClient
    from azure.storage.queue import QueueClient

    from shared.notify.channels import Channels
    from shared.settings import Settings
    from shared.snapshots.store import SnapshotStore

__all__ = ["EventSender", "Outbox", "cloud_event", "event_id", "queue_client"]

log = logging.getLogger("shared.job")

SEND_WORKERS = 16  # messages in flight (bench/events.py: Azurite's queue tops out near 8; Azure goes further)
WINDOW = 8 * SEND_WORKERS  # messages handed to the workers at once; the budget is checked between windows
SAVE_EVERY = 1000  # messages between two writes of a record's cursor (what a crash may send again)
# The queue refuses this message for its size (413, or 400 MessageTooLarge): any other refusal is the queue's
# (missing, forbidden, an API version it does not speak) and would refuse every message alike.
_TOO_LARGE = frozenset({"RequestBodyTooLarge", "MessageTooLarge"})


def queue_client(
    settings: Settings, credential_factory: Callable[[], TokenCredential], *, workers: int = SEND_WORKERS
) -> QueueClient:
    """The events queue in the snapshot storage account, messages base64-encoded, with a connection for
    each of `workers` senders (requests keeps 10: more would be opened and dropped per message)."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy
    from urllib3.util.retry import Retry

    assert settings.events_queue is not None
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1,
        pool_maxsize=workers,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),  # the SDK retries
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    options: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "retry_total": settings.storage_retries,
        "initial_backoff": 1,
        "increment_base": 2,
        "transport": RequestsTransport(session=session, connection_timeout=20, read_timeout=60),
    }
    target = settings.storage
    if target.connection_string:
        return QueueClient.from_connection_string(target.connection_string, settings.events_queue, **options)
    url = settings.queue_account_url or (target.account_url or "").replace(".blob.", ".queue.", 1)
    return QueueClient(url, settings.events_queue, credential=credential_factory(), **options)


@dataclass(frozen=True)
class Delivery:
    message: Message
    set_aside: str | None = None  # the blob it was set aside in; None: sent
    reason: str = ""


@dataclass
class Drained:
    """What a drain of the outbox did and left (None: not known, the outbox could not be listed)."""

    sent: int = 0
    pending: int | None = 0  # outbox records left for the next run
    pending_messages: int | None = 0  # their messages not sent yet (of the records that could be read)
    set_aside: int | None = 0  # blobs in outbox/failed/, waiting for an operator
    channels: dict[str, Any] | None = None  # webhooks and Teams (shared/notify/channels.py report)


class Stop(Exception):
    """Storage or the queue failed: the drain ends here, what is left stays for the next run."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(step)
        self.step = step
        self.error = type(error).__name__


class Unusable(Exception):
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


@dataclass
class _State:
    listed: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    sendable: list[Item] = field(default_factory=list)
    finished: set[str] = field(default_factory=set)  # sent, set aside, dropped or gone
    failed: int = 0  # in outbox/failed/ when listed


class EventSender:
    """Writes outbox records and sends what they name to the queue."""

    def __init__(
        self,
        store: SnapshotStore,
        queue: QueueClient | None,
        context: Mapping[str, Any],
        *,
        workers: int = SEND_WORKERS,
        channels: Channels | None = None,
    ) -> None:
        self.store = store
        self.queue = queue  # None: SNAPSHOT_EVENTS_QUEUE is not set, only other channels are on
        self.channels = channels
        self.context = context
        self.workers = workers
        self.source = f"/partnercenter/customer-snapshots/{store.container.container_name}"
        self.sent = 0
        self.set_aside = 0
        self._probed = False

    def stage(self, outbox: Outbox) -> None:
        """The outbox record, owing every channel that is on, written before latest.json moves (so that a
        crash after it is caught up)."""
        keys, teams = self.channels.owed() if self.channels else ((), False)
        outbox = outbox.owing(queue=self.queue is not None, webhooks=keys, teams=teams)
        self.store.blob(outbox.name).upload_blob(outbox.stored(), overwrite=True)

    def drop(self, outbox: Outbox) -> None:
        """Forgets this run's outbox record: its snapshot was not published."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.store.blob(outbox.name).delete_blob()

    # -- the drain ----------------------------------------------------------------------------------------
    def drain(self, published: str | None, seconds: float) -> Drained:
        """Sends what the outbox holds, oldest record first, for at most `seconds`; `published`: this run's
        snapshot, just published (None: it was not). Never raises for what the outbox or the queue hold:
        what cannot be sent now stays for the next run (snapshot.events_pending: ERROR when storage or the
        queue failed, WARNING when time ran out), what can never be sent is set aside
        (snapshot.events_set_aside)."""
        deadline = time.monotonic() + max(0.0, seconds)
        state = _State()
        stop: Stop | None = None
        out_of_time = False
        try:
            out_of_time = self._read_all(state, deadline) or self._deliver_all(
                state, self._sendable(state, published), deadline
            )
        except Stop as exc:
            stop = exc
        except Exception as exc:  # a bug, after the snapshot is published: named and left for the next run
            stop = Stop("sending change events", exc)
        return self._report(state, stop, out_of_time)

    def _read_all(self, state: _State, deadline: float) -> bool:
        """Lists the outbox and reads its records, oldest first; True when time ran out first."""
        from azure.core.exceptions import AzureError

        try:
            listing = list(self.store.container.list_blobs(name_starts_with=layout.OUTBOX))
        except AzureError as exc:
            raise Stop(f"listing {layout.OUTBOX}: {storage_problem(exc)}", exc) from None
        state.failed = sum(1 for props in listing if layout.is_set_aside(props.name))
        listed = sorted(
            (p for p in listing if not layout.is_set_aside(p.name)), key=lambda p: layout.outbox_order(p.name)
        )
        state.listed = [props.name for props in listed]
        for props in listed:
            if time.monotonic() >= deadline:
                return True
            item = self._read(props.name, str(props.etag), props.last_modified)
            if item is None:
                state.finished.add(props.name)
            else:
                state.items.append(item)
        return False

    def _read(self, name: str, etag: str, modified: datetime) -> Item | None:
        """The record `name` (None: gone since it was listed, or set aside)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from shared.storage.reader import StoredDocumentError, read_json

        if not layout.OUTBOX_RECORD.fullmatch(name):
            self._set_aside_record(name, etag, f"{name}: a name outside the outbox layout")
            return None
        try:
            doc, etag = read_json(self.store.blob(name))
            return Item(Outbox.from_json(doc, name), etag, modified)
        except ResourceNotFoundError:
            return None  # sent and deleted by another run since the listing
        except StoredDocumentError as exc:
            self._set_aside_record(name, exc.etag or etag, str(exc))
            return None
        except AzureError as exc:
            raise Stop(f"reading {name}: {storage_problem(exc)}", exc) from None

    def _sendable(self, state: _State, published: str | None) -> list[Item]:
        """The records of published snapshots: this run's, and those with a `.published` marker; and those of
        withheld snapshots. A record of a snapshot without a marker, staged before the newest marker was
        written, was committed and never published (latest.json never moves back in time): dropped. Any
        other is left for its run."""
        if all(item.outbox.snapshot == published or item.outbox.withheld for item in state.items):
            state.sendable = state.items
            return state.items
        markers = self._markers()
        newest = max(markers.values(), default=None)
        sendable = state.sendable
        for item in state.items:
            if item.outbox.withheld or item.outbox.snapshot in (published, *markers):
                sendable.append(item)
            elif newest is not None and item.modified < newest:
                self._delete(item)
                state.finished.add(item.name)
        return sendable

    def _markers(self) -> dict[str, datetime]:
        """When each snapshot's `.published` marker was written, by snapshot name."""
        from azure.core.exceptions import AzureError

        try:
            return {
                layout.snapshot_of_marker(props.name): props.last_modified
                for props in self.store.container.list_blobs(name_starts_with=layout.PREFIX)
                if layout.MARKER_NAME.fullmatch(props.name)
            }
        except AzureError as exc:
            raise Stop(f"listing the .published markers: {storage_problem(exc)}", exc) from None

    def _deliver_all(self, state: _State, items: list[Item], deadline: float) -> bool:
        """The queue's part of each record, the other channels' (shared/notify/channels.py) beside it on
        their own threads; then each record every part is done with is deleted, and one whose change record
        cannot be read set aside. True when time ran out first (for the queue)."""
        if not items:
            return False
        others = None
        if self.channels is not None:
            others = threading.Thread(
                target=self.channels.run, args=(self, items, deadline), name="notifications", daemon=True
            )
            others.start()
        try:
            out_of_time = self._send_all(items, deadline) if self.queue is not None else False
        finally:
            if others is not None:
                others.join()  # every part is bounded by the same deadline
        for item in items:
            if item.problem is not None:
                self._set_aside_record(item.name, item.etag, item.problem, item.outbox.stored())
                state.finished.add(item.name)
            elif self._done(item.outbox):
                self._delete(item)
                state.finished.add(item.name)
        return out_of_time

    def _done(self, outbox: Outbox) -> bool:
        """Whether every part of the record is done: one for a channel turned off since is given up."""
        queue_done = not outbox.queue or self.queue is None or outbox.sent >= outbox.messages
        return queue_done and (self.channels is None or self.channels.done(outbox))

    def _send_all(self, items: list[Item], deadline: float) -> bool:
        """Sends each record's messages to the queue in turn; True when time ran out first."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="change-events") as pool:
            for item in items:
                outcome = self._send_record(pool, item, deadline) if item.outbox.queue else "sent"
                if outcome != "sent":
                    return outcome == "out of time"
        return False

    def _send_record(self, pool: ThreadPoolExecutor, item: Item, deadline: float) -> str:
        """The outcome: "sent" (all out, or the record unusable: item.problem says why), "out of time" or
        "taken" (another run advanced it meanwhile), the cursor saved in every case. Raises Stop when
        storage or the queue failed."""
        cursor = item.outbox.sent
        try:
            for window in self._windows(item.outbox):
                if time.monotonic() >= deadline:
                    return "out of time" if self._save(item, cursor) else "taken"
                handled, stop = self._send_window(pool, item.outbox, window)
                cursor += handled
                if stop is not None:
                    with contextlib.suppress(Stop):
                        self._save(item, cursor)
                    raise stop
                if cursor - item.outbox.sent >= SAVE_EVERY and not self._save(item, cursor):
                    return "taken"
        except Unusable as aside:
            item.problem = str(aside)
            return "sent" if self._save(item, cursor) else "taken"
        return "sent" if self._save(item, cursor) else "taken"

    def _send_window(
        self, pool: ThreadPoolExecutor, outbox: Outbox, window: list[Message]
    ) -> tuple[int, Stop | None]:
        """(how many of the window's first messages are out, the failure that stopped the rest)."""
        futures = [pool.submit(self._deliver, outbox, message) for message in window]
        handled, stop = 0, None
        for future in futures:
            try:
                delivery = future.result()
            except Stop as exc:
                stop = stop or exc
                continue
            if delivery.set_aside is None:
                self.sent += 1
            else:
                self._message_set_aside(outbox, delivery)
            if stop is None:
                handled += 1
        return handled, stop

    def _windows(self, outbox: Outbox) -> Iterator[list[Message]]:
        """The record's messages not sent yet, a section at a time, at most WINDOW together. The first
        message of a drain goes alone: it gets the token and finds out whether the queue is there."""
        window: list[Message] = []
        for message in self.messages(outbox, outbox.sent):
            limit = WINDOW if self._probed else 1
            if window and (len(window) >= limit or window[-1].kind != message.kind):
                yield window
                window = []
                self._probed = True
            window.append(message)
        if window:
            yield window

    def messages(self, outbox: Outbox, start: int) -> Iterator[Message]:
        """Every message of the record from `start` on: one per entry of its change record, in stored
        order, then snapshot.published; a withheld snapshot's record, snapshot.withheld alone."""
        if outbox.withheld is not None:
            if start == 0:
                yield Message(0, WITHHELD_TYPE, outbox.snapshot, outbox.to_json())
            return
        index = 0
        if outbox.unavailable is None:
            for section, entry in self.entries(outbox):
                if index >= start:
                    yield message_of(index, EVENT_TYPE + section, entry)
                index += 1
        if index >= start:
            yield Message(index, PUBLISHED_TYPE, outbox.snapshot, outbox.to_json())

    def entries(self, outbox: Outbox) -> Iterator[tuple[str, bytes]]:
        """(section, entry JSON) of the record's change record. Unusable when it is missing or damaged,
        Stop when storage fails."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from shared.changes.store import iter_entries
        from shared.errors import SnapshotFormatError
        from shared.storage.reader import stream

        try:
            chunks, gzipped, _ = stream(self.store.blob(outbox.changes))
            yield from iter_entries(chunks, gzipped)
        except ResourceNotFoundError:
            raise Unusable(f"its change record {outbox.changes} is missing") from None
        except SnapshotFormatError as exc:
            raise Unusable(f"its change record {outbox.changes} cannot be read ({exc})") from None
        except AzureError as exc:
            raise Stop(f"reading {outbox.changes}: {storage_problem(exc)}", exc) from None

    # -- in the workers -------------------------------------------------------------------------------
    def _deliver(self, outbox: Outbox, message: Message) -> Delivery:
        """Sends the message in the first form that fits and the queue takes; sets it aside when none does.
        Raises Stop when the queue (or storage, setting it aside) fails."""
        from azure.core.exceptions import AzureError, HttpResponseError

        reason = message.problem or "too large for a queue message, even by reference"
        assert self.queue is not None
        for text in self.texts(outbox, message) if message.problem is None else ():
            try:
                self.queue.send_message(text)
            except HttpResponseError as exc:
                if exc.status_code != 413 and _error_code(exc) not in _TOO_LARGE:
                    raise Stop(f"sending the events of {outbox.name}: {queue_problem(exc)}", exc) from None
                reason = f"the queue refused it ({queue_problem(exc)})"
                continue
            except AzureError as exc:
                raise Stop(f"sending the events of {outbox.name}: {queue_problem(exc)}", exc) from None
            return Delivery(message)
        return Delivery(message, self._keep_message(outbox, message, reason), reason)

    def texts(self, outbox: Outbox, message: Message, fit: Callable[[str], bool] = fits) -> Iterator[str]:
        """The message's CloudEvent, then (too large) the same by reference, smaller and smaller, as `fit`
        (a queue message's size by default; a webhook batch's for the webhooks)."""

        def event(data: Any, extensions: Mapping[str, Any] | None = None) -> str:
            return cloud_event(
                message.kind,
                message.subject,
                outbox.generated_at,
                self.source,
                data,
                outbox.snapshot,
                extensions,
            )

        full = event(message.data)
        if fit(full):
            yield full
        if message.kind in (PUBLISHED_TYPE, WITHHELD_TYPE):
            return
        section = message.kind.removeprefix(EVENT_TYPE)
        ref = f"{self.store.blob(outbox.changes).url}#{section}/{quote(message.subject, safe='')}"
        for data in reduced(section, message.data):
            text = event(data, {"dataref": ref, "datatruncated": True})
            if fit(text):
                yield text

    def _keep_message(self, outbox: Outbox, message: Message, reason: str) -> str:
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
            self.store.blob(name).upload_blob(content, overwrite=True, metadata=metadata)
        except AzureError as exc:
            raise Stop(f"setting aside {name}: {storage_problem(exc)}", exc) from None
        return name

    # -- outbox blobs -------------------------------------------------------------------------------------
    def _save(self, item: Item, cursor: int) -> bool:
        return self.update(item, lambda outbox: outbox.advanced(cursor))

    def update(self, item: Item, change: Callable[[Outbox], Outbox]) -> bool:
        """Writes the record with `change` made to it (a channel's progress), only over the version this run
        read or wrote (False: another run changed or deleted it since, and goes on with it). The channels'
        threads call it too: one write of a record at a time, each with every part's progress."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        with item.lock:
            outbox = change(item.outbox)
            if outbox == item.outbox:
                return True
            try:
                answer = self.store.blob(item.name).upload_blob(
                    outbox.stored(),
                    overwrite=True,
                    etag=item.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceNotFoundError:
                return False
            except ResourceModifiedError:
                return self._ours(item, outbox)
            except AzureError as exc:
                raise Stop(f"saving the progress of {item.name}: {storage_problem(exc)}", exc) from None
            item.outbox, item.etag = outbox, str(answer["etag"])
            return True

    def _ours(self, item: Item, outbox: Outbox) -> bool:
        """Whether the record now holds `outbox`: a write whose answer was lost and that the SDK retried
        meets its own change (412); then this run goes on with that version."""
        from azure.core.exceptions import AzureError

        from shared.storage.reader import StoredDocumentError, read_json

        try:
            doc, etag = read_json(self.store.blob(item.name))
            if Outbox.from_json(doc, item.name) != outbox:
                return False
        except (AzureError, StoredDocumentError):
            return False
        item.outbox, item.etag = outbox, etag
        return True

    def _delete(self, item: Item) -> None:
        """Deletes the record, only the version this run read or wrote."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        try:
            self.store.blob(item.name).delete_blob(
                etag=item.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return
        except AzureError as exc:
            raise Stop(f"deleting {item.name}: {storage_problem(exc)}", exc) from None

    def _set_aside_record(self, name: str, etag: str, reason: str, content: bytes | None = None) -> None:
        """Moves an outbox blob that cannot be sent to outbox/failed/ (`content`, or its first 256 KiB as
        stored), only the version judged; logs snapshot.events_set_aside."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        target = layout.failed_name(name)
        blob = self.store.blob(name)
        try:
            data = _head(blob, etag) if content is None else content
            metadata = {"reason": ascii_metadata(reason), "outbox": ascii_metadata(name)}
            self.store.blob(target).upload_blob(data, overwrite=True, metadata=metadata)
            blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
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

    def _message_set_aside(self, outbox: Outbox, delivery: Delivery) -> None:
        message = delivery.message
        self.set_aside += 1
        log_event(
            log,
            logging.ERROR,
            events.SNAPSHOT_EVENTS_SET_ASIDE,
            outbox=outbox.name,
            setAside=delivery.set_aside,
            eventId=None if message.problem else event_id(outbox.snapshot, message.kind, message.subject),
            type=message.kind,
            reason=delivery.reason,
            **self.context,
        )

    def _report(self, state: _State, stop: Stop | None, out_of_time: bool) -> Drained:
        drained = Drained(self.sent, None, None, None)  # the outbox could not even be listed: unknown
        counts: dict[str, Any] = {}
        if stop is None or state.listed:
            left = [item for item in state.items if item.name not in state.finished]
            drained = Drained(
                sent=self.sent,
                pending=len([name for name in state.listed if name not in state.finished]),
                pending_messages=sum(item.outbox.unsent for item in left),
                set_aside=state.failed + self.set_aside,
                channels=self.channels.report([i for i in state.sendable if i.name not in state.finished])
                if self.channels
                else None,
            )
            counts = {"pending": drained.pending, "pendingMessages": drained.pending_messages}
        if stop is not None:
            log_event(
                log,
                logging.ERROR,
                events.SNAPSHOT_EVENTS_PENDING,
                step=stop.step,
                error=stop.error,
                **counts,
                **self.context,
            )
        elif out_of_time:
            reason = "the time for sending ran out (SNAPSHOT_EVENTS_SEND_SECONDS, or the run's deadline)"
            log_event(
                log, logging.WARNING, events.SNAPSHOT_EVENTS_PENDING, reason=reason, **counts, **self.context
            )
        return drained


def _head(blob: BlobClient, etag: str) -> bytes:
    """The first bytes of that version of a blob, as stored (at most a small document's bound)."""
    from azure.core import MatchConditions

    from shared.storage.reader import SMALL_DOCUMENT_BYTES, read_head

    conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    return read_head(blob, SMALL_DOCUMENT_BYTES, **conditions)[0]


def _error_code(exc: BaseException) -> str | None:
    """The service's error code of an SDK error (the storage SDKs' StorageErrorCode, or the header's text)."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def queue_problem(exc: BaseException) -> str:
    """One line about a failed queue request: its status and error code, never the SDK's dump."""
    status = getattr(exc, "status_code", None)
    code = _error_code(exc)
    if status:
        return f"the queue answered HTTP {status}" + (f" {str(code)[:100]}" if code else "")
    return f"no answer from the queue ({type(exc).__name__})"
