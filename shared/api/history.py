"""GET /api/customers/{customerId}/history: when a customer was first and last seen in the retained
published snapshots, and its events, from the change records (shared/api/records.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.api import params as p
from shared.api.endpoint import NO_PARAMETERS, about_latest, endpoint
from shared.api.errors import ApiError, snapshot_unavailable
from shared.api.http import answer, json_bytes, make_etag
from shared.api.records import (
    BASE_UNREADABLE,
    RECORD_UNREADABLE,
    RecordUnreadable,
    change_event,
    may_hold,
    published_chain,
    record_entries,
    remember,
)
from shared.errors import SnapshotFormatError

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.changes.store import RecordInfo
    from shared.snapshots.store import Manifest, SnapshotStore


# -- GET /api/customers/{customerId}/history --------------------------------------------------------
@endpoint
def history(req: func.HttpRequest) -> func.HttpResponse:
    """When a customer was first and last seen in the retained published snapshots, whether it is in the
    latest, and its events (added, removed, changed) oldest first; 404 when never seen."""
    p.query(req, NO_PARAMETERS)
    customer_id = p.customer_id(req)
    ctx, manifest, cache = about_latest()

    def produce() -> tuple[bytes, bool]:
        found = History.of(ctx, manifest, customer_id)
        if found.first_seen is None:
            raise ApiError(
                404,
                "customer_not_found",
                "no customer with this id in the retained published snapshots",
                parameter="customerId",
            )
        return json_bytes(found.to_json()), False

    return answer(req, make_etag("history", manifest.etag, customer_id), cache, produce)


@dataclass
class History:
    customer_id: str
    retained_since: str | None
    first_seen: str | None = None
    last_seen: str | None = None
    present: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    incomplete: list[dict[str, Any]] = field(default_factory=list)  # steps whose changes are unknown

    @classmethod
    def of(cls, ctx: ApiContext, manifest: Manifest, customer_id: str) -> History:
        """Replays the chain: membership in its oldest snapshot that can be read, then each record's entries
        for this id. A retained snapshot that cannot be read as the base is passed over: the history starts
        at the next one, and the step after it is named in `incomplete`."""
        from azure.core.exceptions import ResourceNotFoundError

        from shared.changes.record import change_key

        key = change_key(customer_id)
        passed: list[dict[str, Any]] = []
        for base, base_time, replay in _bases(ctx.store, manifest, published_chain(ctx.store, manifest)):
            try:
                held = _holds(ctx, base, key)
            except (ResourceNotFoundError, SnapshotFormatError):
                if not replay:  # not even the latest snapshot reads: nothing to tell
                    raise snapshot_unavailable("the retained snapshots cannot be read") from None
                passed.append(replay[0].unknown_step(BASE_UNREADABLE))
                continue
            found = cls(customer_id, base_time, incomplete=passed)
            if held:
                found.present, found.first_seen, found.last_seen = True, base_time, base_time
            for record in replay:
                found._apply(ctx, record, key)
            return found
        raise AssertionError("_bases ends with the latest snapshot")  # pragma: no cover

    def _apply(self, ctx: ApiContext, record: RecordInfo, key: str) -> None:
        from shared.changes.record import change_key
        from shared.snapshots.document import line_id

        if record.unavailable is not None:
            self._cross(ctx, record, key, record.unknown_step())
        elif may_hold(record, None):
            try:  # a record is taken whole or not at all
                mine = [item for item in record_entries(ctx, record) if change_key(line_id(item[1])) == key]
            except RecordUnreadable:
                self._cross(ctx, record, key, record.unknown_step(RECORD_UNREADABLE))
                mine = []
            for section, entry in mine:
                self.events.append(change_event(section, record, entry))
                if section == "added":
                    self.present = True
                    self.first_seen = self.first_seen or record.generated_at
                elif section == "removed":
                    self.present = False
        if self.present:
            self.last_seen = record.generated_at

    def _cross(self, ctx: ApiContext, record: RecordInfo, key: str, step: dict[str, Any]) -> None:
        """A step whose changes are unknown: listed in `incomplete`; whether the customer is there after it
        is read from the step's own snapshot (unknown when that cannot be read either: as before)."""
        from azure.core.exceptions import ResourceNotFoundError

        self.incomplete.append(step)
        try:
            present = _holds(ctx, record.snapshot, key)
        except (ResourceNotFoundError, SnapshotFormatError):
            return
        if present and not self.present:
            self.first_seen = self.first_seen or record.generated_at
        self.present = present

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.customer_id,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "present": self.present,
            "retainedSince": self.retained_since,
            "events": self.events,
            "incomplete": self.incomplete,
        }


def _bases(
    store: SnapshotStore, manifest: Manifest, chain: list[RecordInfo]
) -> Iterator[tuple[str, str | None, list[RecordInfo]]]:
    """Where history may start, oldest first: (a retained published snapshot, its generatedAt, the records
    after it). The snapshot the oldest record was compared with, when it is still there (retention takes
    the oldest first), unless that record's comparison was unavailable (no step to replay); then each
    record's own snapshot, the latest last."""
    if not chain:
        yield manifest.snapshot, manifest.generated_at, []
        return
    first = chain[0]
    if first.unavailable is None and first.previous_snapshot and store.exists(first.previous_snapshot):
        yield first.previous_snapshot, first.previous_generated_at, chain
    for position, record in enumerate(chain):
        yield record.snapshot, record.generated_at, chain[position + 1 :]


def _holds(ctx: ApiContext, snapshot: str, key: str) -> bool:
    """Whether a stored snapshot holds the customer, read one line at a time through the bounded reader.
    A version not read whole before is read to its end, so that a damaged one is refused whichever customer
    is asked for (SnapshotFormatError, remembered by its ETag); after that the read stops at the customer."""
    from shared.changes.record import change_key
    from shared.snapshots.document import customer_lines, line_id
    from shared.storage.reader import inflate_limit, inflated

    chunks, gzipped, properties = ctx.store.stream(snapshot)
    verdict_key = (snapshot, str(properties.etag))
    verdict = ctx.readable.get(verdict_key)
    if verdict is False:
        raise SnapshotFormatError(f"{snapshot}: could not be read before")
    found = False
    try:
        for line in customer_lines(inflated(chunks, gzipped, inflate_limit(properties.size))):
            if change_key(line_id(line)) == key:
                found = True
                if verdict:
                    return True
    except SnapshotFormatError:
        remember(ctx, verdict_key, False)
        raise
    remember(ctx, verdict_key, True)
    return found
