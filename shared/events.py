"""Structured log lines: an event name, then its fields as one JSON object.

Application Insights keeps the message text; a fixed name first makes every line searchable
(`traces | where message startswith "snapshot.summary"`) and the JSON keeps it machine-readable.
Callers pass counts, names and ids only: never secrets, tokens or customer data.

Every event the app logs is named here, once. The alert rules in infra/app/alerts.bicep match some of
these names (ALERTED); tests/project/test_infra_hardening.py checks that the rules and this list agree.
"""

from __future__ import annotations

import json
import logging
from typing import Any

# -- the snapshot run (shared/job/) -------------------------------------------------------------
SNAPSHOT_PAST_DUE = "snapshot.past_due"
SNAPSHOT_SKIPPED = "snapshot.skipped"  # another run holds the run lock (storage/lease.py): not a failure
SNAPSHOT_LOCK_LOST = "snapshot.lock_lost"  # the run lock's renewal was refused: this run will not publish
SNAPSHOT_PAGE = "snapshot.page"
SNAPSHOT_DEADLINE_AT_RISK = "snapshot.deadline_at_risk"  # the pace says paging will pass the deadline
SNAPSHOT_LATEST_UNREADABLE = "snapshot.latest_unreadable"
SNAPSHOT_DIFF_UNAVAILABLE = "snapshot.diff_unavailable"
SNAPSHOT_NOT_PUBLISHED = "snapshot.not_published"
SNAPSHOT_WITHHELD = "snapshot.withheld"  # too many customers gone: not published, the run fails
# change events not sent yet, the next run goes on: ERROR when storage or the queue failed, WARNING when the
# time for sending ran out (a backlog)
SNAPSHOT_EVENTS_PENDING = "snapshot.events_pending"
# a change event or outbox record that can never be sent, kept in outbox/failed/ for an operator
SNAPSHOT_EVENTS_SET_ASIDE = "snapshot.events_set_aside"
SNAPSHOT_SUMMARY = "snapshot.summary"  # one per successful run
SNAPSHOT_FAILED = "snapshot.failed"  # one per failed run
REFRESH_TOKEN_NOT_SAVED = "secrets.refresh_token_not_saved"  # noqa: S105 - an event name

# -- Partner Center paging (shared/partner_center: fetch.py, refusals.py) ------------------------------
PARTNER_CENTER_RETRY = "partner_center.retry"
PARTNER_CENTER_TOKEN_REJECTED = "partner_center.token_rejected"  # noqa: S105 - an event name
PARTNER_CENTER_NO_MORE_RECORDS = "partner_center.no_more_records"

# -- notifications (shared/notify) ----------------------------------------------------------------------
NOTIFY_RETRY = "notify.retry"  # one attempt to reach a Teams workflow or webhook failed; another follows
# a card or webhook batch not delivered this run (the receiver failed, stalled, or time ran out): the next run
# sends it again (WARNING)
NOTIFY_PENDING = "notify.pending"
# a receiver refused for good (a 4xx other than 408/429, a redirect: a configuration error): that record's
# card or events for that receiver are given up (ERROR)
NOTIFY_GIVEN_UP = "notify.given_up"

# -- the HTTP API (shared/api) ------------------------------------------------------------------------
API_STORAGE_ERROR = "api.storage_error"
API_INTERNAL_ERROR = "api.internal_error"
API_HEALTH_UNAVAILABLE = "api.health_unavailable"
API_HEALTH_FAILED = "api.health_failed"
API_SNAPSHOT_LOADED = "api.snapshot_loaded"
API_SNAPSHOT_UNREADABLE = "api.snapshot_unreadable"
API_LATEST_UNREADABLE = "api.latest_unreadable"
API_CUSTOMERS_SKIPPED = "api.customers_skipped"  # customers the indexes cannot use: a count per snapshot
API_INDEX_UNUSABLE = "api.index_unusable"  # latest.json names an index that does not verify: whole load
API_STORAGE_UNREACHABLE = "api.storage_unreachable"  # once per outage; answers come from memory meanwhile
API_STORAGE_REACHABLE = "api.storage_reachable"  # the outage is over
API_SNAPSHOT_UNVERIFIED = "api.snapshot_unverified"  # a snapshot asked for by date does not verify
API_CHANGE_RECORD_UNREADABLE = "api.change_record_unreadable"  # once per version of a record
API_CSV_RENDITION_WRITTEN = "api.csv_rendition_written"  # the whole snapshot's CSV, stored beside it
API_CSV_RENDITION_FAILED = "api.csv_rendition_failed"  # tried once per snapshot version

# Watched by the alert rules: renaming one of these silences an alert.
ALERTED = frozenset(
    {
        SNAPSHOT_FAILED,
        REFRESH_TOKEN_NOT_SAVED,
        SNAPSHOT_SUMMARY,
        SNAPSHOT_EVENTS_PENDING,
        SNAPSHOT_EVENTS_SET_ASIDE,
        NOTIFY_GIVEN_UP,
    }
)


def log_event(
    logger: logging.Logger, level: int, name: str, *, exc_info: bool = False, **fields: Any
) -> None:
    """Logs `name {fields as JSON}`; `exc_info=True` adds the current exception's stack trace."""
    logger.log(
        level,
        "%s %s",
        name,
        json.dumps(fields, ensure_ascii=False, default=str, sort_keys=False),
        exc_info=exc_info,
    )


def quiet_azure_sdk_logs() -> None:
    """The Azure SDKs log every request, response and token at INFO (about 99 MB a day for one busy API
    instance, enough to hit the workspace cap and drown the failure alerts): keep WARNING and above.

    Set in code, at client creation, because the Python worker forwards every record to the host under the
    function's own category (Function.<name>.User), so host.json cannot tell the SDKs' lines from ours.
    A level chosen on purpose (e.g. DEBUG while investigating) is left alone."""
    sdk = logging.getLogger("azure")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)
