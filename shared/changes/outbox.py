"""The outbox of change events in the snapshot container: one small record per published snapshot whose
events are not all sent yet, read back with bounds and checked field by field.

    outbox/changes-YYYYMMDDTHHMMSSZ.json              a record: its snapshot, change record, counts, cursor
    outbox/failed/changes-YYYYMMDDTHHMMSSZ.json       a record set aside (its first 256 KiB, as stored)
    outbox/failed/changes-YYYYMMDDTHHMMSSZ/<n>.json   message n of a record, set aside (the full CloudEvent)

A record is trusted for nothing: it is read through shared.storage.reader.read_json (size, inflation, depth,
encoding bounded), must name a snapshot of the snapshot layout and that snapshot's change record, and its
blob name must be that record's. Anything else is set aside (moved to outbox/failed/, with its reason in the
blob's metadata) by the sender, never followed.

`sent` is the cursor: how many of the record's messages (its change record's entries in stored order, then
snapshot.published) are sent or set aside already. The sender rewrites it as it goes, each write conditional
on the record's ETag, so a run that resumes never sends again what an earlier run sent, and two runs never
both advance one record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared.storage.reader import StoredDocumentError

if TYPE_CHECKING:
    from shared.snapshots.store import ChangeRef

OUTBOX = "outbox/"
FAILED = OUTBOX + "failed/"
RECORD_FILE = re.compile(r"^outbox/changes-\d{8}T\d{6}Z\.json$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_SECTIONS = ("added", "removed", "changed")
MAX_REASON = 1000  # characters of `comparison.reason` (ours are one sentence)


@dataclass(frozen=True)
class Outbox:
    """What is still to be sent for one published snapshot: its change record and counts (None, with
    `unavailable` saying why, when the run could not read the previous snapshot), and how many of its
    messages are out already (`sent`)."""

    snapshot: str
    generated_at: str
    customer_count: int
    changes: str
    counts: dict[str, int] | None
    unavailable: str | None = None
    sent: int = 0

    @property
    def name(self) -> str:
        return OUTBOX + self.changes.rpartition("/")[2]

    @property
    def messages(self) -> int:
        """How many messages the record stands for: one per change, then snapshot.published."""
        return 1 + (sum(self.counts.values()) if self.counts else 0)

    @property
    def unsent(self) -> int:
        return max(0, self.messages - self.sent)

    def to_json(self) -> dict[str, Any]:
        """The data of its snapshot.published event."""
        found: dict[str, Any] = {
            "snapshot": self.snapshot,
            "generatedAt": self.generated_at,
            "customerCount": self.customer_count,
            "changes": self.changes,
            "counts": self.counts,
        }
        if self.unavailable is None:
            return found
        return found | {"comparison": {"available": False, "reason": self.unavailable}}

    def stored(self) -> bytes:
        """The record as stored: the event's data and the cursor."""
        return json.dumps(self.to_json() | {"sent": self.sent}).encode()

    def advanced(self, sent: int) -> Outbox:
        return replace(self, sent=sent)

    @classmethod
    def of(cls, snapshot: str, generated_at: str, customer_count: int, changes: ChangeRef) -> Outbox:
        return cls(snapshot, generated_at, customer_count, changes.name, changes.counts, changes.unavailable)

    @classmethod
    def from_json(cls, doc: Any, name: str) -> Outbox:
        """The record stored as `name`; StoredDocumentError naming it and the field that is wrong."""
        from shared.changes.store import RECORD_NAME, changes_name
        from shared.snapshots.store import SNAPSHOT_NAME

        if not isinstance(doc, dict):
            raise StoredDocumentError(f"{name}: not a JSON object")
        snapshot, changes = doc.get("snapshot"), doc.get("changes")
        if not (isinstance(snapshot, str) and SNAPSHOT_NAME.fullmatch(snapshot)):
            raise StoredDocumentError(f"{name}: `snapshot` is not a snapshot of the layout")
        if not (
            isinstance(changes, str) and RECORD_NAME.fullmatch(changes) and changes == changes_name(snapshot)
        ):
            raise StoredDocumentError(f"{name}: `changes` is not the change record of its snapshot")
        generated_at = doc.get("generatedAt")
        if not (isinstance(generated_at, str) and _TIME.fullmatch(generated_at)):
            raise StoredDocumentError(f"{name}: `generatedAt` is not a UTC time")
        stamp = re.sub(r"[-:]", "", generated_at)  # a snapshot is named by its run's start
        if not snapshot.endswith(f"/customers-{stamp}.json"):
            raise StoredDocumentError(f"{name}: `generatedAt` is not its snapshot's time")
        counts, unavailable = _counts(doc, name)
        outbox = cls(
            snapshot, generated_at, _number(doc, "customerCount", name), changes, counts, unavailable
        )
        sent = _number(doc, "sent", name) if "sent" in doc else 0
        if outbox.name != name:
            raise StoredDocumentError(f"{name}: names another snapshot's change record")
        return outbox.advanced(sent)


def _number(doc: dict[str, Any], key: str, name: str) -> int:
    value = doc.get(key)
    if type(value) is not int or value < 0:  # not a bool, a float or a string
        raise StoredDocumentError(f"{name}: `{key}` is not a whole number")
    return value


def _counts(doc: dict[str, Any], name: str) -> tuple[dict[str, int] | None, str | None]:
    """(counts, None), or (None, why the run could not compare)."""
    counts = doc.get("counts")
    if counts is None:
        comparison = doc.get("comparison")
        reason = comparison.get("reason") if isinstance(comparison, dict) else None
        if not (isinstance(reason, str) and 0 < len(reason) <= MAX_REASON):
            raise StoredDocumentError(f"{name}: no counts and no reason why")
        return None, reason
    if not (isinstance(counts, dict) and set(counts) == set(_SECTIONS)):
        raise StoredDocumentError(f"{name}: `counts` is not added, removed and changed")
    return {key: _number(counts, key, name) for key in _SECTIONS}, None


def failed_name(name: str) -> str:
    """Where an outbox blob is set aside."""
    return FAILED + name.removeprefix(OUTBOX)


def failed_message_name(record: str, index: int) -> str:
    """Where message `index` of outbox record `record` is set aside."""
    return f"{failed_name(record).removesuffix('.json')}/{index}.json"


def ascii_metadata(text: str) -> str:
    """A metadata value (ASCII, one line, bounded) of a sentence of ours."""
    return text.encode("ascii", "replace").decode().replace("\n", " ")[:1000]
