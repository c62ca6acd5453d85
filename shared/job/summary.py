"""What a run reports: the snapshot.summary line (and run_snapshot's answer), and the refresh tokens it
kept.

    RunSummary              what one successful run did, logged as snapshot.summary
    delivery_fields         the summary's fields about the outbox and the notification channels
    RefreshTokenWriteBack   hands each refresh token Entra ID rotates to the credential store, and counts
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from shared import events
from shared.events import log_event

if TYPE_CHECKING:
    from shared.changes.events import Drained
    from shared.secrets import CredentialStore

log = logging.getLogger("shared.job")


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
