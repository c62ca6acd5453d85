"""Every blob name of the snapshot container: the one place the layout is spelled out.

    latest.json                                                  manifest of the newest published snapshot
    withheld.json                                                the last snapshot the completeness guard
                                                                 withheld
    locks/run.lock                                               the run lock (a blob lease: lease.py)
    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.json         one per run (UTC start), never overwritten
    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.published    written once latest.json named it
    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.index        its lookup index
    snapshots/YYYY/MM/DD/customers-YYYYMMDDTHHMMSSZ.csv          its CSV rendition (written by the API)
    snapshots/YYYY/MM/DD/changes-YYYYMMDDTHHMMSSZ.json           its change record
    outbox/changes-YYYYMMDDTHHMMSSZ.json                         change events still to deliver
    outbox/withheld-YYYYMMDDTHHMMSSZ.json                        a withheld snapshot's event still to deliver
    outbox/failed/changes-YYYYMMDDTHHMMSSZ.json                  an outbox record set aside
    outbox/failed/changes-YYYYMMDDTHHMMSSZ/<n>.json              message n of a record, set aside

Everything a snapshot has sits beside it under PREFIX, so one lifecycle rule ages them together; latest.json,
withheld.json, the lock and the outbox sit outside it and are never aged. Names sort by time within a kind.
"""

from __future__ import annotations

import re
from datetime import date, datetime

LATEST = "latest.json"
WITHHELD = "withheld.json"
LOCK = "locks/run.lock"
PREFIX = "snapshots/"
OUTBOX = "outbox/"
FAILED = OUTBOX + "failed/"
WITHHELD_PREFIX = OUTBOX + "withheld-"

SNAPSHOT_NAME = re.compile(r"^snapshots/\d{4}/\d{2}/\d{2}/customers-\d{8}T\d{6}Z\.json$")
MARKER_NAME = re.compile(r"^snapshots/\d{4}/\d{2}/\d{2}/customers-\d{8}T\d{6}Z\.published$")
RECORD_NAME = re.compile(r"^snapshots/\d{4}/\d{2}/\d{2}/changes-\d{8}T\d{6}Z\.json$")
OUTBOX_RECORD = re.compile(r"^outbox/(changes|withheld)-\d{8}T\d{6}Z\.json$")


# -- a snapshot and what sits beside it -------------------------------------------------------------
def snapshot_name(started: datetime) -> str:
    """The snapshot of a run that started at `started` (UTC)."""
    return f"{PREFIX}{started:%Y/%m/%d}/customers-{started:%Y%m%dT%H%M%SZ}.json"


def day_prefix(day: date) -> str:
    """The prefix of every blob of the snapshots taken on `day` (UTC)."""
    return f"{PREFIX}{day:%Y/%m/%d}/"


def date_of(snapshot: str) -> date:
    """The UTC day of a snapshot (or of anything beside it), from its folder."""
    year, month, day = snapshot.split("/")[1:4]
    return date(int(year), int(month), int(day))


def stamped(snapshot: str, stamp: str) -> bool:
    """Whether the snapshot's name carries `stamp` (YYYYMMDDTHHMMSSZ, its run's start)."""
    return snapshot.endswith(f"/customers-{stamp}.json")


def marker_name(snapshot: str) -> str:
    """The `.published` marker of a snapshot, next to it (the same lifecycle rule ages both)."""
    return snapshot.removesuffix(".json") + ".published"


def snapshot_of_marker(marker: str) -> str:
    return marker.removesuffix(".published") + ".json"


def index_name(snapshot: str) -> str:
    """snapshots/Y/M/D/customers-T.json → snapshots/Y/M/D/customers-T.index (aged with its snapshot)."""
    return snapshot.removesuffix(".json") + ".index"


def rendition_name(snapshot: str) -> str:
    """The CSV rendition of a snapshot, beside it."""
    return snapshot.removesuffix(".json") + ".csv"


def file_name(name: str) -> str:
    """The last part of a blob name (what a download is called)."""
    return name.rsplit("/", 1)[-1]


def rendition_file(snapshot: str) -> str:
    """The file name a CSV of the snapshot is downloaded as."""
    return file_name(snapshot).removesuffix(".json") + ".csv"


def changes_name(snapshot: str) -> str:
    """The change record's blob name for snapshot `snapshot` (same folder, same stamp)."""
    folder, _, file = snapshot.rpartition("/")
    return f"{folder}/{file.replace('customers-', 'changes-', 1)}"


def snapshot_of(record: str) -> str:
    """The snapshot a change record belongs to."""
    folder, _, file = record.rpartition("/")
    return f"{folder}/{file.replace('changes-', 'customers-', 1)}"


# -- the outbox -------------------------------------------------------------------------------------
def outbox_name(changes: str, *, withheld: bool) -> str:
    """The outbox record of a change record (of a published snapshot, or of a withheld one)."""
    file = file_name(changes)
    return WITHHELD_PREFIX + file.removeprefix("changes-") if withheld else OUTBOX + file


def is_withheld_record(name: str) -> bool:
    return name.startswith(WITHHELD_PREFIX)


def is_set_aside(name: str) -> bool:
    return name.startswith(FAILED)


def outbox_order(name: str) -> tuple[str, str]:
    """Outbox records oldest first (by their stamp, whatever their kind)."""
    return name[-len("YYYYMMDDTHHMMSSZ.json") :], name


def failed_name(name: str) -> str:
    """Where an outbox blob is set aside."""
    return FAILED + name.removeprefix(OUTBOX)


def failed_message_name(record: str, index: int) -> str:
    """Where message `index` of outbox record `record` is set aside."""
    return f"{failed_name(record).removesuffix('.json')}/{index}.json"
