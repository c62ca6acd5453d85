"""The outbox of change events in the snapshot container: one small record per published snapshot (or
withheld one) whose events and notifications are not all delivered yet, read back with bounds and checked
field by field.

    outbox/changes-YYYYMMDDTHHMMSSZ.json              a record: its snapshot, change record, counts, cursors
    outbox/withheld-YYYYMMDDTHHMMSSZ.json             a snapshot the completeness guard withheld: its
                                                      snapshot.withheld event and Teams warning card
    outbox/failed/changes-YYYYMMDDTHHMMSSZ.json       a record set aside (its first 256 KiB, as stored)
    outbox/failed/changes-YYYYMMDDTHHMMSSZ/<n>.json   message n of a record, set aside (the full CloudEvent)

A record is trusted for nothing: it is read through shared.storage.reader.read_json (size, inflation, depth,
encoding bounded), must name a snapshot of the snapshot layout and that snapshot's change record, and its
blob name must be that record's. Anything else is set aside (moved to outbox/failed/, with its reason in the
blob's metadata) by the sender, never followed.

Each channel the record was staged for keeps its own progress in it (a record only owes the channels that
were on when it was staged; one turned off since is owed nothing):

    "sent": n                  the queue (SNAPSHOT_EVENTS_QUEUE): how many of the record's messages (its
                               change record's entries in stored order, then snapshot.published) are sent or
                               set aside already; absent: the queue is not owed (a record holding none of
                               the three is an older queue-only record, cursor 0)
    "webhooks": {"<key>": n}   each webhook endpoint (key: the first 16 hex digits of its URL's SHA-256,
                               never the URL): how many of those messages it has (a batch boundary)
    "teams": false | true      the Teams card: not yet delivered / delivered or given up

The sender rewrites them as it goes, each write conditional on the record's ETag, so a run that resumes never
sends again what an earlier run delivered, and two runs never both advance one record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from shared.storage.layout import (
    RECORD_NAME,
    SNAPSHOT_NAME,
    changes_name,
    is_withheld_record,
    outbox_name,
    stamped,
)
from shared.storage.reader import StoredDocumentError

if TYPE_CHECKING:
    from shared.changes.guard import Withheld
    from shared.snapshots.store import ChangeRef

_ENDPOINT_KEY = re.compile(r"^[0-9a-f]{16}$")
MAX_ENDPOINTS = 10  # webhook endpoints a record may owe (WEBHOOK_URLS holds at most 10)
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_SECTIONS = ("added", "removed", "changed")
MAX_REASON = 1000  # characters of `comparison.reason` (ours are one sentence)


@dataclass(frozen=True)
class Outbox:
    """What is still to be delivered for one published snapshot (or, `withheld`, one the completeness guard
    withheld): its change record and counts (None, with `unavailable` saying why, when the run could not
    read the previous snapshot), and each channel's progress (see the module docstring)."""

    snapshot: str
    generated_at: str
    customer_count: int
    changes: str
    counts: dict[str, int] | None
    unavailable: str | None = None
    sent: int = 0
    withheld: Withheld | None = None
    queue: bool = True  # the queue is owed
    webhooks: Mapping[str, int] = field(default_factory=dict)  # endpoint key: messages it has
    teams: bool | None = None  # None: not owed; False: the card is still to be delivered

    @property
    def name(self) -> str:
        return outbox_name(self.changes, withheld=self.withheld is not None)

    @property
    def messages(self) -> int:
        """How many messages the record stands for: one per change, then snapshot.published; a withheld
        snapshot's record one, snapshot.withheld."""
        if self.withheld is not None:
            return 1
        return 1 + (sum(self.counts.values()) if self.counts else 0)

    @property
    def unsent(self) -> int:
        """Messages the queue still needs."""
        return max(0, self.messages - self.sent) if self.queue else 0

    def to_json(self) -> dict[str, Any]:
        """The data of its snapshot.published (or snapshot.withheld) event."""
        found: dict[str, Any] = {
            "snapshot": self.snapshot,
            "generatedAt": self.generated_at,
            "customerCount": self.customer_count,
            "changes": self.changes,
            "counts": self.counts,
        }
        if self.unavailable is not None:
            found["comparison"] = {"available": False, "reason": self.unavailable}
        if self.withheld is not None:
            found |= {k: v for k, v in self.withheld.to_json().items() if k not in found}
        return found

    def stored(self) -> bytes:
        """The record as stored: the event's data and each owed channel's progress."""
        progress: dict[str, Any] = {"kind": "withheld"} if self.withheld else {}
        if self.queue:
            progress["sent"] = self.sent
        if self.webhooks:
            progress["webhooks"] = dict(self.webhooks)
        if self.teams is not None:
            progress["teams"] = self.teams
        return json.dumps(self.to_json() | progress).encode()

    def advanced(self, sent: int) -> Outbox:
        return replace(self, sent=sent)

    def delivered(self, key: str, cursor: int) -> Outbox:
        """The record with webhook endpoint `key` at `cursor`."""
        return replace(self, webhooks={**self.webhooks, key: cursor})

    def card_done(self) -> Outbox:
        return replace(self, teams=True)

    def owing(self, *, queue: bool, webhooks: Iterable[str] = (), teams: bool = False) -> Outbox:
        """The record as staged for the channels that are on: nothing delivered yet."""
        return replace(
            self, sent=0, queue=queue, webhooks=dict.fromkeys(webhooks, 0), teams=False if teams else None
        )

    @classmethod
    def of(
        cls,
        snapshot: str,
        generated_at: str,
        customer_count: int,
        changes: ChangeRef,
        withheld: Withheld | None = None,
    ) -> Outbox:
        return cls(
            snapshot,
            generated_at,
            customer_count,
            changes.name,
            changes.counts,
            changes.unavailable,
            withheld=withheld,
        )

    @classmethod
    def from_json(cls, doc: Any, name: str) -> Outbox:
        """The record stored as `name`; StoredDocumentError naming it and the field that is wrong."""
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
        if not stamped(snapshot, stamp):
            raise StoredDocumentError(f"{name}: `generatedAt` is not its snapshot's time")
        counts, unavailable = _counts(doc, name)
        outbox = cls(
            snapshot,
            generated_at,
            _number(doc, "customerCount", name),
            changes,
            counts,
            unavailable,
            withheld=_withheld(doc, name),
        )
        if outbox.name != name:
            raise StoredDocumentError(f"{name}: names another snapshot's change record")
        return _progress(outbox, doc, name)


