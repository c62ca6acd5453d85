"""What a warm instance keeps between requests: settings, the storage client, the latest-snapshot cache.

Built from the settings catalogue on the first request (never at import) and kept for the life of the
process: a Functions instance restarts when its app settings change, so nothing here reads the environment
again. Whoever hosts the routes otherwise (tests, the local host) builds the context it needs with
`build` and installs it with `use`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.api.latest import LatestCache
    from shared.snapshots.store import SnapshotStore
    from shared.storage.sas import SasIssuer


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    latest: LatestCache
    sas: SasIssuer
    clock: Callable[[], float] = time.monotonic  # seconds, monotonic: what the caches below expire by
    # (snapshot name, ETag) → whether its bytes verified against what was published: checked once.
    verified: dict[tuple[str, str], bool] = field(default_factory=dict)
    # (snapshot name, ETag) of snapshots whose CSV rendition failed for what they hold: tried once.
    failed_renditions: set[tuple[str, str]] = field(default_factory=set)
    # (blob name, ETag) → whether that version of a change record, or of a snapshot history reads, read
    # whole: one that did not is not read again until it changes (shared/api/records.py).
    readable: dict[tuple[str, str], bool] = field(default_factory=dict)
    # latest.json's ETag → (clock(), what /api/health last found in withheld.json) (shared/api/health.py).
    withheld_seen: dict[str, tuple[float, Any]] = field(default_factory=dict)

    @property
    def store(self) -> SnapshotStore:
        return self.latest.store


_lock = threading.Lock()
_current: ApiContext | None = None


def api_context() -> ApiContext:
    """The process's context, built from the environment's settings on first use."""
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            use(build(Settings.from_env(api=True)))
        assert _current is not None
        return _current


def use(context: ApiContext | None) -> None:
    """Installs the context the routes answer with (None: the next request builds one from the settings)."""
    global _current
    _current = context


def build(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> ApiContext:
    """A context over the snapshot container `settings` name, with its own caches."""
    from shared.api.latest import LatestCache
    from shared.identity import azure_credential
    from shared.snapshots.store import SnapshotStore
    from shared.storage.blobs import container_client
    from shared.storage.sas import SasIssuer

    credential = functools.cache(lambda: azure_credential(settings.azure_client_id))
    container = container_client(settings, credential, api=True)
    latest = LatestCache(
        SnapshotStore(container),
        check_interval=settings.latest_check_seconds,
        stale_serve_seconds=settings.stale_serve_seconds,
        whole_load_max_bytes=settings.whole_load_max_bytes,
        check_retries=settings.storage_retries,
        clock=clock,
    )
    return ApiContext(settings, latest, SasIssuer(container), clock)
