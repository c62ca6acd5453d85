"""One snapshot run: settings → credentials → token → every page → committed blob → latest.json.

Any failure before the commit leaves no blob; any failure before publishing leaves latest.json as it
was. The run raises after logging `snapshot.failed`, so the Functions host records a failed run.

    run_snapshot                 settings, then the steps below; logs snapshot.failed on any error
      _Run.open                  credentials (Key Vault or environment), tokens, the container
      _Run.previous_manifest     latest.json as it was (unreadable: no diff, the run goes on)
      _Run.write_snapshot        every page into a new blob, committed whole or not at all
      _Run.diff_counts           customers added and removed since the previous snapshot
      store.publish              latest.json moves to the new snapshot (never back in time)
      RunSummary                 the snapshot.summary line and run_snapshot's answer
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.events import log_event
from shared.gc_pause import cyclic_gc_paused
from shared.redact import scrub
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.partner_center.auth import PartnerCenterTokens
    from shared.partner_center.customers import CustomerPager
    from shared.secrets import CredentialStore
    from shared.snapshots.store import Manifest, SnapshotStore
    from shared.snapshots.writer import CommittedSnapshot, SnapshotWriter

log = logging.getLogger("shared.job")


def run_snapshot(
    *, past_due: bool = False, now: datetime | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Runs the job once and returns the summary it logged.

    Raises whatever stopped the run (SnapshotAppError for the conditions the app names: settings,
    secrets, Partner Center, the snapshot store; an SDK's error otherwise), after logging it."""
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
        log_event(
            log,
            logging.ERROR,
            events.SNAPSHOT_FAILED,
            error=type(exc).__name__,
            # scrubbed before it is cut: no prefix of a secret survives
            message=scrub(str(exc)).replace("\n", " ")[:1000],
            elapsedSeconds=_elapsed(clock),
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
    published: bool
    sha256: str
    json_bytes: int
    stored_bytes: int
    elapsed_seconds: float
    context: Mapping[str, Any] = field(default_factory=dict)  # correlationId, pastDue

    def fields(self) -> dict[str, Any]:
        values = asdict(self)
        context: dict[str, Any] = values.pop("context")
        return {_camel(name): value for name, value in values.items()} | context


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

    @property
    def generated_at(self) -> str:
        return self.started.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def correlation_id(self) -> str:
        return str(self.context["correlationId"])

    def execute(self, cleanup: ExitStack) -> dict[str, Any]:
        from shared.snapshots.store import snapshot_name

        tokens, write_back, store = self.open(cleanup)
        previous = self.previous_manifest(store)
        writer = store.new_snapshot(snapshot_name(self.started), self.generated_at)
        pager = cleanup.enter_context(self.pager(tokens))
        diff = (
            None if previous is None else PreviousIds(store.iter_customer_ids(previous.snapshot), pager.seen)
        )
        committed = self.write_snapshot(writer, pager, tokens, diff)
        added, removed = self.diff_counts(diff)
        manifest = store.publish(committed)
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
            added=added,
            removed=removed,
            published=manifest is not None,
            sha256=committed.sha256,
            json_bytes=committed.json_bytes,
            stored_bytes=committed.stored_bytes,
            elapsed_seconds=_elapsed(self.clock),
            context=self.context,
        ).fields()
        log_event(log, logging.INFO, events.SNAPSHOT_SUMMARY, **summary)
        return summary

    def open(self, cleanup: ExitStack) -> tuple[PartnerCenterTokens, RefreshTokenWriteBack, SnapshotStore]:
        """Credentials, the token source (writing rotated refresh tokens back) and the snapshot store."""
        from shared.identity import azure_credential
        from shared.partner_center.auth import PartnerCenterTokens
        from shared.secrets import credential_store
        from shared.snapshots.store import SnapshotStore, container_client

        settings = self.settings
        credential: Callable[[], TokenCredential] = functools.cache(
            lambda: azure_credential(settings.azure_client_id)
        )
        credentials = credential_store(
            settings.key_vault_url, credential, max_retry_after=settings.max_retry_after_seconds
        )
        secrets = credentials.load()
        write_back = RefreshTokenWriteBack(credentials, self.context)
        tokens = PartnerCenterTokens(
            secrets, settings.authority_host, timeout=settings.timeout_seconds, on_refresh_token=write_back
        )
        store = SnapshotStore(cleanup.enter_context(container_client(settings, credential)))
        store.ensure_container()
        return tokens, write_back, store

    def previous_manifest(self, store: SnapshotStore) -> Manifest | None:
        """latest.json before this run; None before the first run or when it is not a manifest."""
        from shared.snapshots.store import ManifestError

        try:
            previous, _ = store.read_latest()
        except ManifestError as exc:
            log_event(
                log, logging.WARNING, events.SNAPSHOT_LATEST_UNREADABLE, reason=str(exc), **self.context
            )
            return None
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
        diff: PreviousIds | None,
    ) -> CommittedSnapshot:
        """Every page into `writer`, then the commit; on any failure the writer is aborted (no blob)."""
        # Every page is thousands of small acyclic dicts: nothing for the cyclic GC to free.
        with cyclic_gc_paused():
            try:
                total = self.page_all(writer, pager, diff)
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

    def page_all(self, writer: SnapshotWriter, pager: CustomerPager, diff: PreviousIds | None) -> int:
        """Hands each page to the writer and logs it; returns the number of customers written."""
        total = 0
        for page in pager.pages():
            writer.add(page.texts)
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
            if diff is not None:
                diff.catch_up(total)  # while the next page is on the wire
        return total

    def diff_counts(self, diff: PreviousIds | None) -> tuple[int | None, int | None]:
        """(added, removed); (None, None) without a previous snapshot or when it could not be read."""
        if diff is None:
            return None, None
        counts = diff.counts()
        if counts is None:
            reason = type(diff.error).__name__
            log_event(log, logging.WARNING, events.SNAPSHOT_DIFF_UNAVAILABLE, reason=reason, **self.context)
            return None, None
        return counts


