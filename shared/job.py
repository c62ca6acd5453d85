"""One snapshot run: settings → credentials → token → every page → committed blob → latest.json.

Any failure before the commit leaves no blob; any failure before publishing leaves latest.json as it
was. The run raises after logging `snapshot.failed`, so the Functions host records a failed run.
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from shared.events import log_event
from shared.redact import scrub
from shared.settings import Settings

log = logging.getLogger("shared.job")


def run_snapshot(
    *, past_due: bool = False, now: datetime | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Runs the job once and returns the summary it logged."""
    started = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    clock = time.monotonic()
    correlation_id = str(uuid.uuid4())
    context: dict[str, Any] = {"correlationId": correlation_id, "pastDue": past_due}
    if past_due:
        log_event(log, logging.WARNING, "snapshot.past_due", **context)
    try:
        settings = Settings.from_env(environ)
        return _run(settings, started, clock, correlation_id, context)
    except Exception as exc:
        log_event(
            log,
            logging.ERROR,
            "snapshot.failed",
            error=type(exc).__name__,
            # scrubbed before it is cut: no prefix of a secret survives
            message=scrub(str(exc)).replace("\n", " ")[:1000],
            elapsedSeconds=round(time.monotonic() - clock, 3),
            **context,
        )
        raise


def _run(
    settings: Settings, started: datetime, clock: float, correlation_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    from shared.identity import azure_credential
    from shared.partner_center.auth import PartnerCenterTokens
    from shared.partner_center.customers import CustomerPager
    from shared.secrets import SecretsError, credential_store
    from shared.snapshots.store import ManifestError, SnapshotStore, container_client, snapshot_name

    generated_at = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    credential = functools.cache(lambda: azure_credential(settings.azure_client_id))
    with ExitStack() as cleanup:
        credentials = credential_store(
            settings.key_vault_url, credential, max_retry_after=settings.max_retry_after_seconds
        )
        secrets = credentials.load()
        refresh = {"rotated": 0, "saved": 0}

        def save_refresh_token(value: str) -> None:
            refresh["rotated"] += 1
            try:
                saved = credentials.save_refresh_token(value)
            except SecretsError as exc:  # the snapshot still runs; the error is loud in the logs
                log_event(log, logging.ERROR, "secrets.refresh_token_not_saved", reason=str(exc), **context)
                return
            if saved:
                refresh["saved"] += 1
            else:
                log_event(
                    log,
                    logging.WARNING,
                    "secrets.refresh_token_not_saved",
                    reason="KEY_VAULT_URL is not set; store the refresh token in Key Vault",
                    **context,
                )

        tokens = PartnerCenterTokens(
            secrets,
            settings.authority_host,
            timeout=settings.timeout_seconds,
            on_refresh_token=save_refresh_token,
        )
        container = cleanup.enter_context(container_client(settings, credential))
        store = SnapshotStore(container)
        store.ensure_container()
        try:
            previous, _ = store.read_latest()
        except ManifestError as exc:
            log_event(log, logging.WARNING, "snapshot.latest_unreadable", reason=str(exc), **context)
            previous = None

        name = snapshot_name(started)
        writer = store.new_snapshot(name, generated_at)
        pager = cleanup.enter_context(
            CustomerPager(
                settings.partner_center_api_url,
                tokens,
                page_size=settings.page_size,
                correlation_id=correlation_id,
                max_retries=settings.max_retries,
                backoff_seconds=settings.backoff_seconds,
                timeout_seconds=settings.timeout_seconds,
                max_retry_after_seconds=settings.max_retry_after_seconds,
                deadline=clock + settings.run_deadline_seconds,
                max_page_bytes=settings.max_page_bytes,
            )
        )
        previous_ids = None
        if previous is not None:
            previous_ids = PreviousIds(store.iter_customer_ids(previous.snapshot), pager.seen)
        # Every page is thousands of small acyclic dicts: the cyclic GC would stop the world every few
        # pages to walk every object alive (the SDKs' included) and find nothing to free.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            total = 0
            for page in pager.pages():
                writer.add(page.texts)
                total += len(page.items)
                log_event(
                    log,
                    logging.INFO,
                    "snapshot.page",
                    page=page.number,
                    items=page.received,
                    kept=len(page.items),
                    total=total,
                    elapsedSeconds=round(time.monotonic() - clock, 3),
                )
                if previous_ids is not None:
                    previous_ids.catch_up(total)  # while the next page is on the wire
            stats = pager.stats
            source = {
                "apiUrl": settings.partner_center_api_url,
                "pageSize": settings.page_size,
                "pagesFetched": stats.pages,
                "correlationId": correlation_id,
                "duplicatesDropped": stats.duplicates_dropped,
                "retries": stats.retries,
                "tokenRenewals": stats.token_renewals,
                "authMode": tokens.mode,
            }
            committed = writer.commit(
                {"customerCount": total, "source": source},
                {"generatedat": generated_at, "correlationid": correlation_id, "pages": str(stats.pages)},
            )
        except BaseException:
            writer.abort()
            raise
        finally:
            if gc_was_enabled:
                gc.enable()

        added = removed = None
        if previous_ids is not None:
            counts = previous_ids.counts()
            if counts is not None:
                added, removed = counts
            else:
                reason = type(previous_ids.error).__name__
                log_event(log, logging.WARNING, "snapshot.diff_unavailable", reason=reason, **context)
        manifest = store.publish(committed)

        summary = {
            "snapshot": committed.name,
            "container": settings.container,
            "generatedAt": generated_at,
            "customerCount": committed.customer_count,
            "pages": stats.pages,
            "duplicatesDropped": stats.duplicates_dropped,
            "retries": stats.retries,
            "tokenRenewals": stats.token_renewals,
            "authMode": tokens.mode,
            "refreshTokenRotations": refresh["rotated"],
            "refreshTokensSaved": refresh["saved"],
            "previousSnapshot": previous.snapshot if previous else None,
            "added": added,
            "removed": removed,
            "published": manifest is not None,
            "sha256": committed.sha256,
            "jsonBytes": committed.json_bytes,
            "storedBytes": committed.stored_bytes,
            "elapsedSeconds": round(time.monotonic() - clock, 3),
            **context,
        }
        log_event(log, logging.INFO, "snapshot.summary", **summary)
        return summary


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
