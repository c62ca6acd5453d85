"""What a person needs to know about one run, in bounded memory, from the entries of its change record.

`digest_of(entries, ...)` takes the (section, entry JSON) pairs of `shared.changes.store.iter_entries` in
stored order and keeps the counts of each kind and only the first `limit` (10) entries of each, their
texts cleaned and cut to MAX_TEXT characters; every other entry is counted without being parsed. So a
night with a million changes, or a customer whose name is 60,000 characters long, costs the same memory as
a quiet one. It never fails on an entry it cannot read: the entry is counted and shown as unreadable.

Entries, as docs/changes-and-events.md "The change record" describes them:

    added / removed   {"id", "companyName", "domain", "relationshipToPartner"}
    changed           {"id", "fields": {"/companyProfile/companyName": {"before", "after"}, ...}}

Field paths are RFC 6901 JSON Pointers (iter_entries hands schemaVersion 1 records' dotted paths on as
pointers too): only the profile's name and domain are shown before → after, and a top-level field that
merely looks like one (`/companyProfile.companyName`) is named, never taken for the customer's name.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_LISTED = 10  # entries kept per kind
MAX_TEXT = 256  # characters kept of a name, domain, field name or value
MAX_FIELDS = 8  # fields kept per changed customer
SECTIONS = ("added", "removed", "changed")
# Fields whose before and after a card shows (JSON Pointers); others are only named.
NAME_FIELD = "/companyProfile/companyName"
VALUE_FIELDS = frozenset({NAME_FIELD, "/companyProfile/domain"})
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Customer:
    """An added or removed customer."""

    id: str
    name: str | None
    domain: str | None


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str | None  # for names and domains only (VALUE_FIELDS); None otherwise or when absent
    after: str | None
    shows_values: bool


@dataclass(frozen=True)
class Changed:
    """A changed customer: its name after the change when the name is one of the changes, else None."""

    id: str
    name: str | None
    fields: tuple[FieldChange, ...]
    more_fields: int = 0  # fields changed beyond those kept


@dataclass(frozen=True)
class RunDigest:
    """One run as a card tells it: the snapshot, the counts, and the first entries of each kind."""

    snapshot: str
    generated_at: str
    customer_count: int
    added_count: int = 0
    removed_count: int = 0
    changed_count: int = 0
    added: tuple[Customer, ...] = ()
    removed: tuple[Customer, ...] = ()
    changed: tuple[Changed, ...] = ()
    unavailable: str | None = None  # the run could not compare (why, in one line): changes unknown

    @property
    def has_changes(self) -> bool:
        return bool(self.added_count or self.removed_count or self.changed_count)

    def count(self, kind: str) -> int:
        return int(getattr(self, f"{kind}_count"))


class DigestBuilder:
    """Counts entries and keeps the first `limit` of each kind (see the module docstring)."""

    def __init__(self, limit: int = MAX_LISTED) -> None:
        self.limit = limit
        self.counts = dict.fromkeys(SECTIONS, 0)
        self.customers: dict[str, list[Customer]] = {"added": [], "removed": []}
        self.changed: list[Changed] = []

    def add(self, section: str, entry: bytes | str) -> None:
        if section not in self.counts:
            return
        self.counts[section] += 1
        if self.counts[section] > self.limit:
            return  # counted only: never parsed, never kept
        value = _parse(entry)
        if section == "changed":
            self.changed.append(_changed(value))
        else:
            self.customers[section].append(_customer(value))

    def digest(
        self, *, snapshot: str, generated_at: str, customer_count: int, unavailable: str | None = None
    ) -> RunDigest:
        return RunDigest(
            snapshot=snapshot,
            generated_at=generated_at,
            customer_count=customer_count,
            added_count=self.counts["added"],
            removed_count=self.counts["removed"],
            changed_count=self.counts["changed"],
            added=tuple(self.customers["added"]),
            removed=tuple(self.customers["removed"]),
            changed=tuple(self.changed),
            unavailable=unavailable,
        )


def digest_of(
    entries: Iterable[tuple[str, bytes | str]],
    *,
    snapshot: str,
    generated_at: str,
    customer_count: int,
    unavailable: str | None = None,
    limit: int = MAX_LISTED,
) -> RunDigest:
    """The digest of a run from its change record's entries (see the module docstring)."""
    builder = DigestBuilder(limit)
    for section, entry in entries:
        builder.add(section, entry)
    return builder.digest(
        snapshot=snapshot, generated_at=generated_at, customer_count=customer_count, unavailable=unavailable
    )


def clean(value: Any, limit: int = MAX_TEXT) -> str | None:
    """`value` as one line of at most `limit` characters when it is a string (None otherwise): control,
    format (bidirectional overrides, zero-width) and line-breaking characters become spaces, so a name
    cannot reorder or break the text around it, and so do lone surrogates (valid in JSON, not in UTF-8)."""
    if not isinstance(value, str):
        return None
    value = value[: limit * 2 + 64]  # enough to clean and cut: never the whole of a huge value
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in value)
    kept = _SPACE.sub(" ", kept).strip()
    return cut(kept, limit)


def cut(text: str, limit: int) -> str:
    """`text`, ending in … when it is longer than `limit` characters."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def _parse(entry: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(entry)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _customer(entry: dict[str, Any]) -> Customer:
    return Customer(
        id=clean(entry.get("id")) or "(unreadable entry)",
        name=clean(entry.get("companyName")),
        domain=clean(entry.get("domain")),
    )


def _changed(entry: dict[str, Any]) -> Changed:
    fields = entry.get("fields")
    fields = fields if isinstance(fields, dict) else {}
    kept: list[FieldChange] = []
    name = None
    for index, (path, change) in enumerate(fields.items()):
        if index >= MAX_FIELDS:
            break
        kept.append(_field(str(path), change))
        if path == NAME_FIELD:
            name = kept[-1].after
    return Changed(
        id=clean(entry.get("id")) or "(unreadable entry)",
        name=name,
        fields=tuple(kept),
        more_fields=max(len(fields) - MAX_FIELDS, 0),
    )


def _field(path: str, change: Any) -> FieldChange:
    shows = path in VALUE_FIELDS
    change = change if isinstance(change, dict) else {}
    return FieldChange(
        field=clean(path) or "?",
        before=clean(change.get("before")) if shows else None,
        after=clean(change.get("after")) if shows else None,
        shows_values=shows,
    )
