"""The steps of a run after its snapshot is committed: what it is compared with, its change record, the
completeness guard, publishing, and the outbox of its change events and notifications (run.py takes them in
order).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import SnapshotWithheldError
from shared.events import log_event
from shared.job.deadline import DeadlineWatch
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.changes.events import Drained, EventSender
    from shared.changes.record import ChangeTracker
    from shared.secrets import NotificationSecrets
    from shared.snapshots.store import ChangeRef, Manifest, SnapshotStore
    from shared.snapshots.writer import CommittedSnapshot

log = logging.getLogger("shared.job")


@dataclass
class RunSteps:
    """One run's state, and its steps from the previous manifest to the drain of the outbox."""

    settings: Settings
    started: datetime
    clock: float
    context: dict[str, Any]
    watch: DeadlineWatch | None = None
    nothing_to_compare: Exception | None = None  # latest.json and the markers unreadable, the guard off
    secrets: NotificationSecrets | None = None  # the Teams workflow URL and the webhook signing secret

    @property
    def generated_at(self) -> str:
        return self.started.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def correlation_id(self) -> str:
        return str(self.context["correlationId"])

    def previous_manifest(self, store: SnapshotStore) -> Manifest | None:
        """latest.json before this run. Absent or not a manifest: the newest readable `.published` marker's
        manifest, so that the guard and the change record still compare with the last published snapshot;
        None before the first publish. Markers but none readable: the guard fails closed
        (NothingToCompareError); with the guard off the run's record says there was nothing to compare."""
        from shared.changes.guard import GUARD_OFF, previous_published
        from shared.errors import NothingToCompareError
        from shared.snapshots.store import ManifestError

        damaged = None
        try:
            previous, _ = store.read_latest()
        except ManifestError as exc:
            previous, damaged = None, str(exc)
        if previous is not None:
            return previous
        try:
            previous = previous_published(store)
        except NothingToCompareError as exc:
            if self.settings.max_drop_percent < GUARD_OFF:
                raise
            self.nothing_to_compare = exc
        if damaged is not None or previous is not None:
            log_event(
                log,
                logging.WARNING,
                events.SNAPSHOT_LATEST_UNREADABLE,
                reason=damaged or "latest.json is missing",
                comparedWith=previous.snapshot if previous else None,
                **self.context,
            )
        return previous

    def change_tracker(self, store: SnapshotStore, previous: Manifest | None) -> ChangeTracker:
        """Compares this run's customers with the previous snapshot's, read in step with paging."""
        from shared.changes.record import ChangeTracker
        from shared.snapshots.document import customer_lines

        lines = (
            None
            if previous is None
            else customer_lines(store.iter_document(previous.snapshot, previous.json_bytes))
        )
        tracker = ChangeTracker(lines)
        tracker.error = self.nothing_to_compare  # no previous, yet not a baseline: the comparison unavailable
        return tracker

    def record_changes(
        self,
        store: SnapshotStore,
        committed: CommittedSnapshot,
        previous: Manifest | None,
        tracker: ChangeTracker,
    ) -> ChangeRef:
        """Writes the change record beside the committed snapshot. Without a previous snapshot the record
        is a baseline (empty lists). When the previous snapshot could not be read, the record says the
        comparison is unavailable (empty lists, no counts): the chain of records goes on through it, and
        the API says that step's changes are unknown rather than cut the history there."""
        from shared.changes.store import RecordHeader, unreadable_reason, write_record
        from shared.snapshots.store import ChangeRef
        from shared.storage.layout import changes_name

        changes = tracker.finish()
        unavailable = None
        if changes is None:
            reason = type(tracker.error).__name__
            log_event(log, logging.WARNING, events.SNAPSHOT_DIFF_UNAVAILABLE, reason=reason, **self.context)
            unavailable = unreadable_reason(tracker.error)
        name = changes_name(committed.name)
        header = RecordHeader(
            snapshot=committed.name,
            previous_snapshot=previous.snapshot if previous else None,
            generated_at=committed.generated_at,
            previous_generated_at=previous.generated_at if previous else None,
            unavailable=unavailable,
        )
        with changes or contextlib.nullcontext():
            # StorageError when the record exists already (never overwritten), or storage failed
            write_record(store, name, header, changes)
        if changes is None:
            return ChangeRef(name, None, None, None, unavailable)
        counts = changes.counts
        return ChangeRef(name, counts.added, counts.removed, counts.changed)

    def guard(self, store: SnapshotStore, committed: CommittedSnapshot, previous: Manifest | None) -> None:
        """Raises SnapshotWithheldError (after logging snapshot.withheld) when this run found fewer customers
        than the previous published snapshot by more than SNAPSHOT_MAX_DROP_PERCENT."""
        from shared.changes.guard import check_drop

        check_drop(store, committed, previous, self.settings.max_drop_percent, self.context)

    def event_sender(self, cleanup: ExitStack, store: SnapshotStore) -> EventSender | None:
        """The outbox's sender when a channel is on: the queue (SNAPSHOT_EVENTS_QUEUE), webhooks
        (WEBHOOK_URLS), Teams (its workflow URL); each on by its own setting alone."""
        settings, secrets = self.settings, self.secrets
        channels = None
        if settings.webhook_urls or (secrets and secrets.teams_workflow_url):
            from shared.notify.channels import Channels

            channels = Channels.of(settings, secrets, self.context)
        if settings.events_queue is None and channels is None:
            return None
        from shared.changes.events import SEND_WORKERS, EventSender
        from shared.identity import azure_credential
        from shared.storage.queue import queue_client

        queue = None
        if settings.events_queue is not None:
            credential = functools.cache(lambda: azure_credential(settings.azure_client_id))
            queue = cleanup.enter_context(queue_client(settings, credential, workers=SEND_WORKERS))
        return EventSender(store, queue, self.context, channels=channels)

    def publish(
        self,
        store: SnapshotStore,
        committed: CommittedSnapshot,
        changes: ChangeRef,
        sender: EventSender | None,
    ) -> tuple[Manifest | None, Drained | None]:
        """latest.json moves; then the change events and notifications go out (the outbox record written
        before, so that those of a published snapshot are never lost), for at most
        SNAPSHOT_EVENTS_SEND_SECONDS and never past the run's deadline. (manifest or None, what the drain of
        the outbox did)."""
        from shared.changes.events import Outbox

        outbox = None
        if sender is not None:
            outbox = Outbox.of(committed.name, committed.generated_at, committed.customer_count, changes)
            sender.stage(outbox)
        manifest = store.publish(committed, changes)
        store.mark_published(manifest)  # only marked snapshots are listed and served by the API
        if sender is None:
            return manifest, None
        if manifest is None and outbox is not None:
            sender.drop(outbox)  # not published: no events
        return manifest, sender.drain(manifest.snapshot if manifest else None, self.send_seconds())

    def send_seconds(self) -> float:
        """How long the outbox may take: SNAPSHOT_EVENTS_SEND_SECONDS, never past the run's deadline."""
        left = self.clock + self.settings.run_deadline_seconds - time.monotonic()
        return min(self.settings.events_send_seconds, left)

    def tell_withheld(
        self,
        sender: EventSender | None,
        committed: CommittedSnapshot,
        changes: ChangeRef,
        error: SnapshotWithheldError,
    ) -> None:
        """A withheld snapshot's snapshot.withheld event and Teams warning card, through the outbox: staged,
        then sent at once (with what earlier runs left), within the same time as after a publish; what is
        not delivered stays for the next run. Nothing here changes how the run ends."""
        from shared.changes.events import Outbox

        if sender is None or error.withheld is None:
            return
        outbox = Outbox.of(
            committed.name, committed.generated_at, committed.customer_count, changes, error.withheld
        )
        try:
            sender.stage(outbox)
        except Exception as exc:  # storage: the run fails anyway, for the drop; this is said beside it
            error_name, step = type(exc).__name__, f"staging {outbox.name}"
            log_event(
                log,
                logging.ERROR,
                events.SNAPSHOT_EVENTS_PENDING,
                step=step,
                error=error_name,
                **self.context,
            )
            return
        sender.drain(None, self.send_seconds())
