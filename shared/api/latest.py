"""The warm-instance cache: the latest snapshot, parsed once, with its indexes.

A request first asks Blob Storage whether latest.json changed (a conditional GET: 304 and no body when it
did not), unless the last answer is younger than API_LATEST_CHECK_SECONDS (default 1 s): a lookup served
from memory takes microseconds, the round trip to storage milliseconds, so at most one request per interval
pays for it and a snapshot published a moment ago is served within that interval. The snapshot
itself is loaded only when a request needs customers and the manifest names a snapshot not loaded yet.
latest.json is written only after its snapshot is committed, and the download is pinned to the ETag the
manifest names and checked against its sha256: a half-written or replaced snapshot is never served.

Memory: one snapshot at a time, each customer kept as its stored JSON bytes (answers are built by joining
them, byte for byte as stored) plus an id index, a domain index and one folded search string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from shared import events
from shared.api.errors import ApiError, snapshot_unavailable
from shared.api.text import domain_key, fold
from shared.errors import SnapshotFormatError
from shared.events import log_event
from shared.gc_pause import cyclic_gc_paused
from shared.snapshots.document import iter_customer_lines
from shared.snapshots.store import Manifest, ManifestError, SnapshotStore

log = logging.getLogger("shared.api")
_BATCH = 2000


@dataclass(eq=False)
class LoadedSnapshot:
    manifest: Manifest
    stored: bytes  # the blob as stored (gzip): the whole-document answer, no recompression
    gzipped: bool
    lines: list[bytes]  # each customer's JSON, as stored
    by_id: dict[str, int] = field(default_factory=dict)  # lower-cased customer id → position
    by_domain: dict[str, list[int]] = field(default_factory=dict)  # domain_key → positions
    search: list[str] = field(default_factory=list)  # fold(companyName) + "\n" + fold(domain)

    @classmethod
    def load(cls, store: SnapshotStore, manifest: Manifest) -> LoadedSnapshot:
        """The snapshot `manifest` names, read and indexed. Raises ApiError 503 `snapshot_unavailable` when
        it is missing, replaced, not in our layout or not what the manifest says (sha256, count)."""
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        started = time.monotonic()
        try:
            stored, gzipped = store.read_stored(manifest.snapshot, etag=manifest.etag)
        except (ResourceNotFoundError, ResourceModifiedError):
            raise snapshot_unavailable(
                "latest.json names a snapshot that is missing or was replaced; the next publish fixes it"
            ) from None
        loaded = cls(manifest=manifest, stored=stored, gzipped=gzipped, lines=[])
        digest = hashlib.sha256()
        try:
            with cyclic_gc_paused():  # thousands of short-lived dicts: nothing for the cyclic GC to free
                batch: list[bytes] = []
                for line in iter_customer_lines(stored, gzipped, digest=digest):
                    batch.append(line)
                    if len(batch) == _BATCH:
                        loaded._index(batch)
                        batch = []
                loaded._index(batch)
        except SnapshotFormatError as exc:
            raise _unreadable(manifest, str(exc)) from None
        if digest.hexdigest() != manifest.sha256 or len(loaded.lines) != manifest.customer_count:
            raise _unreadable(manifest, "sha256 or customer count differs from latest.json")
        log_event(
            log,
            logging.INFO,
            events.API_SNAPSHOT_LOADED,
            snapshot=manifest.snapshot,
            customers=len(loaded.lines),
            storedBytes=len(stored),
            elapsedSeconds=round(time.monotonic() - started, 3),
        )
        return loaded

    def _index(self, lines: list[bytes]) -> None:
        """Indexes a batch of customer lines. Raises SnapshotFormatError for a line that is not one
        customer object with a string `id` (and string domain and name, when given)."""
        try:
            self._index_customers(lines)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotFormatError(f"a customer line is not a customer ({type(exc).__name__})") from None

    def _index_customers(self, lines: list[bytes]) -> None:
        # One json.loads per batch: per-call overhead was a third of the load time of 100k customers.
        customers = json.loads(b"[" + b",".join(lines) + b"]")
        if len(customers) != len(lines):
            raise ValueError("a line holds more than one customer")
        by_id, by_domain, search = self.by_id, self.by_domain, self.search
        position = len(self.lines)
        self.lines.extend(lines)
        for customer in customers:
            by_id.setdefault(customer["id"].lower(), position)
            profile = customer.get("companyProfile") or {}
            domain = profile.get("domain") or ""
            name = profile.get("companyName") or ""
            if not isinstance(domain, str) or not isinstance(name, str):
                raise TypeError("companyProfile.domain and companyName must be strings")
            if domain:
                by_domain.setdefault(domain_key(domain), []).append(position)
            search.append(f"{fold(name)}\n{fold(domain)}")
            position += 1

    # -- lookups ------------------------------------------------------------------------------
    def customer(self, customer_id: str) -> bytes | None:
        position = self.by_id.get(customer_id.lower())
        return None if position is None else self.lines[position]

    def with_domain(self, domain: str) -> list[int]:
        return self.by_domain.get(domain_key(domain), [])

    def matching(self, text: str) -> list[int]:
        needle = fold(text)
        return [i for i, haystack in enumerate(self.search) if needle in haystack]


def _unreadable(manifest: Manifest, reason: str) -> ApiError:
    log_event(log, logging.ERROR, events.API_SNAPSHOT_UNREADABLE, snapshot=manifest.snapshot, reason=reason)
    return snapshot_unavailable("the latest snapshot cannot be read; the next publish fixes it")


class LatestCache:
    """Thread-safe: checks are serialised (one small request each), loads happen once per snapshot."""

    def __init__(self, store: SnapshotStore, *, check_interval: float = 0.0) -> None:
        self.store = store
        self.check_interval = check_interval
        self._checked_at = float("-inf")  # time.monotonic() of the last answer from Blob Storage
        self._check_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._manifest: Manifest | None = None
        self._latest_etag: str | None = None
        self._loaded: LoadedSnapshot | None = None
        self.checks = 0  # conditional GETs of latest.json (tests and logs)
        self.loads = 0

    def manifest(self) -> Manifest | None:
        """What latest.json says now: None before the first publish, 503 when it is not a manifest."""
        if time.monotonic() - self._checked_at < self.check_interval:
            return self._manifest
        with self._check_lock:
            if time.monotonic() - self._checked_at < self.check_interval:
                return self._manifest  # another request checked while this one waited
            self.checks += 1
            try:
                changed = self.store.read_latest_if_changed(self._latest_etag)
            except ManifestError:
                # Forget it, so the next request reads latest.json again and a good publish heals us.
                self._manifest, self._latest_etag = None, None
                self._checked_at = float("-inf")
                log_event(log, logging.ERROR, events.API_LATEST_UNREADABLE, blob="latest.json")
                raise snapshot_unavailable(
                    "latest.json is not a valid manifest; the next successful snapshot run replaces it"
                ) from None
            if changed is not None:
                self._manifest, self._latest_etag = changed
            self._checked_at = time.monotonic()
            return self._manifest

    def snapshot(self, manifest: Manifest) -> LoadedSnapshot:
        """The loaded snapshot `manifest` names (loads it unless it is the one in memory)."""
        loaded = self._loaded
        if loaded is not None and loaded.manifest == manifest:
            return loaded
        with self._load_lock:
            loaded = self._loaded
            if loaded is not None and loaded.manifest == manifest:
                return loaded
            self._loaded = None  # let the previous one go before the next is built: one in memory
            loaded = LoadedSnapshot.load(self.store, manifest)
            self.loads += 1
            self._loaded = loaded
            return loaded
