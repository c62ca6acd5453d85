"""GET /api/changes and GET /api/customers/{customerId}/history: what changed, read from change records.

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
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared import events
from shared.api import params as p
from shared.api.errors import ApiError, snapshot_unavailable
from shared.api.handlers import NO_PARAMETERS, _context, _latest, _max_age, _next_link, endpoint
from shared.api.http import answer, cache_control, json_bytes, make_etag, utc_now
from shared.errors import SnapshotFormatError
from shared.events import log_event

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.changes.guard import Withheld
    from shared.changes.store import RecordInfo
    from shared.snapshots.store import Manifest, SnapshotStore

log = logging.getLogger("shared.api")

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # not \d: it matches every script's digits


_WITHHELD_TTL = 30.0  # seconds a health answer reuses its look at withheld.json (per latest.json)
_withheld_seen: dict[tuple[int, str], tuple[float, dict[str, Any] | str | None]] = {}


def withheld_since(store: SnapshotStore, manifest: Manifest) -> dict[str, Any] | str | None:
    """For /api/health: the snapshot the completeness guard withheld, when it is newer than the latest
    (numbers, RFC 3339 times and a snapshot name, each checked: health is anonymous), or "unreadable" when
    withheld.json cannot be read or holds anything else. One short read of withheld.json (bounded, no
    retries, the check timeouts of latest.json) at most every _WITHHELD_TTL seconds per latest.json; None
    when there is none or the read fails."""
    key = (id(store), manifest.etag)
    now = time.monotonic()
    seen = _withheld_seen.get(key)
    if seen is not None and now - seen[0] < _WITHHELD_TTL:
        return seen[1]
    found = _withheld(store, manifest)
    if len(_withheld_seen) > 64:
        _withheld_seen.clear()
    _withheld_seen[key] = (now, found)
    return found


def _withheld(store: SnapshotStore, manifest: Manifest) -> dict[str, Any] | str | None:
    from azure.core.exceptions import AzureError

    from shared.api.latest import LATEST_CHECK_OPTIONS
    from shared.changes.guard import read_withheld, rfc3339

    try:
        withheld = read_withheld(store, retry_total=0, **LATEST_CHECK_OPTIONS)
    except AzureError:  # health answers without it rather than fail on it
        return None
    if withheld is None or isinstance(withheld, str):
        return withheld
    latest = rfc3339(manifest.generated_at)
    generated = rfc3339(withheld.generated_at)
    if latest is not None and generated is not None and generated <= latest:
        return None
    return _typed(withheld)


def _typed(withheld: Withheld) -> dict[str, Any]:
    return {
        "snapshot": withheld.snapshot,
        "generatedAt": withheld.generated_at,
        "customerCount": withheld.customer_count,
        "latestCustomerCount": withheld.latest_customer_count,
        "dropPercent": withheld.drop_percent,
        "maxDropPercent": withheld.max_drop_percent,
    }


# -- the published chain ----------------------------------------------------------------------------
MAX_RECORDS = 400  # a year of daily records, and some: history and /api/changes read no further back


def published_chain(store: SnapshotStore, manifest: Manifest) -> list[RecordInfo]:
    """The change records of the published snapshots, oldest first: from latest.json's snapshot back
    through each record's previousSnapshot (at most MAX_RECORDS; a missing record or a baseline ends it;
    a record whose comparison was unavailable does not)."""
    from shared.changes.store import list_records

    records = list_records(store.container)
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


class RecordUnreadable(Exception):
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
        yield from read_record(ctx.store.blob(record.name), etag=record.etag, verify=verdict is None)
    except StoredDocumentError as exc:
        _remember(ctx, key, False)
        log_event(
            log, logging.ERROR, events.API_CHANGE_RECORD_UNREADABLE, record=record.name, problem=str(exc)
        )
        raise RecordUnreadable(record.name) from None
    _remember(ctx, key, True)


def _remember(ctx: ApiContext, key: tuple[str, str], readable: bool) -> None:
    if len(ctx.readable) >= _REMEMBERED:
        ctx.readable.clear()
    ctx.readable[key] = readable


def _unknown(ctx: ApiContext, record: RecordInfo) -> dict[str, Any] | None:
    """The record's step as `incomplete` lists it, when its changes are unknown (its run could not compare,
    or it cannot be read); None when they are known (or not yet read)."""
    if record.unavailable is not None:
        return record.unknown_step()
    if ctx.readable.get((record.name, record.etag or "")) is False:
        return record.unknown_step(RECORD_UNREADABLE)
    return None


def _date_of(name: str) -> date:
    year, month, day = name.split("/")[1:4]
    return date(int(year), int(month), int(day))


# -- GET /api/changes --------------------------------------------------------------------------------
CHANGES_PARAMETERS = frozenset({"since", "until", "type", "top", "continuation"})
CHANGES_TOP = (100, 1000)  # default, maximum
MAX_RANGE_DAYS = 366
TYPES = ("added", "removed", "changed")


@dataclass(frozen=True)
class ChangesQuery:
    since: date
    until: date
    type: str | None
    top: int
    after: tuple[str, int] | None  # (snapshot, entry index) to start from

    @property
    def criteria(self) -> dict[str, str]:
        criteria = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        return criteria | ({"type": self.type} if self.type else {})


def changes_query(params: dict[str, str], today: date) -> ChangesQuery:
    """The query of GET /api/changes; 400 naming the parameter for anything not allowed."""
    from shared.snapshots.store import SNAPSHOT_NAME

    if "since" not in params:
        raise p.bad_parameter("since", "since is required: a UTC date, YYYY-MM-DD")
    since = _date_param(params, "since")
    if "until" not in params and since > today:  # until defaults to today: since is the mistake
        raise p.bad_parameter("since", "since must not be after today (UTC), the default of until")
    until = _date_param(params, "until") if "until" in params else today
    if until < since:
        raise p.bad_parameter("until", "until must not be before since")
    if (until - since).days >= MAX_RANGE_DAYS:
        raise p.bad_parameter("until", f"the range from since to until is at most {MAX_RANGE_DAYS} days")
    kind = params.get("type")
    if kind is not None and kind not in TYPES:
        raise p.bad_parameter("type", "type must be added, removed or changed")
    continuation = p.decode_continuation(params, ("r", "i"))
    after = None
    if continuation is not None:
        snapshot, index = continuation["r"], continuation["i"]
        if not (isinstance(snapshot, str) and SNAPSHOT_NAME.fullmatch(snapshot)) or type(index) is not int:
            raise p.invalid_continuation()
        after = (snapshot, max(index, 0))
    return ChangesQuery(since, until, kind, p.top(params, *CHANGES_TOP), after)


def _date_param(params: dict[str, str], name: str) -> date:
    value = params.get(name, "")
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise p.bad_parameter(name, f"{name} must be a UTC calendar date, YYYY-MM-DD") from None


@endpoint
def changes(req: func.HttpRequest) -> func.HttpResponse:
    """The changes of every published snapshot from `since` to `until` (UTC dates), oldest first."""
    params = p.query(req, CHANGES_PARAMETERS)
    query = changes_query(params, utc_now().date())
    ctx = _context()
    manifest = _latest(ctx)
    cache = cache_control(_max_age(ctx.settings, manifest.generated_at))
    base = make_etag("changes", manifest.etag, json.dumps(query.criteria), str(query.after), str(query.top))

    def produce() -> tuple[bytes, bool]:
        chain = [
            record
            for record in published_chain(ctx.store, manifest)
            if query.since <= _date_of(record.snapshot) <= query.until
        ]
        found, after = _collect(ctx, chain, query)
        _read_all(ctx, chain)  # so that every page knows every step of the range that cannot be read
        token = p.encode_continuation({"r": after[0], "i": after[1]}) if after else None
        body = {
            "query": query.criteria,
            "changes": found,
            # the whole range's, on every page: steps whose changes are unknown (not "nothing changed")
            "incomplete": [step for record in chain if (step := _unknown(ctx, record)) is not None],
            "nextLink": _next_link(req, params, token),
        }
        return json_bytes(body), False

    return answer(req, base, cache, produce)


def _collect(
    ctx: ApiContext, chain: list[RecordInfo], query: ChangesQuery
) -> tuple[list[dict[str, Any]], tuple[str, int] | None]:
    """Up to `top` entries from where the query starts; the position of the next one, if any. A record that
    cannot be read gives none (its step is in `incomplete`)."""
    found: list[dict[str, Any]] = []
    for record in chain:
        if query.after is not None and record.snapshot < query.after[0]:
            continue
        start = query.after[1] if query.after is not None and record.snapshot == query.after[0] else 0
        if not _may_hold(record, query.type):
            continue
        try:
            taken, following = _take(ctx, record, start, query.type, query.top - len(found))
        except RecordUnreadable:
            continue
        found += taken
        if following is not None:
            return found, (record.snapshot, following)
    return found, None


def _take(
    ctx: ApiContext, record: RecordInfo, start: int, kind: str | None, room: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `room` entries of one record from entry `start`, and the index of the next one, if any. A
    version not read whole before is read to its end first (RecordUnreadable: none of its entries count)."""
    taken: list[dict[str, Any]] = []
    following = None
    for index, (section, entry) in enumerate(record_entries(ctx, record)):
        if following is not None:
            continue  # reading on: a record is served whole or not at all
        if index < start or (kind is not None and section != kind):
            continue
        if len(taken) == room:
            following = index
            if ctx.readable.get((record.name, record.etag or "")):
                break  # read whole before: no need to go on
            continue
        taken.append(_event(section, record, entry))
    return taken, following


