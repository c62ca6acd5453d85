"""One snapshot run: settings → credentials → token → every page → committed blob → latest.json.

Any failure before the commit leaves no blob; any failure before publishing leaves latest.json as it
was. The run raises after logging `snapshot.failed`; the timer's entry (run_scheduled) passes on only a
transient failure, so the Functions host records it as failed and its retry policy runs the job again.

    run_scheduled                the timer's entry: raises only transient failures (the host retries them)
    run_snapshot                 settings, then the steps below; logs snapshot.failed on any error
      _Run.credentials           Key Vault's secrets (or the environment's), the token source
      CustomerPager.start        the first page on the wire while storage opens
      _Run.open_store            the snapshot container
      hold_run_lock              one run at a time (shared/run_lock.py): held, or snapshot.skipped and done
      _Run.previous_manifest     latest.json as it was (unreadable: the newest readable .published
                                 marker's manifest; none readable: the guard fails closed)
      DeadlineWatch              its customer count and the pace of the first pages: deadline_at_risk
      _Run.write_snapshot        every page into a new blob, committed whole or not at all
      store.commit_index         the lookup index beside it (snapshots/index.py), for the API
      _Run.record_changes        the change record against the previous snapshot (shared/changes); when
                                 that cannot be read, a record saying the comparison is unavailable
      _Run.guard                 too many customers gone: latest.json stays, the run fails (after its
                                 snapshot.withheld event and Teams warning card went out: tell_withheld)
      RunLock.confirm            the lock is still this run's, or nothing is published
      _Run.publish               the outbox record of this run's change events and notifications (when
                                 SNAPSHOT_EVENTS_QUEUE, WEBHOOK_URLS or a Teams workflow URL is set), then
                                 store.publish: latest.json moves to the new snapshot (never back in time)
                                 and its .published marker is written
      EventSender.drain          change events to the queue, signed webhook batches and Teams cards
                                 (shared/notify/channels.py), an earlier run's leftovers first, bounded in
                                 time; nothing in the outbox fails the run (shared/changes/events.py)
      RunSummary                 the snapshot.summary line and run_snapshot's answer
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.deadline import DeadlineWatch
from shared.errors import SnapshotWithheldError
from shared.events import log_event
from shared.gc_pause import cyclic_gc_paused
from shared.redact import scrub
from shared.run_lock import hold_run_lock
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.changes.events import Drained, EventSender
    from shared.changes.record import ChangeTracker
    from shared.partner_center.auth import PartnerCenterTokens
    from shared.partner_center.customers import CustomerPager
    from shared.secrets import CredentialStore, NotificationSecrets
    from shared.snapshots.store import ChangeRef, Manifest, SnapshotStore
    from shared.snapshots.writer import CommittedSnapshot, SnapshotWriter

log = logging.getLogger("shared.job")


def run_scheduled(*, past_due: bool = False) -> None:
    """The timer's run. Raises only a failure worth another attempt within the hour (shared.errors.
    is_transient), which the timer's retry policy then runs again as a fresh run; any other failure is
    logged as snapshot.failed with "willRetry": false (the failure alert watches it) and ends here, since
    a retry would fail the same way until an operator acts."""
    from shared.errors import is_transient

    try:
        run_snapshot(past_due=past_due, host_retries=True)
    except Exception as exc:
        if is_transient(exc):
            raise


def run_snapshot(
    *,
    past_due: bool = False,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    host_retries: bool = False,
) -> dict[str, Any]:
    """Runs the job once and returns the summary it logged.

    Raises whatever stopped the run (SnapshotAppError for the conditions the app names: settings,
    secrets, Partner Center, the snapshot store; an SDK's error otherwise), after logging it with
    `transient` and `willRetry` (transient, and the caller hands such failures to the host's retry
    policy: `host_retries`)."""
    started = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    clock = time.monotonic()
    context: dict[str, Any] = {"correlationId": str(uuid.uuid4()), "pastDue": past_due}
    if past_due:
        log_event(log, logging.WARNING, events.SNAPSHOT_PAST_DUE, **context)
    try:
        run = _Run(Settings.from_env(environ), started, clock, context)
        with ExitStack() as cleanup:
            return run.execute(cleanup)
    except Exception as exc:
        from shared.errors import is_transient

        transient = is_transient(exc)
        log_event(
            log,
            logging.ERROR,
            events.SNAPSHOT_FAILED,
            error=type(exc).__name__,
            # scrubbed before it is cut: no prefix of a secret survives
            message=scrub(str(exc)).replace("\n", " ")[:1000],
            elapsedSeconds=_elapsed(clock),
            transient=transient,
            willRetry=transient and host_retries,
            **context,
        )
        raise


def _elapsed(clock: float) -> float:
    return round(time.monotonic() - clock, 3)


@dataclass
class RefreshTokenWriteBack:
    """Hands each refresh token Entra ID rotates to the credential store, at once, and counts.

    A token that cannot be kept is logged loudly (the alert watches that line) but never stops the run:
    today's snapshot is still good, and the old token lasts until it ages out."""

    store: CredentialStore
    context: Mapping[str, Any]
    rotated: int = 0
    saved: int = 0

    def __call__(self, value: str) -> None:
        from shared.secrets import SecretsError

        self.rotated += 1
        try:
            saved = self.store.save_refresh_token(value)
        except SecretsError as exc:
            log_event(log, logging.ERROR, events.REFRESH_TOKEN_NOT_SAVED, reason=str(exc), **self.context)
            return
        if saved:
            self.saved += 1
            return
        reason = "KEY_VAULT_URL is not set; store the refresh token in Key Vault"
        log_event(log, logging.WARNING, events.REFRESH_TOKEN_NOT_SAVED, reason=reason, **self.context)


@dataclass(frozen=True)
class RunSummary:
    """What one successful run did: logged as `snapshot.summary` (field names in camelCase)."""

    snapshot: str
    container: str
    generated_at: str
    customer_count: int
    pages: int
    duplicates_dropped: int
    retries: int
    token_renewals: int
    auth_mode: str
    refresh_token_rotations: int
    refresh_tokens_saved: int
    previous_snapshot: str | None
    added: int | None
    removed: int | None
    changed: int | None
    changes: str  # the change record's blob
    published: bool
    sha256: str
    json_bytes: int
    stored_bytes: int
    elapsed_seconds: float
    delivery: Mapping[str, Any] = field(default_factory=dict)  # events* and notifications: delivery_fields
    context: Mapping[str, Any] = field(default_factory=dict)  # correlationId, pastDue

    def fields(self) -> dict[str, Any]:
        values = asdict(self)
        context: dict[str, Any] = values.pop("context")
        delivery: dict[str, Any] = values.pop("delivery")
        return {_camel(name): value for name, value in values.items()} | delivery | context


_DELIVERY_FIELDS = (
    *("eventsSent", "eventsPending", "eventsPendingMessages", "eventsSetAside"),
    *("webhookBatchesSent", "webhooksPending", "teamsCardsSent", "teamsPending"),
)


def delivery_fields(drained: Drained | None, queue: bool) -> dict[str, Any]:
    """The summary's fields about the outbox: `eventsSent` (queue messages this run sent) and
    `eventsPendingMessages` (queue messages still to send), null without SNAPSHOT_EVENTS_QUEUE;
    `eventsPending` (outbox records left) and `eventsSetAside` (blobs in outbox/failed/), null without any
    channel; the webhooks' and Teams' (shared/notify/channels.py report), null where that channel is off."""
    found: dict[str, Any] = dict.fromkeys(_DELIVERY_FIELDS)
    if drained is None:
        return found
    found |= {"eventsPending": drained.pending, "eventsSetAside": drained.set_aside}
    if queue:
        found |= {"eventsSent": drained.sent, "eventsPendingMessages": drained.pending_messages}
    return found | (drained.channels or {})


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


@dataclass
class _Run:
    """The steps of one run, in the order run_snapshot takes them."""

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

    def execute(self, cleanup: ExitStack) -> dict[str, Any]:
        from shared.snapshots.store import snapshot_name

        tokens, write_back, credential = self.credentials()
        pager = cleanup.enter_context(self.pager(tokens))
        pager.start()  # the first page is on the wire while storage opens: overlapped, not added
        store = self.open_store(cleanup, credential)
        if (lock := hold_run_lock(store, self.context, self.generated_at)) is None:
            return {"skipped": True, **self.context}  # another run holds it: snapshot.skipped names it
        cleanup.callback(lock.release)
        previous = self.previous_manifest(store)  # read under the lock: no other run publishes meanwhile
        self.watch = DeadlineWatch.of(self.settings, previous, self.clock, self.context)
        sender = self.event_sender(cleanup, store)
        writer = store.new_snapshot(snapshot_name(self.started), self.generated_at)
        tracker = cleanup.enter_context(self.change_tracker(store, previous))
        committed = self.write_snapshot(writer, pager, tokens, tracker)
        committed = store.commit_index(committed, writer.index)  # before latest.json names it
        changes = self.record_changes(store, committed, previous, tracker)
        try:
            self.guard(store, committed, previous)
        except SnapshotWithheldError as withheld:
            self.tell_withheld(sender, committed, changes, withheld)
            raise
        lock.confirm()  # the lock is still this run's, renewed: latest.json moves now
        manifest, drained = self.publish(store, committed, changes, sender)
        stats = pager.stats
        summary = RunSummary(
            snapshot=committed.name,
            container=self.settings.container,
            generated_at=self.generated_at,
            customer_count=committed.customer_count,
            pages=stats.pages,
            duplicates_dropped=stats.duplicates_dropped,
            retries=stats.retries,
            token_renewals=stats.token_renewals,
            auth_mode=tokens.mode,
            refresh_token_rotations=write_back.rotated,
            refresh_tokens_saved=write_back.saved,
            previous_snapshot=previous.snapshot if previous else None,
            added=changes.added,  # latest.json's counts: 0 for a baseline, None when the comparison failed
            removed=changes.removed,
            changed=changes.changed,
            changes=changes.name,
            published=manifest is not None,
            sha256=committed.sha256,
            json_bytes=committed.json_bytes,
            stored_bytes=committed.stored_bytes,
            elapsed_seconds=_elapsed(self.clock),
            delivery=delivery_fields(drained, self.settings.events_queue is not None),
            context=self.context,
        ).fields()
        log_event(log, logging.INFO, events.SNAPSHOT_SUMMARY, **summary)
        return summary

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
        from shared.changes.events import EventSender, queue_client
        from shared.identity import azure_credential

        queue = None
        if settings.events_queue is not None:
            credential = functools.cache(lambda: azure_credential(settings.azure_client_id))
            queue = cleanup.enter_context(queue_client(settings, credential))
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

    def credentials(self) -> tuple[PartnerCenterTokens, RefreshTokenWriteBack, Callable[[], TokenCredential]]:
        """The token source (from Key Vault's secrets, writing rotated refresh tokens back) and the Azure
        credential the storage clients use."""
        from shared.identity import azure_credential
        from shared.partner_center.auth import PartnerCenterTokens
        from shared.secrets import credential_store

        settings = self.settings
        credential: Callable[[], TokenCredential] = functools.cache(
            lambda: azure_credential(settings.azure_client_id)
        )
        credentials = credential_store(
            settings.key_vault_url, credential, max_retry_after=settings.max_retry_after_seconds
        )
        secrets = credentials.load()
        # At the start: a webhook signing secret missing (or either secret unusable) fails the run here.
        self.secrets = credentials.notification_secrets(webhooks=bool(settings.webhook_urls))
        write_back = RefreshTokenWriteBack(credentials, self.context)
        tokens = PartnerCenterTokens(
            secrets, settings.authority_host, timeout=settings.timeout_seconds, on_refresh_token=write_back
        )
        return tokens, write_back, credential

    def open_store(self, cleanup: ExitStack, credential: Callable[[], TokenCredential]) -> SnapshotStore:
        """The snapshot store, its container created when it does not exist (local runs)."""
        from shared.snapshots.store import SnapshotStore, container_client

        store = SnapshotStore(cleanup.enter_context(container_client(self.settings, credential)))
        store.ensure_container()
        return store

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

    def pager(self, tokens: PartnerCenterTokens) -> CustomerPager:
        from shared.partner_center.customers import CustomerPager

        settings = self.settings
        return CustomerPager(
            settings.partner_center_api_url,
            tokens,
            page_size=settings.page_size,
            correlation_id=self.correlation_id,
            max_retries=settings.max_retries,
            backoff_seconds=settings.backoff_seconds,
            timeout_seconds=settings.timeout_seconds,
            max_retry_after_seconds=settings.max_retry_after_seconds,
            deadline=self.clock + settings.run_deadline_seconds,
            max_page_bytes=settings.max_page_bytes,
        )

    def write_snapshot(
        self,
        writer: SnapshotWriter,
        pager: CustomerPager,
        tokens: PartnerCenterTokens,
        tracker: ChangeTracker,
    ) -> CommittedSnapshot:
        """Every page into `writer`, then the commit; on any failure the writer is aborted (no blob)."""
        # Every page is thousands of small acyclic dicts: nothing for the cyclic GC to free.
        with cyclic_gc_paused():
            try:
                total = self.page_all(writer, pager, tracker)
                stats = pager.stats
                source = {
                    "apiUrl": self.settings.partner_center_api_url,
                    "pageSize": self.settings.page_size,
                    "pagesFetched": stats.pages,
                    "correlationId": self.correlation_id,
                    "duplicatesDropped": stats.duplicates_dropped,
                    "retries": stats.retries,
                    "tokenRenewals": stats.token_renewals,
                    "authMode": tokens.mode,
                }
                metadata = {
                    "generatedat": self.generated_at,
                    "correlationid": self.correlation_id,
                    "pages": str(stats.pages),
                }
                return writer.commit({"customerCount": total, "source": source}, metadata)
            except BaseException as exc:
                writer.abort()
                if (named := writer.named_failure(exc)) is not exc:
                    raise named from None  # which page was being stored, Blob Storage's code
                raise

    def page_all(self, writer: SnapshotWriter, pager: CustomerPager, tracker: ChangeTracker) -> int:
        """Hands each page to the writer and logs it; returns the number of customers written."""
        total = 0
        for page in pager.pages():
            writer.add(page.texts, page.items)
            tracker.add(page.items, page.texts)
            total += len(page.items)
            log_event(
                log,
                logging.INFO,
                events.SNAPSHOT_PAGE,
                page=page.number,
                items=page.received,
                kept=len(page.items),
                total=total,
                elapsedSeconds=_elapsed(self.clock),
            )
            if self.watch is not None:
                self.watch.page(page.number)  # at the second page: snapshot.deadline_at_risk, if so
            tracker.catch_up(total)  # while the next page is on the wire
        return total

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
        from shared.changes.store import RecordHeader, changes_name, unreadable_reason, write_record
        from shared.snapshots.store import ChangeRef

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
        from azure.core.exceptions import AzureError

        from shared.errors import StorageError
        from shared.snapshots.writer import storage_problem

        try:
            with changes or contextlib.nullcontext():
                write_record(store.blob(name), header, changes)
        except AzureError as exc:  # the record exists already (never overwritten), or storage failed
            raise StorageError(f"writing the change record {name}: {storage_problem(exc)}") from None
        if changes is None:
            return ChangeRef(name, None, None, None, unavailable)
        counts = changes.counts
        return ChangeRef(name, counts.added, counts.removed, counts.changed)

    def guard(self, store: SnapshotStore, committed: CommittedSnapshot, previous: Manifest | None) -> None:
        """Raises SnapshotWithheldError (after logging snapshot.withheld) when this run found fewer customers
        than the previous published snapshot by more than SNAPSHOT_MAX_DROP_PERCENT."""
        from shared.changes.guard import check_drop

        check_drop(store, committed, previous, self.settings.max_drop_percent, self.context)
