"""GET /api/changes: what changed across the published snapshots of a date range, read from the change
records (shared/api/records.py reads the chain and remembers what cannot be read)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared.api import params as p
from shared.api.endpoint import about_latest, endpoint, next_link
from shared.api.http import answer, json_bytes, make_etag, utc_now
from shared.api.records import (
    RecordUnreadable,
    change_event,
    may_hold,
    published_chain,
    record_entries,
    unknown,
)
from shared.storage.layout import SNAPSHOT_NAME, date_of

if TYPE_CHECKING:
    from shared.api.context import ApiContext
    from shared.changes.store import RecordInfo


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # not \d: it matches every script's digits


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
    ctx, manifest, cache = about_latest()
    base = make_etag("changes", manifest.etag, json.dumps(query.criteria), str(query.after), str(query.top))

    def produce() -> tuple[bytes, bool]:
        chain = [
            record
            for record in published_chain(ctx.store, manifest)
            if query.since <= date_of(record.snapshot) <= query.until
        ]
        found, after = _collect(ctx, chain, query)
        _read_all(ctx, chain)  # so that every page knows every step of the range that cannot be read
        token = p.encode_continuation({"r": after[0], "i": after[1]}) if after else None
        body = {
            "query": query.criteria,
            "changes": found,
            # the whole range's, on every page: steps whose changes are unknown (not "nothing changed")
            "incomplete": [step for record in chain if (step := unknown(ctx, record)) is not None],
            "nextLink": next_link(req, params, token),
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
        if not may_hold(record, query.type):
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
        taken.append(change_event(section, record, entry))
    return taken, following


def _read_all(ctx: ApiContext, chain: list[RecordInfo]) -> None:
    """Reads each record of the chain with entries that was never read whole (once per version)."""
    for record in chain:
        if may_hold(record, None) and (record.name, record.etag or "") not in ctx.readable:
            try:
                for _entry in record_entries(ctx, record):
                    pass
            except RecordUnreadable:
                continue