def _read_all(ctx: ApiContext, chain: list[RecordInfo]) -> None:
    """Reads each record of the chain with entries that was never read whole (once per version)."""
    for record in chain:
        if _may_hold(record, None) and (record.name, record.etag or "") not in ctx.readable:
            try:
                for _entry in record_entries(ctx, record):
                    pass
            except RecordUnreadable:
                continue


def _may_hold(record: RecordInfo, kind: str | None) -> bool:
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


def _event(section: str, record: RecordInfo, entry: bytes) -> dict[str, Any]:
    head = {"type": section, "generatedAt": record.generated_at, "snapshot": record.snapshot}
    body: dict[str, Any] = json.loads(entry)
    return head | body


# -- GET /api/customers/{customerId}/history --------------------------------------------------------
@endpoint
def history(req: func.HttpRequest) -> func.HttpResponse:
    """When a customer was first and last seen in the retained published snapshots, whether it is in the
    latest, and its events (added, removed, changed) oldest first; 404 when never seen."""
    p.query(req, NO_PARAMETERS)
    customer_id = p.customer_id(req)
    ctx = _context()
    manifest = _latest(ctx)
    cache = cache_control(_max_age(ctx.settings, manifest.generated_at))

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
        elif _may_hold(record, None):
            try:  # a record is taken whole or not at all
                mine = [item for item in record_entries(ctx, record) if change_key(line_id(item[1])) == key]
            except RecordUnreadable:
                self._cross(ctx, record, key, record.unknown_step(RECORD_UNREADABLE))
                mine = []
            for section, entry in mine:
                self.events.append(_event(section, record, entry))
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
    if first.unavailable is None and first.previous_snapshot and store.blob(first.previous_snapshot).exists():
        yield first.previous_snapshot, first.previous_generated_at, chain
    for position, record in enumerate(chain):
        yield record.snapshot, record.generated_at, chain[position + 1 :]


def _holds(ctx: ApiContext, snapshot: str, key: str) -> bool:
    """Whether a stored snapshot holds the customer, read one line at a time through the bounded reader.
    A version not read whole before is read to its end, so that a damaged one is refused whichever customer
    is asked for (SnapshotFormatError, remembered by its ETag); after that the read stops at the customer."""
    from shared.changes.record import change_key
    from shared.snapshots.document import customer_lines, line_id
    from shared.storage.reader import inflate_limit, inflated, stream

    chunks, gzipped, properties = stream(ctx.store.blob(snapshot))
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
        _remember(ctx, verdict_key, False)
        raise
    _remember(ctx, verdict_key, True)
    return found
