"""GET /api/changes and GET /api/customers/{customerId}/history: what changed, read from change records.

Only published snapshots count: each change record names the published snapshot it was compared with
(its blob metadata repeats it), so the chain from latest.json back through `previousSnapshot` is exactly the
published history; a withheld snapshot's record is on no chain. One listing call gives the chain.

A run that could not read the previous snapshot wrote a record saying so (comparison unavailable): the chain
goes on through it, and answers list such steps in `incomplete` (their changes are unknown), never as a
step where nothing changed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.api import params as p
from shared.api.errors import ApiError
from shared.api.handlers import NO_PARAMETERS, _context, _latest, _max_age, _next_link, endpoint
from shared.api.http import answer, cache_control, json_bytes, make_etag, utc_now

if TYPE_CHECKING:
    from shared.changes.store import RecordInfo
    from shared.snapshots.store import Manifest, SnapshotStore

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # not \d: it matches every script's digits


_WITHHELD_TTL = 30.0  # seconds a health answer reuses its look at withheld.json (per latest.json)
_withheld_seen: dict[tuple[int, str], tuple[float, dict[str, Any] | None]] = {}


def withheld_since(store: SnapshotStore, manifest: Manifest) -> dict[str, Any] | None:
    """For /api/health: the snapshot the completeness guard withheld, when it is newer than the latest
    (counts and times only: health is anonymous). One short read of withheld.json (no retries, the check
    timeouts of latest.json) at most every _WITHHELD_TTL seconds per latest.json; None when it fails."""
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


def _withheld(store: SnapshotStore, manifest: Manifest) -> dict[str, Any] | None:
    from azure.core.exceptions import AzureError

    from shared.api.latest import LATEST_CHECK_OPTIONS
    from shared.changes.guard import read_withheld

    try:
        withheld = read_withheld(store, retry_total=0, **LATEST_CHECK_OPTIONS)
    except AzureError:  # health answers without it rather than fail on it
        return None
    if withheld is None or str(withheld.get("generatedAt", "")) <= manifest.generated_at:
        return None
    return {
        "generatedAt": withheld.get("generatedAt"),
        "customerCount": withheld.get("customerCount"),
        "latestCustomerCount": withheld.get("latestCustomerCount"),
        "dropPercent": withheld.get("dropPercent"),
        "maxDropPercent": withheld.get("maxDropPercent"),
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


def record_entries(store: SnapshotStore, record: RecordInfo) -> Iterator[tuple[str, bytes]]:
    """(section, entry JSON) of a change record, streamed from storage."""
    from shared.changes.store import iter_entries

    download = store.blob(record.name).download_blob(decompress=False, max_concurrency=1)
    gzipped = (download.properties.content_settings.content_encoding or "").lower() == "gzip"
    return iter_entries(download.chunks(), gzipped)


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
        found, after = _collect(ctx.store, chain, query)
        token = p.encode_continuation({"r": after[0], "i": after[1]}) if after else None
        body = {
            "query": query.criteria,
            "changes": found,
            # the whole range's, on every page: steps whose changes are unknown (not "nothing changed")
            "incomplete": [record.unknown_step() for record in chain if record.unavailable is not None],
            "nextLink": _next_link(req, params, token),
        }
        return json_bytes(body), False

    return answer(req, base, cache, produce)


def _collect(
    store: SnapshotStore, chain: list[RecordInfo], query: ChangesQuery
) -> tuple[list[dict[str, Any]], tuple[str, int] | None]:
    """Up to `top` entries from where the query starts; the position of the next one, if any."""
    found: list[dict[str, Any]] = []
    for record in chain:
        if query.after is not None and record.snapshot < query.after[0]:
            continue
        start = query.after[1] if query.after is not None and record.snapshot == query.after[0] else 0
        if not _may_hold(record, query.type):
            continue
        for index, (section, entry) in enumerate(record_entries(store, record)):
            if index < start or (query.type is not None and section != query.type):
                continue
            if len(found) == query.top:
                return found, (record.snapshot, index)
            found.append(_event(section, record, entry))
    return found, None


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
        found = History.of(ctx.store, manifest, customer_id)
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
    def of(cls, store: SnapshotStore, manifest: Manifest, customer_id: str) -> History:
        """Replays the chain: membership in its oldest snapshot, then each record's entries for this id."""
        from shared.changes.record import change_key

        key = change_key(customer_id)
        chain = published_chain(store, manifest)
        base, base_time, replay = _base(store, manifest, chain)
        found = cls(customer_id, base_time)
        if _holds(store, base, key):
            found.present, found.first_seen, found.last_seen = True, base_time, base_time
        for record in replay:
            found._apply(store, record, key)
        return found

    def _apply(self, store: SnapshotStore, record: RecordInfo, key: str) -> None:
        from shared.changes.record import change_key
        from shared.snapshots.document import line_id

        if record.unavailable is not None:
            self._cross(store, record, key)
        elif _may_hold(record, None):
            for section, entry in record_entries(store, record):
                if change_key(line_id(entry)) != key:
                    continue
                self.events.append(_event(section, record, entry))
                if section == "added":
                    self.present = True
                    self.first_seen = self.first_seen or record.generated_at
                elif section == "removed":
                    self.present = False
        if self.present:
            self.last_seen = record.generated_at

    def _cross(self, store: SnapshotStore, record: RecordInfo, key: str) -> None:
        """A step whose changes are unknown: listed in `incomplete`; whether the customer is there after it
        is read from the step's own snapshot (unknown when that cannot be read either: as before)."""
        from azure.core.exceptions import ResourceNotFoundError

        from shared.errors import SnapshotFormatError

        self.incomplete.append(record.unknown_step())
        try:
            present = _holds(store, record.snapshot, key)
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


def _base(
    store: SnapshotStore, manifest: Manifest, chain: list[RecordInfo]
) -> tuple[str, str | None, list[RecordInfo]]:
    """(oldest retained published snapshot, its generatedAt, the records after it). A first record whose
    comparison was unavailable is no step to replay: its own snapshot is the base."""
    if not chain:
        return manifest.snapshot, manifest.generated_at, []
    first = chain[0]
    if first.unavailable is None and first.previous_snapshot and store.blob(first.previous_snapshot).exists():
        return first.previous_snapshot, first.previous_generated_at, chain
    return first.snapshot, first.generated_at, chain[1:]


def _holds(store: SnapshotStore, snapshot: str, key: str) -> bool:
    """Whether a stored snapshot holds the customer, read one line at a time."""
    from shared.changes.record import change_key
    from shared.snapshots.document import customer_lines, line_id

    return any(change_key(line_id(line)) == key for line in customer_lines(store.iter_document(snapshot)))
