"""Signed webhooks: the run's CloudEvents in batches, signed per the Standard Webhooks specification.

    POST <each of WEBHOOK_URLS>
    Content-Type: application/cloudevents-batch+json
    webhook-id: msg_<27 characters>   the same for the same batch on every retry (from its events' ids)
    webhook-timestamp: 1795658400     this attempt's time, in Unix seconds
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>

    [{"specversion":"1.0","id":"8d0f…","type":"partnercenter.customer.added",…}, …]

The key is the secret's bytes: WEBHOOK_SIGNING_SECRET / Key Vault secret `webhook-signing-secret` in the
spec's `whsec_<base64>` form (24 to 64 bytes). Receivers verify with the reference library
(`standardwebhooks` on PyPI, `Webhook(secret).verify(body, headers)`) or any of its ports; the timestamp
lets them refuse a replay (the reference library allows 5 minutes), so every attempt is signed anew.

Each event keeps its CloudEvents `id` (the queue's ids), so a receiver can tell an event it has seen, also
when a later run groups events into other batches; a batch sent again unchanged has the same `webhook-id`.
A batch holds at most `max_events` events and `max_bytes` bytes; one event larger than that on its own is
sent alone (an event is never split).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from shared.notify.delivery import DeliveryPolicy, Outcome, Sender
from shared.signing_secret import key_of, secret_problem

CONTENT_TYPE = "application/cloudevents-batch+json"
MAX_BATCH_BYTES = 256 * 1024
MAX_BATCH_EVENTS = 100


class Signer:
    """Signs bodies with one secret; its repr never shows the key."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        problem = secret_problem(secret)
        if problem is not None:
            raise ValueError(f"the webhook signing secret {problem}")
        self._key = key_of(secret)

    def __repr__(self) -> str:
        return "Signer(<hidden>)"

    def signature(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        return "v1," + base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest()).decode()

    def headers(self, webhook_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers for `body`, signed at `timestamp` (now by default)."""
        stamp = int(time.time()) if timestamp is None else timestamp
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": self.signature(webhook_id, stamp, body),
        }


@dataclass(frozen=True)
class Batch:
    webhook_id: str
    event_ids: tuple[str, ...]
    body: bytes = field(repr=False)
    oversized: bool = False  # one event alone, larger than the batch bound


def batch_id(event_ids: Sequence[str]) -> str:
    """`msg_` and 27 characters: the same for the same events in the same order, on every retry."""
    digest = hashlib.sha256("\n".join(event_ids).encode()).digest()
    return "msg_" + base64.b32encode(digest).decode().lower()[:27]


def event_id(event: str | bytes) -> str:
    """The CloudEvents `id` of one serialized event. ValueError when it is not an event with an id."""
    try:
        value = json.loads(event)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON CloudEvent") from None
    found = value.get("id") if isinstance(value, dict) else None
    if not isinstance(found, str) or not found:
        raise ValueError("a CloudEvent without an `id`")
    return found


def batches(
    events: Iterable[str | bytes],
    *,
    max_bytes: int = MAX_BATCH_BYTES,
    max_events: int = MAX_BATCH_EVENTS,
) -> Iterator[Batch]:
    """The serialized CloudEvents `events` (each as the queue gets it), in order, as JSON-array batches of
    at most `max_events` events and `max_bytes` bytes (one larger event goes alone)."""
    ids: list[str] = []
    parts: list[bytes] = []
    size = 2  # the brackets
    for event in events:
        data = event.encode() if isinstance(event, str) else event
        this_id = event_id(data)
        if parts and (len(parts) >= max_events or size + 1 + len(data) > max_bytes):
            yield _batch(ids, parts, max_bytes)
            ids, parts, size = [], [], 2
        ids.append(this_id)
        parts.append(data)
        size += len(data) + (1 if len(parts) > 1 else 0)
    if parts:
        yield _batch(ids, parts, max_bytes)


def _batch(ids: list[str], parts: list[bytes], max_bytes: int) -> Batch:
    body = b"[" + b",".join(parts) + b"]"
    return Batch(batch_id(ids), tuple(ids), body, oversized=len(body) > max_bytes)


class WebhookEndpoint:
    """One of WEBHOOK_URLS: POSTs signed batches."""

    def __init__(
        self, url: str, signer: Signer, *, channel: str, policy: DeliveryPolicy | None = None
    ) -> None:
        self.sender = Sender(url, channel, policy)
        self.signer = signer

    def __repr__(self) -> str:
        return f"WebhookEndpoint({self.sender.channel}, host={self.sender.host})"

    def deliver(self, batch: Batch, *, deadline: float | None = None) -> Outcome:
        """Sends `batch`, signed anew for each attempt, with the same webhook-id on every one."""

        def headers() -> dict[str, str]:
            return {"Content-Type": CONTENT_TYPE, **self.signer.headers(batch.webhook_id, batch.body)}

        return self.sender.post(batch.body, headers, deadline=deadline)
