"""The warm-instance cache: the latest snapshot, parsed once, with its indexes.

A request first asks Blob Storage whether latest.json changed (a conditional GET: 304 and no body when it
did not), unless the last answer is younger than API_LATEST_CHECK_SECONDS (default 1 s): a lookup served
from memory takes microseconds, the round trip to storage milliseconds, so at most one request per interval
pays for it and a snapshot published a moment ago is served within that interval. The snapshot
itself is loaded only when a request needs customers and the manifest names a snapshot not loaded yet.
latest.json is written only after its snapshot is committed, and the download is pinned to the ETag the
manifest names and checked against its sha256: a half-written or replaced snapshot is never served.

Trouble is contained:
- Only one request checks latest.json at a time, with one retry at most and short timeouts; the others
  answer from the snapshot in memory meanwhile instead of queueing behind it. While storage cannot be
  reached, the snapshot in memory is served for API_STALE_SERVE_SECONDS after the last good check.
- A snapshot that cannot be read (missing, replaced, not gzip, a different sha256, larger than published)
  is remembered with the manifest naming it: one download and one ERROR line, not one per request, until
  latest.json names another.

Memory: one snapshot at a time. When latest.json names a lookup index (shared/snapshots/index.py), the
instance loads only that and answers from it (indexed.py); a new one is loaded in the background while the
previous one keeps answering, and taken up by the first request after it is ready (the request that finds
it waits SWAP_WAIT_SECONDS at most for it). Without a usable index, the snapshot is loaded whole (loaded.py).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import events
from shared.api.errors import ApiError, snapshot_unavailable, storage_unavailable
from shared.api.indexed import IndexedSnapshot, StoredUnreadable
from shared.api.loaded import LoadedSnapshot, unreadable
from shared.errors import SnapshotAppError
from shared.events import log_event
from shared.snapshots.index import UnusableIndex
from shared.snapshots.store import Manifest, ManifestError, SnapshotStore
from shared.storage.layout import LATEST

log = logging.getLogger("shared.api")

# The check of latest.json answers a waiting request: one retry at most and short timeouts, so even a
# storage endpoint that hangs costs the one request checking about 15 s, never minutes.
LATEST_CHECK_OPTIONS: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 5}
LATEST_CHECK_RETRIES = 1
SWAP_WAIT_SECONDS = 0.5  # the request that finds a new snapshot waits this long for its index at most

Snapshot = LoadedSnapshot | IndexedSnapshot


class SnapshotReplaced(SnapshotAppError):
    """A request asked for the snapshot of a manifest that a newer one replaced since it read latest.json:
    it answers again from the newer one (shared.api.endpoint) instead of loading the older one back."""


@dataclass(eq=False)
class _Pending:
    """A newer snapshot's index loading in the background while the previous snapshot answers."""

    manifest: Manifest
    etag: str | None
    done: threading.Event = field(default_factory=threading.Event)
    loaded: IndexedSnapshot | None = None  # None: the requests load it (whole, when the index is unusable)
    error: ApiError | None = None


def _not_a_manifest() -> ApiError:
    return snapshot_unavailable(
        "latest.json is not a valid manifest; the next successful snapshot run replaces it"
    )


def _again(error: ApiError) -> ApiError:
    """A fresh copy to raise: raising one instance from many requests would grow its traceback."""
    return ApiError(error.status, error.code, error.message, headers=error.headers)


