"""The whole load: a snapshot read once, each customer kept as its stored JSON bytes, with an id index, a
domain index and one folded search string (the API's read model when latest.json names no usable index).

Answers are built by joining the stored bytes, byte for byte as stored. A customer that is not storable by
the job's rule (shared/customer_rule.py, `indexed_fields`) is left out of the indexes, counted and logged
once; the other customers are served as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import events
from shared.api.errors import ApiError, snapshot_unavailable
from shared.customer_rule import MAX_DEPTH, indexed_fields, reject_constant, within_depth
from shared.errors import SnapshotFormatError
from shared.events import log_event
from shared.gc_pause import cyclic_gc_paused
from shared.snapshots.document import iter_customer_lines
from shared.snapshots.store import Manifest, SnapshotStore
from shared.text import domain_key, fold

log = logging.getLogger("shared.api")
_BATCH = 2000


def unreadable(manifest: Manifest, reason: str) -> ApiError:
    """The answer to a snapshot that cannot be read, logged (its name and why, never its content)."""
    log_event(log, logging.ERROR, events.API_SNAPSHOT_UNREADABLE, snapshot=manifest.snapshot, reason=reason)
    return snapshot_unavailable("the latest snapshot cannot be read; the next publish fixes it")


# -- what the indexes can use ----------------------------------------------------------------------------
_UNUSABLE = object()


def _parse_line(line: bytes) -> Any:
    """One stored customer line parsed as strict JSON nested at most MAX_DEPTH deep (checked on the text
    first, so the parser never recurses deeper), or _UNUSABLE."""
    if not within_depth(line):
        return _UNUSABLE
    try:
        return json.loads(line, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        return _UNUSABLE


def _parse_batch(lines: list[bytes]) -> list[Any]:
    # One json.loads per batch: per-call overhead was a third of the load time of 100k customers. Only
    # when the batch holds something odd is it parsed again line by line, to find what to leave out.
    if all(line.count(b"{") + line.count(b"[") <= MAX_DEPTH for line in lines):
        try:
            parsed: list[Any] = json.loads(b"[" + b",".join(lines) + b"]", parse_constant=reject_constant)
        except (ValueError, RecursionError):
            pass
        else:
            if len(parsed) == len(lines):
                return parsed
    return [_parse_line(line) for line in lines]


@dataclass(eq=False)
class LoadedSnapshot:
    manifest: Manifest
    stored: bytes  # the blob as stored (gzip): the whole-document answer, no recompression
    gzipped: bool
    lines: list[bytes]  # each customer's JSON, as stored (those the indexes can use)
    by_id: dict[str, int] = field(default_factory=dict)  # lower-cased customer id → position
    by_domain: dict[str, list[int]] = field(default_factory=dict)  # domain_key → positions
    search: list[str] = field(default_factory=list)  # fold(companyName) + "\n" + fold(domain)
    skipped: int = 0  # customers left out of the indexes (see `indexed_fields`)
    skipped_ids: set[str] = field(default_factory=set)  # lower-cased ids of those that have one

    @classmethod
    def load(cls, store: SnapshotStore, manifest: Manifest) -> LoadedSnapshot:
        """The snapshot `manifest` names, read and indexed. Raises ApiError 503 `snapshot_unavailable` when
        it is missing, replaced, not in our layout or not what the manifest says (sha256, count)."""
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        started = time.monotonic()
        try:
            stored, gzipped = store.read_stored(
                manifest.snapshot, etag=manifest.etag, max_bytes=manifest.stored_bytes
            )
        except (ResourceNotFoundError, ResourceModifiedError):
            raise unreadable(manifest, "missing, or replaced since it was published") from None
        except SnapshotFormatError as exc:  # larger than published
            raise unreadable(manifest, str(exc)) from None
        loaded = cls(manifest=manifest, stored=stored, gzipped=gzipped, lines=[])
        digest = hashlib.sha256()
        try:
            with cyclic_gc_paused():  # thousands of short-lived dicts: nothing for the cyclic GC to free
                batch: list[bytes] = []
                for line in iter_customer_lines(
                    stored, gzipped, digest=digest, max_json_bytes=manifest.json_bytes
                ):
                    batch.append(line)
                    if len(batch) == _BATCH:
                        loaded._index(batch)
                        batch = []
                loaded._index(batch)
        except SnapshotFormatError as exc:
            raise unreadable(manifest, str(exc)) from None
        if digest.hexdigest() != manifest.sha256:
            raise unreadable(manifest, "sha256 differs from latest.json")
        if len(loaded.lines) + loaded.skipped != manifest.customer_count:
            raise unreadable(manifest, "customer count differs from latest.json")
        if loaded.skipped:
            # A count, never the content: customer data stays out of logs.
            log_event(
                log,
                logging.WARNING,
                events.API_CUSTOMERS_SKIPPED,
                snapshot=manifest.snapshot,
                skipped=loaded.skipped,
                reason="not a customer the indexes can use (types, NaN/Infinity, nesting); see /api/health",
            )
        log_event(
            log,
            logging.INFO,
            events.API_SNAPSHOT_LOADED,
            snapshot=manifest.snapshot,
            customers=len(loaded.lines),
            skipped=loaded.skipped,
            storedBytes=len(stored),
            elapsedSeconds=round(time.monotonic() - started, 3),
        )
        return loaded

    def _index(self, lines: list[bytes]) -> None:
        """Indexes a batch of customer lines; a customer the indexes cannot use is counted instead."""
        by_id, by_domain, search = self.by_id, self.by_domain, self.search
        position = len(self.lines)
        for line, customer in zip(lines, _parse_batch(lines), strict=True):
            fields = (
                None if customer is _UNUSABLE else indexed_fields(customer, line.decode("utf-8", "replace"))
            )
            if fields is None:
                self.skipped += 1
                if type(customer) is dict and type(customer.get("id")) is str:
                    self.skipped_ids.add(customer["id"].lower())
                continue
            customer_id, domain, name = fields
            self.lines.append(line)
            by_id.setdefault(customer_id.lower(), position)
            if domain:
                by_domain.setdefault(domain_key(domain), []).append(position)
            search.append(f"{fold(name)}\n{fold(domain)}")
            position += 1

    # -- lookups ------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.lines)

    def lines_at(self, positions: Sequence[int]) -> list[bytes]:
        lines = self.lines
        return [lines[i] for i in positions]

    def customer(self, customer_id: str) -> bytes | None:
        position = self.by_id.get(customer_id.lower())
        return None if position is None else self.lines[position]

    def unusable(self, customer_id: str) -> bool:
        """Whether this id belongs to a customer left out of the indexes."""
        return customer_id.lower() in self.skipped_ids

    def with_domain(self, domain: str) -> list[int]:
        return self.by_domain.get(domain_key(domain), [])

    def matching(self, text: str) -> list[int]:
        needle = fold(text)
        return [i for i, haystack in enumerate(self.search) if needle in haystack]
