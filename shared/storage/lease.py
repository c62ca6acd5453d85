"""One run at a time per snapshot container: a blob lease on `locks/run.lock`, held for the whole run.

Two runs that overlap (the timer and a manual run, two apps on one container) would both compare with the
same previous snapshot, and the later one's record would skip the earlier one's changes. So a run takes the
lease before it reads latest.json and keeps it until it ends:

    hold_run_lock(blobs, ...)  the lease (LEASE_SECONDS, finite), renewed every RENEW_SECONDS on a daemon
                               thread; None when another run holds it: snapshot.skipped names that run
    RunLock.confirm()          right before latest.json moves: renews once more, RunLockLost if the lease
                               was lost (a stalled run whose lease expired and was taken by another)
    RunLock.release()          at the end, whatever happened; a dead run's lease expires on its own

The holder's correlation id and start time are written into the lock blob's metadata right after the
lease is taken, so a refused run can name it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import events
from shared.errors import RunLockLost, StorageError
from shared.events import log_event
from shared.storage import layout
from shared.storage.problems import storage_problem

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobLeaseClient

    from shared.storage.blobs import Blobs

log = logging.getLogger("shared.job")

LOCK_BLOB = layout.LOCK
LEASE_SECONDS = 60  # Blob Storage allows 15..60 s or infinite; finite, so a dead run's lease expires
RENEW_SECONDS = 20  # three chances to renew before the lease would expire


def hold_run_lock(blobs: Blobs, context: Mapping[str, Any], started_at: str) -> RunLock | None:
    """The run lock of this container, renewed in the background until release(); None when another run
    holds it (logged as snapshot.skipped, naming that run). Raises StorageError when Blob Storage refuses or
    does not answer."""
    from azure.core.exceptions import AzureError

    blob = blobs.client(LOCK_BLOB)
    step = f"taking the run lock {LOCK_BLOB}"
    try:
        lease = _acquire(blob)
    except AzureError as exc:
        if getattr(exc, "status_code", None) != 409:  # 409 LeaseAlreadyPresent: another run holds it
            raise StorageError(f"{step}: {storage_problem(exc)}") from None
        _log_skipped(blob, context)
        return None
    lock = RunLock(blob, lease)
    holder = {
        "correlationid": str(context.get("correlationId", "")),
        "startedat": started_at,
        "lockedat": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        blob.set_blob_metadata(holder, lease=lease)
    except AzureError as exc:
        lock.release()
        raise StorageError(f"{step}: {storage_problem(exc)}") from None
    lock.start()
    return lock


def _acquire(blob: BlobClient) -> BlobLeaseClient:
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    try:
        return blob.acquire_lease(lease_duration=LEASE_SECONDS)
    except ResourceNotFoundError:  # the first run of this container: the lock blob is made once
        with contextlib.suppress(ResourceExistsError):  # made by a concurrent run
            blob.upload_blob(b"", overwrite=False)
        return blob.acquire_lease(lease_duration=LEASE_SECONDS)


def _log_skipped(blob: BlobClient, context: Mapping[str, Any]) -> None:
    from azure.core.exceptions import AzureError

    try:
        metadata = blob.get_blob_properties().metadata or {}
    except AzureError:
        metadata = {}  # the holder is unknown; the run is skipped all the same
    log_event(
        log,
        logging.WARNING,
        events.SNAPSHOT_SKIPPED,
        reason="another run holds the run lock: this run publishes nothing",
        lock=LOCK_BLOB,
        container=blob.container_name,
        heldBy=metadata.get("correlationid"),
        heldSince=metadata.get("startedat"),
        **context,
    )


class RunLock:
    """A held lease on the lock blob; renewed on a daemon thread until release()."""

    def __init__(self, blob: BlobClient, lease: BlobLeaseClient) -> None:
        self._blob = blob
        self._lease = lease
        self._mutex = threading.Lock()  # one lease request at a time (the renewer and confirm())
        self._stop = threading.Event()
        self._lost: str | None = None
        self._renewer = threading.Thread(target=self._renew_until_stopped, name="run-lock", daemon=True)

    def start(self) -> None:
        self._renewer.start()

    def confirm(self) -> None:
        """Renews the lease now; raises RunLockLost when it is no longer this run's, StorageError when Blob
        Storage does not answer (the lease may still be ours: nothing is published on a guess)."""
        from azure.core.exceptions import AzureError

        with self._mutex:
            if self._lost is None:
                try:
                    self._lease.renew()
                except AzureError as exc:
                    if not _refused(exc):
                        step = f"renewing the run lock {LOCK_BLOB}"
                        raise StorageError(f"{step}: {storage_problem(exc)}") from None
                    self._lost = storage_problem(exc)
            if self._lost is not None:
                raise RunLockLost(
                    f"the run lock {LOCK_BLOB} was lost ({self._lost}): another run may hold it; "
                    "this run publishes nothing"
                )

    def release(self) -> None:
        """Stops renewing and gives the lease back (if that fails, it expires within LEASE_SECONDS)."""
        from azure.core.exceptions import AzureError

        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join(timeout=5)
        with self._mutex:
            if self._lost is None:
                with contextlib.suppress(AzureError):
                    self._lease.release()

    def _renew_until_stopped(self) -> None:
        from azure.core.exceptions import AzureError

        while not self._stop.wait(RENEW_SECONDS):
            with self._mutex:
                if self._stop.is_set() or self._lost is not None:
                    return
                try:
                    self._lease.renew()
                except AzureError as exc:
                    if _refused(exc):  # another run took it: confirm() says so before publishing
                        self._lost = storage_problem(exc)
                        log_event(
                            log, logging.WARNING, events.SNAPSHOT_LOCK_LOST, lock=LOCK_BLOB, reason=self._lost
                        )
                        return
                    # no answer: try again next time; the lease lasts LEASE_SECONDS


def _refused(exc: BaseException) -> bool:
    """Blob Storage answered that this lease is not (or no longer) the blob's: 409 or 412."""
    return getattr(exc, "status_code", None) in (409, 412)