class PreviousIds:
    """Customers added and removed since the previous snapshot, counted while the run pages.

    After each page the previous snapshot's ids are read up to as many as this run has received, so most
    of them (the API lists customers in the same order every night) are already among the run's keys and
    are only counted; the others wait, 16 bytes per tenant GUID, for the check after the last page. Memory
    stays small and the reading happens while the next page is on the wire. A read that fails is kept in
    `error` and ends the reading: the diff is informative and never costs the snapshot."""

    def __init__(self, ids: Iterator[str], current_keys: set[int | str]) -> None:
        self._ids = ids
        self._current = current_keys  # the pager's de-duplication keys, growing page by page
        self._waiting_guids = bytearray()
        self._waiting_others: list[int | str] = []
        self._common = 0
        self.read_count = 0
        self.error: Exception | None = None

    def catch_up(self, received: int) -> None:
        """Reads ids until `received` (this run's customers so far) have been read in all."""
        if received > self.read_count:
            self._read(received - self.read_count)

    def counts(self) -> tuple[int, int] | None:
        """(added, removed), after the last page: reads the rest first. None when reading failed."""
        self._read(None)
        if self.error is not None:
            return None
        guids = self._waiting_guids
        waiting = itertools.chain(
            (int.from_bytes(guids[at : at + 16], "big") for at in range(0, len(guids), 16)),
            self._waiting_others,
        )
        common = self._common + sum(1 for key in waiting if key in self._current)
        return len(self._current) - common, self.read_count - common

    def _read(self, count: int | None) -> None:
        from shared.partner_center.customers import customer_key

        if self.error is not None:
            return
        try:
            for customer_id in itertools.islice(self._ids, count):
                self.read_count += 1
                key = customer_key(customer_id)
                if key in self._current:
                    self._common += 1
                elif isinstance(key, int):
                    self._waiting_guids += key.to_bytes(16, "big")
                else:
                    self._waiting_others.append(key)
        except Exception as exc:
            self.error = exc
