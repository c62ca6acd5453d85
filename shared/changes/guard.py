"""The completeness guard: a run that finds far fewer customers than the last published snapshot does not
publish.

A list that silently stops early is the worst thing this product could publish. When this run's count is
below the previous published snapshot's by more than SNAPSHOT_MAX_DROP_PERCENT, the snapshot and its
change record stay as evidence, latest.json stays where it was, `withheld.json` names the withheld snapshot
(GET /api/health reports it) and the run fails (snapshot.withheld, then snapshot.failed: the failure alert
fires). An operator who knows the drop is real runs the job again with the setting raised.

The guard fails closed: without a readable latest.json the previous published snapshot is the one the
newest readable `.published` marker names (a marker holds the manifest latest.json had; previous_published);
with markers but none readable, nothing is published (NothingToCompareError) unless the guard is off.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import NothingToCompareError, SnapshotWithheldError
from shared.events import log_event
from shared.storage import layout

if TYPE_CHECKING:
    from shared.snapshots.store import Manifest, SnapshotStore
    from shared.snapshots.writer import CommittedSnapshot

log = logging.getLogger("shared.job")

UNREADABLE = "unreadable"  # read_withheld: withheld.json is there but is not what check_drop writes
MARKERS_TRIED = 5  # the newest .published markers read, at most, when latest.json cannot be
GUARD_OFF = 100.0  # SNAPSHOT_MAX_DROP_PERCENT: no drop is over it
# RFC 3339 date-time ([0-9], not \d: that matches every script's digits)
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def drop_percent(previous_count: int, count: int) -> float:
    """How many percent fewer customers `count` has than `previous_count` (0 when not fewer)."""
    if previous_count <= 0 or count >= previous_count:
        return 0.0
    return (previous_count - count) * 100 / previous_count


def check_drop(
    store: SnapshotStore,
    committed: CommittedSnapshot,
    previous: Manifest | None,
    max_drop_percent: float,
    context: Mapping[str, Any],
) -> None:
    """Raises SnapshotWithheldError, after logging snapshot.withheld and writing withheld.json, when the
    drop from `previous` is over `max_drop_percent`."""
    if previous is None:
        return
    drop = drop_percent(previous.customer_count, committed.customer_count)
    if drop <= max_drop_percent:
        return
    withheld = Withheld(
        snapshot=committed.name,
        generated_at=committed.generated_at,
        customer_count=committed.customer_count,
        latest_snapshot=previous.snapshot,
        latest_customer_count=previous.customer_count,
        drop_percent=round(drop, 2),
        max_drop_percent=max_drop_percent,
    )
    store.put(layout.WITHHELD, json.dumps(withheld.to_json(), indent=2).encode())
    log_event(log, logging.ERROR, events.SNAPSHOT_WITHHELD, **withheld.to_json(), **context)
    error = SnapshotWithheldError(
        f"{committed.customer_count} customers where the latest published snapshot has "
        f"{previous.customer_count} ({withheld.drop_percent}% fewer, more than SNAPSHOT_MAX_DROP_PERCENT="
        f"{max_drop_percent:g}): {committed.name} is kept but not published"
    )
    error.withheld = withheld  # the run tells the notification channels (shared/job/)
    raise error


@dataclass(frozen=True)
class Withheld:
    """The last snapshot the guard withheld (withheld.json)."""

    snapshot: str
    generated_at: str
    customer_count: int
    latest_snapshot: str
    latest_customer_count: int
    drop_percent: float
    max_drop_percent: float

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "generatedAt": self.generated_at,
            "customerCount": self.customer_count,
            "latestSnapshot": self.latest_snapshot,
            "latestCustomerCount": self.latest_customer_count,
            "dropPercent": self.drop_percent,
            "maxDropPercent": self.max_drop_percent,
        }

    @classmethod
    def from_json(cls, value: Any) -> Withheld | None:
        """The Withheld of withheld.json's value; None unless every field is what check_drop writes."""
        if not isinstance(value, dict):
            return None
        names: list[Any] = [value.get("snapshot"), value.get("latestSnapshot")]
        counts: list[Any] = [value.get("customerCount"), value.get("latestCustomerCount")]
        percents: list[Any] = [value.get("dropPercent"), value.get("maxDropPercent")]
        if not (
            all(isinstance(name, str) and layout.SNAPSHOT_NAME.fullmatch(name) for name in names)
            and all(type(count) is int and count >= 0 for count in counts)
            and all(type(p) in (int, float) and math.isfinite(p) and 0 <= p <= 100 for p in percents)
            and rfc3339(value.get("generatedAt")) is not None
        ):
            return None
        return cls(
            snapshot=value["snapshot"],
            generated_at=value["generatedAt"],
            customer_count=value["customerCount"],
            latest_snapshot=value["latestSnapshot"],
            latest_customer_count=value["latestCustomerCount"],
            drop_percent=value["dropPercent"],
            max_drop_percent=value["maxDropPercent"],
        )


def rfc3339(value: Any) -> datetime | None:
    """The time of an RFC 3339 date-time string (with its offset), or None for anything else."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_withheld(store: SnapshotStore, **request_options: Any) -> Withheld | str | None:
    """withheld.json through the bounded reader: None when there is none, UNREADABLE when it cannot be read
    or holds anything but what check_drop writes (each value checked for its type and range), else its
    Withheld. `request_options`: per-request SDK options (retry_total, timeouts); AzureError as it is."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared.storage.reader import StoredDocumentError

    try:
        value, _ = store.read_json(layout.WITHHELD, **request_options)
    except ResourceNotFoundError:
        return None
    except StoredDocumentError:
        return UNREADABLE
    return Withheld.from_json(value) or UNREADABLE


def previous_published(store: SnapshotStore) -> Manifest | None:
    """What this run compares with when latest.json is absent or cannot be read: the manifest of the newest
    `.published` marker that reads (of the newest MARKERS_TRIED; names sort by time) and names the snapshot
    it sits beside. None when there is no marker (the container's first run). Markers, but none that
    reads: NothingToCompareError (the guard fails closed unless it is off, GUARD_OFF)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from shared.errors import ManifestError, StorageError
    from shared.snapshots.store import Manifest
    from shared.storage.problems import storage_problem
    from shared.storage.reader import StoredDocumentError

    step = "reading the .published markers"
    try:
        listed = store.listing(layout.PREFIX)
        markers = sorted((b.name for b in listed if layout.MARKER_NAME.fullmatch(b.name)), reverse=True)
        for name in markers[:MARKERS_TRIED]:
            try:
                manifest = Manifest.from_json(store.read_json(name)[0])
            except (StoredDocumentError, ManifestError, ResourceNotFoundError):
                continue
            if layout.marker_name(manifest.snapshot) == name:
                return manifest
    except AzureError as exc:
        raise StorageError(f"{step}: {storage_problem(exc)}") from None
    if not markers:
        return None
    raise NothingToCompareError(
        f"latest.json cannot be read and none of the {min(len(markers), MARKERS_TRIED)} newest .published "
        "markers can: the completeness guard has nothing to compare with, so nothing is published. Copy a "
        "good marker over latest.json, or run once with SNAPSHOT_MAX_DROP_PERCENT=100"
    )
