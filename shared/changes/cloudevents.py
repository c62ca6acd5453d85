"""What a change event is: one CloudEvents 1.0 JSON text per change of a record, with an id that is the
same whenever and wherever it is sent (the queue, a webhook batch), and the smaller forms of one too large
to be sent whole (by reference: shared/changes/events.py EventSender.texts).

    partnercenter.customer.added | .removed | .changed   subject: the customer id; data: the record's entry
    partnercenter.snapshot.published                     subject: the snapshot; data: its counts
    partnercenter.snapshot.withheld                      subject: the withheld snapshot; data: withheld.json
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.jsonenc import compact_bytes

EVENT_TYPE = "partnercenter.customer."
PUBLISHED_TYPE = "partnercenter.snapshot.published"
WITHHELD_TYPE = "partnercenter.snapshot.withheld"
_NAMESPACE = uuid.UUID("5d0c3f5e-7f5b-4b0e-9a55-0c1f2e3d4c5b")  # CloudEvents ids: stable per change
MESSAGE_LIMIT = 64 * 1024  # a Storage queue message as sent (base64 text)
BIG_VALUE = 1024  # bytes of JSON above which a value is left out of an event sent by reference


def event_id(snapshot: str, kind: str, subject: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{snapshot}\n{kind}\n{subject}"))


def cloud_event(
    kind: str,
    subject: str,
    time: str,
    source: str,
    data: Any,
    snapshot: str,
    extensions: Mapping[str, Any] | None = None,
) -> str:
    event = {
        "specversion": "1.0",
        "id": event_id(snapshot, kind, subject),
        "source": source,
        "type": kind,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        **(extensions or {}),
        "data": data,
    }
    # A lone surrogate ("\ud800", strict JSON) has no UTF-8 form: sent as the JSON escape it came as.
    return compact_bytes(event).decode()


def fits(text: str) -> bool:
    """Whether `text` base64-encoded is within a queue message's size."""
    return 4 * ((len(text.encode()) + 2) // 3) <= MESSAGE_LIMIT


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def reduced(section: str, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Smaller and smaller `data` of an event sent by reference: its large values left out; then only which
    fields changed; then the id alone."""
    customer = data["id"]
    fields = data.get("fields")
    if section == "changed" and isinstance(fields, dict):
        yield {
            "id": customer,
            "fields": {
                path: {k: v for k, v in change.items() if _size(v) <= BIG_VALUE}
                if isinstance(change, dict)
                else {}
                for path, change in fields.items()
            },
        }
        yield {"id": customer, "fields": {path: {} for path in fields}}
    else:
        yield {k: v for k, v in data.items() if k == "id" or _size(v) <= BIG_VALUE}
    yield {"id": customer}


@dataclass(frozen=True)
class Message:
    """Message `index` of an outbox record: an event's type, subject and data, or (`problem`) an entry of
    the change record that cannot be an event (`raw`: the entry as stored)."""

    index: int
    kind: str
    subject: str
    data: Any
    problem: str | None = None
    raw: bytes = b""


def message_of(index: int, kind: str, entry: bytes) -> Message:
    """The message of a change record's entry: the entry is its data, the customer id its subject."""
    from shared.storage.reader import StoredDocumentError, parse_json

    try:
        data = parse_json(entry, "an entry of the change record")
    except StoredDocumentError:
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]):
        return Message(
            index, kind, "", None, "its entry in the change record is not an object with an id", entry
        )
    return Message(index, kind, data["id"], data)
