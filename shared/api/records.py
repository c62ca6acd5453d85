"""The published history the change routes read: the chain of change records from latest.json back, and
each record's entries, read whole once per version.

Only published snapshots count: each change record names the published snapshot it was compared with
(its blob metadata repeats it), so the chain from latest.json back through `previousSnapshot` is exactly the
published history; a withheld snapshot's record is on no chain. One listing call gives the chain.

A run that could not read the previous snapshot wrote a record saying so (comparison unavailable): the chain
goes on through it, and answers list such steps in `incomplete` (their changes are unknown), never as a
step where nothing changed. So is a step whose record cannot be read (not gzip, entries that are not JSON,
past the reader's bounds): each version of a record (and of a snapshot history reads) is read whole once per
instance, and one that failed is remembered by its ETag and not read again until it changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import SnapshotAppError
from shared.events import log_event

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.changes.store import RecordInfo
    from shared.snapshots.store import Manifest, SnapshotStore

log = logging.getLogger("shared.api")

# -- the published chain ----------------------------------------------------------------------------
MAX_RECORDS = 400  # a year of daily records, and some: history and /api/changes read no further back


def published_chain(store: SnapshotStore, manifest: Manifest) -> list[RecordInfo]:
    """The change records of the published snapshots, oldest first: from latest.json's snapshot back
    through each record's previousSnapshot (at most MAX_RECORDS; a missing record or a baseline ends it;
    a record whose comparison was unavailable does not)."""
    from shared.changes.store import list_records

    records = list_records(store)
    chain: list[RecordInfo] = []
    seen: set[str] = set()
    info = records.get(manifest.snapshot)
    while info is not None and info.snapshot not in seen and len(chain) < MAX_RECORDS:
        chain.append(info)
        seen.add(info.snapshot)
        info = records.get(info.previous_snapshot) if info.previous_snapshot else None
    chain.reverse()
    return chain


# -- reading records (and the snapshots history reads), each version read whole once --------------------
RECORD_UNREADABLE = "the change record of this step cannot be read"
BASE_UNREADABLE = "the snapshot before this step, the oldest retained, cannot be read"
_REMEMBERED = 5000  # (name, ETag) verdicts kept: years of daily records and snapshots; never unbounded


class RecordUnreadable(SnapshotAppError):
    """A change record that cannot be read (now, or remembered from an earlier read of its version)."""


def record_entries(ctx: ApiContext, record: RecordInfo) -> Iterator[tuple[str, bytes]]:
    """(section, entry JSON) of a change record, streamed from storage (that version only). The first read
    of a version checks every entry; one that cannot be read is logged once (api.change_record_unreadable,
    the record's name and the kind of damage, never its content), remembered by its ETag and raises
    RecordUnreadable, now and on every later read until it changes."""
    from shared.changes.store import read_record
    from shared.storage.reader import StoredDocumentError

    key = (record.name, record.etag or "")
    verdict = ctx.readable.get(key)
    if verdict is False:
        raise RecordUnreadable(record.name)
    try:
        yield from read_record(ctx.store, record.name, etag=record.etag, verify=verdict is None)
    except StoredDocumentError as exc:
        remember(ctx, key, False)
        log_event(
            log, logging.ERROR, events.API_CHANGE_RECORD_UNREADABLE, record=record.name, problem=str(exc)
        )
        raise RecordUnreadable(record.name) from None
    remember(ctx, key, True)


def remember(ctx: ApiContext, key: tuple[str, str], readable: bool) -> None:
    if len(ctx.readable) >= _REMEMBERED:
        ctx.readable.clear()
    ctx.readable[key] = readable


def unknown(ctx: ApiContext, record: RecordInfo) -> dict[str, Any] | None:
    """The record's step as `incomplete` lists it, when its changes are unknown (its run could not compare,
    or it cannot be read); None when they are known (or not yet read)."""
    if record.unavailable is not None:
        return record.unknown_step()
    if ctx.readable.get((record.name, record.etag or "")) is False:
        return record.unknown_step(RECORD_UNREADABLE)
    return None


def may_hold(record: RecordInfo, kind: str | None) -> bool:
    """False when the record's counts (blob metadata) say it has no entry of this kind, or it says its
    comparison was unavailable (no entries): no download."""
    if record.unavailable is not None:
        return False
    counts = record.counts
    if counts is None:
        return True
    if kind is None:
        return counts.added + counts.removed + counts.changed > 0
    return bool(getattr(counts, kind))


def change_event(section: str, record: RecordInfo, entry: bytes) -> dict[str, Any]:
    head = {"type": section, "generatedAt": record.generated_at, "snapshot": record.snapshot}
    body: dict[str, Any] = json.loads(entry)
    return head | body
