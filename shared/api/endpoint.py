"""What every route shares: the GET-only error boundary, the per-process context, the latest manifest,
Cache-Control's max-age and the next-page link.

Caching (Cache-Control): answers about the latest snapshot may be reused until a newer snapshot can
exist (the next SNAPSHOT_SCHEDULE occurrence, or now while a scheduled run may still publish), capped by
API_CACHE_MAX_AGE_SECONDS because a manual run (admin endpoint, portal "Test/Run") can publish at any
time; after that, revalidating with the ETag costs the client a 304 and us one conditional GET of
latest.json. A date whose runs can no longer publish is immutable.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import azure.functions as func

from shared import events
from shared.api.errors import ApiError, error_response
from shared.api.http import cache_control, utc_now
from shared.events import log_event

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.settings import Settings
    from shared.snapshots.store import Manifest

log = logging.getLogger("shared.api")

NO_PARAMETERS: frozenset[str] = frozenset()
_METHOD = re.compile(r"[A-Za-z]{1,16}")

Handler = Callable[[func.HttpRequest], func.HttpResponse]


def endpoint(handler: Handler) -> Handler:
    """GET only (405 otherwise), and the error boundary: ApiError → its answer, storage trouble → 503,
    anything else → 500 `internal_error`, logged here with its stack trace, never sent."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        from azure.core.exceptions import AzureError

        try:
            if req.method.upper() != "GET":
                method = req.method if _METHOD.fullmatch(req.method) else "this method"
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed here; use GET",
                    headers={"Allow": "GET"},
                )
            return _answered(handler, req)
        except ApiError as exc:
            return exc.response()
        except AzureError as exc:
            log_event(
                log, logging.ERROR, events.API_STORAGE_ERROR, route=handler.__name__, error=type(exc).__name__
            )
            return error_response(
                503,
                "storage_unavailable",
                "snapshot storage cannot be reached right now; try again shortly",
                headers={"Retry-After": "30"},
            )
        except Exception:
            log_event(log, logging.ERROR, events.API_INTERNAL_ERROR, exc_info=True, route=handler.__name__)
            return error_response(500, "internal_error", "the request failed; it was logged")

    return wrapper


def _answered(handler: Handler, req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.latest import SnapshotReplaced

    try:
        return handler(req)
    except SnapshotReplaced:  # a newer snapshot was taken up while this request ran: answer from it
        return handler(req)


def context() -> ApiContext:
    from shared.api.context import api_context

    return api_context()


def latest_manifest(ctx: ApiContext) -> Manifest:
    manifest = ctx.latest.manifest()
    if manifest is None:
        raise ApiError(404, "no_snapshot", "no snapshot has been published yet")
    return manifest


def about_latest() -> tuple[ApiContext, Manifest, str]:
    """What an answer about the latest snapshot starts from: the context, the latest manifest (404 when
    none is published) and the Cache-Control that lets it be reused until a newer snapshot can exist."""
    ctx = context()
    manifest = latest_manifest(ctx)
    return ctx, manifest, cache_control(max_age(ctx.settings, manifest.generated_at))


def max_age(settings: Settings, generated_at: str | None) -> int:
    from shared.api.schedule import seconds_until_next_snapshot

    cap = settings.cache_max_age_seconds
    seconds = seconds_until_next_snapshot(
        settings.schedule, parse_time(generated_at), utc_now(), settings.run_deadline_seconds
    )
    return cap if seconds is None else int(min(cap, seconds))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def caller_code(req: func.HttpRequest) -> str:
    """The key the caller sent as `?code=` (the host has checked it), or ''."""
    return req.params.get("code") or ""


def next_link(req: func.HttpRequest, params: dict[str, str], token: str | None) -> str | None:
    """This request's URL with the next continuation. A caller that sent its key as `?code=` gets it back
    in the link (it is its own key, and following the link needs it); a key sent in the header never is."""
    if token is None:
        return None
    parts = urlsplit(req.url)
    query = {name: value for name, value in params.items() if name != "continuation"} | {
        "continuation": token
    }
    if caller_code(req):
        query["code"] = caller_code(req)
    link: str = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), ""))
    return link
