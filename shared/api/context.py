"""What a warm instance keeps between requests: settings, the storage client, the latest-snapshot cache.

Built on the first request (never at import), reused while the settings stay the same, rebuilt when they
change (tests switch storage and containers; a real instance restarts when app settings change anyway).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.settings import SETTINGS, Settings

if TYPE_CHECKING:
    from shared.api.latest import LatestCache
    from shared.snapshots.store import SnapshotStore
    from shared.storage.sas import SasIssuer

# The settings the API reads, plus what decides which credential and trust store the SDK uses.
_KEY_NAMES = (
    *(s.name for s in SETTINGS if s.api),
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "REQUESTS_CA_BUNDLE",
)


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    latest: LatestCache
    sas: SasIssuer
    # (snapshot name, ETag) → whether its bytes verified against what was published: checked once.
    verified: dict[tuple[str, str], bool] = field(default_factory=dict)
    # (snapshot name, ETag) of snapshots whose CSV rendition failed for what they hold: tried once.
    failed_renditions: set[tuple[str, str]] = field(default_factory=set)
    # (blob name, ETag) → whether that version of a change record, or of a snapshot history reads, read
    # whole: one that did not is not read again until it changes (shared/api/changes.py).
    readable: dict[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def store(self) -> SnapshotStore:
        return self.latest.store


_lock = threading.Lock()
_current: tuple[tuple[str | None, ...], ApiContext] | None = None


def api_context() -> ApiContext:
    global _current
    key = tuple(os.environ.get(name) for name in _KEY_NAMES)
    current = _current
    if current is not None and current[0] == key:
        return current[1]
    with _lock:
        if _current is not None and _current[0] == key:
            return _current[1]
        context = _build()
        _current = (key, context)
        return context


def _build() -> ApiContext:
    from shared.api.latest import LatestCache
    from shared.identity import azure_credential
    from shared.snapshots.store import SnapshotStore
    from shared.storage.blobs import container_client
    from shared.storage.sas import SasIssuer

    settings = Settings.from_env(api=True)
    credential = functools.cache(lambda: azure_credential(settings.azure_client_id))
    container = container_client(settings, credential, api=True)
    latest = LatestCache(
        SnapshotStore(container),
        check_interval=settings.latest_check_seconds,
        stale_serve_seconds=settings.stale_serve_seconds,
        check_retries=settings.storage_retries,
    )
    return ApiContext(settings, latest, SasIssuer(container))
