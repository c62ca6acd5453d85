"""The changes of one run against the previous published snapshot, built while the run pages.

Memory stays bounded whatever the number of customers or changes:
- the previous snapshot is read line by line in step with paging (the API lists customers in the same
  order every night, so a customer and its previous line usually meet within a few pages); a pair that
  meets is compared at once (equal text: unchanged, no parse) and forgotten;
- customers of either side still waiting for their counterpart are kept up to WINDOW per side; past that,
  the oldest half spills to a temporary SQLite file, which joins whatever is left after the last page;
- each changed entry goes to a temporary file as soon as it is found.

A previous snapshot that cannot be read ends the comparison (`error`): the record is informative and never
costs the snapshot.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from shared.customer_id import tenant_key
from shared.jsonenc import compact_bytes
from shared.snapshots.document import line_id

WINDOW = 4_000  # customers per side waiting in memory for their counterpart (~4 MB each)
PROFILE = "companyProfile"
SUMMARY_FIELDS = ("id", "companyName", "domain", "relationshipToPartner")


def change_key(customer_id: str) -> str:
    """Identity of a customer across snapshots: shared.customer_id's tenant key (case and braces do not
    make another tenant, as in the pager's de-duplication and the id routes), any other id as `~id`.

    Fast path (the run calls this twice per customer): a 36-character lower-case id is its own key. It is
    either a canonical GUID, or no GUID at all and then equal to no other id's key (those are canonical
    GUIDs or start with `~`)."""
    if len(customer_id) == 36 and customer_id.islower() and customer_id[0] != "~":
        return customer_id
    key = tenant_key(customer_id)
    return "~" + customer_id if key is None else key


def line_key(line: bytes) -> str:
    """change_key of a stored customer line's id; Partner Center's `{"id":"<36 characters>",` is read
    without a regular expression."""
    if line[43:45] == b'",' and line.startswith(b'{"id":"'):
        head = line[7:43]
        if head.isascii() and b"\\" not in head and b'"' not in head:
            return change_key(head.decode())
    return change_key(line_id(line))


def summary(customer: dict[str, Any]) -> dict[str, Any]:
    """The entry of an added or removed customer: id, company name, domain, relationship."""
    profile = customer.get(PROFILE)
    profile = profile if isinstance(profile, dict) else {}
    return {
        "id": customer.get("id"),
        "companyName": profile.get("companyName"),
        "domain": profile.get("domain"),
        "relationshipToPartner": customer.get("relationshipToPartner"),
    }


def pointer(*names: str) -> str:
    """The RFC 6901 JSON Pointer of a field (`/companyProfile/companyName`): `~` and `/` in a name are
    escaped (`~0`, `~1`), so no two fields share a path, whatever their names hold."""
    return "".join("/" + name.replace("~", "~0").replace("/", "~1") for name in names)


def pointer_of_dotted(path: str) -> str:
    """A schemaVersion 1 record's dotted path as a JSON Pointer: `companyProfile.x` was the profile's field
    x, any other path a top-level field (a top-level name holding a dot was ambiguous there already)."""
    head, dot, rest = path.partition(".")
    return pointer(PROFILE, rest) if head == PROFILE and dot else pointer(path)


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every top-level and `companyProfile` field whose value differs: {JSON Pointer: {before, after}} (a
    field that is absent on one side is null there)."""
    fields: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(itertools.chain(after, before)):
        old, new = before.get(name), after.get(name)
        if name == PROFILE and isinstance(old or {}, dict) and isinstance(new or {}, dict):
            for sub in dict.fromkeys(itertools.chain(new or {}, old or {})):
                sub_old, sub_new = (old or {}).get(sub), (new or {}).get(sub)
                if sub_old != sub_new:
                    fields[pointer(PROFILE, sub)] = {"before": sub_old, "after": sub_new}
        elif old != new:
            fields[pointer(name)] = {"before": old, "after": new}
    return fields


