"""One snapshot run: settings → credentials → token → every page → committed blob → latest.json.

Any failure before the commit leaves no blob; any failure before publishing leaves latest.json as it
was. The run raises after logging `snapshot.failed`; the timer's entry (run_scheduled) passes on only a
transient failure, so the Functions host records it as failed and its retry policy runs the job again.

    run_scheduled                the timer's entry: raises only transient failures (the host retries them)
    run_snapshot                 settings, then the steps below; logs snapshot.failed on any error
      _Run.credentials           Key Vault's secrets (or the environment's), the token source
      CustomerPager.start        the first page on the wire while storage opens
      _Run.open_store            the snapshot container
      hold_run_lock              one run at a time (shared/storage/lease.py): held, or snapshot.skipped
                                 and done
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
      RunSummary                 the snapshot.summary line and run_snapshot's answer (summary.py)

The steps after the commit (previous_manifest, record_changes, guard, publish, tell_withheld) are in
steps.py.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import SnapshotWithheldError
from shared.events import log_event
from shared.gc_pause import cyclic_gc_paused
from shared.job.deadline import DeadlineWatch
from shared.job.steps import RunSteps
from shared.job.summary import RefreshTokenWriteBack, RunSummary, delivery_fields
from shared.redact import scrub
from shared.settings import Settings
from shared.storage.lease import hold_run_lock

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.changes.record import ChangeTracker
    from shared.partner_center.auth import PartnerCenterTokens
    from shared.partner_center.customers import CustomerPager
    from shared.snapshots.store import SnapshotStore
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
class _Run(RunSteps):
    """The steps of one run, in the order run_snapshot takes them (those after the commit: steps.py)."""

    def execute(self, cleanup: ExitStack) -> dict[str, Any]:
        from shared.storage.layout import snapshot_name

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

    def credentials(self) -> tuple[PartnerCenterTokens, RefreshTokenWriteBack, Callable[[], TokenCredential]]:
        """The token source (from Key Vault's secrets, writing rotated refresh tokens back) and the Azure
        credential the storage clients use."""
        from shared.identity import azure_credential
        from shared.partner_center.auth import PartnerCenterTokens
        from shared.secrets import credential_store
        from shared.settings import environment_secrets

        settings = self.settings
        credential: Callable[[], TokenCredential] = functools.cache(
            lambda: azure_credential(settings.azure_client_id)
        )
        credentials = credential_store(
            settings.key_vault_url,
            credential,
            environment=environment_secrets(),
            max_retry_after=settings.max_retry_after_seconds,
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
        from shared.snapshots.store import SnapshotStore
        from shared.storage.blobs import container_client

        store = SnapshotStore(cleanup.enter_context(container_client(self.settings, credential)))
        store.ensure_container()
        return store

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
