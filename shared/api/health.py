"""GET /api/health: anonymous, status only, never customer data."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import events
from shared.api import params as p
from shared.api.changes import withheld_since
from shared.api.endpoint import NO_PARAMETERS, context, endpoint, parse_time
from shared.api.errors import ApiError
from shared.api.http import status_response, utc_now
from shared.events import log_event

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