def encoded(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON, a lone surrogate as its JSON escape (shared/jsonenc.py)."""
    return compact_bytes(value)


@dataclass(frozen=True)
class Counts:
    added: int
    removed: int
    changed: int

    def to_json(self) -> dict[str, int]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


class ChangeTracker:
    """Feed it each page (`add`), then `catch_up` with the run's total; `finish()` after the last page.

    `previous`: the previous snapshot's customer lines, or None for a baseline (no previous snapshot)."""

    def __init__(self, previous: Iterator[bytes] | None, *, window: int | None = None) -> None:
        self._previous = previous
        self._window = WINDOW if window is None else window
        self._current: dict[str, str] = {}  # key → JSON text, waiting for its previous line
        self._earlier: dict[str, bytes] = {}  # key → previous line, waiting for its current customer
        self._changed = _ChangedFile()
        self._spill: _Spill | None = None
        self.read_count = 0
        self.error: Exception | None = None

    @property
    def baseline(self) -> bool:
        return self._previous is None

    def add(self, items: list[dict[str, Any]], texts: list[str]) -> None:
        """This page's customers (after de-duplication), as dicts and as their JSON text."""
        if self._previous is None or self.error is not None:
            return
        earlier, current = self._earlier, self._current
        for item, text in zip(items, texts, strict=True):
            key = change_key(str(item["id"]))
            line = earlier.pop(key, None)
            if line is None:
                current[key] = text
            elif text.encode() != line:
                self._changed.compare(line, text)
        if len(current) > self._window:
            self._spilled().keep_current(_oldest_half(current))

    def catch_up(self, received: int) -> None:
        """Reads previous lines until `received` (this run's customers so far) have been read in all."""
        if self._previous is None or self.error is not None or received <= self.read_count:
            return
        earlier, current = self._earlier, self._current
        try:
            for line in itertools.islice(self._previous, received - self.read_count):
                self.read_count += 1
                key = line_key(line)
                text = current.pop(key, None)
                if text is None:
                    earlier[key] = line
                elif text.encode() != line:
                    self._changed.compare(line, text)
        except Exception as exc:
            self.error = exc
            return
        if len(earlier) > self._window:
            self._spilled().keep_earlier(_oldest_half(earlier))

    def finish(self) -> Changes | None:
        """The changes, after the last page (reads the rest of the previous snapshot first); None when the
        previous snapshot could not be read (see `error`)."""
        if self._previous is not None:
            self.catch_up(sys.maxsize)
        if self.error is not None:
            self.close()
            return None
        if self._spill is None:
            added = [summary(json.loads(text)) for text in self._current.values()]
            removed = [summary(json.loads(line)) for line in self._earlier.values()]
            return Changes(added, removed, self._changed, None)
        spill = self._spill
        spill.keep_current(list(self._current.items()))
        spill.keep_earlier(list(self._earlier.items()))
        self._current, self._earlier = {}, {}
        for line, text in spill.pairs():
            if text.encode() != line:
                self._changed.compare(line, text)
        return Changes(spill.added(), spill.removed(), self._changed, spill)

    def close(self) -> None:
        self._changed.close()
        if self._spill is not None:
            self._spill.close()

    def __enter__(self) -> ChangeTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spilled(self) -> _Spill:
        if self._spill is None:
            self._spill = _Spill()
        return self._spill


def _oldest_half(waiting: dict[str, Any]) -> list[tuple[str, Any]]:
    """Removes and returns the oldest half of `waiting` (insertion order)."""
    items = list(waiting.items())
    half = len(items) // 2
    oldest = items[:half]
    for key, _ in oldest:
        del waiting[key]
    return oldest


class Changes:
    """What finish() found. `added` and `removed`: entries in API order (a list, or a count and a generator
    reading the spill file); `changed`: the temporary file of changed entries, one JSON text per line."""

    def __init__(
        self,
        added: list[dict[str, Any]] | _Counted,
        removed: list[dict[str, Any]] | _Counted,
        changed: _ChangedFile,
        spill: _Spill | None,
    ) -> None:
        self._added = added
        self._removed = removed
        self._changed = changed
        self._spill = spill
        self.counts = Counts(len(added), len(removed), changed.count)

    def added(self) -> Iterable[dict[str, Any]]:
        return self._added

    def removed(self) -> Iterable[dict[str, Any]]:
        return self._removed

    def changed_lines(self) -> Iterator[bytes]:
        """Each changed entry as its JSON text (UTF-8), in the order found."""
        return self._changed.lines()

    def close(self) -> None:
        self._changed.close()
        if self._spill is not None:
            self._spill.close()

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ChangedFile:
    """Changed entries, one JSON line each, in a temporary file."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self.count = 0

    def compare(self, line: bytes, text: str) -> None:
        """Records the pair as changed unless their values are equal (formatting aside)."""
        after = json.loads(text)
        fields = changed_fields(json.loads(line), after)
        if not fields:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - kept open until close()
        self._file.write(encoded({"id": after.get("id"), "fields": fields}) + b"\n")
        self.count += 1

    def lines(self) -> Iterator[bytes]:
        if self._file is None:
            return
        self._file.seek(0)
        for line in self._file:
            yield line.rstrip(b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Counted:
    """A count known up front and the entries, read on demand (the spill file can hold millions)."""

    def __init__(self, count: int, rows: Iterator[Any]) -> None:
        self._count = count
        self._rows = rows

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for (text,) in self._rows:
            yield summary(json.loads(text))


class _Spill:
    """Customers waiting beyond the window, on disk: SQLite in a temporary file, joined after paging."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="changes-")
        self._db = sqlite3.connect(f"{self._dir.name}/spill.sqlite")
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-4096;"
            "CREATE TABLE cur (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, text TEXT NOT NULL);"
            "CREATE TABLE prev (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, line BLOB NOT NULL);"
        )
        self._indexed = False

    def keep_current(self, items: list[tuple[str, str]]) -> None:
        self._db.executemany("INSERT INTO cur (key, text) VALUES (?, ?)", items)

    def keep_earlier(self, items: list[tuple[str, bytes]]) -> None:
        self._db.executemany("INSERT INTO prev (key, line) VALUES (?, ?)", items)

    def _index(self) -> None:
        if not self._indexed:
            self._db.executescript("CREATE INDEX cur_key ON cur (key); CREATE INDEX prev_key ON prev (key);")
            self._indexed = True

    def pairs(self) -> Iterator[tuple[bytes, str]]:
        """(previous line, current text) of every customer on both sides."""
        self._index()
        yield from self._db.execute(
            "SELECT prev.line, cur.text FROM cur JOIN prev ON prev.key = cur.key ORDER BY cur.seq"
        )

    def added(self) -> _Counted:
        where = "FROM cur WHERE NOT EXISTS (SELECT 1 FROM prev WHERE prev.key = cur.key)"
        return self._counted("cur.text", where, "cur.seq")

    def removed(self) -> _Counted:
        where = "FROM prev WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.key = prev.key)"
        return self._counted("prev.line", where, "prev.seq")

    def _counted(self, column: str, where: str, order: str) -> _Counted:
        self._index()
        (count,) = self._db.execute(f"SELECT COUNT(*) {where}").fetchone()
        rows = self._db.execute(f"SELECT {column} {where} ORDER BY {order}")
        return _Counted(count, iter(rows))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._dir.cleanup()
