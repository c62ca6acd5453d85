"""One snapshot run: settings → credentials → token → every page → committed blob → latest.json.

Any failure before the commit leaves no blob; any failure before publishing leaves latest.json as it
was. The run raises after logging `snapshot.failed`, so the Functions host records a failed run.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from shared.events import log_event
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
            message=str(exc)[:500],
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
        credentials = credential_store(settings.key_vault_url, credential)
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
            )
        )
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

        added = removed = None
        if previous is not None:
            try:
                added, removed = diff_counts(store.iter_customer_ids(previous.snapshot), pager.seen)
            except Exception as exc:  # the diff is informative; it never costs the snapshot
                log_event(
                    log, logging.WARNING, "snapshot.diff_unavailable", reason=type(exc).__name__, **context
                )
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


def diff_counts(previous_ids: Iterable[str], current_keys: set[int | str]) -> tuple[int, int]:
    """(added, removed) customers between a previous snapshot's ids and this run's de-duplication keys."""
    from shared.partner_center.customers import customer_key

    common = removed = 0
    for customer_id in previous_ids:
        if customer_key(customer_id) in current_keys:
            common += 1
        else:
            removed += 1
    return len(current_keys) - common, removed