def _withheld(doc: dict[str, Any], name: str) -> Withheld | None:
    """What withheld.json said, for a record of a withheld snapshot (its name says which kind it is)."""
    from shared.changes.guard import Withheld

    if not is_withheld_record(name):
        return None
    withheld = Withheld.from_json(doc)
    if withheld is None or doc.get("kind") != "withheld":
        raise StoredDocumentError(f"{name}: not what the completeness guard wrote")
    if (withheld.snapshot, withheld.generated_at, withheld.customer_count) != (
        doc["snapshot"],
        doc["generatedAt"],
        doc["customerCount"],
    ):
        raise StoredDocumentError(f"{name}: names another snapshot than its withheld one")
    return withheld


def _progress(outbox: Outbox, doc: dict[str, Any], name: str) -> Outbox:
    """`outbox` with the channels' progress the record holds."""
    hooks = doc.get("webhooks", {})
    if not (
        isinstance(hooks, dict)
        and len(hooks) <= MAX_ENDPOINTS
        and all(isinstance(key, str) and _ENDPOINT_KEY.fullmatch(key) for key in hooks)
    ):
        raise StoredDocumentError(f"{name}: `webhooks` is not a map of endpoint keys to cursors")
    teams = doc.get("teams")
    if teams is not None and type(teams) is not bool:
        raise StoredDocumentError(f"{name}: `teams` is not true or false")
    queue = "sent" in doc or not ("webhooks" in doc or "teams" in doc)  # neither: an older queue record
    return replace(
        outbox,
        sent=_number(doc, "sent", name) if "sent" in doc else 0,
        queue=queue,
        webhooks={key: _number(hooks, key, f"{name} webhooks") for key in hooks},
        teams=teams,
    )


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


def ascii_metadata(text: str) -> str:
    """A metadata value (ASCII, one line, bounded) of a sentence of ours."""
    return text.encode("ascii", "replace").decode().replace("\n", " ")[:1000]
