"""GET /api/health: anonymous, status only, never customer data."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared import events
from shared.api import params as p
from shared.api.endpoint import NO_PARAMETERS, context, endpoint, parse_time
from shared.api.errors import ApiError
from shared.api.http import status_response, utc_now
from shared.events import log_event

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.changes.guard import Withheld
    from shared.snapshots.store import Manifest, SnapshotStore

log = logging.getLogger("shared.api")


@endpoint
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: status only, never customer data. 200 `ok`, or `degraded` (answering, but from memory
    while storage cannot be reached, or with customers left out of the indexes); 503 `stale`, `empty` or
    `unavailable` (the latest snapshot cannot be served: latest.json or the snapshot cannot be read)."""
    from azure.core.exceptions import AzureError

    p.query(req, NO_PARAMETERS)
    unavailable = {"status": "unavailable", "message": "the latest snapshot cannot be served"}
    try:
        ctx = context()
        manifest = ctx.latest.manifest()
        # Loading it (once per snapshot) is what tells whether it can be served.
        loaded = ctx.latest.snapshot(manifest) if manifest is not None else None
    except (ApiError, AzureError) as exc:
        log_event(log, logging.WARNING, events.API_HEALTH_UNAVAILABLE, error=type(exc).__name__)
        return status_response(503, unavailable)
    except Exception:
        log_event(log, logging.ERROR, events.API_HEALTH_FAILED, exc_info=True)
        return status_response(503, unavailable)
    stale_after = ctx.settings.health_stale_after_hours
    if manifest is None or loaded is None:
        return status_response(
            503,
            {
                "status": "empty",
                "message": "no snapshot has been published yet",
                "staleAfterHours": stale_after,
            },
        )
    generated = parse_time(manifest.generated_at)
    age_hours = (utc_now() - generated).total_seconds() / 3600 if generated else None
    status = "ok" if age_hours is not None and age_hours <= stale_after else "stale"
    report: dict[str, object] = {
        "status": status,
        "generatedAt": manifest.generated_at,
        "ageHours": round(age_hours, 2) if age_hours is not None else None,
        "customerCount": manifest.customer_count,
        "staleAfterHours": stale_after,
    }
    unreachable = ctx.latest.unreachable_for()
    if unreachable is not None:
        report["storage"] = "unreachable"
        report["storageUnreachableSeconds"] = round(unreachable, 1)
        report["staleServeSeconds"] = ctx.settings.stale_serve_seconds
    if loaded.skipped:
        report["customersSkipped"] = loaded.skipped
    if status == "ok" and (unreachable is not None or loaded.skipped):
        report["status"] = "degraded"
    # Never a read while storage is slow or out.
    if unreachable is None and not ctx.latest.checking() and (withheld := withheld_since(ctx, manifest)):
        report["withheld"] = withheld
    return status_response(200 if report["status"] in ("ok", "degraded") else 503, report)


_WITHHELD_TTL = 30.0  # seconds a health answer reuses its look at withheld.json (per latest.json)


def withheld_since(ctx: ApiContext, manifest: Manifest) -> dict[str, Any] | str | None:
    """For /api/health: the snapshot the completeness guard withheld, when it is newer than the latest
    (numbers, RFC 3339 times and a snapshot name, each checked: health is anonymous), or "unreadable" when
    withheld.json cannot be read or holds anything else. One short read of withheld.json (bounded, no
    retries, the check timeouts of latest.json) at most every _WITHHELD_TTL seconds per latest.json; None
    when there is none or the read fails."""
    now = ctx.clock()
    seen = ctx.withheld_seen.get(manifest.etag)
    if seen is not None and now - seen[0] < _WITHHELD_TTL:
        found: dict[str, Any] | str | None = seen[1]
        return found
    found = _withheld(ctx.store, manifest)
    if len(ctx.withheld_seen) > 64:
        ctx.withheld_seen.clear()
    ctx.withheld_seen[manifest.etag] = (now, found)
    return found


def _withheld(store: SnapshotStore, manifest: Manifest) -> dict[str, Any] | str | None:
    from azure.core.exceptions import AzureError

    from shared.api.latest import LATEST_CHECK_OPTIONS
    from shared.changes.guard import read_withheld, rfc3339

    try:
        withheld = read_withheld(store, retry_total=0, **LATEST_CHECK_OPTIONS)
    except AzureError:  # health answers without it rather than fail on it
        return None
    if withheld is None or isinstance(withheld, str):
        return withheld
    latest = rfc3339(manifest.generated_at)
    generated = rfc3339(withheld.generated_at)
    if latest is not None and generated is not None and generated <= latest:
        return None
    return _typed(withheld)


def _typed(withheld: Withheld) -> dict[str, Any]:
    return {
        "snapshot": withheld.snapshot,
        "generatedAt": withheld.generated_at,
        "customerCount": withheld.customer_count,
        "latestCustomerCount": withheld.latest_customer_count,
        "dropPercent": withheld.drop_percent,
        "maxDropPercent": withheld.max_drop_percent,
    }