class LatestCache:
    """Thread-safe: one check of latest.json at a time, never waited for when there is something in memory
    to answer from; loads happen once per snapshot; an unreadable snapshot is remembered."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        check_interval: float = 0.0,
        stale_serve_seconds: float = 0.0,
        whole_load_max_bytes: int | None = None,
        check_retries: int = LATEST_CHECK_RETRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._clock = clock  # seconds, monotonic: when to check again, how long storage has been out
        self.check_retries = min(check_retries, LATEST_CHECK_RETRIES)
        self.check_interval = check_interval
        self.stale_serve_seconds = stale_serve_seconds
        self.whole_load_max_bytes = whole_load_max_bytes  # None: any size (tests, the local host)
        self._checked_at = float("-inf")  # _clock() of the last check, answered or failed
        self._answered_at = float("-inf")  # _clock() of the last answer from Blob Storage
        self._unreachable_since: float | None = None  # _clock() of the first failed check of an outage
        self._failure: ApiError | None = None  # what the last check ended with, when it failed
        self._generation = 0  # checks completed
        self._check_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._manifest: Manifest | None = None
        self._latest_etag: str | None = None
        self._latest_unreadable = False  # latest.json with _latest_etag is not a manifest
        self._loaded: Snapshot | None = None
        self._pending: _Pending | None = None
        self._bad_index: Manifest | None = None  # whose index did not verify: loaded whole
        self._unreadable: tuple[Manifest, ApiError] | None = None
        self.checks = 0  # conditional GETs of latest.json (tests and logs)
        self.loads = 0
        self.downloads = 0  # snapshot downloads, readable or not

    # -- latest.json ------------------------------------------------------------------------------
    def manifest(self) -> Manifest | None:
        """What latest.json says now: None before the first publish, 503 when it is not a manifest, or
        storage cannot be reached and nothing may be served from memory."""
        pending = self._pending
        if pending is not None and pending.done.is_set() and self._check_lock.acquire(blocking=False):
            try:
                if self._pending is pending:
                    self._adopt(pending)
            finally:
                self._check_lock.release()
        now = self._clock()
        if now - self._checked_at < self.check_interval:
            return self._outcome(now)
        generation = self._generation
        if not self._check_lock.acquire(blocking=False):
            if self._servable_from_memory(now):
                return self._manifest  # another request is checking: answer at once from memory
            self._check_lock.acquire()  # nothing to answer from: wait for that check, and share it
            if self._generation != generation:
                self._check_lock.release()
                return self._outcome(self._clock())
        try:
            return self._check()
        finally:
            self._check_lock.release()

    def checking(self) -> bool:
        """A check of latest.json is in flight (storage may be slow to answer right now)."""
        return self._check_lock.locked()

    def unreachable_for(self) -> float | None:
        """Seconds since storage stopped answering checks of latest.json; None while it answers."""
        since = self._unreachable_since
        return None if since is None else self._clock() - since

    def _servable_from_memory(self, now: float) -> bool:
        return self._manifest is not None and now - self._answered_at <= self.stale_serve_seconds

    def _outcome(self, now: float) -> Manifest | None:
        failure = self._failure
        if failure is None or (failure.code == "storage_unavailable" and self._servable_from_memory(now)):
            return self._manifest
        raise _again(failure)

    def _check(self) -> Manifest | None:
        from azure.core.exceptions import AzureError

        self.checks += 1
        try:
            changed = self.store.read_latest_if_changed(
                self._latest_etag, retry_total=self.check_retries, **LATEST_CHECK_OPTIONS
            )
        except ManifestError as exc:
            self._storage_answered()
            # Remember it by its ETag: the next checks ask only whether it changed (a good publish heals
            # us), and it is logged once, not once per request.
            self._manifest, self._latest_etag, self._latest_unreadable = None, exc.etag, True
            self._checked_at = self._answered_at = self._clock()
            self._failure = _not_a_manifest()
            self._generation += 1
            log_event(log, logging.ERROR, events.API_LATEST_UNREADABLE, blob=LATEST)
            raise _again(self._failure) from None
        except AzureError as exc:
            now = self._clock()
            self._checked_at = now
            self._failure = storage_unavailable()
            self._generation += 1
            if self._unreachable_since is None:
                self._unreachable_since = now
                log_event(
                    log,
                    logging.WARNING,
                    events.API_STORAGE_UNREACHABLE,
                    error=type(exc).__name__,
                    servingFromMemory=self._servable_from_memory(now),
                    staleServeSeconds=self.stale_serve_seconds,
                )
            return self._outcome(now)
        self._storage_answered()
        self._checked_at = self._answered_at = self._clock()
        self._generation += 1
        if changed is None and self._latest_unreadable:  # 304: the same latest.json, still not a manifest
            self._failure = _not_a_manifest()
            raise _again(self._failure)
        if changed is not None and not self._swap_later(*changed):
            self._manifest, self._latest_etag = changed
            self._latest_unreadable = False
        self._failure = None
        return self._manifest

    def _storage_answered(self) -> None:
        if self._unreachable_since is not None:
            seconds = round(self._clock() - self._unreachable_since, 3)
            self._unreachable_since = None
            log_event(log, logging.INFO, events.API_STORAGE_REACHABLE, unreachableSeconds=seconds)

    # -- a newer snapshot, taken up when its index is ready -------------------------------------------
    def _swap_later(self, manifest: Manifest | None, etag: str | None) -> bool:
        """Whether the snapshot answering now keeps answering while `manifest`'s index loads (or was just
        taken up here); False when `manifest` is to be taken up at once, as before indexes."""
        current = self._loaded
        if (
            manifest is None
            or manifest.index is None
            or manifest == self._bad_index
            or current is None
            or current.manifest != self._manifest
            or current.manifest == manifest
        ):
            return False
        pending = self._pending
        if pending is None or pending.manifest != manifest:
            pending = self._pending = _Pending(manifest, etag)
            if isinstance(current, IndexedSnapshot):
                current.release_stored()  # one stored blob at a time: the old one reads members meanwhile
            threading.Thread(
                target=self._load_pending, args=(pending,), name="snapshot-index", daemon=True
            ).start()
            pending.done.wait(SWAP_WAIT_SECONDS)
        if pending.done.is_set():
            self._adopt(pending)
        return True

    def _load_pending(self, pending: _Pending) -> None:
        try:
            self.downloads += 1
            pending.loaded = self._load_indexed(pending.manifest)
        except ApiError as exc:
            pending.error = exc
        except Exception:  # storage trouble: the requests load it themselves and report it
            log_event(
                log,
                logging.WARNING,
                events.API_INDEX_UNUSABLE,
                snapshot=pending.manifest.snapshot,
                reason="index could not be read in the background",
            )
        finally:
            pending.done.set()

    def _adopt(self, pending: _Pending) -> None:
        """Takes up a snapshot loaded in the background (called holding the check lock)."""
        with self._load_lock:
            previous = None if self._loaded is None else weakref.ref(self._loaded)
            self._pending = None
            self._manifest, self._latest_etag = pending.manifest, pending.etag
            self._latest_unreadable = False
            self._failure = None
            self._loaded = pending.loaded
            if pending.error is not None:
                self._unreadable = (pending.manifest, pending.error)
            if pending.loaded is not None:
                self.loads += 1
                self._unreadable = None
                pending.loaded.fetch_in_background(after=previous)

    def _load_indexed(self, manifest: Manifest) -> IndexedSnapshot | None:
        """The snapshot answered from its index; None when it has none that verifies (logged once)."""
        if manifest.index is None or manifest == self._bad_index:
            return None
        try:
            return IndexedSnapshot.load(self.store, manifest)
        except UnusableIndex as exc:
            self._bad_index = manifest
            log_event(
                log, logging.WARNING, events.API_INDEX_UNUSABLE, snapshot=manifest.snapshot, reason=str(exc)
            )
            return None
        except StoredUnreadable as exc:
            raise unreadable(manifest, str(exc)) from None

    def _load_whole(self, manifest: Manifest) -> LoadedSnapshot:
        """The whole load, for a snapshot without an index it can use: refused (503, remembered like an
        unreadable one) when it would hold more than this instance is sized for."""
        limit = self.whole_load_max_bytes
        if limit is not None and manifest.json_bytes > limit:
            raise unreadable(
                manifest,
                f"no usable index, and its {manifest.json_bytes} bytes of JSON are more than "
                f"API_WHOLE_LOAD_MAX_MB lets this instance load whole",
            )
        return LoadedSnapshot.load(self.store, manifest)

    # -- the snapshot it names --------------------------------------------------------------------
    def snapshot(self, manifest: Manifest) -> Snapshot:
        """The loaded snapshot `manifest` names (loads it unless it is the one in memory); 503 at once for
        one that could not be read before."""
        loaded = self._loaded
        if loaded is not None and loaded.manifest == manifest:
            return loaded
        current = self._manifest
        if (
            loaded is not None
            and current is not None
            and loaded.manifest == current
            and manifest.generated_at <= current.generated_at
        ):
            raise SnapshotReplaced
        with self._load_lock:
            loaded = self._loaded
            if loaded is not None and loaded.manifest == manifest:
                return loaded
            unreadable = self._unreadable
            if unreadable is not None and unreadable[0] == manifest:
                raise _again(unreadable[1])
            self._loaded = None  # let the previous one go before the next is built: one in memory
            self.downloads += 1
            try:
                loaded = self._load_indexed(manifest) or self._load_whole(manifest)
            except ApiError as exc:  # unreadable as published: the same bytes stay unreadable
                self._unreadable = (manifest, exc)
                raise
            self._unreadable = None
            self.loads += 1
            self._loaded = loaded
            if isinstance(loaded, IndexedSnapshot):
                loaded.fetch_in_background(small_first=True)
            return loaded
