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
sent twice has the same CloudEvents `id`, so a consumer can tell. (The outbox's blobs: outbox_blobs.py.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
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
from shared.changes.outbox import Outbox
from shared.changes.outbox_blobs import Item, OutboxBlobs, Stop, Unusable
from shared.events import log_event
from shared.storage import layout
from shared.storage.problems import queue_problem, storage_problem
from shared.storage.queue import refused_as_too_large, send

if TYPE_CHECKING:
    from shared.snapshots.store import SnapshotStore
    from shared.storage.queue import QueueClient


class Channels(Protocol):
    """The other channels' parts of each outbox record (webhooks and Teams: shared/notify/channels.py),
    driven by the drain beside the queue's; notify sits above this layer, so the drain names only this."""

    def owed(self) -> tuple[list[str], bool]: ...
    def done(self, outbox: Outbox) -> bool: ...
    def run(self, sender: EventSender, items: Sequence[Item], deadline: float) -> None: ...
    def report(self, left: Sequence[Item]) -> dict[str, Any]: ...


__all__ = ["Channels", "EventSender", "Item", "Outbox", "Stop", "Unusable", "cloud_event", "event_id"]

log = logging.getLogger("shared.job")

SEND_WORKERS = 16  # messages in flight (bench/events.py: Azurite's queue tops out near 8; Azure goes further)
WINDOW = 8 * SEND_WORKERS  # messages handed to the workers at once; the budget is checked between windows
SAVE_EVERY = 1000  # messages between two writes of a record's cursor (what a crash may send again)


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


@dataclass
class _State:
    listed: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    sendable: list[Item] = field(default_factory=list)
    finished: set[str] = field(default_factory=set)  # sent, set aside, dropped or gone
    failed: int = 0  # in outbox/failed/ when listed


class EventSender(OutboxBlobs):
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
        super().__init__(store, context)
        self.queue = queue  # None: SNAPSHOT_EVENTS_QUEUE is not set, only other channels are on
        self.channels = channels
        self.workers = workers
        self.sent = 0
        self._probed = False

    def stage(self, outbox: Outbox) -> None:
        """The outbox record, owing every channel that is on, written before latest.json moves (so that a
        crash after it is caught up)."""
        keys, teams = self.channels.owed() if self.channels else ((), False)
        outbox = outbox.owing(queue=self.queue is not None, webhooks=keys, teams=teams)
        self.store.put(outbox.name, outbox.stored())

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
            listing = list(self.store.listing(layout.OUTBOX))
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
            item = self.read_record(props.name, str(props.etag), props.last_modified)
            if item is None:
                state.finished.add(props.name)
            else:
                state.items.append(item)
        return False

    def _sendable(self, state: _State, published: str | None) -> list[Item]:
        """The records of published snapshots: this run's, and those with a `.published` marker; and those of
        withheld snapshots. A record of a snapshot without a marker, staged before the newest marker was
        written, was committed and never published (latest.json never moves back in time): dropped. Any
        other is left for its run."""
        if all(item.outbox.snapshot == published or item.outbox.withheld for item in state.items):
            state.sendable = state.items
            return state.items
        markers = self.markers()
        newest = max(markers.values(), default=None)
        sendable = state.sendable
        for item in state.items:
            if item.outbox.withheld or item.outbox.snapshot in (published, *markers):
                sendable.append(item)
            elif newest is not None and item.modified < newest:
                self.delete_record(item)
                state.finished.add(item.name)
        return sendable

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
                self.set_aside_record(item.name, item.etag, item.problem, item.outbox.stored())
                state.finished.add(item.name)
            elif self._done(item.outbox):
                self.delete_record(item)
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
                self.message_set_aside(outbox, delivery.message, delivery.set_aside, delivery.reason)
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

    # -- in the workers -------------------------------------------------------------------------------
    def _deliver(self, outbox: Outbox, message: Message) -> Delivery:
        """Sends the message in the first form that fits and the queue takes; sets it aside when none does.
        Raises Stop when the queue (or storage, setting it aside) fails."""
        from azure.core.exceptions import AzureError

        reason = message.problem or "too large for a queue message, even by reference"
        assert self.queue is not None
        for text in self.texts(outbox, message) if message.problem is None else ():
            try:
                send(self.queue, text)
            except AzureError as exc:
                if not refused_as_too_large(exc):
                    raise Stop(f"sending the events of {outbox.name}: {queue_problem(exc)}", exc) from None
                reason = f"the queue refused it ({queue_problem(exc)})"
                continue
            return Delivery(message)
        return Delivery(message, self.keep_message(outbox, message, reason), reason)

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
        ref = f"{self.store.url(outbox.changes)}#{section}/{quote(message.subject, safe='')}"
        for data in reduced(section, message.data):
            text = event(data, {"dataref": ref, "datatruncated": True})
            if fit(text):
                yield text

    def _save(self, item: Item, cursor: int) -> bool:
        return self.update(item, lambda outbox: outbox.advanced(cursor))

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
